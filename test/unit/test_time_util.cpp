// Unit tests for time_util: parse_rfc3339 (Z and numeric offsets, 0..9 fraction digits, invalid
// inputs, dates before the epoch), format_rfc3339 (epoch, negative values, leap days) and the
// round trip between them over the years 0001..9999.
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "time_util.hpp"

using namespace squaresync;

namespace {

constexpr std::int64_t kSec = 1000000;

}  // namespace

TEST(TimeUtil, ParsesEpochAndUtc) {
    EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33Z"), 1473033573 * kSec);
    EXPECT_EQ(parse_rfc3339("2024-02-29T12:00:00Z"), 1709208000 * kSec);
    EXPECT_EQ(parse_rfc3339("2000-03-01T00:00:00Z"), 951868800 * kSec);
    EXPECT_EQ(parse_rfc3339("9999-12-31T23:59:59Z"), 253402300799 * kSec);
}

TEST(TimeUtil, AcceptsLowercaseAndSpaceSeparators) {
    const auto base = parse_rfc3339("2016-09-04T23:59:33Z");
    ASSERT_TRUE(base);
    EXPECT_EQ(parse_rfc3339("2016-09-04t23:59:33z"), base);
    EXPECT_EQ(parse_rfc3339("2016-09-04 23:59:33Z"), base);
}

TEST(TimeUtil, FractionDigitsZeroToNine) {
    const std::int64_t base = 1473033573 * kSec;
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33Z"), base);  // no fraction at all
    const std::string digits = "123456789";
    const std::int64_t expected[] = {0, 100000, 120000, 123000, 123400, 123450, 123456, 123456, 123456, 123456};
    for (std::size_t n = 1; n <= 9; ++n) {
        const std::string s = "2016-09-04T23:59:33." + digits.substr(0, n) + "Z";
        EXPECT_EQ(parse_rfc3339(s), base + expected[n]) << s;
    }
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33.000Z"), base);
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33.999999999Z"), base + 999999);  // truncated, not rounded
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33.5+02:00"), base - 2 * 3600 * kSec + 500000);
}

TEST(TimeUtil, NumericOffsets) {
    const std::int64_t utc = 1473033573 * kSec;
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33+00:00"), utc);
    EXPECT_EQ(parse_rfc3339("2016-09-04T23:59:33-00:00"), utc);
    EXPECT_EQ(parse_rfc3339("2016-09-05T01:59:33+02:00"), utc);
    EXPECT_EQ(parse_rfc3339("2016-09-04T18:29:33-05:30"), utc);
    EXPECT_EQ(parse_rfc3339("2016-09-05T13:44:33+13:45"), utc);
    // An offset that crosses the epoch.
    EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00+01:00"), -3600 * kSec);
    EXPECT_EQ(parse_rfc3339("1969-12-31T23:00:00-01:00"), 0);
}

TEST(TimeUtil, BeforeTheEpoch) {
    EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59Z"), -kSec);
    EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59.5Z"), -500000);
    EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59.999999Z"), -1);
    EXPECT_EQ(parse_rfc3339("1900-01-01T00:00:00Z"), -2208988800LL * kSec);
    EXPECT_EQ(parse_rfc3339("0001-01-01T00:00:00Z"), -62135596800LL * kSec);
}

TEST(TimeUtil, LeapSecondRollsIntoTheNextMinute) {
    EXPECT_EQ(parse_rfc3339("2016-12-31T23:59:60Z"), parse_rfc3339("2017-01-01T00:00:00Z"));
}

TEST(TimeUtil, RejectsInvalidInputs) {
    const char* bad[] = {
        "",
        "2016",
        "2016-09-04",
        "2016-09-04T23:59",
        "2016-09-04T23:59:33",          // no zone
        "2016-09-04T23:59:33.Z",        // no fraction digit
        "2016-09-04T23:59:33.123",      // fraction, no zone
        "2016-09-04X23:59:33Z",
        "2016/09/04T23:59:33Z",
        "2016-09-04T23-59-33Z",
        "2016-9-04T23:59:33Z",
        "16-09-04T23:59:33Z",
        "2016-09-4T23:59:33Z",
        "2016-09-04T3:59:33Z",
        "2016-0a-04T23:59:33Z",
        "2016-13-04T23:59:33Z",
        "2016-00-04T23:59:33Z",
        "2016-09-00T23:59:33Z",
        "2016-09-32T23:59:33Z",
        "2016-09-04T24:00:00Z",
        "2016-09-04T23:60:00Z",
        "2016-09-04T23:59:61Z",
        "2016-09-04T23:59:33+0200",
        "2016-09-04T23:59:33+02",
        "2016-09-04T23:59:33+02:0",
        "2016-09-04T23:59:33+2:00",
        "2016-09-04T23:59:33+02:00junk",
        "2016-09-04T23:59:33Zjunk",
        "2016-09-04T23:59:33Z ",
        " 2016-09-04T23:59:33Z",
        "2016-09-04T23:59:33UTC",
        "-016-09-04T23:59:33Z",
        "yesterday at noon, roughly",
    };
    for (const char* s : bad) EXPECT_FALSE(parse_rfc3339(s).has_value()) << '"' << s << '"';
}

