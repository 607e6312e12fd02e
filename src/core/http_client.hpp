// http_client.hpp: the transport to Square. libcurl's multi interface over reused keep-alive
// connections, overlapping independent page walks, retries with backoff, and the safety rules
// (TLS verification always on, http only for loopback, no redirects, a response size cap, a token
// that never appears in an error or a log line). Knows nothing of PostgreSQL.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "retry_policy.hpp"

namespace squaresync {

struct HttpConfig {
    std::string base_url;       // "https://connect.squareup.com", no trailing slash
    std::string access_token;   // sent as "Authorization: Bearer ..."; never logged, never in an error
    std::string square_version = "2025-08-20";
    std::string ca_file;        // empty: the system's CA store
    long connect_timeout_ms = 10000;
    long request_timeout_ms = 60000;        // whole transfer, per attempt
    std::size_t max_response_bytes = 64u << 20;
    int max_concurrency = 4;                // transfers in flight at once
    // Run PageWalk::prepare() on a helper thread (worker_thread.hpp), so parsing a page overlaps
    // the caller's work on the previous one; false runs it inline, just before on_page().
    bool prepare_in_background = true;
    RetryPolicy retry;
    // Polled at least every 100 ms while waiting (transfers, backoff sleeps). Returning true aborts
    // all transfers and run()/perform() throw HttpError{Aborted}. Must not throw.
    std::function<bool()> should_abort;
    // Optional sink for DEBUG-level lines (the Authorization header is never passed to it).
    std::function<void(const std::string&)> debug_log;
    std::string user_agent = "squaresync/0.1.0";
};

// Throws ConfigError unless url is https://host[:port] (any host) or http://host[:port] with a
// loopback host (127.0.0.0/8, localhost, [::1]). No path, query or user info allowed.
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
void validate_base_url(const std::string& url);

// [0-9A-Za-z], whatever the process's locale (std::isalnum follows the backend's LC_CTYPE, which may
// be a single-byte locale where bytes >= 0x80 are letters): for host names and URL encoding.
inline bool is_ascii_alnum(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

struct HttpRequest {
    std::string method = "GET";   // GET or POST
    std::string target;           // path and query appended to base_url, e.g. "/v2/locations"; must start
                                  // with '/' (else run() throws std::invalid_argument: "@host" would change the host)
    std::string body;             // JSON body for POST (Content-Type: application/json)
    std::string label;            // for errors and progress, e.g. "orders page 12"
};

struct HttpResponse {
    long status = 0;
    std::string body;             // decompressed
    int attempts = 0;             // 1 when the first attempt succeeded
};

enum class FailureKind {
    Transport,      // connect/reset/partial body, after retries
    Timeout,        // request_timeout_ms exceeded, after retries
    HttpStatus,     // a non-2xx status that is not retried (400, 404, ...) or retries exhausted (5xx)
    RateLimited,    // 429 and the retry budget ran out
    Unauthorized,   // 401: "access token rejected"; never retried
    Forbidden,      // 403: never retried
    Gone,           // 410: endpoint retired; never retried
    Redirect,       // 3xx: never followed
    TooLarge,       // body over max_response_bytes
    BadResponse,    // on_page threw RetryableResponseError and retries ran out
    Aborted,        // should_abort() returned true
};
const char* failure_kind_name(FailureKind k);

struct HttpError : std::runtime_error {
    FailureKind kind;
    long status;            // 0 when no HTTP status was received
    std::string body;       // the response body when there was one (Square's error envelope), capped at 4 KiB
    HttpError(FailureKind k, long st, std::string message, std::string b = {})
        : std::runtime_error(std::move(message)), kind(k), status(st), body(std::move(b)) {}
};

// Thrown by PageWalk::on_page when the body cannot be used (truncated or malformed JSON, wrong
// shape): the client retries the same request within the retry budget, then fails the walk with
// HttpError{BadResponse}.
struct RetryableResponseError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct HttpStats {
    std::uint64_t requests = 0;        // attempts sent, retries included
    std::uint64_t retries = 0;
    std::uint64_t rate_limited = 0;    // 429 answers
    std::uint64_t bytes_received = 0;  // decompressed body bytes
    std::uint64_t backoff_ms = 0;      // waits scheduled before retries (Retry-After or backoff), summed
};

// One paginated listing: a chain of dependent requests. The client sends first(), gives each
// successful (2xx) response to prepare() and then to on_page(), which returns the next request (the
// cursor's) or nullopt when the walk is done; a page may also start other walks (take_spawned). A
// walk whose request fails for good gets on_failure() and stops; the other walks go on, except
// after 401 (every walk is failed) or an abort (run() throws).
class PageWalk {
public:
    virtual ~PageWalk() = default;
    virtual HttpRequest first() = 0;
    // The pure half of handling a page (parse, map), on the client's helper thread when
    // HttpConfig::prepare_in_background: it may touch only this walk's own state, never the
    // caller's shared state or PostgreSQL. A walk has one page at a time, so prepare() and on_page()
    // of one walk never overlap. Its exceptions count as on_page()'s.
    virtual void prepare(HttpResponse& response) { (void)response; }
    // On the thread that called run(), after prepare() of the same response.
    virtual std::optional<HttpRequest> on_page(HttpResponse&& response) = 0;
    virtual void on_failure(const HttpError& error) = 0;
    // The walks this one started from the page on_page() just took (a listing's page of ids, whose
    // objects are fetched by id): asked once after each on_page(), they join the run at once, ahead
    // of the walks not yet started after this one, and run beside it. Owned by the caller.
    virtual std::vector<PageWalk*> take_spawned() { return {}; }
};

class HttpClient {
public:
    explicit HttpClient(HttpConfig config);   // validates base_url; throws ConfigError
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // Runs the walks to completion (and those they spawn), at most max_concurrency transfers in
    // flight, each walk sequential. Returns when every walk has finished or failed. Throws
    // HttpError{Aborted} when should_abort() says so; exceptions other than RetryableResponseError
    // thrown by on_page fail that walk (on_failure is not called for them: they are rethrown from
    // run() after all transfers are stopped). Not reentrant: run()/perform() from inside a walk
    // callback throws std::logic_error. The retry budget (RetryPolicy::run_budget) spans the
    // client's lifetime.
    void run(const std::vector<PageWalk*>& walks);

    // One request with retries; throws HttpError when it fails for good.
    HttpResponse perform(const HttpRequest& request);

    const HttpStats& stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace squaresync
