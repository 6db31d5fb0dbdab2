#pragma once
/// \file
/// The restart policy as a pure decision: given a worker's `RestartSpec` and
/// how its attempt ended, whether it starts again, after what delay, and if
/// not, why. No process, clock or lock is involved, so every rule (backoff
/// growth and cap, jitter, permanent exit codes, the restart limit, the rate
/// limit) can be tested on its own; `JobSupervisor` calls it when a worker
/// ends and does what it says.

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "jobwarden/duration.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// How one attempt of a worker ended, as the restart policy needs it.
struct AttemptEnd {
  /// The state it would end in without a restart (`failed`, `timed_out`...).
  WorkerState state = WorkerState::failed;
  /// Its exit code, when it exited normally.
  std::optional<int> exit_code;
  /// The supervisor had begun stopping it (timeout, stall, cancel): its exit
  /// code is the answer to a signal, not a verdict of its own.
  bool stopped_by_supervisor = false;
};

/// Why a worker is, or is not, started again.
enum class RestartReason {
  restart,              ///< it starts again after `RestartDecision::delay`
  policy,               ///< the policy does not restart this end (never; a success under on_failure; a cancel; a lost worker)
  permanent_exit_code,  ///< it exited with one of `permanent_failure_exit_codes`
  max_restarts,         ///< it used up `max_restarts`
  rate_limit,           ///< `burst_limit` restarts within `burst_window` already: it ends `failed`
};

/// What the restart policy decided.
struct RestartDecision {
  RestartReason reason = RestartReason::policy;
  /// The wait before the next attempt (zero unless `restart()`).
  std::chrono::milliseconds delay{0};
  /// The state the worker ends in when it is not restarted: the attempt's
  /// own, except after the rate limit (`failed`).
  WorkerState final_state = WorkerState::failed;
  /// What to say of the decision in the worker's error, empty for nothing:
  /// replaces the error for a permanent exit code, is appended to it otherwise.
  std::string note;

  bool restart() const noexcept { return reason == RestartReason::restart; }
};

/// The name of a restart reason (`"rate_limit"`).
constexpr const char* to_string(RestartReason reason) noexcept {
  switch (reason) {
    case RestartReason::restart: return "restart";
    case RestartReason::policy: return "policy";
    case RestartReason::permanent_exit_code: return "permanent_exit_code";
    case RestartReason::max_restarts: return "max_restarts";
    case RestartReason::rate_limit: return "rate_limit";
  }
  return "unknown";
}

/// Decides whether a worker whose attempt number `attempt` (1-based) ended as
/// `ended` starts again.
///
/// - `recent_restarts`: the times of its earlier restarts (any iterable of
///   time points, oldest first); only those within `spec.burst_window` of
///   `now` count against `spec.burst_limit`.
/// - `jitter(low, high)`: a random factor in [low, high], called only when
///   `spec.jitter > 0`, with low = 1 - jitter and high = 1 + jitter.
///
/// The delay before restart number n (n = attempt) is
/// `initial_backoff * backoff_multiplier^(n-1)`, at most `max_backoff`, then
/// times the jitter factor. A cancelled or lost worker is never restarted.
template <class TimePoints, class TimePoint, class Jitter>
RestartDecision decide_restart(const RestartSpec& spec, const AttemptEnd& ended, int attempt,
                               const TimePoints& recent_restarts, TimePoint now, Jitter&& jitter) {
  RestartDecision decision;
  decision.final_state = ended.state;
  if (spec.policy == RestartPolicy::never) return decision;
  if (ended.state == WorkerState::cancelled || ended.state == WorkerState::lost) return decision;
  if (spec.policy == RestartPolicy::on_failure && ended.state == WorkerState::succeeded) return decision;
  const auto& permanent = spec.permanent_failure_exit_codes;
  if (ended.exit_code && !ended.stopped_by_supervisor &&
      std::find(permanent.begin(), permanent.end(), *ended.exit_code) != permanent.end()) {
    decision.reason = RestartReason::permanent_exit_code;
    decision.note = "exit code " + std::to_string(*ended.exit_code) +
                    " means permanent failure: not restarted";
    return decision;
  }
  const int restarts_done = attempt - 1;
  if (restarts_done >= spec.max_restarts) {
    decision.reason = RestartReason::max_restarts;
    if (ended.state != WorkerState::succeeded) {
      decision.note = "gave up after " + std::to_string(restarts_done) + " restarts";
    }
    return decision;
  }
  std::size_t recent = 0;
  for (const auto& at : recent_restarts) {
    if (!(now - at > spec.burst_window)) ++recent;
  }
  if (static_cast<int>(recent) >= spec.burst_limit) {
    decision.reason = RestartReason::rate_limit;
    decision.final_state = WorkerState::failed;
    decision.note = "restart rate limit: " + std::to_string(recent) + " restarts within " +
                    format_duration(spec.burst_window);
    return decision;
  }
  double delay = static_cast<double>(spec.initial_backoff.count());
  for (int i = 0; i < restarts_done; ++i) delay *= spec.backoff_multiplier;
  delay = std::min(delay, static_cast<double>(spec.max_backoff.count()));
  if (spec.jitter > 0) delay *= jitter(1.0 - spec.jitter, 1.0 + spec.jitter);
  decision.reason = RestartReason::restart;
  decision.delay = std::chrono::milliseconds(static_cast<long long>(delay));
  return decision;
}

}  // namespace jobwarden
