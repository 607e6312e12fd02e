// Unit tests for http_client over real sockets against test/unit/http_peer.py (a scripted
// standard-library HTTP(S) server started per test on port 0).
#include "cpp_only.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "http_client.hpp"

using namespace squaresync;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// Distinctive, so a grep for it cannot match anything by accident.
const std::string kToken = "EAAAtok-SQSYNC-secret-7f3a9c1e5b2d4a60-DO-NOT-LOG";
const std::string kPeerScript = std::string(SQUARESYNC_SOURCE_DIR) + "/test/unit/http_peer.py";

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

HttpRequest get(const std::string& target, const std::string& label = {}) {
    HttpRequest r;
    r.target = target;
    r.label = label;
    return r;
}

// The peer process: started with /usr/bin/python3, killed (and its stdin closed, which also makes
// it exit) when the test ends.
class Peer {
public:
    explicit Peer(bool tls = false) {
        if (tls) {
            char tmpl[] = "/tmp/squaresync-peer-tls-XXXXXX";
            if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
            dir_ = tmpl;
        }
        int out[2], in[2];
        if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
        std::vector<std::string> args = {"/usr/bin/python3", kPeerScript, "--watch-stdin"};
        if (tls) {
            args.push_back("--tls-dir");
            args.push_back(dir_);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(out[1]);
        close(in[0]);
        stdin_ = in[1];
        stdout_ = out[0];

        std::string line;
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        while (line.empty() || line.back() != '\n') {
            const long left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
            pollfd p{stdout_, POLLIN, 0};
            if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) throw std::runtime_error("peer did not start");
            char c;
            if (read(stdout_, &c, 1) != 1) throw std::runtime_error("peer exited: " + line);
            line += c;
        }
        const std::string prefix = "listening ";
        if (line.rfind(prefix, 0) != 0) throw std::runtime_error("unexpected peer output: " + line);
        url_ = line.substr(prefix.size(), line.size() - prefix.size() - 1);
    }

    ~Peer() {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            close(stdin_);
            close(stdout_);
            waitpid(pid_, nullptr, 0);
        }
        if (!dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
        }
    }

    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    const std::string& url() const { return url_; }
    std::string ca_file() const { return dir_.empty() ? std::string() : dir_ + "/ca.pem"; }

    // The peer's counters, fetched on a separate connection that the peer does not count.
    json stats() const {
        HttpConfig c;
        c.base_url = url_;
        c.ca_file = ca_file();
        c.access_token = "stats-only-token";
        HttpClient client(c);
        return json::parse(client.perform(get("/_stats")).body);
    }

private:
    pid_t pid_ = -1;
    int stdin_ = -1;
    int stdout_ = -1;
    std::string url_;
    std::string dir_;
};

struct Capture {
    std::vector<std::string> debug;
    std::vector<std::string> messages;
};

HttpConfig config_for(const Peer& peer, Capture* cap = nullptr) {
    HttpConfig c;
    c.base_url = peer.url();
    c.ca_file = peer.ca_file();
    c.access_token = kToken;
    c.connect_timeout_ms = 2000;
    c.request_timeout_ms = 5000;
    c.max_concurrency = 4;
    c.retry.max_attempts = 4;
    c.retry.run_budget = 50;
    c.retry.base_delay = milliseconds(10);
    c.retry.max_delay = milliseconds(100);
    if (cap) c.debug_log = [cap](const std::string& line) { cap->debug.push_back(line); };
    return c;
}

// perform() that is expected to fail; returns the error (and records its strings in cap).
std::optional<HttpError> perform_error(HttpClient& client, const HttpRequest& r, Capture* cap = nullptr) {
    try {
        client.perform(r);
    } catch (const HttpError& e) {
        if (cap) {
            cap->messages.push_back(e.what());
            cap->messages.push_back(e.body);
        }
        return e;
    }
    ADD_FAILURE() << "expected " << r.target << " to fail";
    return std::nullopt;
}

// A walk over /page: follows the cursor to the last page.
struct PagingWalk : PageWalk {
    std::string key;
    int n;
    int ms;
    std::vector<std::string> ids;
    std::optional<HttpError> failure;

    PagingWalk(std::string k, int pages, int delay_ms = 0) : key(std::move(k)), n(pages), ms(delay_ms) {}

    HttpRequest request(int cursor) const {
        return get("/page?n=" + std::to_string(n) + "&key=" + key + "&ms=" + std::to_string(ms) +
                       "&cursor=" + std::to_string(cursor),
                   key + " page " + std::to_string(cursor + 1));
    }
    HttpRequest first() override { return request(0); }
    std::optional<HttpRequest> on_page(HttpResponse&& r) override {
        const json j = json::parse(r.body);
        ids.push_back(j["items"][0]["id"].get<std::string>());
        if (j.contains("cursor")) return request(std::stoi(j["cursor"].get<std::string>()));
        return std::nullopt;
    }
    void on_failure(const HttpError& e) override { failure = e; }
};

// A walk with one request and a scripted page handler.
struct FnWalk : PageWalk {
    HttpRequest start;
    std::function<void(const HttpResponse&)> check;  // may throw
    std::vector<HttpResponse> responses;
    std::optional<HttpError> failure;

