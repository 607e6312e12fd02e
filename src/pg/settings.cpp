// settings.cpp: defines the squaresync.* GUCs with their defaults, ranges and who may set them.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/procsignal.h"
#include "utils/guc.h"
}

#include <cstdio>
#include <cstring>

#include "settings.hpp"
#include "worker_thread.hpp"

#include "guard.hpp"

namespace squaresync::pg {

char* Settings::database = nullptr;
int Settings::launcher_naptime_s = 10;
int Settings::max_concurrency = 4;
int Settings::connect_timeout_ms = 10000;
int Settings::request_timeout_ms = 60000;
int Settings::max_response_kb = 64 * 1024;
int Settings::retry_max_attempts = 8;
int Settings::retry_budget = 200;
int Settings::retry_max_delay_ms = 30000;
char* Settings::ca_file = nullptr;
int Settings::orders_overlap_s = 72 * 3600;
int Settings::overlap_s = 3600;
int Settings::transactions_lookback_s = 7 * 86400;
int Settings::lock_timeout_ms = 60000;
int Settings::sync_interval_s = 0;
char* Settings::foundation_at = nullptr;
int Settings::audit_retention_s = 90 * 86400;
int Settings::validate_sample_size = 50;
char* Settings::sync_role = nullptr;
bool Settings::parallel_apply = true;

namespace {

// "HH:MM" (24-hour, UTC) or empty.
bool check_foundation_at(char** newval, void**, GucSource) {
    const char* v = *newval;
    if (v == nullptr || v[0] == '\0') return true;
    int h = -1, m = -1;
    char extra;
    if (sscanf(v, "%d:%d%c", &h, &m, &extra) != 2 || h < 0 || h > 23 || m < 0 || m > 59 || strlen(v) != 5) {
        GUC_check_errdetail("squaresync.foundation_at must be a UTC time of day \"HH:MM\" (e.g. '03:30') or empty.");
        return false;
    }
    return true;
}

}  // namespace

void define_settings() {
    DefineCustomStringVariable("squaresync.database", "Database in which the launcher schedules syncs and maintenance.",
                               "The extension must be created in this database for scheduled syncs.",
                               &Settings::database, "postgres", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.launcher_naptime", "How often the launcher wakes to check schedules.", nullptr,
                            &Settings::launcher_naptime_s, 10, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("squaresync.max_concurrency", "Requests to Square in flight at once during a sync.",
                            "Independent requests (streams, locations) overlap up to this number.",
                            &Settings::max_concurrency, 4, 1, 32, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.connect_timeout", "Timeout for connecting to Square.", nullptr,
                            &Settings::connect_timeout_ms, 10000, 100, 600000, PGC_SUSET, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("squaresync.request_timeout", "Timeout for one request to Square, body included.", nullptr,
                            &Settings::request_timeout_ms, 60000, 100, 3600000, PGC_SUSET, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("squaresync.max_response_size", "Largest response body accepted from Square.", nullptr,
                            &Settings::max_response_kb, 64 * 1024, 64, 1024 * 1024, PGC_SUSET, GUC_UNIT_KB, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("squaresync.retry_max_attempts", "Attempts per request (429, 5xx, network errors).",
                            nullptr, &Settings::retry_max_attempts, 8, 1, 100, PGC_SUSET, 0, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("squaresync.retry_budget", "Retries allowed in one run, all requests together.", nullptr,
                            &Settings::retry_budget, 200, 0, 100000, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.retry_max_delay", "Longest wait before a retry (Retry-After included).",
                            nullptr, &Settings::retry_max_delay_ms, 30000, 0, 3600000, PGC_SUSET, GUC_UNIT_MS,
                            nullptr, nullptr, nullptr);
    DefineCustomStringVariable("squaresync.ca_file", "CA certificates (PEM) to verify Square's TLS certificate with.",
                               "Empty: the system's CA store. For a private CA such as the test server's.",
                               &Settings::ca_file, "", PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.orders_overlap", "How far before the watermark incremental runs re-read orders.",
                            "Catches orders uploaded late by offline POS devices.", &Settings::orders_overlap_s,
                            72 * 3600, 0, 90 * 86400, PGC_SUSET, GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.overlap",
                            "How far before the watermark incremental runs re-read catalog, inventory, payments, refunds.",
                            nullptr, &Settings::overlap_s, 3600, 0, 90 * 86400, PGC_SUSET, GUC_UNIT_S, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("squaresync.transactions_lookback",
                            "How far before the watermark incremental runs re-read the deprecated Transactions API.",
                            nullptr, &Settings::transactions_lookback_s, 7 * 86400, 0, 365 * 86400, PGC_SUSET,
                            GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.lock_timeout",
                            "How long applying a stream waits for a lock on a data table before failing.", nullptr,
                            &Settings::lock_timeout_ms, 60000, 0, 3600000, PGC_SUSET, GUC_UNIT_MS, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("squaresync.sync_interval",
                            "Interval of the built-in incremental schedule (0 turns it off).",
                            "The launcher starts an incremental run when the last one started this long ago; needs "
                            "shared_preload_libraries and squaresync.database.",
                            &Settings::sync_interval_s, 0, 0, 365 * 86400, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr,
                            nullptr);
    DefineCustomStringVariable("squaresync.foundation_at", "UTC time of day (HH:MM) of a daily foundation run.",
                               "Empty turns it off. A foundation reconciles everything, deletes included.",
                               &Settings::foundation_at, "", PGC_SIGHUP, 0, check_foundation_at, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.audit_retention", "How long the audit trail (squaresync.changes) is kept.",
                            "0 keeps it forever. Older entries are pruned by the launcher; a run whose entries are pruned can no longer be "
                            "rolled back.",
                            &Settings::audit_retention_s, 90 * 86400, 0, 20 * 365 * 86400, PGC_SIGHUP, GUC_UNIT_S,
                            nullptr, nullptr, nullptr);
    DefineCustomIntVariable("squaresync.validate_sample_size",
                            "Rows per table that validate(deep => true) fetches from Square to compare.", nullptr,
                            &Settings::validate_sample_size, 50, 1, 100000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("squaresync.sync_role", "The role sync workers run as.",
                               "Empty: the extension's owner. Give it exactly the privileges a sync needs with "
                               "SELECT squaresync.grant_sync_privileges('role').",
                               &Settings::sync_role, "", PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("squaresync.parallel_apply",
                             "Apply the catalog side (catalog, inventory, vendors) and rebuild the item library export in a second background worker.",
                             "Takes one more background worker slot during the apply; without a free slot the sync "
                             "worker applies everything itself.",
                             &Settings::parallel_apply, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
#if PG_VERSION_NUM >= 150000
    MarkGUCPrefixReserved("squaresync");
#else
    EmitWarningsOnPlaceholders("squaresync");
#endif
}

namespace {

// A FATAL error or a SIGTERM served inside a statement ends the process with exit(), without
// unwinding the C++ frames of a transfer in progress: its helper thread is stopped first.
void stop_helper_threads(int, Datum) { WorkerThread::stop_all(); }

// While the transfers wait for Square, no statement runs to serve the ProcSignalBarriers other
// sessions wait on (DROP DATABASE and DROP TABLESPACE anywhere in the cluster): they are absorbed
// here, at each check for a stop request. An error while absorbing one leaves it pending (PostgreSQL
// retries it at the next check).
void absorb_barriers() {
    try {
        pg_call([] { ProcessProcSignalBarrier(); });
    } catch (...) {
    }
}

}  // namespace

HttpConfig http_config(const std::string& base_url, const std::string& token) {
    static bool exit_hook = false;
    if (!exit_hook) pg_call([] { before_shmem_exit(stop_helper_threads, 0); });
    exit_hook = true;
    HttpConfig c;
    c.base_url = base_url;
    c.access_token = token;
    c.ca_file = Settings::ca_file ? Settings::ca_file : "";
    c.connect_timeout_ms = Settings::connect_timeout_ms;
    c.request_timeout_ms = Settings::request_timeout_ms;
    c.max_response_bytes = static_cast<std::size_t>(Settings::max_response_kb) * 1024;
    c.max_concurrency = Settings::max_concurrency;
    c.retry.max_attempts = Settings::retry_max_attempts;
    c.retry.run_budget = Settings::retry_budget;
    c.retry.max_delay = std::chrono::milliseconds(Settings::retry_max_delay_ms);
    c.should_abort = [] {
        // (as ProcessInterrupts would: never inside a held-off or critical section)
        if (ProcSignalBarrierPending && InterruptHoldoffCount == 0 && CritSectionCount == 0) absorb_barriers();
        return InterruptPending && (ProcDiePending || QueryCancelPending);
    };
    c.user_agent = "squaresync/0.2.0 (PostgreSQL extension)";
    // One line per request at DEBUG1 (method, target, status, bytes, time; never a header).
    c.debug_log = [](const std::string& line) {
        try {
            pg_call([&] { elog(DEBUG1, "squaresync: %s", line.c_str()); });
        } catch (...) {
        }
    };
    return c;
}

}  // namespace squaresync::pg
