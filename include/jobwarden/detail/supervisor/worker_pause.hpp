#pragma once
/// \file
/// Pausing and resuming a running worker (`JobSupervisor::pause`, `resume`)
/// and what a pause does to its clocks. Where the worker has a cgroup it is
/// frozen through `cgroup.freeze` (escapees too, and nothing inside can undo
/// it); otherwise its tree gets SIGSTOP and, to resume, SIGCONT, through the
/// launcher like every signal of the stop sequence.
///
/// While paused, the timeout and stall clocks stand still: `enforce_deadlines`
/// and `earliest_deadline` (stop_sequence.hpp) pass over a paused worker, and
/// `resume_worker` moves its `deadline` and `stall_check_at` later by the
/// time paused, and its heartbeat too (`heartbeat_floor`). A worker is never
/// paused with a `kill_at`: a pause is refused once its stop began, and
/// `begin_stop` resumes it before it sets one. Whatever is
/// derived from the deadline is computed from `deadline` when checked, so it
/// moves with it. A stop thaws the worker first (`begin_stop`), so that the
/// stop signal is seen and the grace period means something.
/// Everything here runs under the engine's `mutex`.

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/job_directory_sync.hpp"
#include "jobwarden/detail/supervisor/worker_transitions.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_event.hpp"

namespace jobwarden::detail {

/// The worker's last sign of life for its stall check: its start, its status
/// file's last write, and what a resume moved it to (`heartbeat_floor`).
template <class Clock>
std::chrono::system_clock::time_point last_heartbeat(const EngineState<Clock>& s,
                                                     const WorkerRecord<typename Clock::time_point>& record) {
  auto last = record.info.started_at.value_or(std::chrono::system_clock::now());
  if (s.recorder) {
    struct stat st;
    if (::stat(s.recorder->layout().status_file(record.info.id).c_str(), &st) == 0) {
      auto modified = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(stamp_of(st).modified_ns)));  // st_mtim, or macOS's st_mtimespec
      last = std::max(last, modified);
    }
  }
  if (record.heartbeat_floor) last = std::max(last, *record.heartbeat_floor);
  return last;
}

/// Pauses a running worker (a paused one is left as it is): freezes its
/// cgroup where it is in one, else SIGSTOP to its tree. Raises `paused`.
template <class Clock>
void pause_worker(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  if (record.info.paused || record.info.state != WorkerState::running || record.launching) return;
  const std::string& cgroup = record.context.cgroup_dir;
  // The worker may run outside its cgroup (a join the kernel refused): then
  // freezing the cgroup would stop nothing of it.
  record.frozen = !cgroup.empty() && cgroup_holds(cgroup, record.info.pid) && cgroup_freeze(cgroup, true);
  if (!record.frozen) s.options.launcher->signal_tree(record.info, SIGSTOP, record.context);
  record.info.paused = true;
  record.paused_at = s.now();
  record.paused_wall = std::chrono::system_clock::now();
  if (record.spec.stall_timeout.count() > 0) record.heartbeat_at_pause = last_heartbeat(s, record);
  record_worker(s, record);
  emit(s, EventKind::paused, record);
}

/// Resumes a paused worker (a running one is left as it is): thaws its
/// cgroup, or SIGCONT to its tree, and moves its clocks later by the time it
/// was paused. Raises `resumed`.
template <class Clock>
void resume_worker(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  if (!record.info.paused) return;
  if (record.frozen) {
    if (!cgroup_freeze(record.context.cgroup_dir, false)) {
      s.options.launcher->signal_tree(record.info, SIGCONT, record.context);  // best effort
    }
  } else {
    s.options.launcher->signal_tree(record.info, SIGCONT, record.context);
  }
  const auto paused_for = s.now() - *record.paused_at;
  if (record.deadline) *record.deadline += paused_for;
  if (record.stall_check_at) *record.stall_check_at += paused_for;
  if (record.spec.stall_timeout.count() > 0) {
    // Its heartbeat is as old now as it was when it was paused (a write
    // during the pause, by an escapee on the SIGSTOP path, counts as such).
    const auto wall_paused_for = std::chrono::system_clock::now() - record.paused_wall;
    record.heartbeat_floor = std::max(last_heartbeat(s, record),
                                      record.heartbeat_at_pause.value_or(record.paused_wall) + wall_paused_for);
  }
  record.info.paused = false;
  record.frozen = false;
  record.paused_at.reset();
  record_worker(s, record);
  emit(s, EventKind::resumed, record);
}

/// A worker that ended while paused (SIGKILL reaches a frozen process, the
/// OOM killer too): its cgroup is thawed before it goes back to the pool,
/// and it no longer reads paused. No event: its exit says what happened.
template <class Clock>
void forget_pause(WorkerRecord<typename Clock::time_point>& record) {
  if (!record.info.paused) return;
  if (record.frozen) cgroup_freeze(record.context.cgroup_dir, false);
  record.info.paused = false;
  record.frozen = false;
  record.paused_at.reset();
}

}  // namespace jobwarden::detail
