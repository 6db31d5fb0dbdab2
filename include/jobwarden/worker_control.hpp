#pragma once
/// \file
/// Controlling a running worker through its supervisor
/// (`JobSupervisor::signal`, `pause`, `resume`): `SignalScope`, which of the
/// worker's processes a signal reaches.
///
/// The supervisor sends a signal only while it holds the worker's process
/// unreaped (its pid, and so its process group, cannot have been reused), so
/// a host never needs the pid in `WorkerInfo` to signal a worker itself.

#include <optional>
#include <string_view>

namespace jobwarden {

/// Which of a worker's processes a signal reaches.
enum class SignalScope {
  /// Every process of the worker: its process group and, where the worker
  /// has a cgroup, every process in that cgroup (`setsid` escapees too).
  tree,
  /// The worker's own process only (the program jobwarden started).
  leader,
};

/// `"tree"` or `"leader"`.
constexpr std::string_view to_string(SignalScope scope) noexcept {
  switch (scope) {
    case SignalScope::tree: return "tree";
    case SignalScope::leader: return "leader";
  }
  return "unknown";
}

/// Parses `"tree"` or `"leader"`; empty for anything else.
constexpr std::optional<SignalScope> signal_scope_from_string(std::string_view text) noexcept {
  if (text == "tree") return SignalScope::tree;
  if (text == "leader") return SignalScope::leader;
  return std::nullopt;
}

}  // namespace jobwarden
