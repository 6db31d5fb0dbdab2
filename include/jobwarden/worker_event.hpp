#pragma once
/// \file
/// What a `JobSupervisor` tells its host about a worker: `WorkerEvent`, one
/// of the `EventKind`s with a snapshot of the worker at that moment.

#include <string_view>

#include "jobwarden/worker_control.hpp"
#include "jobwarden/worker_info.hpp"

namespace jobwarden {

/// What a `WorkerEvent` reports.
enum class EventKind {
  started,         ///< the worker's program is running
  timed_out,       ///< its deadline passed; the stop sequence began
  stop_requested,  ///< cancel or shutdown began the stop sequence
  killed,          ///< the grace period ran out; SIGKILL went to its tree
  restarting,      ///< it ended and will start again after a backoff (`WorkerInfo::state` is pending)
  exited,          ///< it reached a terminal state (including spawn_failed)
  signalled,       ///< the host sent it a signal (`JobSupervisor::signal`; `WorkerEvent::signal`, `scope`)
  paused,          ///< the host paused it (`JobSupervisor::pause`); its timeout and stall clocks stop
  resumed,         ///< it runs again (`JobSupervisor::resume`, or a stop that thawed it first)
};

/// The name of an event kind (`"timed_out"`).
constexpr std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::started: return "started";
    case EventKind::timed_out: return "timed_out";
    case EventKind::stop_requested: return "stop_requested";
    case EventKind::killed: return "killed";
    case EventKind::restarting: return "restarting";
    case EventKind::exited: return "exited";
    case EventKind::signalled: return "signalled";
    case EventKind::paused: return "paused";
    case EventKind::resumed: return "resumed";
  }
  return "unknown";
}

/// Something that happened to a worker, with a snapshot of it at that moment.
struct WorkerEvent {
  EventKind kind;
  WorkerInfo worker;
  /// `signalled`: the signal the host sent (0 for every other kind).
  int signal = 0;
  /// `signalled`: which of the worker's processes it went to.
  SignalScope scope = SignalScope::tree;
};

}  // namespace jobwarden
