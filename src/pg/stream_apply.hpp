// stream_apply.hpp: applying a fetched stream, in one transaction with its watermark, by the sync
// worker itself or by an apply worker (a second process, so that two streams apply at once).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
// costs: see stream_apply.cpp).
void configure_apply_session();

// One transaction: the stream's tables, what derives from them, its watermark, the run's counters,
// then its staging emptied. When that fails, records the failure (the stream's rows and watermark
// stay as they were) and returns it. A stream a later run has marked failed (this run's sync
// worker died) is left alone: the outcome says so, with code ABANDONED.
ApplyOutcome apply_stream(const StreamApply& a);

// Records a stream that failed before it could be applied, and empties its staging tables.
void record_stream_failure(const StreamApply& a, const ApplyOutcome& why);

// The streams an apply worker applies while the sync worker fetches and applies the others: the
// catalog side (catalog, inventory, vendors). They are fetched long before the orders, so the apply
// worker applies them, and rebuilds the item library export from them, while the sync worker is
// still fetching and staging the sales side (orders, payments, refunds, transactions), which it
// applies itself (a foundation hands them over when the orders are fetched, to apply beside the
// orders' apply). The two sides' tables reference no table of the other, so they never wait
// for each other's rows.
bool applied_apart(const std::string& stream);

// Brings what derives from several streams (the item library export) up to date for a run, in one
// transaction (squaresync._after_run, which marks sync_runs.derived_at). Returns "" or what failed.
std::string rebuild_derived(std::int64_t run_id, const std::string& merchant);

// Whether a run's derived tables were brought up to date (its derived_at is set).
bool derived_done(std::int64_t run_id);

// Records what the fetch of each stream reached (pages, rows staged, the watermark to commit with
// its rows) in sync_run_streams, where an apply worker reads it. One transaction. Returns false,
// recording nothing, when the installed tables cannot hand streams to an apply worker (an
// installation not yet updated with ALTER EXTENSION UPDATE lacks sync_run_streams.fetched_watermark
// and sync_runs.derived_at: its runs apply everything in the sync worker).
bool record_fetched(const std::vector<StreamApply>& streams);

// An apply worker: applies fetched streams of a run, one after another, each in its own
// transaction, in its own process while the caller goes on.
class ApplyWorker {
public:
    // Starts the worker for these streams (recorded with record_fetched), as the sync worker's
    // database and role; it then rebuilds the derived tables (rebuild_derived).
    // Returns nullopt when it cannot start (no free background worker slot): the caller applies
    // the streams itself.
    static std::optional<ApplyWorker> start(std::int64_t run_id, const std::vector<std::string>& streams, bool full,
                                            unsigned int database, unsigned int role);
    // Waits until the worker has exited; then, per stream, its outcome, or nullopt when the worker
    // left it unapplied and unrecorded (it stopped first): the caller then applies it itself.
    std::map<std::string, std::optional<ApplyOutcome>> wait();
    // Asks the worker to stop (SIGTERM: what it has not committed rolls back) and waits until it
    // has exited: called by a run that is itself stopping.
    void stop();

private:
    ApplyWorker(std::int64_t run_id, std::vector<std::string> streams, void* handle)
        : run_id_(run_id), streams_(std::move(streams)), handle_(handle) {}
    std::int64_t run_id_;
    std::vector<std::string> streams_;
    void* handle_;  // BackgroundWorkerHandle*
};

}  // namespace squaresync::pg