    explicit FnWalk(HttpRequest r, std::function<void(const HttpResponse&)> f = {})
        : start(std::move(r)), check(std::move(f)) {}
    HttpRequest first() override { return start; }
    std::optional<HttpRequest> on_page(HttpResponse&& r) override {
        if (check) check(r);
        responses.push_back(std::move(r));
        return std::nullopt;
    }
    void on_failure(const HttpError& e) override { failure = e; }
};

int unused_port() {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("bind failed");
    close(s);
    return ntohs(a.sin_port);
}

}  // namespace

// ---- validate_base_url ------------------------------------------------------------------------

TEST(ValidateBaseUrl, AcceptsHttpsAnyHostAndHttpLoopback) {
    for (const char* ok : {"https://connect.squareup.com", "https://connect.squareupsandbox.com",
                           "https://example.com:8443", "HTTPS://Example.COM", "https://10.1.2.3",
                           "https://[2001:db8::1]:443", "http://127.0.0.1:8080", "http://127.3.4.5",
                           "http://localhost", "http://LOCALHOST:9", "http://[::1]", "http://[::1]:5000"})
        EXPECT_NO_THROW(validate_base_url(ok)) << ok;
}

TEST(ValidateBaseUrl, RejectsEverythingElse) {
    for (const char* bad :
         {"", "http://example.com", "http://10.0.0.1", "http://128.0.0.1", "http://localhost.example.com",
          "http://[2001:db8::1]", "ftp://127.0.0.1", "file:///etc/passwd", "connect.squareup.com",
          "https://", "https://connect.squareup.com/", "https://connect.squareup.com/v2",
          "https://connect.squareup.com?x=1", "https://connect.squareup.com#f", "https://user:pw@example.com",
          "https://example.com@evil.com", "https://exa mple.com", "https://example.com:0",
          "https://example.com:99999", "https://example.com:12ab", "https://[::1", "https://[zz::1]",
          "https://ex\\ample.com", "garbage", "https://example.com\r\nX: y"})
        EXPECT_THROW(validate_base_url(bad), ConfigError) << bad;
}

TEST(ValidateBaseUrl, ErrorNeverEchoesUserInfo) {
    try {
        validate_base_url("https://user:hunter2secret@example.com");
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_FALSE(contains(e.what(), "hunter2secret")) << e.what();
    }
}

TEST(HttpClientConfig, ConstructorValidates) {
    HttpConfig c;
    c.base_url = "http://example.com";
    c.access_token = kToken;
    EXPECT_THROW(HttpClient{c}, ConfigError);
    c.base_url = "https://example.com";
    c.access_token = "abc\r\nX-Injected: 1";
    EXPECT_THROW(HttpClient{c}, ConfigError);
    c.access_token = kToken;
    c.ca_file = "/nonexistent/ca.pem";
    EXPECT_THROW(HttpClient{c}, ConfigError);
    c.ca_file.clear();
    EXPECT_NO_THROW(HttpClient{c});
    EXPECT_STREQ(failure_kind_name(FailureKind::RateLimited), "rate_limited");
}

// ---- walks, concurrency, reuse ----------------------------------------------------------------

TEST(HttpClient, PagingWalkRunsToTheEnd) {
    Peer peer;
    HttpClient client(config_for(peer));
    PagingWalk walk("w", 5);
    client.run({&walk});
    EXPECT_FALSE(walk.failure.has_value());
    EXPECT_EQ(walk.ids, (std::vector<std::string>{"w-0", "w-1", "w-2", "w-3", "w-4"}));
    EXPECT_EQ(client.stats().requests, 5u);
    EXPECT_EQ(client.stats().retries, 0u);
    EXPECT_GT(client.stats().bytes_received, 100u);
    EXPECT_EQ(peer.stats()["requests"], 5);
}

TEST(HttpClient, WalksOverlapWithinMaxConcurrencyAndEachStaysSequential) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 3;
    HttpClient client(c);
    std::vector<std::unique_ptr<PagingWalk>> walks;
    std::vector<PageWalk*> ptrs;
    for (int i = 0; i < 6; ++i) {
        walks.push_back(std::make_unique<PagingWalk>("w" + std::to_string(i), 3, 120));
        ptrs.push_back(walks.back().get());
    }
    client.run(ptrs);
    for (auto& w : walks) {
        EXPECT_FALSE(w->failure.has_value());
        EXPECT_EQ(w->ids.size(), 3u);
        EXPECT_EQ(w->ids.back(), w->key + "-2");
    }
    const json s = peer.stats();
    EXPECT_EQ(s["requests"], 18);
    EXPECT_GT(s["max_concurrent"].get<int>(), 1) << s.dump();
    EXPECT_LE(s["max_concurrent"].get<int>(), 3) << s.dump();
    EXPECT_LE(s["connections"].get<int>(), 3) << s.dump();
    for (auto& w : walks) EXPECT_EQ(s["key_max_concurrent"][w->key], 1) << "walk " << w->key << " overlapped itself";
}

TEST(HttpClient, MaxConcurrencyOneIsSequential) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 1;
    HttpClient client(c);
    PagingWalk a("a", 3, 20), b("b", 3, 20);
    client.run({&a, &b});
    EXPECT_EQ(a.ids.size() + b.ids.size(), 6u);
    EXPECT_EQ(peer.stats()["max_concurrent"], 1);
}

TEST(HttpClient, KeepAliveConnectionIsReused) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 1;
    HttpClient client(c);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(client.perform(get("/echo")).status, 200);
    PagingWalk walk("r", 10);
    client.run({&walk});
    const json s = peer.stats();
    EXPECT_EQ(s["requests"], 30);
    EXPECT_EQ(s["connections"], 1) << s.dump();
}

