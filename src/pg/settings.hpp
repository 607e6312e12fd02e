// settings.hpp: the extension's GUCs (documented in docs/settings.md) and the HTTP client
// configuration built from them.
#pragma once

#include <string>

#include "http_client.hpp"

namespace squaresync::pg {

struct Settings {
    static char* database;            // squaresync.database: where the launcher runs maintenance and schedules
    static int launcher_naptime_s;    // squaresync.launcher_naptime
    static int max_concurrency;       // squaresync.max_concurrency
    static int connect_timeout_ms;    // squaresync.connect_timeout
    static int request_timeout_ms;    // squaresync.request_timeout
    static int max_response_kb;       // squaresync.max_response_size
    static int retry_max_attempts;    // squaresync.retry_max_attempts
    static int retry_budget;          // squaresync.retry_budget
    static int retry_max_delay_ms;    // squaresync.retry_max_delay
    static char* ca_file;             // squaresync.ca_file
    static int orders_overlap_s;      // squaresync.orders_overlap
    static int overlap_s;             // squaresync.overlap
    static int transactions_lookback_s;  // squaresync.transactions_lookback
    static int lock_timeout_ms;       // squaresync.lock_timeout
    static int sync_interval_s;       // squaresync.sync_interval: built-in incremental schedule (0 = off)
    static char* foundation_at;       // squaresync.foundation_at: daily foundation time "HH:MM" ('' = off)
    static int audit_retention_s;     // squaresync.audit_retention
    static int validate_sample_size;  // squaresync.validate_sample_size
    static char* sync_role;           // squaresync.sync_role: the role sync workers run as ('' = owner)
    static bool parallel_apply;       // squaresync.parallel_apply: the catalog side applied by an apply worker
};

void define_settings();

// The client configuration for a connection (base URL and token from squaresync.connection).
HttpConfig http_config(const std::string& base_url, const std::string& token);

}  // namespace squaresync::pg
