// apply_worker.cpp: the apply worker, a dynamic background worker that applies the catalog side of
// a run (catalog, inventory, vendors; each stream in its own transaction, apply_stream) and then
// rebuilds the item library export, as soon as that side is fetched (a foundation: once the
// orders are), while the sync worker fetches, stages and applies the sales side on the other core.
// Started and awaited by the sync worker (ApplyWorker): it is told the run, the streams and the
// database and role in bgw_extra, reads what their fetch reached from sync_run_streams
// (record_fetched) and leaves each stream's outcome there (and the export's in derived_at).
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "pgstat.h"  // PG_WAIT_EXTENSION (utils/wait_event.h from PostgreSQL 14)
#include "utils/timestamp.h"
}

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "guard.hpp"
#include "spi.hpp"
#include "stream_apply.hpp"
#include "workers.hpp"

namespace squaresync::pg {

namespace {

// What the apply worker is told (bgw_extra).
struct ApplyArgs {
    unsigned int database;  // Oid
    unsigned int role;      // Oid: the sync worker's
    char full;
    char streams[100];      // comma separated, in apply order
};
static_assert(sizeof(ApplyArgs) <= BGW_EXTRALEN, "ApplyArgs must fit in bgw_extra");

std::string str(std::int64_t v) { return std::to_string(v); }

// The apply worker this process started and has not yet seen exit.
BackgroundWorkerHandle* running_worker = nullptr;

// At this process's exit (before its run lock is released): asks the apply worker to stop and
// waits for it, up to 10 s, so that a later run never starts beside it.
void stop_apply_worker(int, Datum) {
    if (running_worker == nullptr) return;
    TerminateBackgroundWorker(running_worker);
    const TimestampTz start = GetCurrentTimestamp();
    pid_t pid;
    while (!TimestampDifferenceExceeds(start, GetCurrentTimestamp(), 10000)) {
        const BgwHandleStatus st = GetBackgroundWorkerPid(running_worker, &pid);
        if (st != BGWH_STARTED && st != BGWH_NOT_YET_STARTED) break;
        const int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH, 100, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        if (rc & WL_POSTMASTER_DEATH) break;
    }
}

std::vector<std::string> split(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream in(list);
    for (std::string s; std::getline(in, s, ',');)
        if (!s.empty()) out.push_back(s);
    return out;
}

}  // namespace

bool applied_apart(const std::string& stream) {
    return stream == "catalog" || stream == "inventory" || stream == "vendors";
}

bool record_fetched(const std::vector<StreamApply>& streams) {
    bool supported = false;
    in_transaction([&] {
        supported = spi_exec("SELECT FROM pg_catalog.pg_attribute WHERE NOT attisdropped AND"
                             " ((attrelid = 'squaresync.sync_run_streams'::regclass AND attname = 'fetched_watermark') OR"
                             " (attrelid = 'squaresync.sync_runs'::regclass AND attname = 'derived_at'))", {}, true).rows.size() == 2;
        if (!supported) return;
        for (const auto& a : streams)
            spi_exec("UPDATE squaresync.sync_run_streams SET pages = $3::int, rows_staged = $4::bigint,"
                     " fetched_watermark = $5 WHERE run_id = $1::bigint AND stream = $2",
                     {str(a.run_id), a.stream, str(a.pages), str(a.rows), a.watermark});
    });
    return supported;
}

std::optional<ApplyWorker> ApplyWorker::start(std::int64_t run_id, const std::vector<std::string>& streams, bool full,
                                              unsigned int database, unsigned int role) {
    ApplyArgs args{};
    args.database = database;
    args.role = role;
    args.full = full ? 1 : 0;
    std::string list;
    for (const auto& s : streams) list += (list.empty() ? "" : ",") + s;
    if (streams.empty() || list.size() >= sizeof args.streams) return std::nullopt;
    std::memcpy(args.streams, list.c_str(), list.size() + 1);
    bool registered = false;
    BackgroundWorkerHandle* handle = nullptr;
    const std::string name = "squaresync apply run " + str(run_id);
    pg_call([&] {
        registered = register_worker("squaresync_apply_main", name, "squaresync apply", Int64GetDatum(run_id), &args,
                                     sizeof args, &handle);
    });
    if (!registered) return std::nullopt;
    // Should this process exit before the worker does (SIGTERM, a FATAL error), the worker is asked
    // to stop too: it would otherwise go on applying a run nobody finishes.
    static bool callback = false;
    if (!callback) pg_call([] { before_shmem_exit(stop_apply_worker, 0); });
    callback = true;
    running_worker = handle;
    return ApplyWorker(run_id, streams, handle);
}

std::map<std::string, std::optional<ApplyOutcome>> ApplyWorker::wait() {
    BgwHandleStatus status = BGWH_STOPPED;
    pg_call([&] { status = WaitForBackgroundWorkerShutdown(static_cast<BackgroundWorkerHandle*>(handle_)); });
    running_worker = nullptr;
    if (status == BGWH_POSTMASTER_DIED) throw std::runtime_error("the server shut down while the apply worker was applying");
    std::map<std::string, std::optional<ApplyOutcome>> out;
    in_transaction([&] {
        for (const auto& s : streams_) {
            auto r = spi_exec("SELECT status, error, error_code FROM squaresync.sync_run_streams"
                              " WHERE run_id = $1::bigint AND stream = $2", {str(run_id_), s}, true);
            if (r.rows.empty() || !r.at(0, 0) || *r.at(0, 0) == "running")
                out[s] = std::nullopt;
            else
                out[s] = ApplyOutcome{*r.at(0, 0) != "succeeded", r.at(0, 1).value_or(""), r.at(0, 2).value_or("")};
        }
    });
    return out;
}

void ApplyWorker::stop() {
    auto* handle = static_cast<BackgroundWorkerHandle*>(handle_);
    pg_call([&] {
        TerminateBackgroundWorker(handle);
        (void)WaitForBackgroundWorkerShutdown(handle);
    });
    running_worker = nullptr;
}

}  // namespace squaresync::pg

