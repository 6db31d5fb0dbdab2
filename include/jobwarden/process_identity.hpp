#pragma once
/// \file
/// `ProcessIdentity`: a process proven by its pid *and* the kernel's start
/// time of it. A pid alone can be reused once its process is reaped; the pair
/// cannot, so every record, guard slot and signal decision that must reach
/// the very process jobwarden started carries both.

namespace jobwarden {

/// A process named by pid and start time (clock ticks since boot on Linux,
/// microseconds since the epoch on macOS; 0: unknown, and then identity
/// cannot be proven). Compare with `detail::is_same_process`.
struct ProcessIdentity {
  int pid = 0;
  unsigned long long start_time = 0;

  /// Whether a process was recorded at all (a pid; the start time may be unknown).
  constexpr bool known() const noexcept { return pid > 0; }

  friend constexpr bool operator==(const ProcessIdentity& a, const ProcessIdentity& b) noexcept {
    return a.pid == b.pid && a.start_time == b.start_time;
  }
  friend constexpr bool operator!=(const ProcessIdentity& a, const ProcessIdentity& b) noexcept {
    return !(a == b);
  }
};

}  // namespace jobwarden
