// retry_policy.hpp: when and how long to wait before retrying a request to Square: exponential
// backoff with full jitter, Retry-After honoured, a bounded budget per run. Pure logic, no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

namespace squaresync {

struct RetryPolicy {
    int max_attempts = 8;                                  // per request, first attempt included
    int run_budget = 200;                                  // retries per client (run), all requests
    std::chrono::milliseconds base_delay{250};
    std::chrono::milliseconds max_delay{30000};            // cap for computed and Retry-After waits
};

// Which answers are worth another attempt: 429, 500, 502, 503, 504 and transport failures
// (timeouts, resets, truncated bodies). 401, 403, 410, 3xx and other 4xx are not.
bool is_retryable_status(long status);

// Parses a Retry-After header value: delta-seconds or an HTTP-date (relative to now).
std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& value,
                                                           std::chrono::system_clock::time_point now);

class RetryState {
public:
    explicit RetryState(const RetryPolicy& policy, std::uint64_t seed = std::random_device{}());
    // Delay before attempt number `attempt` (2 = first retry) of one request: Retry-After when
    // given (capped at max_delay), else uniform in [0, min(max_delay, base_delay * 2^(attempt-2))].
    // Returns nullopt when the request's attempts or the run's budget are used up; consumes one
    // unit of the run budget otherwise.
    std::optional<std::chrono::milliseconds> next_delay(int attempt,
                                                        std::optional<std::chrono::milliseconds> retry_after);
    int retries_used() const { return used_; }

private:
    RetryPolicy policy_;
    std::mt19937_64 rng_;
    int used_ = 0;
};

}  // namespace squaresync