TEST(HttpClient, SendsSquareHeadersAndNoOthers) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.square_version = "2024-01-18";
    HttpClient client(c);
    const json g = json::parse(client.perform(get("/echo")).body);
    EXPECT_EQ(g["method"], "GET");
    EXPECT_EQ(g["headers"]["authorization"], "Bearer " + kToken);
    EXPECT_EQ(g["headers"]["square-version"], "2024-01-18");
    EXPECT_EQ(g["headers"]["accept"], "application/json");
    EXPECT_EQ(g["headers"]["user-agent"], "squaresync/0.1.0");
    EXPECT_TRUE(contains(g["headers"]["accept-encoding"].get<std::string>(), "gzip"));
    EXPECT_FALSE(g["headers"].contains("content-type"));

    HttpRequest post = get("/echo?x=1");
    post.method = "POST";
    post.body = R"({"limit":100})";
    const HttpResponse r = client.perform(post);
    EXPECT_EQ(r.attempts, 1);
    const json p = json::parse(r.body);
    EXPECT_EQ(p["method"], "POST");
    EXPECT_EQ(p["path"], "/echo?x=1");
    EXPECT_EQ(p["body"], R"({"limit":100})");
    EXPECT_EQ(p["headers"]["content-type"], "application/json");
    EXPECT_FALSE(p["headers"].contains("expect"));
}

TEST(HttpClient, TargetMustBeAPath) {
    Peer peer;
    HttpClient client(config_for(peer));
    EXPECT_THROW(client.perform(get("@evil.example/x")), std::invalid_argument);
    EXPECT_THROW(client.perform(get("")), std::invalid_argument);
    EXPECT_EQ(client.perform(get("/echo")).status, 200);  // still usable
}

TEST(HttpClient, GzipIsDecoded) {
    Peer peer;
    HttpClient client(config_for(peer));
    const HttpResponse r = client.perform(get("/gzip"));
    const json j = json::parse(r.body);
    EXPECT_EQ(j["compressed"], true);
    EXPECT_EQ(j["data"].get<std::string>().size(), 22000u);
    EXPECT_EQ(client.stats().bytes_received, r.body.size());
    EXPECT_EQ(peer.stats()["gzipped"], 1);
}

// ---- retries ----------------------------------------------------------------------------------

TEST(HttpClient, RateLimitWithoutRetryAfterIsRetried) {
    Peer peer;
    HttpClient client(config_for(peer));
    const HttpResponse r = client.perform(get("/flaky/a?fail=2&status=429"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(client.stats().requests, 3u);
    EXPECT_EQ(client.stats().retries, 2u);
    EXPECT_EQ(client.stats().rate_limited, 2u);
}

TEST(HttpClient, RetryAfterIsHonouredOn429And503) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_delay = milliseconds(5000);
    HttpClient client(c);
    // Retry-After: 1 is a wait of exactly 1000 ms (no jitter), scheduled before each retry, and the
    // peer saw the retry no sooner (a wait the client must make, not a speed).
    EXPECT_EQ(client.perform(get("/flaky/b?fail=1&status=429&retry_after=1")).attempts, 2);
    EXPECT_EQ(client.stats().backoff_ms, 1000u);
    EXPECT_EQ(client.perform(get("/flaky/c?fail=1&status=503&retry_after=1")).attempts, 2);
    EXPECT_EQ(client.stats().backoff_ms, 2000u);
    EXPECT_EQ(client.stats().rate_limited, 1u);
    const json arrivals = peer.stats()["flaky_arrivals"];
    for (const char* key : {"b", "c"}) {
        ASSERT_EQ(arrivals[key].size(), 2u) << key;
        EXPECT_GE(arrivals[key][1].get<double>() - arrivals[key][0].get<double>(), 1.0) << key;
    }
}

TEST(HttpClient, RetryAfterIsCappedByMaxDelay) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_delay = milliseconds(200);
    HttpClient client(c);
    EXPECT_EQ(client.perform(get("/flaky/d?fail=1&status=429&retry_after=30")).status, 200);
    EXPECT_EQ(client.stats().backoff_ms, 200u);  // not 30000
}

TEST(HttpClient, ServiceUnavailableRetriedThenSucceeds) {
    Peer peer;
    HttpClient client(config_for(peer));
    const HttpResponse r = client.perform(get("/flaky/e?fail=2&status=503"));
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(json::parse(r.body)["ok"], true);
    EXPECT_EQ(client.stats().retries, 2u);
}

TEST(HttpClient, AttemptsExhaustedOn5xxGivesClearHttpStatusFailure) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_attempts = 3;
    HttpClient client(c);
    const auto e = perform_error(client, get("/status/503", "orders page 3"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::HttpStatus);
    EXPECT_EQ(e->status, 503);
    const std::string m = e->what();
    EXPECT_TRUE(contains(m, "503")) << m;
    EXPECT_TRUE(contains(m, "SERVICE_UNAVAILABLE")) << m;
    EXPECT_TRUE(contains(m, "after 3 attempts for orders page 3")) << m;
    EXPECT_TRUE(contains(m, "try again later")) << m;
    EXPECT_TRUE(contains(e->body, "SERVICE_UNAVAILABLE"));
    EXPECT_EQ(peer.stats()["requests"], 3);
}

