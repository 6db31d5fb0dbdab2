#pragma once
/// \file
/// The one place that turns wall-clock times into text and back. Every
/// timestamp jobwarden writes or reads is RFC 3339 in UTC with exactly three
/// fractional digits: `2026-11-21T10:00:00.123Z` (docs/contract.md).
///
/// The conversions are pure arithmetic on the civil calendar (Howard Hinnant's
/// `days_from_civil` algorithms), so they depend on neither the time zone, the
/// locale nor `timegm`, and are safe to call from any thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace jobwarden::detail {

/// Days since 1970-01-01 of a proleptic Gregorian date.
constexpr std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day) noexcept {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const auto year_of_era = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + static_cast<std::int64_t>(day_of_era) - 719468;
}

/// A civil date (the inverse of `days_from_civil`).
struct CivilDate {
  std::int64_t year;
  unsigned month;
  unsigned day;
};

/// The proleptic Gregorian date `days` after 1970-01-01.
constexpr CivilDate civil_from_days(std::int64_t days) noexcept {
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto day_of_era = static_cast<unsigned>(days - era * 146097);
  const unsigned year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const unsigned day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const unsigned month_index = (5 * day_of_year + 2) / 153;
  const unsigned day = day_of_year - (153 * month_index + 2) / 5 + 1;
  const unsigned month = month_index < 10 ? month_index + 3 : month_index - 9;
  const std::int64_t year = static_cast<std::int64_t>(year_of_era) + era * 400 + (month <= 2 ? 1 : 0);
  return {year, month, day};
}

/// Formats `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds, rounded
/// toward the past so a formatted time never lies in the future of the event).
inline std::string format_rfc3339(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const std::int64_t total_ms = floor<milliseconds>(time.time_since_epoch()).count();
  constexpr std::int64_t ms_per_day = 86'400'000;
  std::int64_t days = total_ms / ms_per_day;
  std::int64_t ms_of_day = total_ms % ms_per_day;
  if (ms_of_day < 0) {
    ms_of_day += ms_per_day;
    days -= 1;
  }
  const CivilDate date = civil_from_days(days);
  const auto hours = static_cast<int>(ms_of_day / 3'600'000);
  const auto minutes = static_cast<int>(ms_of_day / 60'000 % 60);
  const auto seconds = static_cast<int>(ms_of_day / 1000 % 60);
  const auto millis = static_cast<int>(ms_of_day % 1000);

  // Years outside 0000..9999 cannot be written in RFC 3339; clamp rather than
  // emit something no reader accepts (only a broken clock gets here).
  std::int64_t year = date.year < 0 ? 0 : (date.year > 9999 ? 9999 : date.year);
  char text[32];
  auto put = [&text](int at, std::int64_t value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      text[at + i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  put(0, year, 4);
  text[4] = '-';
  put(5, date.month, 2);
  text[7] = '-';
  put(8, date.day, 2);
  text[10] = 'T';
  put(11, hours, 2);
  text[13] = ':';
  put(14, minutes, 2);
  text[16] = ':';
  put(17, seconds, 2);
  text[19] = '.';
  put(20, millis, 3);
  text[23] = 'Z';
  return std::string(text, 24);
}

/// Parses an RFC 3339 timestamp: `2026-11-21T10:00:00Z`, with any number of
/// fractional digits (kept to the microsecond), `t`/`z` in lower case, a space
/// instead of `T`, or an offset `+02:00` / `-05:30`. `std::nullopt` for
/// anything else, including out-of-range fields (month 13, second 61).
inline std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  using namespace std::chrono;
  std::size_t at = 0;
  auto digits = [&](int count, int& out) {
    if (at + static_cast<std::size_t>(count) > text.size()) return false;
    out = 0;
    for (int i = 0; i < count; ++i) {
      char c = text[at++];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    return true;
  };
  auto expect = [&](std::string_view any_of) {
    if (at >= text.size() || any_of.find(text[at]) == std::string_view::npos) return false;
    ++at;
    return true;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(4, year) || !expect("-") || !digits(2, month) || !expect("-") || !digits(2, day) ||
      !expect("Tt ") || !digits(2, hour) || !expect(":") || !digits(2, minute) || !expect(":") ||
      !digits(2, second)) {
    return std::nullopt;
  }
  static constexpr int days_in_month[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > days_in_month[month - 1] || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  const bool leap_year = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap_year) return std::nullopt;
  if (second == 60) second = 59;  // a leap second: the closest representable instant

  std::int64_t micros = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    int fraction_digits = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      if (fraction_digits < 6) micros = micros * 10 + (text[at] - '0');
      ++fraction_digits;
      ++at;
    }
    if (fraction_digits == 0) return std::nullopt;
    for (int i = fraction_digits; i < 6; ++i) micros *= 10;
  }

  std::int64_t offset_seconds = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    const int sign = text[at] == '-' ? -1 : 1;
    ++at;
    int offset_hours = 0, offset_minutes = 0;
    if (!digits(2, offset_hours) || !expect(":") || !digits(2, offset_minutes) ||
        offset_hours > 23 || offset_minutes > 59) {
      return std::nullopt;
    }
    offset_seconds = sign * (offset_hours * 3600 + offset_minutes * 60);
  } else {
    return std::nullopt;
  }
  if (at != text.size()) return std::nullopt;

  const std::int64_t days =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t seconds_since_epoch =
      days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  return system_clock::time_point(
      duration_cast<system_clock::duration>(microseconds(seconds_since_epoch * 1'000'000 + micros)));
}

/// Seconds between two times as a double rounded to the millisecond (the
/// aggregated JSON's `elapsed_seconds`).
inline double seconds_between(std::chrono::system_clock::time_point from,
                              std::chrono::system_clock::time_point to) noexcept {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
  return static_cast<double>(ms) / 1000.0;
}

}  // namespace jobwarden::detail
