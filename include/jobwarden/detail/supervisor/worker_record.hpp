#pragma once
/// \file
/// The supervisor's record of one worker: its spec, the `WorkerInfo` it hands
/// out, and the bookkeeping of the current attempt (process, guard slot,
/// cgroup, the pumps of supervised output, deadlines, restarts). Owned by the engine's
/// state and touched only under its mutex, except by `launch` for a worker
/// marked `launching`.

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "jobwarden/detail/cached_file.hpp"
#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/input_feeder.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/output_pump.hpp"
#include "jobwarden/detail/process_control.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// One worker, as the supervisor keeps it. `TimePoint` is the supervisor
/// clock's (deadlines are measured on it).
template <class TimePoint>
struct WorkerRecord {
  WorkerSpec spec;
  WorkerInfo info;
  LaunchContext context;
  long cgroup_serial = -1;
  long guard_slot = -1;  // the worker's guard slot in the orphan guard's table
  int pidfd = -1;
  std::unique_ptr<OutputPump> pumps[2];  // supervised stdout, stderr (null: direct, or stderr merged)
  bool merged_output = false;  // this attempt's stderr goes with its stdout (2>&1, or one file named twice)
  std::unique_ptr<InputFeeder> input;    // stdin fed by the supervisor (made on first use, kept)
  bool unsaved = false;  // its last journal line failed to append
  bool earlier_run = false;  // a resumed job's record, not (yet) submitted in this run
  int earlier_attempts = 0;  // attempts of earlier runs (a resumed job's): restarts count from there
  bool launching = false;  // reserved a slot; spawn in progress outside the lock
  int shared_slot = -1;  // its slot of options.shared_slots while launching or running (-1: none)
  bool kill_sent = false;  // the grace period ended and SIGKILL went out
  bool tree_killed = false;  // the host sent SIGKILL to its tree (JobSupervisor::signal)
  std::optional<WorkerState> stop_reason;  // why we began stopping it
  std::optional<TimePoint> deadline;       // timeout
  std::optional<TimePoint> kill_at;        // end of the grace period
  std::optional<TimePoint> restart_at;     // a restart is scheduled for then
  std::optional<TimePoint> stall_check_at;  // when to look at its heartbeat next
  std::deque<TimePoint> restart_times;     // recent restarts, for the rate limit
  // Paused by the host (info.paused; worker_pause.hpp).
  std::optional<TimePoint> paused_at;      // when, on the supervisor's clock (the deadlines' shift)
  std::chrono::system_clock::time_point paused_wall{};  // when, on the wall clock (the heartbeat's shift)
  bool frozen = false;  // paused through its cgroup's cgroup.freeze (else SIGSTOP to its tree)
  /// The heartbeat counts as no older than this: a resume moves the last
  /// sign of life later by the time paused (the stall clock stood still).
  std::optional<std::chrono::system_clock::time_point> heartbeat_floor;
  std::optional<std::chrono::system_clock::time_point> heartbeat_at_pause;  // its last sign of life when paused
  bool warned = false;  // this attempt's deadline warning went out (its time follows `deadline`)
  std::uint64_t queue_seq = 0;  // its place among equal priorities in the queue (0: never queued)
  std::optional<CgroupCpu> tree_cpu_base;  // its cgroup's cpu.stat when this attempt began
  // Its status file as last read for info.message and worker_error
  // (worker_report.hpp): made on the first look, read again only on a change.
  std::unique_ptr<CachedFile<StatusRecord>> report;
};

/// A worker whose exit was noted but whose zombie and pidfd wait for
/// `settle_exits` (after the host has heard of the exit).
struct ExitedWorker {
  int zombie;  ///< pid to reap (-1: nothing to reap)
  int pidfd;   ///< to close (-1: none)
  long guard_slot;  ///< to take off the orphan guard's table (-1: not on it)

  /// Closes the pidfd and reaps the zombie.
  void collect() const {
    if (pidfd >= 0) ::close(pidfd);
    ExitStatus ignored;
    if (zombie > 0) reap(zombie, ignored);
  }
};

}  // namespace jobwarden::detail
