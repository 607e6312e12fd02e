// apply_worker.cpp: the apply worker, a dynamic background worker that applies one fetched stream
// of a run (apply_stream, in its own transaction) while the sync worker applies the others on the
// machine's other core. Started and awaited by the sync worker (ApplyWorker); it is told the
// stream, its watermark and counts in bgw_extra and leaves its outcome in sync_run_streams.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
}

#include <cstring>
#include <stdexcept>

#include "guard.hpp"
#include "spi.hpp"
#include "stream_apply.hpp"

namespace squaresync::pg {

namespace {

// What the apply worker is told (bgw_extra); the merchant it reads from the run's row.
struct ApplyArgs {
    unsigned int database;   // Oid
    unsigned int role;       // Oid: the sync worker's
    std::int32_t pages;
    std::int64_t rows;
    char full;
    char has_watermark;
    char stream[22];
    char watermark[80];
};
static_assert(sizeof(ApplyArgs) <= BGW_EXTRALEN, "ApplyArgs must fit in bgw_extra");

template <std::size_t N>
bool copy_into(char (&dst)[N], const std::string& src) {
    if (src.size() >= N) return false;
    std::memcpy(dst, src.c_str(), src.size() + 1);
    return true;
}

}  // namespace

std::optional<ApplyWorker> ApplyWorker::start(const StreamApply& a, unsigned int database, unsigned int role) {
    ApplyArgs args{};
    args.database = database;
    args.role = role;
    args.pages = a.pages;
    args.rows = a.rows;
    args.full = a.full ? 1 : 0;
    args.has_watermark = a.watermark ? 1 : 0;
    if (!copy_into(args.stream, a.stream) || (a.watermark && !copy_into(args.watermark, *a.watermark)))
        return std::nullopt;
    bool registered = false;
    BackgroundWorkerHandle* handle = nullptr;
    pg_call([&] {
        BackgroundWorker w;
        memset(&w, 0, sizeof w);
        w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
        w.bgw_start_time = BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = BGW_NEVER_RESTART;
        snprintf(w.bgw_library_name, BGW_MAXLEN, "squaresync");
        snprintf(w.bgw_function_name, BGW_MAXLEN, "squaresync_apply_main");
        snprintf(w.bgw_name, BGW_MAXLEN, "squaresync apply of %s, run %lld", a.stream.c_str(),
                 static_cast<long long>(a.run_id));
        snprintf(w.bgw_type, BGW_MAXLEN, "squaresync apply");
        w.bgw_main_arg = Int64GetDatum(a.run_id);
        memcpy(w.bgw_extra, &args, sizeof args);
        w.bgw_notify_pid = MyProcPid;
        registered = RegisterDynamicBackgroundWorker(&w, &handle);
    });
    if (!registered) return std::nullopt;
    return ApplyWorker(a, handle);
}

std::optional<ApplyOutcome> ApplyWorker::wait() {
    BgwHandleStatus status = BGWH_STOPPED;
    pg_call([&] { status = WaitForBackgroundWorkerShutdown(static_cast<BackgroundWorkerHandle*>(handle_)); });
    if (status == BGWH_POSTMASTER_DIED) throw std::runtime_error("the server shut down while " + apply_.stream + " was being applied");
    std::optional<ApplyOutcome> out;
    in_transaction([&] {
        auto r = spi_exec("SELECT status, error, error_code FROM squaresync.sync_run_streams"
                          " WHERE run_id = $1::bigint AND stream = $2",
                          {std::to_string(apply_.run_id), apply_.stream}, true);
        if (r.rows.empty() || !r.at(0, 0) || *r.at(0, 0) == "running") return;
        out = ApplyOutcome{*r.at(0, 0) != "succeeded", r.at(0, 1).value_or(""), r.at(0, 2).value_or("")};
    });
    return out;
}

}  // namespace squaresync::pg

extern "C" PGDLLEXPORT void squaresync_apply_main(Datum main_arg);

void squaresync_apply_main(Datum main_arg) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();

    squaresync::pg::ApplyArgs args;
    memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof args);
    BackgroundWorkerInitializeConnectionByOid(args.database, args.role, 0);
    MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "squaresync apply", ALLOCSET_DEFAULT_SIZES);
    MemoryContextSwitchTo(ctx);

    static char message[2048];
    message[0] = '\0';
    try {
        squaresync::pg::configure_apply_session();
        squaresync::pg::StreamApply a;
        a.run_id = DatumGetInt64(main_arg);
        a.stream = args.stream;
        a.full = args.full != 0;
        if (args.has_watermark) a.watermark = std::string(args.watermark);
        a.pages = args.pages;
        a.rows = args.rows;
        squaresync::pg::in_transaction([&] {
            auto r = squaresync::pg::spi_exec("SELECT merchant_id FROM squaresync.sync_runs WHERE id = $1::bigint",
                                              {std::to_string(a.run_id)}, true);
            if (r.rows.empty() || !r.at(0, 0)) throw std::runtime_error("the run has no recorded merchant");
            a.merchant = *r.at(0, 0);
        });
        squaresync::pg::apply_stream(a);
    } catch (const std::exception& e) {
        strlcpy(message, e.what(), sizeof message);
    } catch (...) {
        strlcpy(message, "unknown C++ exception", sizeof message);
    }
    // Nothing C++ is alive here: a pending shutdown or cancel may now exit the process.
    CHECK_FOR_INTERRUPTS();
    if (message[0] != '\0')
        ereport(WARNING, (errmsg("squaresync: the apply worker of run %lld ended with an error: %s",
                                 static_cast<long long>(DatumGetInt64(main_arg)), message)));
    pgstat_report_activity(STATE_IDLE, nullptr);
}