extern "C" PGDLLEXPORT void squaresync_apply_main(Datum main_arg);

void squaresync_apply_main(Datum main_arg) {
    using namespace squaresync::pg;
    ApplyArgs args;
    memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof args);
    begin_worker(args.database, args.role, OnSigterm::Exit);
    const std::int64_t run_id = DatumGetInt64(main_arg);
    static char what[64];
    snprintf(what, sizeof what, "the apply worker of run %lld", static_cast<long long>(run_id));
    run_worker_body(what, [&] {
        configure_apply_session();
        std::vector<StreamApply> streams;
        in_transaction([&] {
            for (const auto& name : split(args.streams)) {
                auto r = spi_exec("SELECT r.merchant_id, s.fetched_watermark, s.pages::text, s.rows_staged::text"
                                  " FROM squaresync.sync_runs r JOIN squaresync.sync_run_streams s ON s.run_id = r.id"
                                  " WHERE r.id = $1::bigint AND s.stream = $2", {str(run_id), name}, true);
                if (r.rows.empty() || !r.at(0, 0)) throw std::runtime_error("run " + str(run_id) + " has no " + name + " to apply");
                StreamApply a;
                a.run_id = run_id;
                a.merchant = *r.at(0, 0);
                a.stream = name;
                a.full = args.full != 0;
                a.watermark = r.at(0, 1);
                a.pages = std::stoi(r.at(0, 2).value_or("0"));
                a.rows = std::stoll(r.at(0, 3).value_or("0"));
                streams.push_back(std::move(a));
            }
        });
        for (const auto& a : streams)
            if (apply_stream(a).code == "ABANDONED") return;
        // A failure leaves derived_at unset: the sync worker then tries again and reports it.
        if (!streams.empty()) {
            const std::string error = rebuild_derived(run_id, streams.front().merchant);
            if (!error.empty()) {
                const std::string line = std::string("squaresync: ") + what + ": " + error;
                pg_call([&] { ereport(LOG, (errmsg("%s", line.c_str()))); });
            }
        }
    });
}
