// run_control.cpp: squaresync.foundation() and squaresync.incremental(): start a sync worker (or
// join the run in progress), and with wait => true wait for it and raise an ERROR if it failed.
extern "C" {
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#if PG_VERSION_NUM >= 140000  // (pgstat.h declares it before PostgreSQL 14)
#include "utils/wait_event.h"
#endif
}

#include <cstring>

#include "guard.hpp"
#include "runs.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "workers.hpp"

namespace squaresync::pg {

namespace {

void set_tag(LOCKTAG* tag, std::int32_t key) {
    SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, static_cast<uint32>(kLockClass), static_cast<uint32>(key), 2);
}

// The pids holding the run lock in this database (the worker of the run in progress).
const std::string kRunningWorkers =
    "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
    " AND classid = " + std::to_string(kLockClass) + " AND objid = " + std::to_string(kRunLock) + " AND objsubid = 2";

void sleep_ms(long ms) {
    pg_call([&] {
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
    });
}

// The role a sync worker runs as: squaresync.sync_role when set, else the extension's owner.
Oid sync_role() {
    const std::string name = Settings::sync_role ? Settings::sync_role : "";
    if (name.empty()) return InvalidOid;
    auto r = spi_exec("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1", {name}, true);
    if (r.rows.empty())
        throw UserError(ERRCODE_UNDEFINED_OBJECT, "squaresync.sync_role names a role that does not exist: \"" + name + "\"",
                        "CREATE ROLE it and run SELECT squaresync.grant_sync_privileges('" + name +
                            "'), or reset squaresync.sync_role.");
    return static_cast<Oid>(std::stoul(*r.at(0, 0)));
}

Oid extension_owner() {
    auto r = spi_exec("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'squaresync'", {}, true);
    if (r.rows.empty() || !r.at(0, 0))
        throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "extension squaresync is not installed in this database");
    return static_cast<Oid>(std::stoul(*r.at(0, 0)));
}

// Starts the dynamic background worker for a run; returns once it is running (or has exited).
void launch_worker(std::int64_t run_id, RunKind kind, const std::string& triggered_by) {
    RunArgs args{};
    args.database = MyDatabaseId;
    const Oid role = sync_role();
    args.role = OidIsValid(role) ? role : extension_owner();
    args.kind = static_cast<char>(kind);
    std::strncpy(args.triggered_by, triggered_by.c_str(), sizeof args.triggered_by - 1);

    bool registered = false;
    BgwHandleStatus status = BGWH_STOPPED;
    pid_t pid = 0;
    const std::string name = "squaresync sync run " + std::to_string(run_id);
    pg_call([&] {
        BackgroundWorkerHandle* handle = nullptr;
        registered = register_worker("squaresync_sync_main", name, "squaresync sync", Int64GetDatum(run_id), &args,
                                     sizeof args, &handle);
        if (registered) status = WaitForBackgroundWorkerStartup(handle, &pid);
    });
    if (!registered)
        throw UserError(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                        "could not start a squaresync sync worker: every background worker slot is in use",
                        "Raise max_worker_processes (now " + std::to_string(max_worker_processes) +
                            ") and restart PostgreSQL, or retry when other background workers have finished.");
    if (status == BGWH_POSTMASTER_DIED)
        throw UserError(ERRCODE_ADMIN_SHUTDOWN, "the server shut down while starting a sync worker");
    // Wait until the worker has taken the run lock and committed the run's row, or has exited.
    for (int i = 0;; ++i) {
        auto r = spi_read_latest("SELECT 1 FROM squaresync.sync_runs WHERE id = $1::bigint", {std::to_string(run_id)});
        if (!r.rows.empty()) return;
        bool alive = false;
        pg_call([&] { alive = kill(pid, 0) == 0; });
        if (status != BGWH_STARTED || !alive)
            throw UserError(ERRCODE_INTERNAL_ERROR,
                            "the squaresync sync worker for run " + std::to_string(run_id) + " exited before starting",
                            "See the server log for the reason.");
        sleep_ms(i < 20 ? 10 : 100);
    }
}

}  // namespace

void advisory_lock(std::int32_t key, bool session) {
    pg_call([&] {
        LOCKTAG tag;
        set_tag(&tag, key);
        (void)LockAcquire(&tag, ExclusiveLock, session, false);
    });
}

bool advisory_try_lock(std::int32_t key, bool session) {
    LockAcquireResult res = LOCKACQUIRE_NOT_AVAIL;
    pg_call([&] {
        LOCKTAG tag;
        set_tag(&tag, key);
        res = LockAcquire(&tag, ExclusiveLock, session, true);
    });
    return res != LOCKACQUIRE_NOT_AVAIL;
}

void advisory_unlock(std::int32_t key) {
    pg_call([&] {
        LOCKTAG tag;
        set_tag(&tag, key);
        (void)LockRelease(&tag, ExclusiveLock, true);
    });
}

