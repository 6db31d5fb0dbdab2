#pragma once
/// \file
/// Durations as users write them: `500ms`, `30s`, `5m`, `1h`, or plain seconds
/// (`2.5`). Everything inside jobwarden is `std::chrono`; this is the text form.

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

#include "jobwarden/errors.hpp"

namespace jobwarden {

/// Parses a duration; sets `ec` to `errc::invalid_duration` for anything that is
/// not a non-negative number followed by `ms`, `s`, `m`, `h` or nothing.
inline std::chrono::milliseconds parse_duration(std::string_view text, std::error_code& ec) {
  ec.clear();
  std::size_t unit_at = 0;
  bool seen_digit = false, seen_dot = false;
  while (unit_at < text.size()) {
    char c = text[unit_at];
    if (c >= '0' && c <= '9') {
      seen_digit = true;
    } else if (c == '.' && !seen_dot) {
      seen_dot = true;
    } else {
      break;
    }
    ++unit_at;
  }
  std::string_view unit = text.substr(unit_at);
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1000.0;
  else if (unit == "ms") scale = 1.0;
  else if (unit == "m") scale = 60'000.0;
  else if (unit == "h") scale = 3'600'000.0;
  if (!seen_digit || scale == 0) {
    ec = make_error_code(errc::invalid_duration);
    return {};
  }
  double value = std::strtod(std::string(text.substr(0, unit_at)).c_str(), nullptr) * scale;
  if (!std::isfinite(value) || value > 1e15) {
    ec = make_error_code(errc::invalid_duration);
    return {};
  }
  return std::chrono::milliseconds(static_cast<long long>(std::llround(value)));
}

/// Throwing form: the message quotes the text and says what is accepted.
inline std::chrono::milliseconds parse_duration(std::string_view text) {
  std::error_code ec;
  auto value = parse_duration(text, ec);
  if (ec) {
    detail::throw_error(ec, "invalid duration \"" + std::string(text.substr(0, 64)) +
                                "\": expected e.g. 500ms, 30s, 5m, 1h or plain seconds");
  }
  return value;
}

/// Renders a duration compactly for humans (`"1.5s"`, `"250ms"`, `"2m05s"`).
inline std::string format_duration(std::chrono::milliseconds d) {
  long long ms = d.count();
  std::string sign = ms < 0 ? "-" : "";
  if (ms < 0) ms = -ms;
  if (ms < 1000) return sign + std::to_string(ms) + "ms";
  if (ms < 60'000) {
    std::string s = std::to_string(ms / 1000);
    if (ms % 1000 != 0) s += "." + std::to_string((ms % 1000) / 100);
    return sign + s + "s";
  }
  long long s = ms / 1000;
  if (s < 3600) {
    std::string sec = std::to_string(s % 60);
    return sign + std::to_string(s / 60) + "m" + (sec.size() < 2 ? "0" : "") + sec + "s";
  }
  std::string min = std::to_string((s / 60) % 60);
  return sign + std::to_string(s / 3600) + "h" + (min.size() < 2 ? "0" : "") + min + "m";
}

}  // namespace jobwarden
