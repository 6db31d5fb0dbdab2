#pragma once
/// \file
/// A worker's state changes and the events they raise: the one place a
/// worker's state changes (`set_state`, transitions checked by
/// `is_allowed_transition`, every change written to the job directory), the
/// failure count of fail fast, the event queue that `poll()` delivers, the
/// walk over running workers, and taking queued workers off the queue into
/// free slots. Everything here runs under the engine's `mutex`.

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/job_directory_sync.hpp"
#include "jobwarden/halt_policy.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// The workers whose process runs, as a copy (callers reap while they walk).
/// Kept as a list so that poll() costs what runs, not what ever ran.
template <class Clock>
std::vector<WorkerRecord<typename Clock::time_point>*> running_records(EngineState<Clock>& s) {
  return s.live;
}

template <class Clock>
void emit(EngineState<Clock>& s, EventKind kind, const WorkerRecord<typename Clock::time_point>& record) {
  s.events.push_back(WorkerEvent{kind, record.info});
}

/// Marks the job halted once its failures reach the halt policy's
/// threshold (the share of a percentage is of the workers submitted by now),
/// for `apply_halt` (stop_sequence.hpp) at the next step of `poll()`.
template <class Clock>
void decide_halt(EngineState<Clock>& s) {
  const HaltPolicy& policy = s.options.halt;
  // Every worker counts, forgotten ones too (`counts` keeps them).
  std::size_t submitted = 0;
  for (std::size_t n : s.counts) submitted += n;
  if (s.halted || s.shutting_down || !policy.reached(s.halt_failures, submitted)) return;
  s.halted = true;
  // "after 1 worker", "after 3 workers", "after 3 of 10 workers".
  std::string how_many = std::to_string(s.halt_failures);
  if (policy.fail_percent_hundredths != 0) how_many += " of " + std::to_string(submitted);
  const bool one = how_many == "1";
  s.halt_reason = "the job halted after " + how_many + (one ? " worker" : " workers") +
                  " did not succeed (halt policy " + to_string(policy) + ")";
}

/// Counts a worker that ended for good towards the halt policy
/// (halt_policy.hpp: every terminal state but `succeeded` and `cancelled`
/// counts) and decides whether the job halts. A share of the workers is
/// decided at once only for an exit that `poll()` reads; a worker that could
/// not start (inside `submit()`, or at a start outside that step) is decided
/// by the next `apply_halt`, so that the workers submitted with it count
/// too: a job submitted all at once is not halted by its first worker's
/// failure to start, as the first 1 of 1.
template <class Clock>
void note_halt_outcome(EngineState<Clock>& s, WorkerState final_state) {
  if (final_state == WorkerState::succeeded || final_state == WorkerState::cancelled) return;
  ++s.halt_failures;
  if (s.options.halt.fail_percent_hundredths != 0 && !s.reading_exits) {
    s.halt_check_due = true;
    return;
  }
  decide_halt(s);
}

/// The one place a worker's state changes (transitions checked by
/// `is_allowed_transition`); every change reaches the job directory.
template <class Clock>
void set_state(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record, WorkerState next) {
  if (!is_allowed_transition(record.info.state, next)) return;
  bool was_active = !is_terminal(record.info.state);
  --s.counts[static_cast<std::size_t>(record.info.state)];
  ++s.counts[static_cast<std::size_t>(next)];
  record.info.state = next;
  if (was_active && is_terminal(next)) {
    --s.active;
    note_halt_outcome(s, next);
  }
  record_worker(s, record);
}

template <class Clock>
void finish_unstarted(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record, WorkerState final_state, std::string error) {
  record.info.error = std::move(error);
  record.info.ended_at = std::chrono::system_clock::now();
  if (record.input && record.input->pending() > 0) {
    // Bytes the host wrote for an attempt that never came.
    record.info.input_error = "the worker never ran: " + std::to_string(record.input->pending()) +
                              " bytes of stdin dropped";
    record.input->end_attempt();
    record.info.stdin_pending_bytes = 0;
  }
  set_state(s, record, final_state);
  emit(s, EventKind::exited, record);
}

/// The queue (under `mutex`): pops queued workers while slots are free and
/// reserves a slot for each, highest priority first (launch_queue.hpp);
/// restarts whose backoff is over rejoin it first.
template <class Clock>
std::vector<WorkerRecord<typename Clock::time_point>*> take_launchable(EngineState<Clock>& s) {
  using Record = WorkerRecord<typename Clock::time_point>;
  std::vector<Record*> out;
  if (s.background_recovery) return out;  // nothing starts before the job is recovered and opened
  if (!s.restarting.empty()) {
    auto now = s.now();
    // A restart goes back to its place: its priority, its submission order
    // (ahead of the workers of its priority submitted after it).
    for (Record* record : s.restarting) {
      if (*record->restart_at <= now) s.queue.push(record);
    }
    s.restarting.erase(std::remove_if(s.restarting.begin(), s.restarting.end(),
                                      [&](Record* r) {
                                        if (*r->restart_at > now) return false;
                                        r->restart_at.reset();
                                        return true;
                                      }),
                       s.restarting.end());
  }
  while (!s.queue.empty() && s.running < s.options.max_concurrency && !s.shutting_down && !s.halted) {
    int shared_slot;
    if (!s.shared_slots.take(shared_slot)) break;  // in line: woken when a slot frees
    Record* record = s.queue.pop();
    record->shared_slot = shared_slot;
    record->launching = true;
    ++s.running;
    out.push_back(record);
  }
  if (s.queue.empty() || s.running >= s.options.max_concurrency || s.shutting_down || s.halted) {
    s.shared_slots.withdraw();
  }
  return out;
}

}  // namespace jobwarden::detail
