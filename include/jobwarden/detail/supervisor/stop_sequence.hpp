#pragma once
/// \file
/// Deadlines and the stop sequence: timeouts, stall checks (a worker's
/// heartbeat in its status file), the stop signal then SIGKILL after the
/// grace period, shutdown (by the host or by `stop.request` in the job
/// directory), the halt of fail fast (`apply_halt`), and the one timer that
/// wakes the host for the next deadline.
/// Everything here runs under the engine's `mutex`.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>


#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/detail/supervisor/deadline_warning.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/worker_report.hpp"
#include "jobwarden/detail/supervisor/worker_pause.hpp"
#include "jobwarden/detail/supervisor/worker_transitions.hpp"
#include "jobwarden/duration.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/halt_policy.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// Begins the stop sequence: the stop signal to the whole group, then
/// SIGKILL when the grace period ends (see `enforce_deadlines`). A paused
/// worker is resumed first, so that it sees the stop signal and can use its
/// grace period (also when its stop was already under way: a shutdown never
/// waits on a paused worker).
template <class Clock>
void begin_stop(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record, WorkerState reason) {
  if (record.info.state == WorkerState::running) resume_worker(s, record);
  if (record.kill_at || record.info.state != WorkerState::running) return;
  if (!record.stop_reason) record.stop_reason = reason;
  record.deadline.reset();
  if (record.info.error.empty()) {
    record.info.error =
        reason == WorkerState::timed_out ? "timed out after " + format_duration(record.spec.timeout)
        : reason == WorkerState::stalled
            ? "stalled: no report for " + format_duration(record.spec.stall_timeout)
            : "cancelled";
  }
  auto grace = record.spec.grace_period;
  Launcher& launcher = *s.options.launcher;
  if (grace.count() == 0 || record.spec.stop_signal == SIGKILL) {
    launcher.signal_tree(record.info, SIGKILL, record.context);
    record.kill_at = s.now();
    record.kill_sent = true;
  } else {
    launcher.signal_tree(record.info, record.spec.stop_signal, record.context);
    // SIGCONT too: a stopped (SIGSTOP) worker could not act on the signal.
    launcher.signal_tree(record.info, SIGCONT, record.context);
    record.kill_at = s.now() + grace;
  }
  emit(s, reason == WorkerState::timed_out ? EventKind::timed_out : EventKind::stop_requested,
       record);
}

template <class Clock>
void enforce_deadlines(EngineState<Clock>& s) {
  auto now = s.now();
  for (auto* record : running_records(s)) {
    if (record->info.paused) continue;  // its clocks stand still (worker_pause.hpp); never paused once stopping
    send_due_warning(s, *record, now);  // before a stop the same deadline may begin
    if (record->deadline && *record->deadline <= now) {
      begin_stop(s, *record, WorkerState::timed_out);
    } else if (record->stall_check_at && *record->stall_check_at <= now && !record->kill_at) {
      check_heartbeat(s, *record, now);
    } else if (record->kill_at && *record->kill_at <= now && !record->kill_sent) {
      s.options.launcher->signal_tree(record->info, SIGKILL, record->context);
      record->kill_sent = true;
      emit(s, EventKind::killed, *record);
    }
  }
}

/// Stops a worker whose last report is older than its stall limit; else
/// schedules the next look for when it would become stale.
template <class Clock>
void check_heartbeat(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record, typename Clock::time_point now) {
  auto last = last_heartbeat(s, record);
  refresh_worker_report(s, record);  // the file is looked at anyway: its message and error too
  auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now() - last);
  if (age >= record.spec.stall_timeout) {
    record.stall_check_at.reset();
    begin_stop(s, record, WorkerState::stalled);
  } else {
    record.stall_check_at = now + (record.spec.stall_timeout - age);
  }
}

template <class Clock>
std::optional<typename Clock::time_point> earliest_deadline(const EngineState<Clock>& s) {
  std::optional<typename Clock::time_point> earliest = s.job_closed ? std::nullopt : s.next_job_refresh;
  for (const auto* record : s.live) {
    if (record->info.paused) continue;  // nothing of it is due until it resumes
    std::optional<typename Clock::time_point> t = record->deadline;
    if (record->stall_check_at && (!t || *record->stall_check_at < *t)) t = record->stall_check_at;
    if (auto warn = warning_due_at(*record); warn && (!t || *warn < *t)) t = warn;
    if (record->kill_at) t = record->kill_sent ? std::nullopt : record->kill_at;
    if (t && (!earliest || *t < *earliest)) earliest = t;
  }
  for (const auto* record : s.restarting) {
    if (!earliest || *record->restart_at < *earliest) earliest = record->restart_at;
  }
  if (s.background_recovery) {  // its processes are looked at again, and its SIGKILL is due
    const auto t = s.now() + s.background_recovery->wait();
    if (!earliest || t < *earliest) earliest = t;
  }
  return earliest;
}

