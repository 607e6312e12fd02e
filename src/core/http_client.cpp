// http_client.cpp: libcurl multi-interface transport for Square. One multi handle per client, a
// pool of reused easy handles (the multi's connection cache keeps keep-alive connections), walks
// driven by a single loop that is also the only waiter (backoff delays are timers inside it).
#include "cpp_only.hpp"

#include "http_client.hpp"
#include "worker_thread.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

namespace squaresync {

const char* failure_kind_name(FailureKind k) {
    switch (k) {
        case FailureKind::Transport: return "transport";
        case FailureKind::Timeout: return "timeout";
        case FailureKind::HttpStatus: return "http_status";
        case FailureKind::RateLimited: return "rate_limited";
        case FailureKind::Unauthorized: return "unauthorized";
        case FailureKind::Forbidden: return "forbidden";
        case FailureKind::Gone: return "gone";
        case FailureKind::Redirect: return "redirect";
        case FailureKind::TooLarge: return "too_large";
        case FailureKind::BadResponse: return "bad_response";
        case FailureKind::Aborted: return "aborted";
    }
    return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kErrorBodyCap = 4096;
constexpr long kPollCapMs = 100;
constexpr int kMaxPreparing = 1;  // received pages waiting for, or in, prepare() beyond the transfers

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

bool istarts_with(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
            return false;
    return true;
}

bool has_control_chars(const std::string& s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

// A received body at its size: appends leave up to twice the capacity, and the body may wait for
// the helper thread. Keeps 64 bytes of slack, which a SIMD JSON parser may read past the end.
std::string fit(std::string&& s) {
    constexpr std::size_t kPadding = 64;
    if (s.capacity() <= s.size() + s.size() / 8 + kPadding) return std::move(s);
    std::string t;
    t.reserve(s.size() + kPadding);
    t.append(s);
    return t;
}

std::string truncate(std::string s, std::size_t n) {
    if (s.size() > n) {
        s.resize(n);
        s += "...";
    }
    return s;
}

// Replaces every occurrence of the access token. Tokens shorter than 8 characters (never a real
// Square token) are not scrubbed: that would mangle messages without protecting anything.
std::string redact(std::string s, const std::string& token) {
    if (token.size() < 8) return s;
    static const std::string kMask = "[redacted]";
    for (std::size_t pos = s.find(token); pos != std::string::npos; pos = s.find(token, pos + kMask.size()))
        s.replace(pos, token.size(), kMask);
    return s;
}

const char* reason_phrase(long status) {
    switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 413: return "Payload Too Large";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "";
    }
}

std::string status_text(long status) {
    std::string s = "HTTP " + std::to_string(status);
    const char* r = reason_phrase(status);
    if (*r) s += std::string(" ") + r;
    return s;
}

// "CODE: detail" from Square's error envelope {"errors":[{"category","code","detail","field"}]},
// empty when the body is not one. Never throws.
std::string square_error_summary(const std::string& body) {
    try {
        const auto j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return {};
        const auto it = j.find("errors");
        if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_object()) return {};
        const auto& e = (*it)[0];
        auto str = [&e](const char* key) -> std::string {
            const auto f = e.find(key);
            return f != e.end() && f->is_string() ? f->get<std::string>() : std::string();
        };
        std::string out = str("code");
        const std::string field = str("field");
        std::string detail = str("detail");
        while (!detail.empty() && (detail.back() == '.' || std::isspace(static_cast<unsigned char>(detail.back()))))
            detail.pop_back();  // the message goes on after it
        if (!detail.empty()) out += (out.empty() ? "" : ": ") + detail;
        if (!field.empty()) out += " (field " + field + ")";
        return truncate(out, 500);
    } catch (...) {
        return {};
    }
}

bool is_loopback_host(const std::string& host, bool bracketed) {
    if (bracketed) {
        in6_addr a6{};
        return inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    const std::string h = lower(host);
    if (h == "localhost" || h == "localhost.") return true;
    in_addr a4{};
    if (inet_pton(AF_INET, h.c_str(), &a4) != 1) return false;
    return (ntohl(a4.s_addr) >> 24) == 127;
}

std::once_flag g_curl_once;
CURLcode g_curl_init_result = CURLE_OK;

}  // namespace

void validate_base_url(const std::string& url) {
    // The URL is echoed unless it carries user info (which could be a password).
    const std::string shown = url.find('@') == std::string::npos && !has_control_chars(url)
                                  ? "\"" + truncate(url, 200) + "\""
                                  : "(not shown)";
    auto fail = [&](const std::string& why) {
        throw ConfigError("invalid Square base URL " + shown + ": " + why +
                          "; expected https://host[:port] (or http://host[:port] for a loopback host) "
                          "with no path, e.g. https://connect.squareup.com");
    };
    if (url.empty()) fail("it is empty");
    for (char c : url)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) fail("it contains spaces or control characters");
    const std::size_t sep = url.find("://");
    if (sep == std::string::npos) fail("it has no scheme");
    const std::string scheme = lower(url.substr(0, sep));
    if (scheme != "https" && scheme != "http") fail("the scheme must be https");
    const std::string rest = url.substr(sep + 3);
    if (rest.empty()) fail("it has no host");
    if (rest.find('@') != std::string::npos) fail("user info is not allowed");
    if (rest.find_first_of("/?#\\") != std::string::npos) {
        if (rest.find_first_of("/?#\\") == rest.size() - 1 && rest.back() == '/') fail("remove the trailing slash");
        fail("a path, query or fragment is not allowed");
    }

