// apply_worker.cpp: the apply worker, a dynamic background worker that applies the sales side of a
// run (orders, payments, refunds, transactions; each stream in its own transaction, apply_stream)
// while the sync worker applies the catalog side and rebuilds the item library export on the
// machine's other core. Started and awaited by the sync worker (ApplyWorker): it is told the run,
// the streams and the database and role in bgw_extra, reads what their fetch reached from
// sync_run_streams (record_fetched) and leaves each stream's outcome there.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
}

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "guard.hpp"
#include "spi.hpp"
#include "stream_apply.hpp"

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

void stop_apply_worker(int, Datum) {
    if (running_worker != nullptr) TerminateBackgroundWorker(running_worker);
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
    return stream == "orders" || stream == "payments" || stream == "refunds" || stream == "transactions";
}

bool apply_worker_supported() {
    bool supported = false;
    in_transaction([&] {
        supported = !spi_exec("SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'squaresync.sync_run_streams'::regclass"
                              " AND attname = 'fetched_watermark' AND NOT attisdropped", {}, true).rows.empty();
    });
    return supported;
}

void record_fetched(const std::vector<StreamApply>& streams) {
    in_transaction([&] {
        for (const auto& a : streams)
            spi_exec("UPDATE squaresync.sync_run_streams SET pages = $3::int, rows_staged = $4::bigint,"
                     " fetched_watermark = $5 WHERE run_id = $1::bigint AND stream = $2",
                     {str(a.run_id), a.stream, str(a.pages), str(a.rows), a.watermark});
    });
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
    pg_call([&] {
        BackgroundWorker w;
        memset(&w, 0, sizeof w);
        w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
        w.bgw_start_time = BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = BGW_NEVER_RESTART;
        snprintf(w.bgw_library_name, BGW_MAXLEN, "squaresync");
        snprintf(w.bgw_function_name, BGW_MAXLEN, "squaresync_apply_main");
        snprintf(w.bgw_name, BGW_MAXLEN, "squaresync apply run %lld", static_cast<long long>(run_id));
        snprintf(w.bgw_type, BGW_MAXLEN, "squaresync apply");
        w.bgw_main_arg = Int64GetDatum(run_id);
        memcpy(w.bgw_extra, &args, sizeof args);
        w.bgw_notify_pid = MyProcPid;
        registered = RegisterDynamicBackgroundWorker(&w, &handle);
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
    const std::int64_t run_id = DatumGetInt64(main_arg);

    static char message[2048];
    message[0] = '\0';
    try {
        using namespace squaresync::pg;
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
            if (apply_stream(a).code == "ABANDONED") break;
    } catch (const std::exception& e) {
        strlcpy(message, e.what(), sizeof message);
    } catch (...) {
        strlcpy(message, "unknown C++ exception", sizeof message);
    }
    // Nothing C++ is alive here: a pending shutdown or cancel may now exit the process.
    CHECK_FOR_INTERRUPTS();
    if (message[0] != '\0')
        ereport(WARNING, (errmsg("squaresync: the apply worker of run %lld ended with an error: %s",
                                 static_cast<long long>(run_id), message)));
    pgstat_report_activity(STATE_IDLE, nullptr);
}
