// runs.hpp: starting, joining and waiting for sync runs (one at a time per database), shared by the
// SQL functions, the launcher's schedule and the sync worker.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace squaresync::pg {

enum class RunKind : char { Foundation = 'f', Incremental = 'i' };

// What a sync worker is told when it is started (bgw_extra).
struct RunArgs {
    unsigned int database;   // Oid
    unsigned int role;       // Oid: the extension's owner
    char kind;               // RunKind
    char triggered_by[64];
};

// Advisory lock keys (pg_locks: locktype advisory, classid kLockClass, objid, objsubid 2).
constexpr std::int32_t kLockClass = 0x53515359;  // "SQSY"
constexpr std::int32_t kRunLock = 1;             // held by the worker running the database's sync
constexpr std::int32_t kStartLock = 2;           // serialises starting a run

void advisory_lock(std::int32_t key, bool session);
bool advisory_try_lock(std::int32_t key, bool session);
void advisory_unlock(std::int32_t key);

// Thrown by start_run when a foundation is asked for while an incremental run is in progress: a
// foundation does not join it (it would not be one), it starts once that run has ended.
struct IncrementalInProgress : std::runtime_error {
    std::int64_t run_id;
    explicit IncrementalInProgress(std::int64_t id)
        : std::runtime_error("squaresync incremental run " + std::to_string(id) +
                             " is in progress; a foundation does not join it"),
          run_id(id) {}
};

// Starts a run, or returns the one in progress (*joined = true): an incremental joins a run of
// either kind, a foundation a foundation (else IncrementalInProgress). Needs SPI connected.
std::int64_t start_run(RunKind kind, const std::string& triggered_by, bool* joined);
// Waits until the run is no longer running; returns its status and error. Needs SPI connected.
std::string wait_run(std::int64_t run_id, std::string* error);

// Marks runs left 'running' by a worker that no longer exists as failed (no run may be in progress:
// the caller holds kRunLock).
void fail_stale_runs(std::int64_t except_run);

}  // namespace squaresync::pg