TEST(HttpClient, RetryBudgetExhaustedOnRateLimit) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_attempts = 8;
    c.retry.run_budget = 3;
    HttpClient client(c);
    const auto e = perform_error(client, get("/status/429", "orders page 3"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::RateLimited);
    EXPECT_EQ(e->status, 429);
    const std::string m = e->what();
    EXPECT_EQ(m.rfind("Square rate limit (429) persisted", 0), 0u) << m;
    EXPECT_TRUE(contains(m, "after 4 attempts for orders page 3")) << m;
    EXPECT_TRUE(contains(m, "retry budget")) << m;
    EXPECT_TRUE(contains(m, "max_concurrency")) << m;
    EXPECT_EQ(client.stats().requests, 4u);
    EXPECT_EQ(client.stats().retries, 3u);
    EXPECT_EQ(client.stats().rate_limited, 4u);
    // The budget is per client: the next request is not retried at all.
    const auto again = perform_error(client, get("/flaky/f?fail=1&status=503"));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->kind, FailureKind::HttpStatus);
}

TEST(HttpClient, TimeoutIsRetriedThenReported) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.request_timeout_ms = 1000;
    c.retry.max_attempts = 2;
    HttpClient client(c);
    // The peer would answer after a minute: a Timeout failure is the client's own 1 s limit.
    const auto e = perform_error(client, get("/hang?ms=60000"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Timeout);
    EXPECT_EQ(e->status, 0);
    EXPECT_TRUE(contains(e->what(), "timeout")) << e->what();
    EXPECT_EQ(client.stats().requests, 2u);
    EXPECT_EQ(peer.stats()["hangs_answered"], 0);
    // A single slow answer is retried and the retry succeeds.
    EXPECT_EQ(client.perform(get("/flaky/slow?fail=1&mode=hang&ms=5000")).attempts, 2);
}

TEST(HttpClient, ResetIsRetried) {
    Peer peer;
    HttpClient client(config_for(peer));
    EXPECT_EQ(client.perform(get("/flaky/r?fail=1&mode=reset")).attempts, 2);
    const auto e = perform_error(client, get("/reset"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Transport);
    EXPECT_TRUE(contains(e->what(), "network error")) << e->what();
    EXPECT_EQ(peer.stats()["paths"]["/reset"], 4);
}

TEST(HttpClient, ConnectionRefusedIsTransportAfterRetries) {
    HttpConfig c;
    c.base_url = "http://127.0.0.1:" + std::to_string(unused_port());
    c.access_token = kToken;
    c.retry.max_attempts = 3;
    c.retry.base_delay = milliseconds(10);
    HttpClient client(c);
    const auto e = perform_error(client, get("/x"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Transport);
    EXPECT_TRUE(contains(e->what(), "after 3 attempts")) << e->what();
    EXPECT_EQ(client.stats().requests, 3u);
}

// ---- failures that are never retried --------------------------------------------------------

TEST(HttpClient, RedirectIsNotFollowed) {
    Peer peer, other;
    HttpClient client(config_for(peer));
    const auto e = perform_error(client, get("/redirect?to=" + other.url() + "/echo"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Redirect);
    EXPECT_EQ(e->status, 307);
    EXPECT_TRUE(contains(e->what(), "never followed")) << e->what();
    EXPECT_EQ(client.stats().requests, 1u);
    EXPECT_EQ(other.stats()["requests"], 0);
}

TEST(HttpClient, OversizeResponseIsTooLarge) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_response_bytes = 100000;
    HttpClient client(c);
    for (const char* target : {"/big?bytes=200000", "/big?bytes=200000&close=1"}) {
        const auto e = perform_error(client, get(target));
        ASSERT_TRUE(e) << target;
        EXPECT_EQ(e->kind, FailureKind::TooLarge) << target << ": " << e->what();
    }
    EXPECT_EQ(client.stats().requests, 2u);  // not retried
    EXPECT_EQ(client.perform(get("/big?bytes=100000&close=1")).body.size(), 100000u);
    EXPECT_EQ(client.perform(get("/big?bytes=5000")).body.size(), 5000u);
}

TEST(HttpClient, UnauthorizedFailsEveryWalkAfterOneRequest) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 1;
    HttpClient client(c);
    FnWalk a(get("/401", "locations")), b(get("/echo")), d(get("/echo"));
    client.run({&a, &b, &d});
    for (FnWalk* w : {&a, &b, &d}) {
        ASSERT_TRUE(w->failure.has_value());
        EXPECT_EQ(w->failure->kind, FailureKind::Unauthorized);
        EXPECT_EQ(w->failure->status, 401);
        EXPECT_EQ(std::string(w->failure->what()).rfind("access token rejected by Square (401 UNAUTHORIZED)", 0), 0u)
            << w->failure->what();
        EXPECT_TRUE(w->responses.empty());
    }
    EXPECT_EQ(client.stats().requests, 1u);
    EXPECT_EQ(peer.stats()["requests"], 1);
}

TEST(HttpClient, UnauthorizedCancelsTransfersInFlight) {
    Peer peer;
    HttpClient client(config_for(peer));
    // The hanging transfers would be answered after a minute: run() returns before either is.
    FnWalk a(get("/hang?ms=60000")), b(get("/hang?ms=60000")), u(get("/401"));
    client.run({&a, &b, &u});
    EXPECT_EQ(peer.stats()["hangs_answered"], 0);
    for (FnWalk* w : {&a, &b, &u}) {
        ASSERT_TRUE(w->failure.has_value());
        EXPECT_EQ(w->failure->kind, FailureKind::Unauthorized);
    }
    EXPECT_EQ(client.perform(get("/echo")).status, 200);  // the client is still usable
}

// B's page is in prepare() on the helper thread when A's request is answered 401. B must not be
// told of the failure while its prepare() runs, must get no on_page() after it, and must send no
// further request. Deterministic: one transfer at a time, B first; B's prepare() waits until A has
// been failed.
TEST(HttpClient, UnauthorizedWhileAPageIsPreparedFailsThatWalkAfterItsPrepare) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 1;
    HttpClient client(c);
    std::atomic<bool> a_failed{false};
    struct Recording : PageWalk {
        std::atomic<bool>* a_failed;
        std::vector<std::string> events;  // on the loop thread only
        std::atomic<bool> preparing{false}, failed_during_prepare{false};
        explicit Recording(std::atomic<bool>* f) : a_failed(f) {}
        HttpRequest first() override { return get("/page?n=3&key=b", "b page 1"); }
        void prepare(HttpResponse&) override {
            preparing = true;
            const auto until = Clock::now() + std::chrono::seconds(20);  // a hang guard only
            while (!*a_failed && Clock::now() < until) std::this_thread::sleep_for(milliseconds(5));
            preparing = false;
        }
        std::optional<HttpRequest> on_page(HttpResponse&&) override {
            events.push_back("on_page");
            return get("/page?n=3&key=b&cursor=1", "b page 2");
        }
        void on_failure(const HttpError& e) override {
            if (preparing) failed_during_prepare = true;
            events.push_back(std::string("on_failure:") + failure_kind_name(e.kind));
        }
    } b(&a_failed);
    struct Failing : FnWalk {
        std::atomic<bool>* flag;
        Failing(std::atomic<bool>* f) : FnWalk(get("/401", "a")), flag(f) {}
        void on_failure(const HttpError& e) override {
            FnWalk::on_failure(e);
            *flag = true;
        }
    } a(&a_failed);
    client.run({&b, &a});
    ASSERT_TRUE(a.failure.has_value());
    EXPECT_EQ(a.failure->kind, FailureKind::Unauthorized);
    EXPECT_FALSE(b.failed_during_prepare.load());
    EXPECT_EQ(b.events, std::vector<std::string>{"on_failure:unauthorized"});
    EXPECT_EQ(peer.stats()["requests"], 2);  // b's first page and a's 401: nothing after the 401
}

