// Unit tests for retry_policy: full-jitter bounds, Retry-After handling and caps, attempt and
// budget exhaustion, HTTP-date parsing.
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "retry_policy.hpp"

using namespace squaresync;
using std::chrono::milliseconds;

namespace {

RetryPolicy policy(int attempts = 8, int budget = 1000000, long base = 250, long max = 30000) {
    RetryPolicy p;
    p.max_attempts = attempts;
    p.run_budget = budget;
    p.base_delay = milliseconds(base);
    p.max_delay = milliseconds(max);
    return p;
}

// 1994-11-06 08:49:37 UTC, the RFC's example date.
std::chrono::system_clock::time_point rfc_example() {
    return std::chrono::system_clock::time_point(std::chrono::seconds(784111777));
}

}  // namespace

TEST(RetryPolicy, RetryableStatuses) {
    for (long s : {429L, 500L, 502L, 503L, 504L}) EXPECT_TRUE(is_retryable_status(s)) << s;
    for (long s : {200L, 301L, 307L, 400L, 401L, 403L, 404L, 410L, 422L, 501L, 505L})
        EXPECT_FALSE(is_retryable_status(s)) << s;
}

TEST(RetryPolicy, FullJitterStaysWithinExponentialCeiling) {
    for (int attempt = 2; attempt <= 8; ++attempt) {
        const long ceiling = std::min<long>(30000, 250L << (attempt - 2));
        long seen_max = 0;
        for (std::uint64_t seed = 0; seed < 400; ++seed) {
            RetryState st(policy(), seed);
            const auto d = st.next_delay(attempt, std::nullopt);
            ASSERT_TRUE(d.has_value());
            EXPECT_GE(d->count(), 0);
            EXPECT_LE(d->count(), ceiling) << "attempt " << attempt;
            seen_max = std::max<long>(seen_max, d->count());
        }
        // Full jitter spreads over the whole range, not just near zero.
        EXPECT_GT(seen_max, ceiling / 2) << "attempt " << attempt;
    }
}

TEST(RetryPolicy, JitterIsCappedByMaxDelayForLargeAttempts) {
    RetryState st(policy(1000, 1000000, 250, 1000), 7);
    for (int attempt : {10, 40, 64, 70, 999}) {
        const auto d = st.next_delay(attempt, std::nullopt);
        ASSERT_TRUE(d.has_value());
        EXPECT_LE(d->count(), 1000);
    }
}

TEST(RetryPolicy, SameSeedSameDelays) {
    RetryState a(policy(), 42), b(policy(), 42);
    for (int i = 2; i <= 8; ++i) EXPECT_EQ(a.next_delay(i, std::nullopt), b.next_delay(i, std::nullopt));
}

TEST(RetryPolicy, RetryAfterHonouredAndCapped) {
    RetryState st(policy(8, 100, 250, 30000), 1);
    EXPECT_EQ(st.next_delay(2, milliseconds(1500)), milliseconds(1500));
    EXPECT_EQ(st.next_delay(3, milliseconds(0)), milliseconds(0));
    EXPECT_EQ(st.next_delay(4, milliseconds(3600 * 1000)), milliseconds(30000));
    EXPECT_EQ(st.next_delay(5, milliseconds(-5)), milliseconds(0));
    EXPECT_EQ(st.retries_used(), 4);
}

TEST(RetryPolicy, AttemptsExhaustedDoesNotConsumeBudget) {
    RetryState st(policy(3, 10), 1);
    EXPECT_TRUE(st.next_delay(2, std::nullopt).has_value());
    EXPECT_TRUE(st.next_delay(3, std::nullopt).has_value());
    EXPECT_FALSE(st.next_delay(4, std::nullopt).has_value());
    EXPECT_FALSE(st.next_delay(4, milliseconds(10)).has_value());
    EXPECT_EQ(st.retries_used(), 2);
}

TEST(RetryPolicy, RunBudgetSharedAcrossRequests) {
    RetryState st(policy(8, 5), 1);
    int granted = 0;
    for (int request = 0; request < 4; ++request)
        for (int attempt = 2; attempt <= 3; ++attempt)
            if (st.next_delay(attempt, std::nullopt)) ++granted;
    EXPECT_EQ(granted, 5);
    EXPECT_EQ(st.retries_used(), 5);
    EXPECT_FALSE(st.next_delay(2, std::nullopt).has_value());
    EXPECT_FALSE(st.next_delay(2, milliseconds(1)).has_value());
}

TEST(RetryPolicy, ZeroBudgetNeverRetries) {
    RetryState st(policy(8, 0), 1);
    EXPECT_FALSE(st.next_delay(2, std::nullopt).has_value());
    EXPECT_EQ(st.retries_used(), 0);
}

TEST(RetryPolicy, ParseRetryAfterDeltaSeconds) {
    const auto now = rfc_example();
    EXPECT_EQ(parse_retry_after("120", now), milliseconds(120000));
    EXPECT_EQ(parse_retry_after("0", now), milliseconds(0));
    EXPECT_EQ(parse_retry_after("  7 \r\n", now), milliseconds(7000));
    EXPECT_TRUE(parse_retry_after("99999999999999999999999", now).has_value());  // clamped, no overflow
    EXPECT_GT(parse_retry_after("99999999999999999999999", now)->count(), 0);
    EXPECT_FALSE(parse_retry_after("", now).has_value());
    EXPECT_FALSE(parse_retry_after("-1", now).has_value());
    EXPECT_FALSE(parse_retry_after("1.5", now).has_value());
    EXPECT_FALSE(parse_retry_after("soon", now).has_value());
}

TEST(RetryPolicy, ParseRetryAfterHttpDate) {
    const auto now = rfc_example();
    // IMF-fixdate, 30 s after now.
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), milliseconds(30000));
    // Obsolete RFC 850 and asctime forms.
    EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), milliseconds(60000));
    EXPECT_EQ(parse_retry_after("Sun Nov  6 08:49:47 1994", now), milliseconds(10000));
    // A date in the past means "now".
    EXPECT_EQ(parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), milliseconds(0));
    // Across a month and year boundary, with a later "now".
    const auto later = std::chrono::system_clock::time_point(std::chrono::seconds(1767225599));  // 2025-12-31 23:59:59
    EXPECT_EQ(parse_retry_after("Thu, 01 Jan 2026 00:00:09 GMT", later), milliseconds(10000));
    // Sub-second precision of now is honoured.
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:38 GMT", now + milliseconds(250)), milliseconds(750));
}

TEST(RetryPolicy, ParseRetryAfterRejectsBadDates) {
    const auto now = rfc_example();
    for (const char* bad : {"Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Foo 1994 08:49:37 GMT",
                            "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                            "Sun, 06 Nov 94 08:49:37 GMT", "06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT",
                            "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun Nov 6 08:49:37", "tomorrow"})
        EXPECT_FALSE(parse_retry_after(bad, now).has_value()) << bad;
}
