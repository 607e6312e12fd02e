// stream_apply.hpp: applying a fetched stream, in one transaction with its watermark, by the sync
// worker itself or by an apply worker (a second process, so that two streams apply at once).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace squaresync::pg {

// What an apply needs to know of a fetched stream (its rows are in the staging tables).
struct StreamApply {
    std::int64_t run_id = 0;
    std::string merchant, stream;
    bool full = false;                     // a foundation's apply
    std::optional<std::string> watermark;  // the watermark to commit with the rows
    int pages = 0;
    std::int64_t rows = 0;                 // rows staged
};

struct ApplyOutcome {
    bool failed = false;
    std::string error, code;               // code: Square's error code or the SQLSTATE
};

// What the process is doing, for pg_stat_activity.query ("squaresync: applying orders").
void report_activity(const std::string& what);

// The session settings of a process that applies streams (no JIT, no parallel query, SSD page
// costs: see sync_worker.cpp).
void configure_apply_session();

// One transaction: the stream's tables, what derives from them, its watermark, the run's counters,
// then its staging emptied. When that fails, records the failure (the stream's rows and watermark
// stay as they were) and returns it.
ApplyOutcome apply_stream(const StreamApply& a);

// Records a stream that failed before it could be applied, and empties its staging tables.
void record_stream_failure(const StreamApply& a, const ApplyOutcome& why);

// An apply worker: applies one stream of a run in its own process while the caller goes on.
class ApplyWorker {
public:
    // Starts the worker (database and role: the sync worker's). Returns nullopt when it cannot
    // start (no free background worker slot, or what it must be told does not fit): the caller
    // applies the stream itself.
    static std::optional<ApplyWorker> start(const StreamApply& a, unsigned int database, unsigned int role);
    // Waits until the worker has exited. Returns its outcome, or nullopt when it left the stream
    // unapplied and unrecorded (it exited before its transaction committed anything): the caller
    // then applies the stream itself.
    std::optional<ApplyOutcome> wait();

private:
    explicit ApplyWorker(const StreamApply& a, void* handle) : apply_(a), handle_(handle) {}
    StreamApply apply_;
    void* handle_;  // BackgroundWorkerHandle*
};

}  // namespace squaresync::pg