TEST(HttpClient, ForbiddenGoneAndOther4xxAreNotRetried) {
    Peer peer;
    HttpClient client(config_for(peer));
    auto e = perform_error(client, get("/403", "payments"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Forbidden);
    EXPECT_TRUE(contains(e->what(), "FORBIDDEN")) << e->what();
    e = perform_error(client, get("/410"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Gone);
    EXPECT_TRUE(contains(e->what(), "retired")) << e->what();
    e = perform_error(client, get("/status/404"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::HttpStatus);
    EXPECT_EQ(e->status, 404);
    EXPECT_TRUE(contains(e->what(), "NOT_FOUND: Resource not found;")) << e->what();
    e = perform_error(client, get("/status/501"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::HttpStatus);
    EXPECT_EQ(client.stats().requests, 4u);
    EXPECT_EQ(client.stats().retries, 0u);
}

TEST(HttpClient, FailedWalkDoesNotStopTheOthers) {
    Peer peer;
    HttpClient client(config_for(peer));
    FnWalk bad(get("/status/404"));
    PagingWalk good("g", 4, 10);
    client.run({&bad, &good});
    ASSERT_TRUE(bad.failure.has_value());
    EXPECT_FALSE(good.failure.has_value());
    EXPECT_EQ(good.ids.size(), 4u);
}

// ---- page handler errors ------------------------------------------------------------------------

TEST(HttpClient, RetryableResponseErrorRetriesThenBadResponse) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_attempts = 3;
    HttpClient client(c);
    FnWalk always(get("/echo", "customers page 1"),
                  [](const HttpResponse&) { throw RetryableResponseError("truncated JSON at byte 17"); });
    int calls = 0;
    FnWalk once(get("/echo?k=once"), [&calls](const HttpResponse& r) {
        if (++calls == 1) throw RetryableResponseError("bad shape");
        EXPECT_EQ(r.attempts, 2);
    });
    client.run({&always, &once});
    ASSERT_TRUE(always.failure.has_value());
    EXPECT_EQ(always.failure->kind, FailureKind::BadResponse);
    const std::string m = always.failure->what();
    EXPECT_TRUE(contains(m, "truncated JSON at byte 17")) << m;
    EXPECT_TRUE(contains(m, "after 3 attempts for customers page 1")) << m;
    EXPECT_FALSE(once.failure.has_value());
    EXPECT_EQ(once.responses.size(), 1u);
    EXPECT_EQ(client.stats().requests, 5u);
}

TEST(HttpClient, OtherExceptionsFromOnPageAreRethrownAfterStoppingTransfers) {
    Peer peer;
    HttpClient client(config_for(peer));
    FnWalk thrower(get("/echo"), [](const HttpResponse&) { throw std::logic_error("boom in on_page"); });
    FnWalk slow(get("/hang?ms=60000"));
    try {
        client.run({&slow, &thrower});
        FAIL() << "run() should have thrown";
    } catch (const std::logic_error& e) {
        EXPECT_STREQ(e.what(), "boom in on_page");
    }
    EXPECT_EQ(peer.stats()["hangs_answered"], 0);  // rethrown without waiting for the slow transfer
    EXPECT_FALSE(slow.failure.has_value());  // on_failure is not called for the others
    EXPECT_EQ(client.perform(get("/echo")).status, 200);
}

// A paging walk whose every page starts walks of its own (take_spawned): one request each, for
// the given targets; every page handled, by any walk, is appended to `order`.
struct SpawningWalk : PagingWalk {
    std::vector<std::string>& order;
    std::function<std::vector<std::string>(int page)> targets;
    std::vector<std::unique_ptr<FnWalk>> children;
    std::vector<PageWalk*> started;
    SpawningWalk(std::string k, int pages, std::vector<std::string>& o, std::function<std::vector<std::string>(int)> t)
        : PagingWalk(std::move(k), pages), order(o), targets(std::move(t)) {}
    std::optional<HttpRequest> on_page(HttpResponse&& r) override {
        auto next = PagingWalk::on_page(std::move(r));
        order.push_back(ids.back());
        for (const auto& target : targets(static_cast<int>(ids.size()) - 1)) {
            children.push_back(std::make_unique<FnWalk>(get(target, target)));
            auto* c = children.back().get();
            c->check = [this, target](const HttpResponse&) { order.push_back(target); };
            started.push_back(c);
        }
        return next;
    }
    std::vector<PageWalk*> take_spawned() override { return std::exchange(started, {}); }
};

TEST(HttpClient, SpawnedWalksRunAheadOfTheWalksBehindTheirParentInTheOrderStarted) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 1;             // one transfer at a time: the order the client picks is the order seen
    c.prepare_in_background = false;  // each page handled as it arrives
    HttpClient client(c);
    std::vector<std::string> order;
    SpawningWalk parent("p", 2, order, [](int page) {
        const std::string k = "c" + std::to_string(page);
        return std::vector<std::string>{"/page?n=1&key=" + k + "a", "/page?n=1&key=" + k + "b"};
    });
    PagingWalk behind("z", 1);
    client.run({&parent, &behind});
    EXPECT_EQ(order, (std::vector<std::string>{"p-0", "p-1", "/page?n=1&key=c0a", "/page?n=1&key=c0b",
                                               "/page?n=1&key=c1a", "/page?n=1&key=c1b"}));
    EXPECT_EQ(behind.ids, (std::vector<std::string>{"z-0"}));
    EXPECT_EQ(client.stats().requests, 7u);
    EXPECT_EQ(peer.stats()["requests"], 7);
}

TEST(HttpClient, SpawnedWalksOverlapAndFailOnTheirOwn) {
    Peer peer;
    HttpClient client(config_for(peer));  // 4 in flight, pages prepared on the helper thread
    std::vector<std::string> order;
    SpawningWalk parent("p", 1, order, [](int) {
        return std::vector<std::string>{"/page?n=1&ms=150&key=a", "/page?n=1&ms=150&key=b",
                                        "/page?n=1&ms=150&key=c", "/status/404"};
    });
    client.run({&parent});
    ASSERT_EQ(parent.children.size(), 4u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_FALSE(parent.children[i]->failure.has_value()) << i;
        EXPECT_EQ(parent.children[i]->responses.size(), 1u) << i;
    }
    ASSERT_TRUE(parent.children[3]->failure.has_value());
    EXPECT_EQ(parent.children[3]->failure->status, 404);
    EXPECT_FALSE(parent.failure.has_value());
    const json s = peer.stats();
    EXPECT_EQ(s["requests"], 5);
    EXPECT_GT(s["max_concurrent"].get<int>(), 1) << s.dump();
}

TEST(HttpClient, NestedRunFromOnPageIsRejected) {
    Peer peer;
    HttpClient client(config_for(peer));
    FnWalk nested(get("/echo"), [&client](const HttpResponse&) { client.perform(get("/echo")); });
    EXPECT_THROW(client.run({&nested}), std::logic_error);
    EXPECT_EQ(client.stats().requests, 1u);
    EXPECT_EQ(client.perform(get("/echo")).status, 200);
}

// ---- prepare() on the helper thread ----------------------------------------------------------------

// A paging walk that records where prepare() and on_page() ran, whether prepare() could receive
// SIGTERM, and how many pages of all walks were between the start of prepare() and the end of
// on_page() at once (the client holds them in memory).
struct ThreadWalk : PagingWalk {
    std::thread::id prepare_thread, page_thread;
    bool sigterm_blocked = false, sigalrm_blocked = false;
    std::atomic<int>& held;
    std::atomic<int>& max_held;
    int page_ms;
    ThreadWalk(std::string k, int pages, std::atomic<int>& h, std::atomic<int>& mh, int slow_ms = 0)
        : PagingWalk(std::move(k), pages), held(h), max_held(mh), page_ms(slow_ms) {}
    void prepare(HttpResponse&) override {
        prepare_thread = std::this_thread::get_id();
        sigset_t mask;
        pthread_sigmask(SIG_SETMASK, nullptr, &mask);
        sigterm_blocked = sigismember(&mask, SIGTERM) == 1;
        sigalrm_blocked = sigismember(&mask, SIGALRM) == 1;
        const int now = ++held;
        int seen = max_held.load();
        while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
        }
    }
    std::optional<HttpRequest> on_page(HttpResponse&& r) override {
        page_thread = std::this_thread::get_id();
        if (page_ms) std::this_thread::sleep_for(milliseconds(page_ms));  // the caller's slow work (staging)
        auto next = PagingWalk::on_page(std::move(r));
        --held;
        return next;
    }
};

TEST(HttpClientPrepare, RunsOnAHelperThreadWithEverySignalBlocked) {
    Peer peer;
    HttpClient client(config_for(peer));
    std::atomic<int> held{0}, max_held{0};
    ThreadWalk w("w", 3, held, max_held);
    client.run({&w});
    EXPECT_EQ(w.ids, (std::vector<std::string>{"w-0", "w-1", "w-2"}));
    EXPECT_NE(w.prepare_thread, std::this_thread::get_id());
    EXPECT_EQ(w.page_thread, std::this_thread::get_id());
    EXPECT_TRUE(w.sigterm_blocked);
    EXPECT_TRUE(w.sigalrm_blocked);
    // The caller's own mask is what it was.
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    EXPECT_EQ(sigismember(&mask, SIGTERM), 0);
}

TEST(HttpClientPrepare, InlineWhenNotInTheBackground) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.prepare_in_background = false;
    HttpClient client(c);
    std::atomic<int> held{0}, max_held{0};
    ThreadWalk w("w", 2, held, max_held);
    client.run({&w});
    EXPECT_EQ(w.ids.size(), 2u);
    EXPECT_EQ(w.prepare_thread, std::this_thread::get_id());
    EXPECT_FALSE(w.sigterm_blocked);
}

