// workers.cpp: registering squaresync's dynamic background workers, and the start and end of
// their entry points (workers.hpp).
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#if PG_VERSION_NUM >= 140000  // (pgstat.h declares it before PostgreSQL 14)
#include "utils/backend_status.h"
#endif
#include "utils/memutils.h"
}

#include <cerrno>

#include "spi.hpp"
#include "workers.hpp"

namespace squaresync::pg {

namespace {

// SIGTERM served as a cancel: does what StatementCancelHandler does (never sets ProcDiePending).
void sigterm_as_cancel(SIGNAL_ARGS) {
    const int save_errno = errno;
    if (!proc_exit_inprogress) {  // (as PostgreSQL's: not while the process exits)
        InterruptPending = true;
        QueryCancelPending = true;
    }
    SetLatch(MyLatch);
    errno = save_errno;
}

}  // namespace

bool register_worker(const char* function, const std::string& name, const char* type, Datum main_arg,
                     const void* extra, std::size_t extra_size, BackgroundWorkerHandle** handle) {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "squaresync");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
    snprintf(w.bgw_name, BGW_MAXLEN, "%s", name.c_str());
    snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
    w.bgw_main_arg = main_arg;
    if (extra_size > 0) memcpy(w.bgw_extra, extra, Min(extra_size, static_cast<std::size_t>(BGW_EXTRALEN)));
    w.bgw_notify_pid = MyProcPid;
    return RegisterDynamicBackgroundWorker(&w, handle);
}

void begin_worker(Oid database, Oid role, OnSigterm on_sigterm) {
    pqsignal(SIGTERM, on_sigterm == OnSigterm::Cancel ? sigterm_as_cancel : die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnectionByOid(database, role, 0);
    use_read_committed();
    MemoryContextSwitchTo(AllocSetContextCreate(TopMemoryContext, "squaresync worker", ALLOCSET_DEFAULT_SIZES));
    require_extension();
}

void use_read_committed() {
    SetConfigOption("default_transaction_isolation", "read committed", PGC_USERSET, PGC_S_SESSION);
}

void end_worker(const char* what, const char* error) {
    CHECK_FOR_INTERRUPTS();
    if (error[0] != '\0') ereport(WARNING, (errmsg("squaresync: %s ended with an error: %s", what, error)));
    pgstat_report_activity(STATE_IDLE, nullptr);
}

}  // namespace squaresync::pg