// Regression test (was a bug): parse_rfc3339 checks only 1 <= day <= 31 and never the offset's range, so
// impossible dates are accepted and silently shifted ("2023-02-29" becomes 2023-03-01, "2024-04-31"
// becomes 2024-05-01) and offsets like +99:99 are applied. Square never sends these, so the impact is
// limited to a corrupt watermark setting being taken at face value instead of rejected.
TEST(TimeUtil, RejectsImpossibleDatesAndOffsets) {
    for (const char* s : {"2023-02-29T00:00:00Z", "2024-02-30T00:00:00Z", "2024-04-31T00:00:00Z",
                          "2024-06-31T00:00:00Z", "1900-02-29T00:00:00Z", "2016-09-04T23:59:33+24:00",
                          "2016-09-04T23:59:33+99:99", "2016-09-04T23:59:33+02:60"})
        EXPECT_FALSE(parse_rfc3339(s).has_value()) << s;
}

TEST(TimeUtil, AcceptsRealLeapDays) {
    EXPECT_TRUE(parse_rfc3339("2024-02-29T00:00:00Z"));
    EXPECT_TRUE(parse_rfc3339("2000-02-29T00:00:00Z"));
}

TEST(TimeUtil, FormatsUtcWithMicroseconds) {
    EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000000Z");
    EXPECT_EQ(format_rfc3339(1), "1970-01-01T00:00:00.000001Z");
    EXPECT_EQ(format_rfc3339(1473033573 * kSec + 123000), "2016-09-04T23:59:33.123000Z");
    EXPECT_EQ(format_rfc3339(1709208000 * kSec), "2024-02-29T12:00:00.000000Z");
    EXPECT_EQ(format_rfc3339(253402300799 * kSec + 999999), "9999-12-31T23:59:59.999999Z");
}

TEST(TimeUtil, FormatsNegativeValues) {
    EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    EXPECT_EQ(format_rfc3339(-kSec), "1969-12-31T23:59:59.000000Z");
    EXPECT_EQ(format_rfc3339(-kSec - 1), "1969-12-31T23:59:58.999999Z");
    EXPECT_EQ(format_rfc3339(-86400 * kSec), "1969-12-31T00:00:00.000000Z");
    EXPECT_EQ(format_rfc3339(-86400 * kSec - 1), "1969-12-30T23:59:59.999999Z");
    EXPECT_EQ(format_rfc3339(-2208988800LL * kSec), "1900-01-01T00:00:00.000000Z");
    EXPECT_EQ(format_rfc3339(-62135596800LL * kSec), "0001-01-01T00:00:00.000000Z");
}

TEST(TimeUtil, RoundTripsOverTheWholeRange) {
    const std::int64_t lo = -62135596800LL * kSec;           // 0001-01-01
    const std::int64_t hi = 253402300799LL * kSec + 999999;  // 9999-12-31T23:59:59.999999
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
    std::uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 20000; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;  // LCG, deterministic
        const std::int64_t v = lo + static_cast<std::int64_t>((x >> 1) % span);
        const std::string s = format_rfc3339(v);
        ASSERT_EQ(parse_rfc3339(s), v) << s;
    }
    // Near the epoch, where negative division matters most.
    for (std::int64_t v = -3 * kSec - 2; v <= 3 * kSec + 2; v += 499999) {
        const std::string s = format_rfc3339(v);
        ASSERT_EQ(parse_rfc3339(s), v) << s;
    }
    for (std::int64_t v : {lo, hi, std::int64_t{0}, std::int64_t{-1}})
        EXPECT_EQ(parse_rfc3339(format_rfc3339(v)), v);
}

TEST(TimeUtil, CanonicalStringsRoundTrip) {
    for (const char* s : {"2016-09-04T23:59:33.123456Z", "1969-07-20T20:17:40.000000Z", "2024-02-29T23:59:59.999999Z",
                          "0001-01-01T00:00:00.000000Z"}) {
        auto v = parse_rfc3339(s);
        ASSERT_TRUE(v) << s;
        EXPECT_EQ(format_rfc3339(*v), s);
    }
    // Offsets normalise to UTC.
    EXPECT_EQ(format_rfc3339(*parse_rfc3339("2016-09-05T01:59:33.5+02:00")), "2016-09-04T23:59:33.500000Z");
}

TEST(TimeUtil, NowIsPlausible) {
    const auto t = now_micros();
    EXPECT_GT(t, *parse_rfc3339("2024-01-01T00:00:00Z"));
    EXPECT_LT(t, *parse_rfc3339("2200-01-01T00:00:00Z"));
    EXPECT_LE(t, now_micros());
}
