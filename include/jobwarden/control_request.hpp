#pragma once
/// \file
/// A control request for a running job's live supervisor, sent through the
/// job directory by `control_job` (job_control.hpp) — `jobwarden signal`,
/// `pause` and `resume` — and what the supervisor answered.
///
/// On disk (docs/job-directory.md, "Control requests"): the requester writes
/// `<job>/<nonce>.control` atomically; the supervisor reads and removes it,
/// applies it as `JobSupervisor::signal`/`pause`/`resume` would, and writes
/// `<job>/<nonce>.reply` atomically, which the requester reads and removes.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jobwarden/worker_control.hpp"

namespace jobwarden {

/// What a control request asks for.
enum class ControlAction {
  signal,  ///< send `ControlRequest::signal` to the worker's tree (or leader)
  pause,   ///< pause the worker (`JobSupervisor::pause`)
  resume,  ///< resume a paused worker (`JobSupervisor::resume`)
};

/// The action's name as written in a request (`"pause"`).
constexpr std::string_view to_string(ControlAction action) noexcept {
  switch (action) {
    case ControlAction::signal: return "signal";
    case ControlAction::pause: return "pause";
    case ControlAction::resume: return "resume";
  }
  return "unknown";
}

/// Parses an action's name; `std::nullopt` for anything else.
inline std::optional<ControlAction> control_action_from_string(std::string_view name) noexcept {
  if (name == "signal") return ControlAction::signal;
  if (name == "pause") return ControlAction::pause;
  if (name == "resume") return ControlAction::resume;
  return std::nullopt;
}

/// A request for one worker, or for every running worker of the job.
struct ControlRequest {
  ControlAction action = ControlAction::signal;
  /// The worker; `std::nullopt`: every worker running when the supervisor
  /// reads the request.
  std::optional<std::string> worker;
  int signal = 0;                          ///< for `ControlAction::signal`
  SignalScope scope = SignalScope::tree;   ///< for `ControlAction::signal`
};

/// A worker a request could not be applied to.
struct ControlFailure {
  std::string worker;  ///< empty: the request itself could not be read
  /// Why, as a name: `"unknown_worker"`, `"worker_not_running"`,
  /// `"bad_request"`, or `"error"` (a system error; `message` says which).
  std::string reason;
  std::string message;  ///< for people: "the worker is not running"
};

/// What the supervisor did with a request.
struct ControlReply {
  std::vector<std::string> done;        ///< workers the action was applied to
  std::vector<ControlFailure> failed;   ///< and those it was not
};

}  // namespace jobwarden