void fail_stale_runs(std::int64_t except_run) {
    // The streams first, then the runs: the order an apply and finish() take them in.
    spi_exec(
        "UPDATE squaresync.sync_run_streams SET status = 'failed', error = coalesce(error, 'run interrupted')"
        " WHERE status = 'running' AND run_id <> $1::bigint",
        {std::to_string(except_run)});
    spi_exec(
        "UPDATE squaresync.sync_runs SET status = 'failed', finished_at = clock_timestamp(),"
        " error = coalesce(error, 'the sync worker stopped before the run finished (server restart, crash or kill);"
        " committed streams are intact and the next run resumes from their watermarks')"
        " WHERE status = 'running' AND id <> $1::bigint",
        {std::to_string(except_run)});
}

std::int64_t start_run(RunKind kind, const std::string& triggered_by, bool* joined) {
    advisory_lock(kStartLock, true);
    try {
        auto running = spi_read_latest(std::string("SELECT id, kind FROM squaresync.sync_runs WHERE status = 'running'"
                                                   " AND worker_pid IN (") +
                                       kRunningWorkers + ") ORDER BY id DESC LIMIT 1");
        std::int64_t id;
        if (!running.rows.empty()) {
            id = std::stoll(*running.at(0, 0));
            if (kind == RunKind::Foundation && running.at(0, 1).value_or("") != "foundation")
                throw IncrementalInProgress(id);
            *joined = true;
        } else {
            *joined = false;
            auto conn = spi_exec("SELECT merchant_id FROM squaresync.connection", {});
            if (conn.rows.empty())
                throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "squaresync is not connected to Square",
                                "Run SELECT squaresync.connect('<access token>') first.");
            id = std::stoll(*spi_exec("SELECT nextval('squaresync.sync_runs_id_seq')", {}).at(0, 0));
            launch_worker(id, kind, triggered_by);
        }
        advisory_unlock(kStartLock);
        return id;
    } catch (...) {
        advisory_unlock(kStartLock);
        throw;
    }
}

std::string wait_run(std::int64_t run_id, std::string* error) {
    const std::string sql = std::string("SELECT status, error, worker_pid IN (") + kRunningWorkers +
                            ") FROM squaresync.sync_runs WHERE id = $1::bigint";
    bool seen_dead = false;
    for (;;) {
        auto r = spi_read_latest(sql, {std::to_string(run_id)});
        if (r.rows.empty()) throw UserError(ERRCODE_UNDEFINED_OBJECT, "run " + std::to_string(run_id) + " does not exist");
        const std::string status = r.at(0, 0).value_or("");
        if (status != "running") {
            if (error) *error = r.at(0, 1).value_or("");
            return status;
        }
        if (r.at(0, 2).value_or("f") != "t") {
            // The worker holds the run lock until it exits; give its last commit a moment to land.
            if (seen_dead) {
                if (error) *error = "the sync worker exited without finishing the run; see the server log";
                return "failed";
            }
            seen_dead = true;
        }
        sleep_ms(100);
    }
}

}  // namespace squaresync::pg

using namespace squaresync::pg;

namespace {

Datum run_entry(RunKind kind, FunctionCallInfo fcinfo) {
    const bool wait = PG_ARGISNULL(0) ? true : PG_GETARG_BOOL(0);
    // Both ways the caller waits for the worker's commits (the run's row at least): it reads them
    // with a snapshot of their own (spi_read_latest), so that a REPEATABLE READ or SERIALIZABLE
    // transaction (a database's default_transaction_isolation, for one) sees them too.
    spi_connect();
    // The run lock held by this very transaction (squaresync.rollback() takes it until commit): the
    // worker would wait for it, and this call for the worker.
    if (!spi_exec(kRunningWorkers + " AND pid = pg_catalog.pg_backend_pid()", {}).rows.empty())
        throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this transaction holds squaresync's run lock (squaresync.rollback() was called in it): a run "
                        "started now could not begin before the transaction ends",
                        "Commit (or roll back) this transaction, then start the run.");
    bool joined = false;
    std::int64_t id = 0;
    for (;;) {
        try {
            id = start_run(kind, kind == RunKind::Foundation ? "foundation()" : "incremental()", &joined);
            break;
        } catch (const IncrementalInProgress& busy) {
            if (!wait)
                throw UserError(ERRCODE_OBJECT_IN_USE, busy.what(),
                                "Call squaresync.foundation() again once it has ended, or with wait => true (the "
                                "default), which waits for it and then starts the foundation.");
            std::string ignored;
            (void)wait_run(busy.run_id, &ignored);
        }
    }
    if (wait) {
        std::string error;
        const std::string status = wait_run(id, &error);
        if (status == "failed" || status == "partial")
            throw UserError(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                            "squaresync run " + std::to_string(id) + " " + (status == "partial" ? "partly failed" : "failed") +
                                ": " + error,
                            "SELECT * FROM squaresync.sync_run_streams WHERE run_id = " + std::to_string(id) +
                                " shows each stream; streams that succeeded were applied and the next run retries the others.");
    }
    spi_finish();
    PG_RETURN_INT64(id);
}

}  // namespace

SQUARESYNC_FUNCTION(squaresync_foundation) { return run_entry(RunKind::Foundation, fcinfo); }
SQUARESYNC_FUNCTION(squaresync_incremental) { return run_entry(RunKind::Incremental, fcinfo); }
