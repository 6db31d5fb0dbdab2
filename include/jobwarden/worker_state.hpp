#pragma once
/// \file
/// The states a worker goes through (docs/contract.md), their names on disk and in JSON,
/// and the one place that decides which transitions are allowed.

#include <array>
#include <optional>
#include <string_view>

namespace jobwarden {

/// Where a worker is in its life. Terminal states are final.
enum class WorkerState {
  pending,       ///< submitted, waiting for a free slot (or a restart backoff)
  running,       ///< its process was started and has not been reaped yet
  succeeded,     ///< exited 0
  failed,        ///< exited non-zero (`exit_code` set)
  crashed,       ///< killed by a signal that jobwarden did not send (`signal` set)
  timed_out,     ///< its wall-clock limit passed and jobwarden stopped it
  stalled,       ///< its last report was older than its stall limit and jobwarden stopped it
  cancelled,     ///< stopped on request (cancel, shutdown, `jobwarden stop`, SIGINT/SIGTERM)
  spawn_failed,  ///< it never ran (`error` says why)
  lost,          ///< its supervisor died and nothing of it runs any more
};

/// Every state, in declaration order.
inline constexpr std::array<WorkerState, 10> all_worker_states = {
    WorkerState::pending,   WorkerState::running,   WorkerState::succeeded,
    WorkerState::failed,    WorkerState::crashed,   WorkerState::timed_out,
    WorkerState::stalled,   WorkerState::cancelled, WorkerState::spawn_failed,
    WorkerState::lost};

/// The state's name as written in status files and JSON (`"timed_out"`).
constexpr std::string_view to_string(WorkerState s) noexcept {
  switch (s) {
    case WorkerState::pending: return "pending";
    case WorkerState::running: return "running";
    case WorkerState::succeeded: return "succeeded";
    case WorkerState::failed: return "failed";
    case WorkerState::crashed: return "crashed";
    case WorkerState::timed_out: return "timed_out";
    case WorkerState::stalled: return "stalled";
    case WorkerState::cancelled: return "cancelled";
    case WorkerState::spawn_failed: return "spawn_failed";
    case WorkerState::lost: return "lost";
  }
  return "unknown";
}

/// Parses a state name; `std::nullopt` for anything else.
inline std::optional<WorkerState> worker_state_from_string(std::string_view name) noexcept {
  for (WorkerState s : all_worker_states) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

/// Whether `s` is final: nothing moves a worker out of a terminal state.
constexpr bool is_terminal(WorkerState s) noexcept {
  return s != WorkerState::pending && s != WorkerState::running;
}

/// The single rule for state changes: terminal states are final (a job set
/// back to `running` after it completed is the bug this prevents); `running`
/// may go back to `pending` only when a restart is scheduled.
constexpr bool is_allowed_transition(WorkerState from, WorkerState to) noexcept {
  if (is_terminal(from)) return false;
  if (from == to) return true;
  if (from == WorkerState::pending) return true;
  return to != WorkerState::running;  // running -> pending (restart) or terminal
}

}  // namespace jobwarden
