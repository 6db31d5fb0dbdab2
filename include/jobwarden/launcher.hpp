#pragma once
/// \file
/// The launcher seam: how a worker is started, signalled and understood once
/// it ends. `JobSupervisor` keeps everything else — queueing, deadlines, the
/// stop sequence's timing, reaping, status files — so a launcher is small.
///
/// Why a strategy object (held by `SupervisorOptions::launcher`) rather than a
/// template parameter: a host picks local or cluster workers at run time (the
/// CLI's `--launcher slurm`) with one line, and one virtual call per spawn or
/// signal costs nanoseconds against a spawn's hundreds of microseconds
/// (measured in tests/bench/bench_spawn).
///
/// Every launcher runs *something local* that jobwarden spawns, watches and
/// reaps (the program itself, or a client such as `srun` that lives exactly as
/// long as the remote work): that keeps exit detection event-driven everywhere.
///
/// `Launcher` is the interface; its virtual functions take only public types
/// (`LaunchPlan`, `ExitStatus` from launch_plan.hpp, `WorkerSpec`,
/// `WorkerInfo`, `LaunchContext`). `LocalLauncher` runs workers on this
/// machine. The interface keeps the local behaviour as its defaults rather
/// than being abstract, so a launcher written against it before
/// `LocalLauncher` was its own class (when `LocalLauncher` was another name
/// for `Launcher`) still compiles and behaves the same: one that overrides
/// only `interpret_exit` or `release`, or that calls `Launcher::prepare` or
/// `Launcher::signal_tree` to wrap the local way. `LocalLauncher` adds
/// nothing to those defaults; it names the local launcher in code and in
/// `name()`, and deriving from it is as good as deriving from `Launcher`.

#include <optional>
#include <string>
#include <system_error>

#include <cstring>

#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/process_control.hpp"
#include "jobwarden/detail/spawn.hpp"
#include "jobwarden/launch_plan.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden {

/// What a launcher knows about the worker it handles.
struct LaunchContext {
  std::string job_id;
  std::string worker_id;
  int attempt = 1;
  std::string job_dir;     ///< empty when the supervisor keeps no job directory
  /// The directory that holds the worker's files (`<job_dir>/workers`,
  /// shared by every worker of the job: `<id>.status.json`, `<id>.stdout.log`,
  /// `<id>.stderr.log`), or empty.
  std::string worker_dir;
  std::string cgroup_dir;  ///< the worker's own cgroup v2 directory, or empty
  /// Where this attempt's stdout and stderr go, resolved before `prepare`:
  /// `automatic` is already the worker's log file (or `inherit` without a job
  /// directory). A launcher may read a `file` once the process has exited
  /// (SlurmLauncher reads srun's verdict at the end of the stderr log).
  OutputSpec stdout_spec;
  OutputSpec stderr_spec;
};

/// How a worker is started, signalled and understood once it ends. The
/// default of each function is the local behaviour (see the file comment):
/// run the argv on this machine, in its own process group, and signal that
/// whole group.
class Launcher {
 public:
  virtual ~Launcher() = default;

  /// A short name for logs and status files (`"local"`, `"slurm"`).
  virtual std::string name() const { return "local"; }

  /// Fills in what to execute: `plan.argv` and `plan.env` hold the worker's
  /// argv and environment (JOBWARDEN_* included); a launcher may rewrite them
  /// and must set `plan.path`. On failure return the errno-style code and set
  /// `error`: the worker ends `spawn_failed` without running.
  virtual std::error_code prepare(LaunchPlan& plan, const WorkerSpec& spec,
                                  const LaunchContext& context, std::string& error) {
    (void)context;
    std::string path_env;
    for (const auto& entry : plan.env) {
      if (entry.rfind("PATH=", 0) == 0) path_env = entry.substr(5);
    }
    int error_number = 0;
    plan.path = detail::resolve_program(spec.argv[0], path_env, error_number);
    if (error_number != 0) {
      error = "cannot run \"" + spec.argv[0] + "\": " + std::strerror(error_number);
      return {error_number, std::generic_category()};
    }
    return {};
  }

  /// Sends `sig` to everything the worker runs. Called only while the local
  /// process is unreaped, so its pid (the group id) cannot have been reused.
  /// The local way: the worker's process group, and where it has a cgroup,
  /// every process of the cgroup that left the group (`setsid` escapees),
  /// each signalled once; SIGKILL through `cgroup.kill`.
  virtual void signal_tree(const WorkerInfo& worker, int sig, const LaunchContext& context) {
    detail::signal_group(worker.pid, sig);
    if (sig == SIGKILL) {
      detail::cgroup_kill(context.cgroup_dir);
    } else if (!context.cgroup_dir.empty() && worker.pid > 1) {
      detail::cgroup_signal_outside_group(context.cgroup_dir, worker.pid, sig);
    }
  }

  /// Refines a reaped process's status into the worker's outcome (e.g. a
  /// cluster client's exit 128+N into "killed by signal N"). May set
  /// `worker.error`; a returned state overrides the usual classification,
  /// except that a stop jobwarden began keeps its reason.
  virtual std::optional<WorkerState> interpret_exit(WorkerInfo& worker, ExitStatus& status,
                                                    const LaunchContext& context) {
    (void)worker;
    (void)status;
    (void)context;
    return std::nullopt;
  }

  /// Called after the worker is reaped, to release anything still held
  /// remotely. The local launcher has nothing to do: the group was killed.
  virtual void release(const WorkerInfo& worker, const LaunchContext& context) {
    (void)worker;
    (void)context;
  }
};

/// The default launcher: runs workers on this machine (the `Launcher`
/// defaults, under its own name).
class LocalLauncher : public Launcher {
 public:
  std::string name() const override { return "local"; }
};

}  // namespace jobwarden
