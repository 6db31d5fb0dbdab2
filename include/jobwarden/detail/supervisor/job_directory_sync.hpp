#pragma once
/// \file
/// The engine's side of the job directory: each worker's journal line
/// (appended on every state change, retried after a failed write), the job's
/// lines (its state and counts, throttled, with a heartbeat that readers on
/// other machines can see), one `fdatasync` per batch when durable, and
/// compaction. Every function here runs under the engine's `mutex`.

#include <algorithm>
#include <chrono>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// Appends the worker's record to the journal; a failed write (ENOSPC, EIO)
/// is counted and kept (`status_write_failures()`, `last_status_error()`),
/// never fatal: the record is written again at every poll until it lands.
template <class Clock>
void record_worker(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  if (!s.recorder) return;
  std::error_code ec;
  s.recorder->write_worker(record.info, ec);
  if (ec) {
    note_status_error(s, ec, s.recorder->layout().journal_file());
    if (!record.unsaved) s.unsaved.push_back(&record);  // retried at every poll
    record.unsaved = true;
  }
  s.job_dirty = true;
}

/// Retries the worker records whose last write failed (a full disk that
/// has room again): no worker's record stays behind for good.
template <class Clock>
void retry_unsaved(EngineState<Clock>& s) {
  if (s.unsaved.empty()) return;
  std::vector<WorkerRecord<typename Clock::time_point>*> failed;
  failed.swap(s.unsaved);
  for (auto* record : failed) {
    record->unsaved = false;
    std::error_code ec;
    s.recorder->write_worker(record->info, ec);
    if (ec) {
      record->unsaved = true;
      s.unsaved.push_back(record);
    }
  }
}

template <class Clock>
void note_status_error(EngineState<Clock>& s, std::error_code ec, std::string path) {
  ++s.status_write_failures;
  s.last_status_error = ec;
  s.last_status_error_path = std::move(path);
}

template <class Clock>
JobSummary summary_of(const EngineState<Clock>& s) {
  JobSummary summary;
  for (WorkerState state : all_worker_states) summary.add(state, s.counts[static_cast<std::size_t>(state)]);
  return summary;
}

/// Time to the next job line written as a heartbeat: half the job's age, at least
/// `job_summary_interval` (250 ms if that is zero), at most `job_refresh_interval`.
template <class Clock>
std::chrono::milliseconds heartbeat_interval(const EngineState<Clock>& s, typename Clock::time_point now) {
  using std::chrono::milliseconds;
  const milliseconds longest = s.options.job_refresh_interval;
  const milliseconds shortest = std::min(
      longest, s.options.job_summary_interval.count() > 0 ? s.options.job_summary_interval : milliseconds(250));
  const milliseconds half_age = std::chrono::duration_cast<milliseconds>(now - s.opened_at) / 2;
  return std::clamp(half_age, shortest, longest);
}

/// The job-line part of `flush_job`.
template <class Clock>
void write_job_line(EngineState<Clock>& s) {
  if (s.job_closed) {
    if (!s.exit_status_unwritten) return;
    // The host's exit status came after the final line: that line once more
    // (the same terminal state, which the recorder accepts) with it.
    std::error_code ec;
    s.recorder->write_job(s.last_job_state, summary_of(s), ec);
    if (ec) note_status_error(s, ec, s.recorder->layout().journal_file());  // retried at the next poll
    else s.exit_status_unwritten = false;
    return;
  }
  auto now = s.now();
  if (s.next_job_refresh && *s.next_job_refresh <= now) s.job_dirty = true;
  if (!s.job_dirty) return;
  JobSummary summary = summary_of(s);
  JobState state = JobState::running;
  bool final = !s.accepting && s.active == 0;
  if (final) {
    state = job_state_from_workers(summary);
    // No worker ever (`job_state_from_workers` says pending only then: the
    // end cancels queued ones): nothing ran, so an idle job that never had a
    // worker ends `cancelled`, not `succeeded`. Forgotten workers still
    // count here: their counts stay.
    if (state == JobState::pending) state = JobState::cancelled;
    // A halt cancels workers because others failed: the job failed (a stop
    // requested on top of it still makes it cancelled).
    if (s.halted && !s.shutting_down && state == JobState::cancelled) state = JobState::failed;
  } else if (s.active == 0 && !s.shutting_down && !s.halted) {
    // Alive, nothing queued, starting, running or restarting, and able to
    // take work (a halted job cancels what it is given: it stays `running`
    // until its end says `failed`).
    state = JobState::idle;
  } else if (summary.pending == summary.total && s.running == 0) {
    state = JobState::pending;
  }
  // Counts alone: at most one write per job_summary_interval (the timer
  // brings the held-back one).
  const auto interval = s.options.job_summary_interval;
  if (!final && s.last_job_write && s.last_job_state == state && interval.count() > 0 &&
      now < *s.last_job_write + interval) {
    const auto due = *s.last_job_write + interval;
    if (!s.next_job_refresh || due < *s.next_job_refresh) s.next_job_refresh = due;
    return;
  }
  std::error_code ec;
  s.recorder->write_job(state, summary, ec);
  if (ec) {
    note_status_error(s, ec, s.recorder->layout().journal_file());
    return;  // still dirty: retried at the next poll
  }
  s.last_job_write = now;
  s.last_job_state = state;
  s.job_dirty = false;
  s.job_closed = final;
  s.exit_status_unwritten = false;
  if (s.options.job_refresh_interval.count() > 0 && !final) {
    s.next_job_refresh = now + heartbeat_interval(s, now);
  } else {
    s.next_job_refresh.reset();
  }
}

/// Brings the journal up to date: the job line (`idle` while no worker is
/// queued, starting, running or restarting, `pending` while every worker
/// waits to start, `running` while the supervisor has work, and once it
/// accepts no more and every worker is terminal, the final state, written
/// once), then one `fdatasync` for everything appended since the last (when
/// durable), then a compaction when the journal has grown large.
template <class Clock>
void flush_job(EngineState<Clock>& s) {
  if (!s.recorder) return;
  retry_unsaved(s);
  write_job_line(s);
  std::error_code ec;
  s.recorder->sync(ec);
  if (ec) note_status_error(s, ec, s.recorder->layout().journal_file());
  s.recorder->compact_if_due(ec);
  if (ec) note_status_error(s, ec, s.recorder->layout().journal_file());
}

}  // namespace jobwarden::detail
