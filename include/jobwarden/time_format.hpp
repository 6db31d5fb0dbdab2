#pragma once
/// \file
/// Timestamps as jobwarden writes and reads them: RFC 3339 in UTC with
/// exactly three fractional digits, `2026-11-21T10:00:00.123Z`
/// (docs/contract.md). A host that shows or compares the times of the job
/// directory, or writes its own next to them, uses these two calls so that its
/// text is the same as jobwarden's to the character.
///
/// Pure arithmetic on the civil calendar: no time zone, locale or `timegm`,
/// safe from any thread, never throws.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "jobwarden/detail/time_format.hpp"

namespace jobwarden {

/// `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC; milliseconds, rounded toward
/// the past, so a formatted time never lies after the event it stamps).
/// Years outside 0000..9999 (only a broken clock) are clamped to them.
inline std::string format_rfc3339(std::chrono::system_clock::time_point time) {
  return detail::format_rfc3339(time);
}

/// Parses an RFC 3339 timestamp: `2026-11-21T10:00:00Z`, with any number of
/// fractional digits (kept to the microsecond), `t`/`z` in lower case, a
/// space instead of `T`, or an offset `+02:00` / `-05:30`. `std::nullopt` for
/// anything else, including out-of-range fields (month 13, February 29 of a
/// common year, second 61) and trailing text. A leap second (`:60`) reads as
/// second 59.
inline std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  return detail::parse_rfc3339(text);
}

}  // namespace jobwarden
