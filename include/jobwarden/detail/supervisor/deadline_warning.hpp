#pragma once
/// \file
/// The warning before the deadline (`WorkerSpec::warning`, Slurm's
/// `--signal=SIG@T`): a signal to the worker's tree some time before its
/// timeout, so it can save partial results. Its time is never stored: it is
/// `deadline - before`, worked out from the deadline as it stands whenever it
/// is checked, so a deadline that moves (a paused worker's) takes it along;
/// only whether this attempt was warned is kept. Sent through the launcher's
/// `signal_tree`, the way the stop signal is, once per attempt, and only to a
/// worker that still runs and whose stop has not begun.
/// Everything here runs under the engine's `mutex`.

#include <optional>

#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/worker_transitions.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// When `record`'s warning is due, or nothing when none is owed (no warning
/// asked for, no deadline, already warned, its stop begun).
template <class TimePoint>
std::optional<TimePoint> warning_due_at(const WorkerRecord<TimePoint>& record) {
  if (!record.spec.warning || record.warned || !record.deadline || record.kill_at ||
      record.info.state != WorkerState::running || record.launching) {
    return std::nullopt;
  }
  return *record.deadline - record.spec.warning->before;
}

/// Sends `record`'s warning if it is due at `now` (`EventKind::warned`).
template <class Clock>
void send_due_warning(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record,
                      typename Clock::time_point now) {
  auto due = warning_due_at(record);
  // A deadline that has passed as well (a host that polled late) gets its
  // stop at once: a warning then would give the worker no time to use.
  if (!due || *due > now || *record.deadline <= now) return;
  record.warned = true;
  s.options.launcher->signal_tree(record.info, record.spec.warning->signal, record.context);
  emit(s, EventKind::warned, record);
}

}  // namespace jobwarden::detail
