// workers.hpp: what squaresync's dynamic background workers (sync, apply, maintenance) share:
// registering one, and the start and end of a worker's entry point. Include after postgres.h.
#pragma once

extern "C" {
#include "postmaster/bgworker.h"
}

#include <cstring>
#include <exception>
#include <string>

namespace squaresync::pg {

// Registers a dynamic background worker of this library that connects to a database, tells this
// process when it starts and exits, and is never restarted. extra goes to bgw_extra. Returns false
// when every background worker slot is in use. Raises PostgreSQL errors (call it under pg_call).
bool register_worker(const char* function, const std::string& name, const char* type, Datum main_arg,
                     const void* extra, std::size_t extra_size, BackgroundWorkerHandle** handle);

// What a SIGTERM (pg_terminate_backend, a fast shutdown, DROP DATABASE ... WITH (FORCE)) does to a
// worker. Exit: PostgreSQL's die(), a FATAL exit at the next check for interrupts, inside a
// statement too (the apply worker: its transaction is aborted). Cancel: it is served as a query
// cancel, wherever it lands (the sync worker: it then stops its run the way a cancel stops it,
// records it failed itself, and exits; die() inside a statement would leave the run 'running' for
// a later run to mark).
enum class OnSigterm { Exit, Cancel };

// The start of a worker's entry point: signal handlers (SIGTERM as on_sigterm says, SIGHUP reloads
// the configuration), its connection to database as role (READ COMMITTED, use_read_committed), and
// a memory context of its own; its transactions then require the extension (require_extension).
void begin_worker(Oid database, Oid role, OnSigterm on_sigterm);

// Makes this worker's transactions READ COMMITTED whatever default_transaction_isolation the
// server, database or role sets: the sync and apply workers update the same run's rows side by
// side (under REPEATABLE READ or SERIALIZABLE one of them would fail with a serialization error),
// and a worker waiting for another's commit (a run's row, a stream's) must see it. begin_worker
// calls it; the maintenance worker too.
void use_read_committed();

// The end of a worker's entry point, once nothing C++ is alive: lets a pending shutdown or cancel
// take effect, logs error (when not empty) as a WARNING "squaresync: <what> ended with an error:
// ...", and shows the worker idle.
void end_worker(const char* what, const char* error);

// Runs a worker's body, which may throw anything; what escapes is logged by end_worker.
template <typename F>
void run_worker_body(const char* what, F&& body) {
    static char message[2048];
    message[0] = '\0';
    try {
        body();
    } catch (const std::exception& e) {
        strlcpy(message, e.what(), sizeof message);
    } catch (...) {
        strlcpy(message, "unknown C++ exception", sizeof message);
    }
    end_worker(what, message);
}

}  // namespace squaresync::pg
