#pragma once
/// \file
/// The state of a whole job and the summary counts of its workers (docs/contract.md's
/// aggregated status): shared vocabulary of the supervisor, which records them
/// in the journal's job lines, and the aggregator, which derives them from the workers.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// Where a job is in its life. `succeeded`, `failed`, `cancelled` and `lost` are final.
enum class JobState {
  pending,    ///< workers were submitted and none has started yet
  running,    ///< its supervisor is alive and at least one worker has started
  succeeded,  ///< finished, and every worker succeeded
  failed,     ///< finished, and at least one worker ended in another terminal state
  cancelled,  ///< finished because it was stopped on request
  lost,       ///< its supervisor died while workers were not terminal
  /// Its supervisor is alive and has nothing to do now: no worker queued,
  /// starting, running or waiting to restart (it may have finished ones, or
  /// none at all), and it has not been shut down. Not final: a worker
  /// submitted next makes it `pending` or `running` again. Declared last so
  /// that the values above keep their numbers.
  idle,
};

/// Every job state, in declaration order.
inline constexpr std::array<JobState, 7> all_job_states = {
    JobState::pending, JobState::running,   JobState::succeeded, JobState::failed,
    JobState::cancelled, JobState::lost,    JobState::idle};

/// The state's name as written in the journal and the aggregated JSON.
constexpr std::string_view to_string(JobState s) noexcept {
  switch (s) {
    case JobState::pending: return "pending";
    case JobState::running: return "running";
    case JobState::succeeded: return "succeeded";
    case JobState::failed: return "failed";
    case JobState::cancelled: return "cancelled";
    case JobState::lost: return "lost";
    case JobState::idle: return "idle";
  }
  return "unknown";
}

/// Parses a job state name; `std::nullopt` for anything else.
inline std::optional<JobState> job_state_from_string(std::string_view name) noexcept {
  for (JobState s : all_job_states) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

/// Whether the job is over: nothing moves a job out of a terminal state (a
/// client that sees a finished job set back to running waits forever).
constexpr bool is_terminal(JobState s) noexcept {
  return s != JobState::pending && s != JobState::running && s != JobState::idle;
}

/// How many workers are in which state. `failed` counts every terminal state
/// but `succeeded` (docs/contract.md); `done` = `succeeded` + `failed`.
struct JobSummary {
  std::size_t total = 0;
  std::size_t pending = 0;
  std::size_t running = 0;
  std::size_t succeeded = 0;
  std::size_t failed = 0;
  std::size_t done = 0;
  /// Of `failed`: how many were cancelled, and how many lost (they decide the job state).
  std::size_t cancelled = 0;
  std::size_t lost = 0;

  /// Counts `n` more workers (one by default) in state `s`.
  constexpr void add(WorkerState s, std::size_t n = 1) noexcept {
    total += n;
    switch (s) {
      case WorkerState::pending: pending += n; return;
      case WorkerState::running: running += n; return;
      case WorkerState::succeeded: succeeded += n; done += n; return;
      case WorkerState::cancelled: cancelled += n; break;
      case WorkerState::lost: lost += n; break;
      default: break;
    }
    failed += n;
    done += n;
  }

  /// Whether every worker is in a terminal state (true for an empty job).
  constexpr bool all_terminal() const noexcept { return done == total; }
};

/// The job state its workers imply once its supervisor is gone or finished:
/// `pending` while none started, `running` while any is not terminal, and when
/// all are terminal: `lost` if any was lost, else `cancelled` if any was
/// cancelled, else `failed` if any did not succeed, else `succeeded`.
/// A live supervisor may still add workers, so it writes the terminal state
/// itself (`JobRecorder::write_job`); the aggregator uses this for the rest.
constexpr JobState job_state_from_workers(const JobSummary& summary) noexcept {
  if (summary.total == 0 || summary.pending == summary.total) return JobState::pending;
  if (!summary.all_terminal()) return JobState::running;
  if (summary.lost > 0) return JobState::lost;
  if (summary.cancelled > 0) return JobState::cancelled;
  if (summary.failed > 0) return JobState::failed;
  return JobState::succeeded;
}

}  // namespace jobwarden