TEST(HttpClientPrepare, PagesHeldStayBoundedWhenTheCallerIsSlow) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.max_concurrency = 2;
    HttpClient client(c);
    std::atomic<int> held{0}, max_held{0};
    std::vector<std::unique_ptr<ThreadWalk>> walks;
    std::vector<PageWalk*> ptrs;
    for (int i = 0; i < 8; ++i) {
        walks.push_back(std::make_unique<ThreadWalk>("w" + std::to_string(i), 4, held, max_held, 30));
        ptrs.push_back(walks.back().get());
    }
    client.run(ptrs);
    for (auto& w : walks) EXPECT_EQ(w->ids.size(), 4u) << w->key;
    EXPECT_EQ(held.load(), 0);
    EXPECT_GE(max_held.load(), 2);  // pages were prepared while the caller worked on another
    EXPECT_LE(max_held.load(), 2 + 1) << "more pages in memory than max_concurrency + 1";
}

TEST(HttpClientPrepare, RetryableErrorFromPrepareRetriesTheRequest) {
    Peer peer;
    HttpClient client(config_for(peer));
    struct Walk : FnWalk {
        int prepares = 0;
        using FnWalk::FnWalk;
        void prepare(HttpResponse&) override {
            if (++prepares == 1) throw RetryableResponseError("truncated JSON");
        }
    } w(get("/echo?k=prep"));
    client.run({&w});
    EXPECT_FALSE(w.failure.has_value());
    EXPECT_EQ(w.prepares, 2);
    ASSERT_EQ(w.responses.size(), 1u);
    EXPECT_EQ(w.responses[0].attempts, 2);
    EXPECT_EQ(client.stats().retries, 1u);
}