    std::string host, after;
    bool bracketed = false;
    if (rest[0] == '[') {
        const std::size_t close = rest.find(']');
        if (close == std::string::npos) fail("unterminated IPv6 address");
        host = rest.substr(1, close - 1);
        after = rest.substr(close + 1);
        in6_addr a6{};
        if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) fail("invalid IPv6 address");
        bracketed = true;
    } else {
        const std::size_t colon = rest.find(':');
        host = rest.substr(0, colon);
        if (colon != std::string::npos) after = rest.substr(colon);
        if (host.empty()) fail("it has no host");
        for (char c : host)
            if (!is_ascii_alnum(c) && c != '-' && c != '.' && c != '_')
                fail("invalid character in host name");
    }
    if (!after.empty()) {
        const std::string port = after.substr(1);
        if (after[0] != ':' || port.empty() || port.size() > 5 ||
            !std::all_of(port.begin(), port.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
            std::stol(port) < 1 || std::stol(port) > 65535)
            fail("invalid port");
    }
    if (scheme == "http" && !is_loopback_host(host, bracketed))
        fail("http:// is allowed only for loopback hosts (127.0.0.0/8, localhost, [::1]); use https://");
}

struct HttpClient::Impl {
    struct Walk {
        enum class State { Ready, InFlight, Waiting, Preparing, Done };
        Impl* impl = nullptr;
        PageWalk* walk = nullptr;
        const Walk* spawned_by = nullptr;  // the walk whose page started this one (take_spawned)
        HttpRequest req;
        int attempt = 0;  // attempts sent for req
        State state = State::Ready;
        Clock::time_point wake{};
        Clock::time_point started{};
        // Per-transfer state, valid while InFlight.
        CURL* easy = nullptr;
        curl_slist* headers = nullptr;
        std::string body;
        std::string retry_after;
        std::string location;
        bool too_large = false;
        bool out_of_memory = false;
        char errbuf[CURL_ERROR_SIZE] = {};
        // A 2xx page handed to the helper thread (Preparing): owned by the job until it is done.
        HttpResponse page;
        std::exception_ptr page_error;
        std::string page_line;
        // Set by fail_all() while the page is in prepare(): delivered instead of the page once the
        // job is done, so that on_failure() never overlaps prepare() and no on_page() follows it.
        std::optional<HttpError> failure_after_prepare;
        std::size_t last_body = 0;  // the walk's previous page: the next one is likely its size
    };

    HttpConfig cfg;
    bool allow_http = false;
    std::string host;  // for messages
    CURLM* multi = nullptr;
    std::vector<CURL*> idle;  // reusable easy handles; never more than max_concurrency exist
    std::size_t easy_count = 0;
    HttpStats stats;
    RetryState retry;
    bool abort_flag = false;
    bool running = false;
    std::vector<std::unique_ptr<Walk>>* walks = nullptr;  // of the current run
    WorkerThread* preparer = nullptr;                     // of the current run, when in the background

