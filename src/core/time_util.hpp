// time_util.hpp: RFC 3339 timestamps as Square writes them, to and from microseconds since the
// epoch (UTC), for watermark arithmetic (greatest seen, minus an overlap).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace squaresync {

// "2016-09-04T23:59:33.123Z", "2016-09-04T23:59:33+02:00", any number of fraction digits.
std::optional<std::int64_t> parse_rfc3339(const std::string& s);
// "2016-09-04T23:59:33.123456Z"
std::string format_rfc3339(std::int64_t micros);
std::int64_t now_micros();
// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d);

}  // namespace squaresync