template <class Clock>
void arm_timer(EngineState<Clock>& s) {
  auto deadline = earliest_deadline(s);
  if (!deadline) {
    s.watcher.set_timer(std::nullopt);
    s.armed_deadline.reset();
    return;
  }
  auto now = s.now();
  // Still armed for the same future moment: nothing to change.
  if (s.armed_deadline == deadline && *deadline > now) return;
  s.watcher.set_timer(std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - now));
  s.armed_deadline = deadline;
}

template <class Clock>
void begin_shutdown_locked(EngineState<Clock>& s, std::optional<std::chrono::milliseconds> grace) {
  s.accepting = false;
  s.shutting_down = true;
  for (auto* record : s.order) {
    if (record->info.state == WorkerState::pending && !record->launching) {
      finish_unstarted(s, *record, WorkerState::cancelled, "cancelled before it started");
    } else if (record->info.state == WorkerState::running || record->launching) {
      if (grace) record->spec.grace_period = *grace;
      // A second, shorter request (a second Ctrl-C) cuts a grace period short.
      if (grace && record->kill_at && !record->kill_sent && s.now() + *grace < *record->kill_at) {
        record->kill_at = s.now() + *grace;
      }
      if (record->launching) {
        record->stop_reason = WorkerState::cancelled;
      } else {
        begin_stop(s, *record, WorkerState::cancelled);
      }
    }
  }
  s.queue.clear();
  for (auto* record : s.restarting) record->restart_at.reset();
  s.restarting.clear();
  s.job_dirty = true;
  arm_timer(s);
}

/// Applies a halt that `note_halt_outcome` marked (fail fast), once: the
/// queued workers (never started, or waiting out a restart backoff) end
/// `cancelled` saying why; with `HaltMode::now` every running worker gets the
/// stop sequence and ends `cancelled` too (one whose stop already began, a
/// timeout say, ends as that stop says). Only sends signals: never waits.
template <class Clock>
void apply_halt(EngineState<Clock>& s) {
  if (s.halt_check_due) {  // a share left for now by note_halt_outcome
    s.halt_check_due = false;
    decide_halt(s);
  }
  if (!s.halted || s.halt_applied) return;
  s.halt_applied = true;
  const bool stop_running = s.options.halt.mode == HaltMode::now;
  for (auto* record : s.order) {
    if (record->info.state == WorkerState::pending && !record->launching) {
      record->restart_at.reset();
      finish_unstarted(s, *record, WorkerState::cancelled, "cancelled before it started: " + s.halt_reason);
    } else if (!stop_running) {
      continue;
    } else if (record->launching) {
      record->info.error = "cancelled: " + s.halt_reason;
      record->stop_reason = WorkerState::cancelled;  // launch() begins the stop when done
    } else if (record->info.state == WorkerState::running && !record->kill_at) {
      record->info.error = "cancelled: " + s.halt_reason;
      begin_stop(s, *record, WorkerState::cancelled);
    }
  }
  s.queue.clear();
  s.restarting.clear();
  if (s.recorder) s.recorder->note_halt(s.halt_reason);
  s.job_dirty = true;
  arm_timer(s);
}

/// Honours `<job>/stop.request` (written by `jobwarden stop`): shuts down,
/// with the grace period the request names, if any, and removes the request.
/// Read like every file of the job directory: relative to the job's
/// descriptor, never through a symlink, never a FIFO or other special file
/// (which cannot block this call: `O_NONBLOCK`), at most
/// `max_stop_request_size` bytes. A symlink or special file named
/// `stop.request` is not a request and is ignored; a regular file is one
/// even when its content is not valid JSON (the default grace then).
/// `job_fd` is the job directory: the recorder's, or, at the end of a
/// background recovery, the one recovery holds.
template <class Clock>
void take_stop_request(EngineState<Clock>& s, int job_fd) {
  s.stop_request_unchecked = false;
  if (s.stop_requested) return;
  std::string text;
  std::error_code ec =
      read_file_at(job_fd, stop_request_file_name, text, nullptr, max_stop_request_size);
  if (ec == errc::oversized_file) {
    text.clear();
  } else if (ec == std::errc::no_such_file_or_directory || ec == std::errc::too_many_symbolic_link_levels ||
             ec == errc::not_regular_file) {
    return;
  } else if (ec) {
    // EMFILE, EIO...: the file may well be a request. Look again at the
    // next poll, which the job line's heartbeat guarantees even when idle.
    s.stop_request_unchecked = true;
    return;
  }
  s.stop_requested = true;
  ::unlinkat(job_fd, stop_request_file_name, 0);  // honoured: not for a later run
  begin_shutdown_locked(s, parse_stop_request(text).grace);
}

/// `take_stop_request` on the open job's directory (nothing without one).
template <class Clock>
void check_stop_request(EngineState<Clock>& s) {
  s.stop_request_unchecked = false;
  if (s.recorder) take_stop_request(s, s.recorder->job_dir_fd());
}


}  // namespace jobwarden::detail
