// launcher.cpp: the static "squaresync launcher" background worker (registered when the library is
// preloaded) and the short-lived maintenance worker it starts. The launcher holds no database
// connection, so DROP DATABASE never waits for it; every squaresync.launcher_naptime it starts a
// maintenance worker in squaresync.database, which marks runs left 'running' by a dead worker as
// failed, prunes the audit trail (squaresync.audit_retention), starts the scheduled run when one
// is due (squaresync.sync_interval, squaresync.foundation_at) and exits.
extern "C" {
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#if PG_VERSION_NUM >= 140000  // (pgstat.h declares them before PostgreSQL 14)
#include "utils/backend_status.h"
#include "utils/wait_event.h"
#endif
}

#include "guard.hpp"
#include "runs.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "workers.hpp"

extern "C" PGDLLEXPORT void squaresync_launcher_main(Datum);
extern "C" PGDLLEXPORT void squaresync_maintenance_main(Datum);

namespace squaresync::pg {

void register_launcher() {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = 10;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "squaresync");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "squaresync_launcher_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "squaresync launcher");
    snprintf(w.bgw_type, BGW_MAXLEN, "squaresync launcher");
    RegisterBackgroundWorker(&w);
}

}  // namespace squaresync::pg

namespace {

// Starts the maintenance worker in the configured database; returns its handle or nullptr.
BackgroundWorkerHandle* start_maintenance(Oid dboid) {
    BackgroundWorkerHandle* handle = nullptr;
    if (!squaresync::pg::register_worker("squaresync_maintenance_main", "squaresync maintenance", "squaresync maintenance",
                                         ObjectIdGetDatum(dboid), nullptr, 0, &handle)) {
        ereport(LOG, (errmsg("squaresync launcher: could not start the maintenance worker: no background worker slot is free"),
                      errhint("Raise max_worker_processes.")));
        return nullptr;
    }
    return handle;
}

// A heap scan of the shared catalog pg_database, as the autovacuum launcher does: a worker with no
// database selected cannot use the catalog caches.
Oid lookup_database(const char* name) {
    Oid oid = InvalidOid;
    StartTransactionCommand();
    (void)GetTransactionSnapshot();
    Relation rel = table_open(DatabaseRelationId, AccessShareLock);
    TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
    HeapTuple tup;
    while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
        Form_pg_database db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tup));
        if (strcmp(NameStr(db->datname), name) == 0 && db->datallowconn) {
            oid = db->oid;
            break;
        }
    }
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    CommitTransactionCommand();
    return oid;
}

}  // namespace

// The launcher: plain C-style code (no C++ objects are alive across PostgreSQL calls here).
void squaresync_launcher_main(Datum) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_activity(STATE_IDLE, nullptr);

    BackgroundWorkerHandle* maintenance = nullptr;
    TimestampTz next_tick = 0;
    bool warned_missing = false;
    for (;;) {
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
        const TimestampTz now = GetCurrentTimestamp();
        if (now < next_tick || RecoveryInProgress()) continue;
        next_tick = now + static_cast<TimestampTz>(squaresync::pg::Settings::launcher_naptime_s) * USECS_PER_SEC;

        if (maintenance != nullptr) {
            pid_t pid;
            const BgwHandleStatus st = GetBackgroundWorkerPid(maintenance, &pid);
            if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED) continue;  // still busy, or not yet begun
            pfree(maintenance);
            maintenance = nullptr;
        }
        const Oid db = lookup_database(squaresync::pg::Settings::database);
        if (!OidIsValid(db)) {
            if (!warned_missing)
                ereport(LOG, (errmsg("squaresync launcher: database \"%s\" (squaresync.database) does not exist; waiting for it",
                                     squaresync::pg::Settings::database)));
            warned_missing = true;
            continue;
        }
        warned_missing = false;
        maintenance = start_maintenance(db);
    }
}

// The maintenance worker: one pass, then exit. Does nothing where the extension is not installed.
void squaresync_maintenance_main(Datum arg) {
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
    squaresync::pg::use_read_committed();
    pgstat_report_activity(STATE_RUNNING, "squaresync: maintenance");

    static char message[1024];
    message[0] = '\0';
    try {
        using namespace squaresync::pg;
        bool installed = false;
        std::string due;
        // The pass is opportunistic: it yields to any lock held longer than a moment (a DROP
        // EXTENSION dropping the tables it reads, for one, with which waiting could deadlock) and
        // the next pass tries again.
        const auto yield_to_locks = [] { spi_exec("SELECT set_config('lock_timeout', '50ms', true)"); };
        in_transaction([&] {
            pg_call([&] { installed = OidIsValid(get_extension_oid("squaresync", true)); });
            if (!installed) return;
            yield_to_locks();
            // No worker holds the run lock: any run still marked running was left by a dead one, and
            // the schedule may start the next run. A run in progress is never overlapped.
            if (!advisory_try_lock(kRunLock, false)) return;
            fail_stale_runs(-1);
            if (spi_exec("SELECT to_regprocedure('squaresync._prune_audit()') IS NOT NULL").at(0, 0) == std::string("t"))
                spi_exec("SELECT squaresync._prune_audit()");
            due = spi_exec("SELECT squaresync._scheduled_run_due()").at(0, 0).value_or("");
        });
        if (installed && !due.empty()) {
            in_transaction([&] {
                yield_to_locks();
                bool joined = false;
                std::int64_t id = 0;
                try {
                    id = start_run(due == "foundation" ? RunKind::Foundation : RunKind::Incremental, "schedule", &joined);
                } catch (const IncrementalInProgress&) {
                    return;  // an incremental started meanwhile: the foundation is due again next pass
                }
                if (!joined) {
                    const std::string line = "squaresync: the schedule started " + due + " run " + std::to_string(id);
                    pg_call([&] { ereport(LOG, (errmsg("%s", line.c_str()))); });
                }
            });
        }
    } catch (const std::exception& e) {
        strlcpy(message, e.what(), sizeof message);
    }
    if (message[0] != '\0') ereport(LOG, (errmsg("squaresync maintenance: %s", message)));
    pgstat_report_activity(STATE_IDLE, nullptr);
}
