#pragma once
/// \file
/// Fail fast: `HaltPolicy`, when a job stops starting workers (and, with
/// `now`, stops the running ones) because too many did not succeed, and
/// `parse_halt`, which reads the text form `soon,fail=3`, `now,fail=10%`.
///
/// What counts as a failure: a worker that reaches a terminal state other
/// than `succeeded` and `cancelled` *for good* — `failed`, `crashed`,
/// `timed_out`, `stalled`, `spawn_failed` or `lost`. An attempt that its
/// restart policy starts again does not count; the worker counts once, when
/// it gives up. A cancelled worker never counts: a cancel is the host's
/// decision (or the halt's own), not the worker's failure.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace jobwarden {

/// What a halt does to the workers that are still running.
enum class HaltMode {
  never,  ///< no halt: every worker runs whatever the others did (the default)
  soon,   ///< start nothing new; the running workers finish on their own
  now,    ///< start nothing new and stop the running ones (stop sequence; they end `cancelled`)
};

/// The name of a halt mode (`"soon"`).
constexpr std::string_view to_string(HaltMode mode) noexcept {
  switch (mode) {
    case HaltMode::never: return "never";
    case HaltMode::soon: return "soon";
    case HaltMode::now: return "now";
  }
  return "unknown";
}

/// When a job halts: after `fail_count` failures, or once the failures are
/// `fail_percent_hundredths / 100` percent of the workers submitted so far
/// (the job's total once everything is submitted, as with `jobwarden run`).
/// A share is decided inside `poll()`: a worker that cannot start inside
/// `submit()` counts against every worker submitted before the next poll, so
/// a job submitted all at once is measured against all of its workers.
///
/// Once halted, queued workers (never started, or waiting out a restart
/// backoff) end `cancelled` with an error saying why, nothing restarts, and
/// a worker submitted later ends `cancelled` at once. With `now` the running
/// workers get the stop sequence and end `cancelled` too.
struct HaltPolicy {
  HaltMode mode = HaltMode::never;
  /// Halt at this many failures (at least 1); unused when a percentage is set.
  std::size_t fail_count = 1;
  /// A percentage in hundredths (1000 is 10%, 1 is 0.01%; at most 10000),
  /// or 0 for `fail_count` instead. The halt comes when
  /// `failures * 10000 >= fail_percent_hundredths * submitted`: with 10%
  /// and 25 workers, at the third failure.
  std::uint32_t fail_percent_hundredths = 0;

  /// Whether the policy can ever halt a job.
  constexpr bool enabled() const noexcept { return mode != HaltMode::never; }

  /// Whether `failures` workers that did not succeed, of `submitted` workers
  /// submitted so far, are enough to halt.
  constexpr bool reached(std::size_t failures, std::size_t submitted) const noexcept {
    if (!enabled() || failures == 0) return false;
    if (fail_percent_hundredths == 0) return failures >= fail_count;
    return static_cast<std::uint64_t>(failures) * 10000U >=
           static_cast<std::uint64_t>(fail_percent_hundredths) * submitted;
  }
};

/// The text form of `policy`: `never`, `soon,fail=3`, `now,fail=12.5%`.
inline std::string to_string(const HaltPolicy& policy) {
  if (!policy.enabled()) return "never";
  std::string text(to_string(policy.mode));
  text += ",fail=";
  if (policy.fail_percent_hundredths == 0) return text + std::to_string(policy.fail_count);
  text += std::to_string(policy.fail_percent_hundredths / 100);
  if (const std::uint32_t fraction = policy.fail_percent_hundredths % 100; fraction != 0) {
    text += '.';
    text += static_cast<char>('0' + fraction / 10);
    if (fraction % 10 != 0) text += static_cast<char>('0' + fraction % 10);
  }
  return text + "%";
}

/// Reads a halt policy: `never`, or `MODE,fail=N` where MODE is `soon` or
/// `now` and N a count of at least 1 or a percentage above 0 and at most
/// 100 with up to two decimals (`fail=10%`, `fail=2.5%`). On bad text
/// returns `std::nullopt` and sets `error` to one line naming what is wrong
/// (`fail=0: the count must be at least 1`).
inline std::optional<HaltPolicy> parse_halt(std::string_view text, std::string& error) {
  error.clear();
  auto fail = [&error](std::string message) -> std::optional<HaltPolicy> {
    error = std::move(message);
    return std::nullopt;
  };
  auto quoted = [](std::string_view s) {
    std::string out = "\"";
    for (char c : s.substr(0, 40)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    return out + (s.size() > 40 ? "...\"" : "\"");
  };
  if (text == "never") return HaltPolicy{};
  const std::size_t comma = text.find(',');
  const std::string_view mode_text = text.substr(0, comma);
  HaltPolicy policy;
  if (mode_text == "soon") {
    policy.mode = HaltMode::soon;
  } else if (mode_text == "now") {
    policy.mode = HaltMode::now;
  } else {
    return fail("expected soon,fail=N, now,fail=N or never, not " + quoted(mode_text.empty() ? text : mode_text));
  }
  if (comma == std::string_view::npos) {
    return fail(std::string(mode_text) + " needs a threshold: " + std::string(mode_text) + ",fail=N or " +
                std::string(mode_text) + ",fail=N%");
  }
  const std::string_view condition = text.substr(comma + 1);
  constexpr std::string_view prefix = "fail=";
  if (condition.substr(0, prefix.size()) != prefix) {
    return fail("expected fail=N or fail=N% after \"" + std::string(mode_text) + ",\", not " + quoted(condition));
  }
  std::string_view number = condition.substr(prefix.size());
  const bool percent = !number.empty() && number.back() == '%';
  if (percent) number.remove_suffix(1);
  // Digits, then (for a percentage) at most two decimals.
  const std::size_t point = percent ? number.find('.') : std::string_view::npos;
  const std::string_view whole = number.substr(0, point);
  const std::string_view decimals = point == std::string_view::npos ? std::string_view{} : number.substr(point + 1);
  auto all_digits = [](std::string_view s) {
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  const bool well_formed = !whole.empty() && all_digits(whole) && all_digits(decimals) &&
                           (point == std::string_view::npos || (!decimals.empty() && decimals.size() <= 2));
  if (!well_formed) {
    return fail(quoted(condition) + ": expected a count (fail=3) or a percentage with at most two decimals "
                                    "(fail=10%, fail=2.5%)");
  }
  const std::string_view digits = whole.substr(std::min(whole.find_first_not_of('0'), whole.size()));
  if (digits.size() > 9) {
    return fail(quoted(condition) + (percent ? ": the percentage must be at most 100%" : ": the count is too large"));
  }
  std::uint64_t value = 0;
  for (char c : digits) value = value * 10 + static_cast<std::uint64_t>(c - '0');
  if (!percent) {
    if (value == 0) return fail(quoted(condition) + ": the count must be at least 1");
    policy.fail_count = static_cast<std::size_t>(value);
    return policy;
  }
  std::uint64_t hundredths = value * 100;
  if (!decimals.empty()) hundredths += static_cast<std::uint64_t>(decimals[0] - '0') * 10;
  if (decimals.size() > 1) hundredths += static_cast<std::uint64_t>(decimals[1] - '0');
  if (hundredths == 0) return fail(quoted(condition) + ": the percentage must be above 0%");
  if (hundredths > 10000) return fail(quoted(condition) + ": the percentage must be at most 100%");
  policy.fail_percent_hundredths = static_cast<std::uint32_t>(hundredths);
  return policy;
}

}  // namespace jobwarden