TEST(HttpClientPrepare, OtherExceptionsFromPrepareAreRethrownOnTheCallersThread) {
    Peer peer;
    HttpClient client(config_for(peer));
    struct Walk : FnWalk {
        using FnWalk::FnWalk;
        void prepare(HttpResponse&) override { throw std::logic_error("boom in prepare"); }
    } w(get("/echo"));
    FnWalk other(get("/echo?k=other"));
    try {
        client.run({&w, &other});
        FAIL() << "run() should have thrown";
    } catch (const std::logic_error& e) {
        EXPECT_STREQ(e.what(), "boom in prepare");
    }
    EXPECT_FALSE(w.failure.has_value());
    EXPECT_EQ(client.perform(get("/echo")).status, 200);
}

// ---- abort ---------------------------------------------------------------------------------------

TEST(HttpClient, ShouldAbortStopsTransfersInFlight) {
    Peer peer;
    HttpConfig c = config_for(peer);
    Clock::time_point abort_at = Clock::now() + milliseconds(200);
    c.should_abort = [&abort_at] { return Clock::now() >= abort_at; };
    HttpClient client(c);
    FnWalk a(get("/hang?ms=60000")), b(get("/hang?ms=60000"));
    try {
        client.run({&a, &b});
        FAIL() << "run() should have thrown";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.kind, FailureKind::Aborted);
        EXPECT_TRUE(contains(e.what(), "aborted")) << e.what();
    }
    EXPECT_EQ(peer.stats()["hangs_answered"], 0);  // the transfers were stopped, not waited for
    EXPECT_FALSE(a.failure.has_value());
}

