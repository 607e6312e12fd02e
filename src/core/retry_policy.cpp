// retry_policy.cpp: exponential backoff with full jitter, Retry-After parsing, the run's retry
// budget. Pure logic: no I/O, no clocks other than the `now` it is given.
#include "cpp_only.hpp"

#include "retry_policy.hpp"
#include "time_util.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <sstream>
#include <vector>

namespace squaresync {

bool is_retryable_status(long status) {
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

namespace {

// Longest wait a Retry-After can express here (about 31 years); RetryState caps it at max_delay.
constexpr std::int64_t kMaxRetryAfterSeconds = 1000000000;

std::string trim(const std::string& s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(),
                                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

int month_number(const std::string& name) {
    static const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec"};
    if (name.size() != 3) return 0;
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; i < 12; ++i)
        if (lower == kMonths[i]) return i + 1;
    return 0;
}

bool parse_int(const std::string& s, std::size_t min_len, std::size_t max_len, int& out) {
    if (s.size() < min_len || s.size() > max_len || !all_digits(s)) return false;
    out = std::stoi(s);
    return true;
}

bool parse_clock(const std::string& s, int& h, int& m, int& sec) {
    if (s.size() != 8 || s[2] != ':' || s[5] != ':') return false;
    return parse_int(s.substr(0, 2), 2, 2, h) && parse_int(s.substr(3, 2), 2, 2, m) &&
           parse_int(s.substr(6, 2), 2, 2, sec) && h <= 23 && m <= 59 && sec <= 60;
}

bool is_day_name(std::string s) {
    if (!s.empty() && s.back() == ',') s.pop_back();
    return s.size() >= 3 && std::all_of(s.begin(), s.end(), [](char c) {
               return std::isalpha(static_cast<unsigned char>(c)) != 0;
           });
}

// Seconds since the epoch of an HTTP-date (RFC 9110 section 5.6.7): IMF-fixdate, the obsolete
// RFC 850 form, or asctime().
std::optional<std::int64_t> parse_http_date(const std::string& value) {
    std::istringstream in(value);
    std::vector<std::string> t;
    for (std::string w; in >> w;) t.push_back(w);

    int day = 0, month = 0, year = 0, h = 0, m = 0, s = 0;
    if (t.size() == 6 && t[0].back() == ',' && is_day_name(t[0])) {
        // Sun, 06 Nov 1994 08:49:37 GMT
        month = month_number(t[2]);
        if (!parse_int(t[1], 1, 2, day) || month == 0 || !parse_int(t[3], 4, 4, year) ||
            !parse_clock(t[4], h, m, s) || t[5] != "GMT")
            return std::nullopt;
    } else if (t.size() == 4 && t[0].back() == ',' && is_day_name(t[0])) {
        // Sunday, 06-Nov-94 08:49:37 GMT
        const std::string& d = t[1];
        if (d.size() != 9 || d[2] != '-' || d[6] != '-') return std::nullopt;
        month = month_number(d.substr(3, 3));
        if (!parse_int(d.substr(0, 2), 2, 2, day) || month == 0 || !parse_int(d.substr(7, 2), 2, 2, year) ||
            !parse_clock(t[2], h, m, s) || t[3] != "GMT")
            return std::nullopt;
        year += year < 70 ? 2000 : 1900;
    } else if (t.size() == 5 && is_day_name(t[0]) && t[0].back() != ',') {
        // Sun Nov  6 08:49:37 1994
        month = month_number(t[1]);
        if (month == 0 || !parse_int(t[2], 1, 2, day) || !parse_clock(t[3], h, m, s) ||
            !parse_int(t[4], 4, 4, year))
            return std::nullopt;
    } else {
        return std::nullopt;
    }
    if (day < 1 || day > 31) return std::nullopt;
    return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
           h * 3600 + m * 60 + s;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& value,
                                                           std::chrono::system_clock::time_point now) {
    const std::string v = trim(value);
    if (v.empty()) return std::nullopt;
    if (all_digits(v)) {
        std::int64_t secs = 0;
        for (char c : v) {
            secs = secs * 10 + (c - '0');
            if (secs > kMaxRetryAfterSeconds) {
                secs = kMaxRetryAfterSeconds;
                break;
            }
        }
        return std::chrono::milliseconds(secs * 1000);
    }
    const auto when = parse_http_date(v);
    if (!when) return std::nullopt;
    const std::int64_t now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::int64_t diff = *when * 1000 - now_ms;
    if (diff <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(std::min<std::int64_t>(diff, kMaxRetryAfterSeconds * 1000));
}

RetryState::RetryState(const RetryPolicy& policy, std::uint64_t seed) : policy_(policy), rng_(seed) {}

std::optional<std::chrono::milliseconds> RetryState::next_delay(
    int attempt, std::optional<std::chrono::milliseconds> retry_after) {
    if (attempt < 2) attempt = 2;  // attempt 1 is the first try; there is nothing to wait for before it
    if (attempt > policy_.max_attempts) return std::nullopt;
    if (used_ >= policy_.run_budget) return std::nullopt;
    ++used_;

    const std::int64_t cap = std::max<std::int64_t>(0, policy_.max_delay.count());
    if (retry_after) {
        return std::chrono::milliseconds(std::clamp<std::int64_t>(retry_after->count(), 0, cap));
    }
    const std::int64_t base = std::max<std::int64_t>(0, policy_.base_delay.count());
    const int shift = attempt - 2;
    std::int64_t ceiling;
    if (base == 0) {
        ceiling = 0;
    } else if (shift >= 62 || base > (cap >> shift)) {
        ceiling = cap;
    } else {
        ceiling = std::min(cap, base << shift);
    }
    std::uniform_int_distribution<std::int64_t> dist(0, ceiling);
    return std::chrono::milliseconds(dist(rng_));
}

}  // namespace squaresync