    explicit Impl(HttpConfig c) : cfg(std::move(c)), retry(cfg.retry) {
        validate_base_url(cfg.base_url);
        if (has_control_chars(cfg.access_token))
            throw ConfigError("the Square access token contains control characters or line breaks");
        if (has_control_chars(cfg.square_version) || has_control_chars(cfg.user_agent))
            throw ConfigError("the Square-Version and User-Agent values must not contain control characters");
        if (cfg.max_response_bytes == 0) throw ConfigError("the response size cap must be positive");
        if (!cfg.ca_file.empty() && ::access(cfg.ca_file.c_str(), R_OK) != 0)
            throw ConfigError("the CA file \"" + truncate(cfg.ca_file, 300) + "\" cannot be read: " +
                              std::strerror(errno));
        cfg.max_concurrency = std::clamp(cfg.max_concurrency, 1, 64);
        const std::size_t sep = cfg.base_url.find("://");
        allow_http = lower(cfg.base_url.substr(0, sep)) == "http";
        host = cfg.base_url.substr(sep + 3);
        idle.reserve(static_cast<std::size_t>(cfg.max_concurrency));

        std::call_once(g_curl_once, [] { g_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
        if (g_curl_init_result != CURLE_OK)
            throw std::runtime_error(std::string("curl_global_init failed: ") + curl_easy_strerror(g_curl_init_result));
        multi = curl_multi_init();
        if (!multi) throw std::runtime_error("curl_multi_init failed");
        const long conc = cfg.max_concurrency;
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, conc);
        curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conc);
        curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, std::max(conc, 4L));
    }

    ~Impl() {
        for (CURL* e : idle) curl_easy_cleanup(e);
        curl_multi_cleanup(multi);
    }

    // ---- abort -----------------------------------------------------------------------------
    bool check_abort() noexcept {
        if (!abort_flag && cfg.should_abort) {
            try {
                if (cfg.should_abort()) abort_flag = true;
            } catch (...) {
                abort_flag = true;  // a throwing should_abort is taken as a request to stop
            }
        }
        return abort_flag;
    }

    // ---- curl callbacks (never throw) -------------------------------------------------------
    static size_t on_write(char* data, size_t size, size_t n, void* userdata) {
        auto* w = static_cast<Walk*>(userdata);
        const size_t len = size * n;
        try {
            if (w->body.size() + len > w->impl->cfg.max_response_bytes) {
                w->too_large = true;
                return 0;  // aborts the transfer with CURLE_WRITE_ERROR
            }
            w->body.append(data, len);
            return len;
        } catch (...) {
            w->out_of_memory = true;
            return 0;
        }
    }

    static size_t on_header(char* data, size_t size, size_t n, void* userdata) {
        auto* w = static_cast<Walk*>(userdata);
        const size_t len = size * n;
        try {
            const std::string_view line(data, len);
            if (istarts_with(line, "HTTP/")) {  // a new response (after 100 Continue, ...)
                w->retry_after.clear();
                w->location.clear();
            } else if (istarts_with(line, "retry-after:")) {
                w->retry_after = truncate(trim(line.substr(12)), 100);
            } else if (istarts_with(line, "location:")) {
                w->location = truncate(trim(line.substr(9)), 300);
            }
        } catch (...) {
        }
        return len;
    }

    static int on_progress(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
        return static_cast<Walk*>(userdata)->impl->check_abort() ? 1 : 0;
    }

    // ---- helpers ------------------------------------------------------------------------------
    std::string label(const Walk& w) const {
        if (!w.req.label.empty()) return redact(truncate(w.req.label, 200), cfg.access_token);
        return redact(w.req.method + " " + truncate(w.req.target, 200), cfg.access_token);
    }

    void log(const std::string& line) {
        if (cfg.debug_log) cfg.debug_log(redact(line, cfg.access_token));
    }

    HttpError make_error(FailureKind kind, long status, const std::string& msg, const std::string& body) const {
        return HttpError(kind, status, redact(msg, cfg.access_token),
                         redact(body.substr(0, kErrorBodyCap), cfg.access_token));
    }

    // Removes the transfer of w from the multi handle and returns its easy handle to the pool.
    void release(Walk& w) noexcept {
        if (w.easy) {
            curl_multi_remove_handle(multi, w.easy);
            // Drop every pointer into w (buffers, callbacks' data, the header list freed below);
            // the multi handle's cache keeps the connection.
            curl_easy_reset(w.easy);
            idle.push_back(w.easy);  // capacity reserved: never reallocates
            w.easy = nullptr;
        }
        if (w.headers) {
            curl_slist_free_all(w.headers);
            w.headers = nullptr;
        }
    }

    void release_all() noexcept {
        if (!walks) return;
        for (auto& w : *walks) release(*w);
    }

    CURL* acquire() {
        if (!idle.empty()) {
            CURL* e = idle.back();
            idle.pop_back();
            return e;
        }
        if (easy_count >= static_cast<std::size_t>(cfg.max_concurrency))
            throw std::logic_error("squaresync HTTP client: easy handle pool exhausted");
        CURL* e = curl_easy_init();
        if (!e) throw std::runtime_error("curl_easy_init failed");
        ++easy_count;
        return e;
    }

    void start(Walk& w) {
        const HttpRequest& r = w.req;
        // The target is appended to base_url: anything not starting with '/' could change the host
        // ("@evil.example/...") and send the token elsewhere.
        if (r.target.empty() || r.target[0] != '/' || has_control_chars(r.target))
            throw std::invalid_argument("squaresync HTTP request target must start with '/' and contain no "
                                        "control characters: " + redact(truncate(r.target, 200), cfg.access_token));
        w.body.clear();
        // Sized like the walk's previous page, not grown by doubling (which leaves up to half unused).
        if (w.last_body) w.body.reserve(w.last_body + w.last_body / 8 + 64);
        w.retry_after.clear();
        w.location.clear();
        w.too_large = false;
        w.out_of_memory = false;
        w.errbuf[0] = '\0';

        CURL* e = acquire();
        w.easy = e;  // from here on release(w) returns it to the pool, even if a step below throws
        // Square's token lives only in this header list, which is freed when the transfer ends.
        auto add_header = [&w](const std::string& h) {
            curl_slist* n = curl_slist_append(w.headers, h.c_str());
            if (!n) throw std::bad_alloc();
            w.headers = n;
        };
        try {
            std::string auth = "Authorization: Bearer " + cfg.access_token;
            add_header(auth);
            std::fill(auth.begin(), auth.end(), '\0');
            add_header("Square-Version: " + cfg.square_version);
            add_header("Accept: application/json");
            const bool has_body = r.method == "POST" || !r.body.empty();
            if (has_body) {
                add_header("Content-Type: application/json");
                add_header("Expect:");  // no 100-continue round trip
            }
        } catch (...) {
            release(w);
            throw;
        }

        const std::string url = cfg.base_url + r.target;
        curl_easy_setopt(e, CURLOPT_URL, url.c_str());
        curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&w));
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, allow_http ? "http,https" : "https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                         static_cast<long>(allow_http ? (CURLPROTO_HTTP | CURLPROTO_HTTPS) : CURLPROTO_HTTPS));
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!cfg.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, cfg.ca_file.c_str());
        if (cfg.connect_timeout_ms > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cfg.connect_timeout_ms);
        if (cfg.request_timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, cfg.request_timeout_ms);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(cfg.max_response_bytes));
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_USERAGENT, cfg.user_agent.c_str());
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, w.headers);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w.errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, static_cast<void*>(&w));
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, static_cast<void*>(&w));
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &Impl::on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, static_cast<void*>(&w));
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        if (r.method == "GET") {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        } else {
            if (r.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
            curl_easy_setopt(e, CURLOPT_POST, 1L);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.c_str());  // w.req outlives the transfer
        }

        const CURLMcode mc = curl_multi_add_handle(multi, e);
        if (mc != CURLM_OK) {
            release(w);
            throw std::runtime_error(std::string("curl_multi_add_handle failed: ") + curl_multi_strerror(mc));
        }
        w.state = Walk::State::InFlight;
        ++w.attempt;
        ++stats.requests;
        w.started = Clock::now();
    }

    void fail(Walk& w, const HttpError& err) {
        w.state = Walk::State::Done;
        w.walk->on_failure(err);
    }

    // 401: the token is bad for every walk. Stop every transfer, then tell every unfinished walk (a
    // walk whose page is in prepare() is told when the job is done: see prepared()).
    void fail_all(const HttpError& err) {
        std::vector<Walk*> unfinished;
        for (auto& w : *walks) {
            if (w->state == Walk::State::Done) continue;
            if (w->state == Walk::State::Preparing) {
                if (!w->failure_after_prepare) w->failure_after_prepare = err;
                continue;
            }
            release(*w);
            w->state = Walk::State::Done;
            unfinished.push_back(w.get());
        }
        for (Walk* w : unfinished) w->walk->on_failure(err);
    }

    // Schedules another attempt of w's request, or fails the walk when attempts or the run's
    // budget are used up. Returns a note for the debug line.
    std::string retry_or_fail(Walk& w, FailureKind kind, long status, const std::string& what,
                              const std::string& advice, std::optional<milliseconds> retry_after,
                              const std::string& body) {
        const int next = w.attempt + 1;
        const bool attempts_left = next <= cfg.retry.max_attempts;
        if (const auto d = retry.next_delay(next, retry_after)) {
            ++stats.retries;
            stats.backoff_ms += static_cast<std::uint64_t>(d->count());
            w.state = Walk::State::Waiting;
            w.wake = Clock::now() + *d;
            return "retry in " + std::to_string(d->count()) + " ms";
        }
        const std::string why =
            attempts_left ? "the run's retry budget (" + std::to_string(cfg.retry.run_budget) + " retries) is exhausted"
                          : "no attempts are left (at most " + std::to_string(cfg.retry.max_attempts) + " per request)";
        const std::string msg = what + " after " + std::to_string(w.attempt) +
                                (w.attempt == 1 ? " attempt" : " attempts") + " for " + label(w) + "; " + why + "; " +
                                advice;
        fail(w, make_error(kind, status, msg, body));
        return "failed for good";
    }

    std::optional<milliseconds> retry_after_of(const Walk& w) const {
        if (w.retry_after.empty()) return std::nullopt;
        return parse_retry_after(w.retry_after, std::chrono::system_clock::now());
    }

    // A transfer of w ended with result rc.
    void finish(Walk& w, CURLcode rc) {
        long status = 0;
        curl_easy_getinfo(w.easy, CURLINFO_RESPONSE_CODE, &status);
        release(w);
        std::string body = std::move(w.body);
        w.body = std::string();
        if (status >= 200 && status < 300) w.last_body = body.size();
        stats.bytes_received += body.size();
        const long ms = static_cast<long>(
            std::chrono::duration_cast<milliseconds>(Clock::now() - w.started).count());
        const std::string curl_error =
            rc == CURLE_OK ? std::string()
                           : truncate(w.errbuf[0] ? std::string(w.errbuf) : std::string(curl_easy_strerror(rc)), 300);

        std::string line = w.req.method + " " + truncate(w.req.target, 300) + " status=" + std::to_string(status) +
                           " bytes=" + std::to_string(body.size()) + " ms=" + std::to_string(ms) +
                           " attempt=" + std::to_string(w.attempt);
        if (!curl_error.empty()) line += " error=\"" + curl_error + "\"";

        if (rc == CURLE_ABORTED_BY_CALLBACK) {  // should_abort(): run() throws on its next turn
            log(line + " -> aborted");
            w.state = Walk::State::Done;
            return;
        }
        std::string note;
        if (rc != CURLE_OK) {
            note = transport_failure(w, rc, status, curl_error);
        } else if (status >= 200 && status < 300) {
            w.page = HttpResponse{status, fit(std::move(body)), w.attempt};
            w.page_error = nullptr;
            w.page_line = std::move(line);
            if (preparer) {
                w.state = Walk::State::Preparing;
                Walk* wp = &w;
                preparer->submit(wp, [wp] {
                    try {
                        wp->walk->prepare(wp->page);
                    } catch (...) {
                        wp->page_error = std::current_exception();
                    }
                });
            } else {
                try {
                    w.walk->prepare(w.page);
                } catch (...) {
                    w.page_error = std::current_exception();
                }
                prepared(w);
            }
            return;
        } else {
            note = status_failure(w, status, body);
        }
        log(line + " -> " + note);
    }

    std::string transport_failure(Walk& w, CURLcode rc, long status, const std::string& curl_error) {
        if (w.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            fail(w, make_error(FailureKind::TooLarge, status,
                               "Square's response for " + label(w) + " is larger than the " +
                                   std::to_string(cfg.max_response_bytes) +
                                   "-byte cap; the transfer was stopped and not retried; a smaller page size "
                                   "(limit) avoids it",
                               {}));
            return "too large";
        }
        switch (rc) {
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CACERT_BADFILE:
            case CURLE_SSL_CERTPROBLEM:
            case CURLE_SSL_ISSUER_ERROR:
            case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                fail(w, make_error(FailureKind::Transport, 0,
                                   "TLS certificate verification failed for " + host + " (" + curl_error + ") for " +
                                       label(w) +
                                       "; verification is never disabled: if a proxy or private CA signs this "
                                       "host's certificate, point the CA file setting at its CA bundle",
                                   {}));
                return "certificate error";
            case CURLE_UNSUPPORTED_PROTOCOL:
            case CURLE_URL_MALFORMAT:
            case CURLE_BAD_FUNCTION_ARGUMENT:
                fail(w, make_error(FailureKind::Transport, 0,
                                   "request for " + label(w) + " could not be sent (" + curl_error +
                                       "); check the base URL setting",
                                   {}));
                return "not sendable";
            default:
                break;
        }
        if (w.out_of_memory) {
            return retry_or_fail(w, FailureKind::Transport, status, "out of memory while receiving Square's response",
                                 "free memory or lower the concurrency", std::nullopt, {});
        }
        if (rc == CURLE_OPERATION_TIMEDOUT) {
            return retry_or_fail(w, FailureKind::Timeout, status,
                                 "Square did not answer in time (" + curl_error + ")",
                                 "check network connectivity to " + host +
                                     " or raise the request timeout (currently " +
                                     std::to_string(cfg.request_timeout_ms) + " ms)",
                                 std::nullopt, {});
        }
        return retry_or_fail(w, FailureKind::Transport, status,
                             "network error talking to Square (" + curl_error + ")",
                             "check network connectivity to " + host + "; the sync can simply be run again",
                             std::nullopt, {});
    }

    std::string status_failure(Walk& w, long status, const std::string& body) {
        const std::string summary = square_error_summary(body);
        const std::string detail = summary.empty() ? std::string() : ": " + summary;
        if (status == 401) {
            const HttpError err = make_error(
                FailureKind::Unauthorized, status,
                "access token rejected by Square (401 UNAUTHORIZED) for " + label(w) + detail +
                    "; check the access token setting: it may be revoked or expired, or belong to the other "
                    "environment (sandbox tokens work only with https://connect.squareupsandbox.com); no request "
                    "was retried",
                body);
            fail_all(err);
            return "unauthorized, every walk failed";
        }
        if (status == 403) {
            fail(w, make_error(FailureKind::Forbidden, status,
                               "Square refused " + label(w) + " (403 FORBIDDEN)" + detail +
                                   "; the access token lacks a permission this sync needs: grant the "
                                   "application the required OAuth scopes, or disable this object",
                               body));
            return "forbidden";
        }
        if (status == 410) {
            fail(w, make_error(FailureKind::Gone, status,
                               "Square endpoint retired (410 GONE) for " + label(w) + detail +
                                   "; this squaresync version calls an API Square no longer serves: upgrade "
                                   "squaresync or set a supported Square-Version",
                               body));
            return "gone";
        }
        if (status >= 300 && status < 400) {
            const std::string to = w.location.empty() ? std::string() : " to " + w.location;
            fail(w, make_error(FailureKind::Redirect, status,
                               "Square answered " + label(w) + " with a redirect (" + std::to_string(status) + to +
                                   "); redirects are never followed so the access token is not sent elsewhere; "
                                   "check the base URL setting",
                               body));
            return "redirect not followed";
        }
        if (status == 429) {
            ++stats.rate_limited;
            return retry_or_fail(w, FailureKind::RateLimited, status,
                                 "Square rate limit (429) persisted" + std::string(summary.empty() ? "" : " (" + summary + ")"),
                                 "try again later or lower squaresync.max_concurrency", retry_after_of(w), body);
        }
        if (is_retryable_status(status)) {
            return retry_or_fail(w, FailureKind::HttpStatus, status,
                                 "Square kept answering " + status_text(status) +
                                     (summary.empty() ? "" : " (" + summary + ")"),
                                 "Square may be having an outage (https://issquareup.com); try again later",
                                 status == 503 ? retry_after_of(w) : std::nullopt, body);
        }
        fail(w, make_error(FailureKind::HttpStatus, status,
                           "Square rejected " + label(w) + " with " + status_text(status) + detail +
                               "; the request was not retried (a client error usually means a squaresync bug or an "
                               "unsupported setting: please report it with this message)",
                           body));
        return "failed, not retryable";
    }

    // A 2xx page of w went through prepare(): on to on_page() (or to a retry), then the debug line;
    // or, when every walk was failed meanwhile, the page dropped and the walk failed.
    void prepared(Walk& w) {
        if (w.failure_after_prepare) {
            const HttpError err = std::move(*w.failure_after_prepare);
            w.failure_after_prepare.reset();
            w.page = HttpResponse();
            w.page_error = nullptr;
            log(w.page_line + " -> dropped: every walk was failed meanwhile");
            w.state = Walk::State::Done;
            w.walk->on_failure(err);
            return;
        }
        std::string note;
        try {
            note = deliver(w);
        } catch (...) {
            log(w.page_line + " -> page handler threw");
            throw;
        }
        log(note.empty() ? w.page_line : w.page_line + " -> " + note);
    }

    // Gives w's prepared page to the walk; returns a note for the debug line (empty when accepted).
    std::string deliver(Walk& w) {
        std::optional<HttpRequest> next;
        const long status = w.page.status;
        try {
            HttpResponse resp = std::move(w.page);
            w.page = HttpResponse();
            if (w.page_error) std::rethrow_exception(std::exchange(w.page_error, nullptr));
            next = w.walk->on_page(std::move(resp));
        } catch (const RetryableResponseError& e) {
            return "rejected by the page handler, " +
                   retry_or_fail(w, FailureKind::BadResponse, status,
                                 "Square's response could not be used (" + truncate(e.what(), 300) + ")",
                                 "Square sent a truncated or unexpected body; try again later and report it if it "
                                 "persists",
                                 std::nullopt, {});
        }
        if (next) {
            w.req = std::move(*next);
            w.attempt = 0;
            w.state = Walk::State::Ready;
        } else {
            w.state = Walk::State::Done;
        }
        adopt(w, w.walk->take_spawned());
        return {};
    }

    // Walks w's page started join the run right after w and the walks it started before them: they
    // are started before the walks behind w, and in the order they were started.
    void adopt(Walk& w, const std::vector<PageWalk*>& spawned) {
        if (spawned.empty()) return;
        auto at = walks->begin();
        for (auto it = walks->begin(); it != walks->end(); ++it)
            if (it->get() == &w || (*it)->spawned_by == &w) at = it + 1;
        for (PageWalk* p : spawned) {
            if (!p) continue;
            auto n = std::make_unique<Walk>();
            n->impl = this;
            n->walk = p;
            n->spawned_by = &w;
            n->req = p->first();
            at = walks->insert(at, std::move(n)) + 1;
        }
    }

    // ---- the loop -----------------------------------------------------------------------------
    void run(const std::vector<PageWalk*>& pages, bool background) {
        if (running)
            throw std::logic_error("HttpClient::run()/perform() called from inside a page callback; "
                                   "the client is not reentrant");
        std::vector<std::unique_ptr<Walk>> ws;
        for (PageWalk* p : pages) {
            if (!p) continue;
            auto w = std::make_unique<Walk>();
            w->impl = this;
            w->walk = p;
            ws.push_back(std::move(w));
        }
        if (ws.empty()) return;

        struct Guard {
            Impl* impl;
            ~Guard() {
                impl->release_all();
                impl->walks = nullptr;
                impl->running = false;
            }
        } guard{this};
        running = true;
        walks = &ws;
        abort_flag = false;
        // Destroyed before the guard and the walks: no job outlives them.
        std::optional<WorkerThread> helper;
        if (background) {
            helper.emplace([m = multi] { curl_multi_wakeup(m); });
            preparer = &*helper;
        }
        struct Unset {
            Impl* impl;
            ~Unset() { impl->preparer = nullptr; }
        } unset{this};

        for (auto& w : ws) w->req = w->walk->first();

        const int max_in_flight = cfg.max_concurrency;
        for (;;) {
            if (check_abort()) throw aborted_error(ws);

            const auto now = Clock::now();
            int in_flight = 0, preparing = 0;
            for (auto& w : ws) {
                if (w->state == Walk::State::Waiting && w->wake <= now) w->state = Walk::State::Ready;
                if (w->state == Walk::State::InFlight) ++in_flight;
                if (w->state == Walk::State::Preparing) ++preparing;
            }
            for (auto& w : ws) {
                // Pages received but not yet handled count too: memory stays bounded by a few pages
                // even when the caller's work on them is slower than the network.
                if (in_flight >= max_in_flight || in_flight + preparing >= max_in_flight + kMaxPreparing) break;
                if (w->state != Walk::State::Ready) continue;
                start(*w);
                ++in_flight;
            }
            bool unfinished = false;
            std::optional<Clock::time_point> next_wake;
            for (auto& w : ws) {
                if (w->state != Walk::State::Done) unfinished = true;
                if (w->state == Walk::State::Waiting && (!next_wake || w->wake < *next_wake)) next_wake = w->wake;
            }
            if (!unfinished) break;

            int still_running = 0;
            const CURLMcode mc = curl_multi_perform(multi, &still_running);
            if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
                throw std::runtime_error(std::string("curl_multi_perform failed: ") + curl_multi_strerror(mc));

            bool progressed = false;
            int queued = 0;
            while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
                if (msg->msg != CURLMSG_DONE) continue;
                CURL* easy = msg->easy_handle;
                const CURLcode rc = msg->data.result;
                char* priv = nullptr;
                curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
                auto* w = reinterpret_cast<Walk*>(priv);
                if (!w || w->easy != easy || w->state != Walk::State::InFlight) continue;  // cancelled meanwhile
                finish(*w, rc);
                progressed = true;
            }
            if (preparer) {
                for (void* tag : preparer->take_done()) {
                    prepared(*static_cast<Walk*>(tag));
                    progressed = true;
                }
            }
            if (progressed || abort_flag) continue;

            long timeout = kPollCapMs;
            if (next_wake) {
                const auto until =
                    std::chrono::duration_cast<milliseconds>(*next_wake - Clock::now()).count() + 1;
                timeout = std::clamp<long>(static_cast<long>(until), 0, timeout);
            }
            if (timeout > 0) {
                const CURLMcode pc = curl_multi_poll(multi, nullptr, 0, static_cast<int>(timeout), nullptr);
                if (pc != CURLM_OK)
                    throw std::runtime_error(std::string("curl_multi_poll failed: ") + curl_multi_strerror(pc));
            }
        }
    }

    HttpError aborted_error(const std::vector<std::unique_ptr<Walk>>& ws) const {
        int in_flight = 0, unfinished = 0;
        for (const auto& w : ws) {
            if (w->easy) ++in_flight;
            if (w->state != Walk::State::Done || w->easy) ++unfinished;
        }
        return HttpError(FailureKind::Aborted, 0,
                         "Square sync aborted on request (cancel or shutdown) with " + std::to_string(in_flight) +
                             " request(s) in flight and " + std::to_string(unfinished) + " listing(s) unfinished");
    }
};

HttpClient::HttpClient(HttpConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

HttpClient::~HttpClient() = default;

void HttpClient::run(const std::vector<PageWalk*>& walks) { impl_->run(walks, impl_->cfg.prepare_in_background); }

HttpResponse HttpClient::perform(const HttpRequest& request) {
    struct Single : PageWalk {
        HttpRequest req;
        std::optional<HttpResponse> response;
        std::optional<HttpError> error;
        HttpRequest first() override { return req; }
        std::optional<HttpRequest> on_page(HttpResponse&& r) override {
            response = std::move(r);
            return std::nullopt;
        }
        void on_failure(const HttpError& e) override { error = e; }
    } single;
    single.req = request;
    impl_->run({&single}, false);  // nothing to prepare: no helper thread
    if (single.error) throw *single.error;
    if (!single.response) throw std::logic_error("HttpClient::perform finished without a response");
    return std::move(*single.response);
}

const HttpStats& HttpClient::stats() const { return impl_->stats; }

}  // namespace squaresync
