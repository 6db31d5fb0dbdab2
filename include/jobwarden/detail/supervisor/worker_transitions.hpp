#pragma once
/// \file
/// A worker's state changes and the events they raise: the one place a
/// worker's state changes (`set_state`, transitions checked by
/// `is_allowed_transition`, every change written to the job directory), the
/// event queue that `poll()` delivers, and the walk over running workers.
/// Everything here runs under the engine's `mutex`.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/job_directory_sync.hpp"
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

/// The one place a worker's state changes (transitions checked by
/// `is_allowed_transition`); every change reaches the job directory.
template <class Clock>
void set_state(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record, WorkerState next) {
  if (!is_allowed_transition(record.info.state, next)) return;
  bool was_active = !is_terminal(record.info.state);
  --s.counts[static_cast<std::size_t>(record.info.state)];
  ++s.counts[static_cast<std::size_t>(next)];
  record.info.state = next;
  if (was_active && is_terminal(next)) --s.active;
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

}  // namespace jobwarden::detail