TEST(HttpClient, ShouldAbortInterruptsBackoffWait) {
    Peer peer;
    HttpConfig c = config_for(peer);
    c.retry.max_delay = milliseconds(600000);
    // A one-minute wait is scheduled after the first answer. should_abort() says stop the fifth
    // time it is asked during that wait: a client that polls it while waiting (every 100 ms at most)
    // stops there, with the retry never sent; one that asks only before and after the wait sends
    // the retry first.
    HttpClient* cp = nullptr;
    int polls_in_wait = 0;
    c.should_abort = [&cp, &polls_in_wait] { return cp && cp->stats().backoff_ms > 0 && ++polls_in_wait >= 5; };
    HttpClient client(c);
    cp = &client;
    const auto e = perform_error(client, get("/status/503?retry_after=60"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Aborted);
    EXPECT_EQ(client.stats().backoff_ms, 60000u);
    EXPECT_EQ(client.stats().requests, 1u);  // the retry was never sent
}

// ---- TLS -------------------------------------------------------------------------------------------

TEST(HttpClientTls, WorksWithThePeersCa) {
    Peer peer(/*tls=*/true);
    ASSERT_EQ(peer.url().rfind("https://", 0), 0u);
    HttpClient client(config_for(peer));
    const json j = json::parse(client.perform(get("/echo")).body);
    EXPECT_EQ(j["headers"]["authorization"], "Bearer " + kToken);
    for (int i = 0; i < 5; ++i) client.perform(get("/echo"));
    EXPECT_EQ(peer.stats()["connections"], 1);
}

TEST(HttpClientTls, FailsWithoutTheCaAndSaysWhy) {
    Peer peer(/*tls=*/true);
    HttpConfig c = config_for(peer);
    c.ca_file.clear();  // the system's CA store does not know the peer's CA
    HttpClient client(c);
    const auto e = perform_error(client, get("/echo"));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, FailureKind::Transport);
    EXPECT_TRUE(contains(e->what(), "certificate")) << e->what();
    EXPECT_EQ(client.stats().requests, 1u);  // not retried
    EXPECT_EQ(peer.stats()["requests"], 0);
}

TEST(HttpClientConfig, PlainHttpIsRefusedForNonLoopbackHosts) {
    HttpConfig c;
    c.base_url = "http://connect.squareup.com";
    c.access_token = kToken;
    EXPECT_THROW(HttpClient{c}, ConfigError);
}

// ---- the token never leaks -------------------------------------------------------------------------

TEST(HttpClient, TokenNeverAppearsInMessagesOrDebugLines) {
    Peer peer, tls_peer(/*tls=*/true);
    Capture cap;
    HttpConfig c = config_for(peer, &cap);
    c.request_timeout_ms = 1000;  // what /hang?ms=3000 exceeds (and a loaded machine's answers do not)
    c.retry.max_attempts = 2;
    c.max_response_bytes = 60000;
    auto collect = [&cap](const FnWalk& w) {
        if (w.failure) {
            cap.messages.push_back(w.failure->what());
            cap.messages.push_back(w.failure->body);
        }
    };
    {
        HttpClient client(c);
        for (const char* target :
             {"/403", "/410", "/status/404", "/status/400?leak=1", "/status/503", "/status/429", "/hang?ms=3000",
              "/reset", "/redirect?to=https://example.invalid/", "/big?bytes=80000", "/big?bytes=80000&close=1"})
            perform_error(client, get(target), &cap);
        FnWalk bad(get("/echo"), [](const HttpResponse&) { throw RetryableResponseError("bad"); });
        client.run({&bad});
        collect(bad);
        FnWalk u1(get("/401")), u2(get("/echo"));
        client.run({&u1, &u2});
        collect(u1);
        collect(u2);
        // Successful attempts are logged too.
        client.perform(get("/echo"));
    }
    {
        HttpConfig refused = c;
        refused.base_url = "http://127.0.0.1:" + std::to_string(unused_port());
        HttpClient client(refused);
        perform_error(client, get("/x"), &cap);
    }
    {
        HttpConfig aborting = c;
        aborting.should_abort = [] { return true; };
        HttpClient client(aborting);
        perform_error(client, get("/echo"), &cap);
    }
    {
        HttpConfig tls = config_for(tls_peer, &cap);
        tls.ca_file.clear();
        HttpClient client(tls);
        perform_error(client, get("/echo"), &cap);
    }
    // The leak scenario really did carry the token in Square's answer, so redaction was exercised.
    bool saw_redacted = false;
    for (const auto& m : cap.messages) saw_redacted = saw_redacted || contains(m, "Bearer [redacted]");
    EXPECT_TRUE(saw_redacted);

    if (std::getenv("SQUARESYNC_TEST_VERBOSE")) {
        for (const auto& m : cap.messages) std::cout << "message: " << m << "\n";
        for (const auto& d : cap.debug) std::cout << "debug: " << d << "\n";
    }
    EXPECT_GE(cap.messages.size(), 30u);
    EXPECT_GE(cap.debug.size(), 20u);
    for (const auto& m : cap.messages) EXPECT_FALSE(contains(m, kToken)) << m;
    for (const auto& d : cap.debug) {
        EXPECT_FALSE(contains(d, kToken)) << d;
        EXPECT_FALSE(contains(d, "Authorization")) << d;
    }
    // One line per attempt, with the fields the brief asks for.
    bool saw_fields = false;
    for (const auto& d : cap.debug)
        saw_fields = saw_fields || (contains(d, "GET /echo") && contains(d, "status=200") && contains(d, "bytes=") &&
                                    contains(d, "ms=") && contains(d, "attempt=1"));
    EXPECT_TRUE(saw_fields);
}
