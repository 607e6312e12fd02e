// stream_apply.cpp: applying one fetched stream in one transaction (its tables, what derives from
// them, its watermark, the run's counters, its staging emptied), recording a stream that failed,
// and rebuilding what derives from several streams once per run.
extern "C" {
#include "postgres.h"

#include "pgstat.h"
#if PG_VERSION_NUM >= 140000  // (pgstat.h declares it before PostgreSQL 14)
#include "utils/backend_status.h"
#endif
#include "utils/elog.h"
#include "utils/guc.h"
}

#include <chrono>
#include <stdexcept>

#include "guard.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "stream_apply.hpp"

namespace squaresync::pg {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

// The stream's row no longer says running: a later run found this run's sync worker gone and
// marked it failed, and may have emptied the staging tables since.
struct StreamAbandoned : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Locks the stream's row and says whether it is still 'running', inside the caller's transaction: a
// later run marks the streams of a run whose sync worker died as failed (fail_stale_runs) before it
// empties the staging tables, so either the caller sees that and leaves the stream alone, or that
// run waits until the caller commits.
bool lock_running_stream(const StreamApply& a) {
    auto st = spi_exec("SELECT status FROM squaresync.sync_run_streams WHERE run_id = $1::bigint AND stream = $2"
                       " FOR UPDATE", {str(a.run_id), a.stream});
    return !st.rows.empty() && st.at(0, 0) == std::string("running");
}

}  // namespace

void report_activity(const std::string& what) {
    pg_call([&] { pgstat_report_activity(STATE_RUNNING, what.c_str()); });
}

void configure_apply_session() {
    // No JIT: the apply's statements run once each, so compiling them costs more than it saves,
    // and loading LLVM adds ~50 MiB to the process. No parallel query nor parallel index
    // build (a first load makes its indexes again): they would take parallel workers from the
    // seller's own queries and map a shared memory segment per plan. Index
    // probes priced as on SSD: an incremental apply looks up a few hundred staged keys in indexes
    // that are in cache, and the default 4 makes the planner hash whole tables instead.
    pg_call([] {
        SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
        SetConfigOption("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION);
        SetConfigOption("max_parallel_maintenance_workers", "0", PGC_USERSET, PGC_S_SESSION);
        SetConfigOption("random_page_cost", "1.1", PGC_USERSET, PGC_S_SESSION);
    });
}

ApplyOutcome apply_stream(const StreamApply& a) {
    report_activity("squaresync: applying " + a.stream);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        in_transaction([&] {
            if (!lock_running_stream(a))
                throw StreamAbandoned("run " + str(a.run_id) + " was marked failed by a later run before " + a.stream +
                                      " was applied; that run fetches it again");
            spi_exec("SELECT set_config('lock_timeout', $1, true)", {str(Settings::lock_timeout_ms)});
            spi_exec("SELECT squaresync._apply_stream($1::bigint, $2, $3, $4::boolean, $5)",
                     {str(a.run_id), a.merchant, a.stream, std::string(a.full ? "true" : "false"), a.watermark});
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            spi_exec("UPDATE squaresync.sync_run_streams SET pages = $3::int, rows_staged = $4::bigint,"
                     " apply_seconds = $5::float8 WHERE run_id = $1::bigint AND stream = $2",
                     {str(a.run_id), a.stream, str(a.pages), str(a.rows), std::to_string(secs)});
            spi_exec("SELECT squaresync._clear_staging($1)", {a.stream});
        });
        return {};
    } catch (const StreamAbandoned& e) {
        return ApplyOutcome{true, e.what(), "ABANDONED"};
    } catch (const PgError& e) {
        std::string why = e.message + (e.detail.empty() ? "" : " (" + e.detail + ")");
        if (e.sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
            why = "another session held a lock on a table of this stream for longer than squaresync.lock_timeout (" +
                  str(Settings::lock_timeout_ms) + " ms); the stream was not applied and the next run retries it";
        ApplyOutcome o{true, "applying " + a.stream + " failed: " + why, std::string(unpack_sql_state(e.sqlerrcode))};
        record_stream_failure(a, o);
        return o;
    }
}

std::string rebuild_derived(std::int64_t run_id, const std::string& merchant) {
    report_activity("squaresync: rebuilding derived tables");
    try {
        in_transaction([&] {
            spi_exec("SELECT set_config('lock_timeout', $1, true)", {str(Settings::lock_timeout_ms)});
            spi_exec("SELECT squaresync._after_run($1::bigint, $2)", {str(run_id), merchant});
        });
        return "";
    } catch (const PgError& e) {
        return "the item library export was not rebuilt: " + e.message;
    }
}

bool derived_done(std::int64_t run_id) {
    bool done = false;
    in_transaction([&] {
        done = !spi_exec("SELECT FROM squaresync.sync_runs WHERE id = $1::bigint AND derived_at IS NOT NULL",
                         {str(run_id)}, true).rows.empty();
    });
    return done;
}

void record_stream_failure(const StreamApply& a, const ApplyOutcome& why) {
    in_transaction([&] {
        // A stream a later run has already marked failed is left alone (that run may have staged
        // pages of its own since).
        if (!lock_running_stream(a)) return;
        spi_exec("UPDATE squaresync.sync_run_streams SET status = 'failed', error = $3, error_code = $4,"
                 " pages = $5::int, rows_staged = $6::bigint WHERE run_id = $1::bigint AND stream = $2",
                 {str(a.run_id), a.stream, why.error, why.code, str(a.pages), str(a.rows)});
        spi_exec("INSERT INTO squaresync.stream_state AS t (merchant_id, stream, last_run_id, last_status, last_error)"
                 " VALUES ($1, $2, $3::bigint, 'failed', $4) ON CONFLICT (merchant_id, stream) DO UPDATE"
                 " SET last_run_id = excluded.last_run_id, last_status = 'failed', last_error = excluded.last_error,"
                 " updated_at = now()",
                 {a.merchant, a.stream, str(a.run_id), why.error});
        spi_exec("SELECT squaresync._clear_staging($1)", {a.stream});
    });
}

}  // namespace squaresync::pg
