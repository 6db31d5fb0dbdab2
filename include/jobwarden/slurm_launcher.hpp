#pragma once
/// \file
/// `SlurmLauncher`: the same jobs, past one machine. Each worker runs as one
/// Slurm job through `srun`, the local client that lives exactly as long as
/// the job — so the supervisor still learns of an exit from a pidfd, with no
/// polling of the controller.
///
/// ```
/// jobwarden::SlurmOptions slurm;
/// slurm.partition = "batch";
/// jobwarden::SupervisorOptions options;
/// options.launcher = std::make_shared<jobwarden::SlurmLauncher>(slurm);
/// ```
///
/// What a worker becomes: `srun --job-name=<prefix>:<job>:<worker>:<attempt>:<token>
/// --ntasks=1 --nodes=1 --input=none --export=ALL [site options]
/// -- argv...` (`--input=0` instead when the worker has a stdin: srun relays
/// its own to the task). srun's environment is the worker's (JOBWARDEN_* included) and
/// `--export=ALL` hands it to the task. srun relays the task's stdout and
/// stderr to its own, which the supervisor points at the worker's logs (or
/// reads, for supervised streams): logs land on the submitting machine and
/// need no shared filesystem. No
/// `--kill-on-bad-exit`: with one task it has nothing to do, and measured on
/// slurm 22.05 it keeps a failed job's step completing ~2.3 s longer, during
/// which Slurm gives that node to no new job.
///
/// How it maps the supervisor's vocabulary onto Slurm's (measured on a
/// single-node slurm 22.05 cluster):
/// - A stop signal goes to the job's steps with `scancel --signal` — SIGTERM
///   to srun itself would not be graceful (srun would SIGKILL the task). With
///   `ProctrackType=proctrack/cgroup` the signal reaches every process of the
///   task, grandchildren that escaped with setsid included. A job still
///   queued is simply cancelled: nothing of it ran.
/// - The warning before the deadline (`WorkerSpec::warning`) takes the same
///   path, `scancel --signal=<sig> --state=RUNNING`, sent by the supervisor
///   at `deadline - before` — not srun's own `--signal=SIG@T`, which counts
///   from Slurm's time limit (whole minutes, padded: see `time_limit`), may
///   come up to a minute early by Slurm's own account, and could not follow
///   a deadline that moves. A job still queued then is left alone.
/// - The final SIGKILL is `scancel --signal=KILL`; srun then returns once
///   the step is gone (Slurm bounds that by KillWait + 2 s), so a reaped
///   worker has no process left. If scancel fails or srun outlives
///   `SlurmOptions::kill_patience`, srun itself is killed, so a stop ends
///   even when the controller does not answer.
/// - srun returns the task's exit code, or 128+N for a task killed by signal
///   N. srun's own "task 0: ..." line at the end of its stderr (the log, or
///   the worker's tail) tells the two apart, and its error lines
///   tell a job that never ran (unknown partition, program missing on the
///   node, controller unreachable) — those end `spawn_failed`, never as an
///   exit code.
/// - `scancel` calls never block the supervisor: they run as child processes
///   the launcher reaps later (a `scancel --signal` aimed at a queued job
///   would otherwise retry until the job starts).
/// - `WorkerSpec::nice` and `cpu_weight` apply to the local srun only (it
///   is what jobwarden spawns). srun's `--nice` adjusts the job's place in
///   Slurm's queue, not a process's nice value, so it is not used; srun
///   hands its own nice value on (`SLURM_PRIO_PROCESS`), which the task gets
///   where the site sets `PropagatePrioProcess`. A cgroup weight has no
///   remote effect: ask for CPUs (`cpus_per_task`) instead.
/// - Orphans: when the supervisor dies, its orphan guard SIGKILLs srun's process
///   group — which also kills the helper srun forks to cancel its step, so the
///   job would run on. The launcher therefore keeps a small guard process of
///   its own (`SlurmOptions::orphan_guard`) that waits for its supervisor to
///   die and then cancels every job of this launcher by name. It is started
///   and let go exactly as the orphan guard is (`detail::Lifeline`).

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "jobwarden/detail/lifeline.hpp"
#include "jobwarden/detail/process_control.hpp"
#include "jobwarden/detail/spawn.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden {

/// How workers are submitted to Slurm. Every field has a default: an empty
/// `SlurmOptions` runs each worker as a one-task job in the default partition.
struct SlurmOptions {
  /// `--partition`; empty: the cluster's default partition.
  std::string partition;
  /// `--account`; empty: the user's default account.
  std::string account;
  /// `--mem` per node, in srun's syntax (`"512M"`, `"4G"`); empty: the site's default.
  std::string memory;
  /// `--cpus-per-task`; 0: the site's default (one).
  int cpus_per_task = 0;
  /// More srun options, placed after the launcher's own and before `--`
  /// (`{"--constraint=avx2", "--qos=short"}`). Options given here win.
  std::vector<std::string> extra_args;
  /// The Slurm client programs: a name is looked up in the host's `PATH`.
  std::string srun_program = "srun";
  std::string scancel_program = "scancel";
  std::string squeue_program = "squeue";
  /// The job's `--time`. Unset: derived from the worker's timeout as whole
  /// minutes rounded up, plus one (Slurm checks limits only every 30 s or so;
  /// the supervisor enforces the exact deadline itself, and this is the
  /// safety net should the supervisor be gone), or none without a timeout.
  std::optional<std::chrono::minutes> time_limit;
  /// Derive `--time` from the worker's timeout when `time_limit` is unset.
  bool derive_time_limit = true;
  /// After the final `scancel --signal=KILL`, how long srun may take to
  /// return (it waits for the step to end, up to the site's KillWait + 2 s)
  /// before srun itself is killed so the stop ends regardless.
  std::chrono::seconds kill_patience{15};
  /// First part of every job name (`<prefix>:<job>:<worker>:<attempt>:<token>`).
  /// Must not contain `:`.
  std::string job_name_prefix = "jw";
  /// Run the guard process that cancels this launcher's jobs if the process
  /// holding the launcher dies (see the file comment).
  bool orphan_guard = true;
  /// Where srun's stderr is kept while a worker runs when the worker's stderr
  /// is inherited or discarded: the launcher must read srun's error lines to
  /// classify the end (an inherited stderr gets them when the worker ends).
  /// Empty: a private directory under `$TMPDIR`.
  std::string scratch_dir;
};

/// Runs every worker as a Slurm job through `srun`. Thread-safe; one instance
/// may serve several supervisors as long as their job ids differ.
class SlurmLauncher : public Launcher {
 public:
  /// Prepares nothing yet: Slurm is first touched when a worker launches.
  explicit SlurmLauncher(SlurmOptions options = {}) : options_(std::move(options)) {
    std::random_device random;
    char token[17];
    std::snprintf(token, sizeof token, "%08x%08x", random(), random());
    token_ = token;
  }

  SlurmLauncher(const SlurmLauncher&) = delete;
  SlurmLauncher& operator=(const SlurmLauncher&) = delete;

  /// Waits (bounded) for the `scancel` calls still in flight, lets the
  /// orphan guard go without cancelling anything, removes scratch files.
  ~SlurmLauncher() override {
    std::lock_guard<std::mutex> lock(mutex_);
    finish_commands(std::chrono::seconds(10));
    stop_guard();
    for (auto& [key, launch] : launches_) {
      if (launch.capture) ::unlink(launch.read_path.c_str());
    }
    if (own_scratch_ && !scratch_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(scratch_, ec);
    }
    if (null_fd_ >= 0) ::close(null_fd_);
  }

  /// `"slurm"`.
  std::string name() const override { return "slurm"; }

  /// The options in force.
  const SlurmOptions& options() const { return options_; }

  /// This launcher's random token: the last part of each of its job names.
  const std::string& token() const { return token_; }

  /// The pid of the orphan guard (`SlurmOptions::orphan_guard`), started with
  /// the first worker; 0 while none runs.
  int guard_pid() {
    std::lock_guard<std::mutex> lock(mutex_);
    return guard_.pid();
  }

  /// The Slurm job name a worker's attempt gets:
  /// `<prefix>:<job>:<worker>:<attempt>:<token>` (ids never contain `:`).
  std::string job_name(const LaunchContext& context) const {
    return options_.job_name_prefix + ":" + context.job_id + ":" + context.worker_id + ":" +
           std::to_string(context.attempt) + ":" + token_;
  }

  /// Builds the srun command line around the worker's argv.
  std::error_code prepare(LaunchPlan& plan, const WorkerSpec& spec,
                          const LaunchContext& context, std::string& error) override {
    std::lock_guard<std::mutex> lock(mutex_);
    reap_commands();
    std::string srun = resolve_host_program(options_.srun_program, error);
    if (srun.empty()) return {ENOENT, std::generic_category()};
    if (!ensure_scratch(error)) return {EIO, std::generic_category()};
    if (options_.orphan_guard && !guard_.active()) start_guard();

    Launch launch;
    launch.job_name = job_name(context);
    launch.stop_signal = spec.stop_signal;
    // stdin: srun relays its own to the one task, unless the worker has none.
    bool no_input = spec.stdin_spec.kind == InputSpec::Kind::null;
    std::vector<std::string> args{srun,         "--job-name=" + launch.job_name,
                                  "--ntasks=1", "--nodes=1",
                                  no_input ? "--input=none" : "--input=0", "--export=ALL"};
    if (!spec.cwd.empty()) {
      std::error_code ec;
      auto absolute = std::filesystem::absolute(spec.cwd, ec);
      args.push_back("--chdir=" + (ec ? spec.cwd : absolute.string()));
    }
    if (!options_.partition.empty()) args.push_back("--partition=" + options_.partition);
    if (!options_.account.empty()) args.push_back("--account=" + options_.account);
    if (!options_.memory.empty()) args.push_back("--mem=" + options_.memory);
    if (options_.cpus_per_task > 0) {
      args.push_back("--cpus-per-task=" + std::to_string(options_.cpus_per_task));
    }
    if (auto minutes = time_limit(spec)) args.push_back("--time=" + std::to_string(*minutes));
    for (const auto& extra : options_.extra_args) args.push_back(extra);
    args.emplace_back("--");
    for (const auto& arg : plan.argv) args.push_back(arg);

    // srun's stderr carries its own error lines: keep it somewhere we can read.
    const OutputSpec& err = context.stderr_spec;  // resolved: `automatic` is the log or inherit
    // A stream the supervisor reads keeps its end in the worker's info (with
    // 2>&1, stdout's): the verdict's place when the log is no complete file.
    launch.tailed = err.route == OutputSpec::Route::supervisor && err.tail_bytes.value_or(0) > 0;
    launch.tail_of_stdout = spec.stderr_to_stdout || (err.kind == OutputSpec::Kind::file &&
                                                      context.stdout_spec.path == err.path);
    bool complete_file = err.kind == OutputSpec::Kind::file &&
                         (!err.max_bytes || err.keep == OutputSpec::Keep::head_and_tail);
    if (!launch.tailed || complete_file) switch (err.kind) {
      case OutputSpec::Kind::file: {
        struct stat st;
        bool exists = ::stat(err.path.c_str(), &st) == 0;
        if (!exists || S_ISREG(st.st_mode)) {
          launch.read_path = err.path;
          launch.read_from = exists && err.append ? st.st_size : 0;
        }  // a FIFO or a device: not ours to read; classified by exit code alone
        break;
      }
      case OutputSpec::Kind::automatic:  // not resolved (a caller other than JobSupervisor)
      case OutputSpec::Kind::inherit:
      case OutputSpec::Kind::discard: {
        launch.read_path = scratch_ + "/" + context.job_id + "." + context.worker_id + "." +
                           std::to_string(context.attempt) + ".srun.err";
        int fd = ::open(launch.read_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
          int error_number = errno;
          error = "cannot create \"" + launch.read_path +
                  "\": " + std::generic_category().message(error_number);
          return {error_number, std::generic_category()};
        }
        ::close(fd);
        launch.capture = true;
        launch.forward = err.kind != OutputSpec::Kind::discard;  // shown when the worker ends
        // `exec` keeps the pid: the process the supervisor watches is srun.
        args.insert(args.begin(), {"/bin/sh", "-c", "exec \"$@\" 2>>\"$0\"", launch.read_path});
        break;
      }
    }
    plan.path = args.front();
    plan.argv = std::move(args);
    adjust_environment(plan.env, spec);
    auto key = key_of(context);
    auto old = launches_.find(key);
    if (old != launches_.end() && old->second.capture) ::unlink(old->second.read_path.c_str());
    launches_[key] = std::move(launch);
    return {};
  }

  /// Sends `sig` to the task's whole tree through Slurm; see the file comment.
  void signal_tree(const WorkerInfo& worker, int sig, const LaunchContext& context) override {
    std::lock_guard<std::mutex> lock(mutex_);
    reap_commands();
    std::string name = "--name=" + job_name(context);
    std::string scancel = scancel_path();
    // A signal that is no stop (the warning before the deadline) only goes
    // to a running task: it never cancels a queued job nor kills srun.
    auto launch = launches_.find(key_of(context));
    const bool stops = sig == SIGKILL || launch == launches_.end() || sig == launch->second.stop_signal;
    if (scancel.empty()) {  // nothing can reach the job: end at least srun (its helper cancels)
      if (sig != SIGCONT && stops) ::kill(worker.pid, SIGKILL);
      return;
    }
    if (sig == SIGKILL) {
      // srun then waits (up to KillWait + 2 s) until the step is gone, so its
      // exit still means "nothing of the task runs". Should scancel fail (no
      // controller) or srun still run after `kill_patience` (its job was not
      // yet known to scancel), srun itself is killed — its pid proven by start
      // time, since srun may have ended and been reaped meanwhile.
      static const char* script =
          "pid=$3 start=$4\n"
          // Running (not a zombie) and still the srun we started: fields after
          // the ")" closing the name are state (3) ... start time (22).
          "alive() { s=$(cat /proc/$pid/stat 2>/dev/null) || return 1; s=${s##*) }; "
          "set -- $s; [ \"$1\" != Z ] && [ \"${20}\" = \"$start\" ]; }\n"
          "\"$1\" --state=PENDING \"$2\" 2>/dev/null\n"
          "if \"$1\" --signal=KILL --state=RUNNING \"$2\" 2>/dev/null; then\n"
          "  n=0\n"
          "  while alive && [ $n -lt $5 ]; do\n"  // again: the job may not have been known yet
          "    sleep 1; n=$((n + 1))\n"
          "    \"$1\" --state=PENDING \"$2\" 2>/dev/null\n"
          "    \"$1\" --signal=KILL --state=RUNNING \"$2\" >/dev/null 2>&1\n"
          "  done\n"
          "fi\n"
          "alive && kill -KILL \"$pid\"\n";
      auto patience = std::chrono::ceil<std::chrono::seconds>(options_.kill_patience).count();
      run_command({"/bin/sh", "-c", script, "jobwarden-slurm-kill", scancel, name,
                   std::to_string(worker.pid), std::to_string(worker.process_start_time),
                   std::to_string(patience)});
      return;
    }
    if (sig != SIGCONT && stops) {
      // Still queued: nothing of it ran, so no grace is owed; cancel it outright.
      run_command({scancel, "--state=PENDING", name});
    }
    run_command({scancel, "--signal=" + std::to_string(sig), "--state=RUNNING", name});
  }

  /// Turns srun's exit into the task's: exit code, signal, or `spawn_failed`.
  std::optional<WorkerState> interpret_exit(WorkerInfo& worker, ExitStatus& status,
                                            const LaunchContext& context) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = launches_.find(key_of(context));
    if (it == launches_.end()) return std::nullopt;
    Launch& launch = it->second;
    if (status.signal) {
      note_error(worker, "srun was killed by " + signal_name(*status.signal) +
                             "; its Slurm job is cancelled");
      return std::nullopt;
    }
    if (!status.exit_code) return std::nullopt;
    int code = *status.exit_code;
    std::string text =
        launch.read_path.empty() ? std::string() : read_tail(launch.read_path, launch.read_from);
    if (text.empty() && launch.tailed) {  // no file, or one that could not be written
      text = launch.tail_of_stdout ? worker.stdout_tail : worker.stderr_tail;
    }
    SrunReport report = parse_srun_output(text);
    launch.job_finished = code == 0 || report.task_ended;
    if (!report.execve_error.empty() && report.task_ended) {
      note_error(worker, "cannot run \"" + (worker.argv.empty() ? std::string() : worker.argv[0]) +
                             "\"" + (report.node.empty() ? "" : " on " + report.node) + ": " +
                             report.execve_error);
      status.exit_code.reset();  // it never ran: no exit code (docs/contract.md: spawn_failed is never an exit code)
      return WorkerState::spawn_failed;
    }
    if (report.task_ended) {
      if (report.task_signalled && code > 128) {
        status.exit_code.reset();
        status.signal = code - 128;
        status.core_dumped = report.core_dumped;
      }
      return std::nullopt;
    }
    if (code == 0) return std::nullopt;
    if (!report.srun_error.empty()) {
      note_error(worker, report.srun_error);
      status.exit_code.reset();
      return WorkerState::spawn_failed;
    }
    if (code > 128 && text.empty()) {  // nothing to read: trust srun's 128+N convention
      status.exit_code.reset();
      status.signal = code - 128;
    }
    return std::nullopt;
  }

  /// Makes sure no Slurm job of this worker is left, forwards captured
  /// stderr to the host's (for an inherited stderr), drops scratch files.
  void release(const WorkerInfo& worker, const LaunchContext& context) override {
    (void)worker;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = launches_.find(key_of(context));
    if (it == launches_.end()) return;
    Launch& launch = it->second;
    if (!launch.job_finished) {
      std::string scancel = scancel_path();
      if (!scancel.empty()) run_command({scancel, "--name=" + launch.job_name});
    }
    if (launch.capture) {
      if (launch.forward) forward_to_stderr(launch.read_path);
      ::unlink(launch.read_path.c_str());
    }
    launches_.erase(it);
    reap_commands();
  }

  /// Cancels every job of this user whose name says it belongs to job
  /// `job_id` under `options.job_name_prefix` — what a supervisor that took
  /// over a job after a crash calls before it starts. Returns how many jobs
  /// it asked Slurm to cancel. Throws `std::system_error` when squeue cannot
  /// be run or fails.
  static std::size_t cancel_leftovers(const SlurmOptions& options, const std::string& job_id) {
    std::error_code ec;
    std::size_t count = cancel_leftovers(options, job_id, ec);
    if (ec) {
      throw std::system_error(ec, "cannot list the Slurm jobs of job \"" + job_id +
                                      "\" (squeue \"" + options.squeue_program + "\")");
    }
    return count;
  }

  /// Non-throwing form: sets `ec` when squeue cannot be run or fails.
  static std::size_t cancel_leftovers(const SlurmOptions& options, const std::string& job_id,
                                      std::error_code& ec) {
    ec.clear();
    std::string error;
    std::string squeue = resolve_host_program(options.squeue_program, error);
    std::string scancel = resolve_host_program(options.scancel_program, error);
    if (squeue.empty() || scancel.empty()) {
      ec = std::make_error_code(std::errc::no_such_file_or_directory);
      return 0;
    }
    std::string listing;
    int rc = run_and_read(
        {squeue, "--noheader", "--user=" + std::to_string(::getuid()), "--format=%i %j"}, listing,
        std::chrono::seconds(30));
    if (rc != 0) {
      ec = std::make_error_code(std::errc::io_error);
      return 0;
    }
    std::string prefix = options.job_name_prefix + ":" + job_id + ":";
    std::vector<std::string> ids;
    std::size_t begin = 0;
    while (begin < listing.size()) {
      std::size_t end = listing.find('\n', begin);
      if (end == std::string::npos) end = listing.size();
      std::string line = listing.substr(begin, end - begin);
      begin = end + 1;
      std::size_t space = line.find(' ');
      if (space == std::string::npos) continue;
      if (line.compare(space + 1, prefix.size(), prefix) == 0) ids.push_back(line.substr(0, space));
    }
    if (ids.empty()) return 0;
    std::string ignored;
    std::vector<std::string> kill{scancel, "--signal=KILL", "--state=RUNNING"};
    std::vector<std::string> cancel{scancel};
    kill.insert(kill.end(), ids.begin(), ids.end());
    cancel.insert(cancel.end(), ids.begin(), ids.end());
    run_and_read(kill, ignored, std::chrono::seconds(30));
    run_and_read(cancel, ignored, std::chrono::seconds(30));
    return ids.size();
  }

  /// What srun's stderr says about how a task ended (public for tests).
  struct SrunReport {
    bool task_ended = false;      ///< a "task N: ..." line: the program ran
    bool task_signalled = false;  ///< ... and a signal ended it
    bool core_dumped = false;
    std::string node;          ///< the node named in that line or the execve error
    std::string execve_error;  ///< "No such file or directory" when the node could not exec
    std::string srun_error;    ///< why srun never started the task, for `error`
  };

  /// Reads srun's stderr text (only lines srun or slurmstepd wrote count).
  static SrunReport parse_srun_output(const std::string& text) {
    SrunReport report;
    std::string first_error;
    std::size_t begin = 0;
    while (begin < text.size()) {
      std::size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(begin, end - begin);
      begin = end + 1;
      if (line.rfind("slurmstepd", 0) == 0) {
        // "slurmstepd-<node>: error: execve(): <program>: <reason>"
        auto at = line.find(": error: execve(): ");
        if (at != std::string::npos) {
          if (line.size() > 11 && line[10] == '-') report.node = line.substr(11, at - 11);
          auto reason = line.rfind(": ");
          report.execve_error = line.substr(reason + 2);
        }
        continue;
      }
      const std::string error_prefix = "srun: error: ";
      const std::string fatal_prefix = "srun: fatal: ";
      bool is_error = line.rfind(error_prefix, 0) == 0;
      bool is_fatal = line.rfind(fatal_prefix, 0) == 0;
      if (!is_error && !is_fatal) continue;
      std::string body = line.substr(error_prefix.size());
      // "srun: error: <node>: task <n>: Exited with exit code 3" / ": Segmentation fault"
      auto task = body.find(": task ");
      if (is_error && task != std::string::npos) {
        auto colon = body.find(": ", task + 7);
        if (colon != std::string::npos) {
          std::string what = body.substr(colon + 2);
          report.task_ended = true;
          report.node = body.substr(0, task);
          report.task_signalled = what.rfind("Exited with exit code", 0) != 0;
          report.core_dumped = what.find("(core dumped)") != std::string::npos;
          continue;
        }
      }
      if (first_error.empty() || is_fatal) first_error = body;
      const std::string refused = "Unable to allocate resources: ";
      if (body.rfind(refused, 0) == 0) {
        std::string why = body.substr(refused.size());
        report.srun_error = why.find("Unable to contact slurm controller") != std::string::npos
                                ? "cannot reach the Slurm controller: " + why
                                : "Slurm refused the job: " + why;
      }
    }
    if (report.srun_error.empty() && !first_error.empty()) {
      report.srun_error = "srun failed: " + first_error;
    }
    return report;
  }

 private:
  struct Launch {
    std::string job_name;
    std::string read_path;      // the file srun's stderr goes to (empty: unreadable)
    off_t read_from = 0;        // what was there before this attempt
    bool capture = false;       // read_path is our scratch file
    bool forward = false;       // ...whose text belongs on the host's stderr
    bool tailed = false;        // the worker's info keeps the end of srun's stderr...
    bool tail_of_stdout = false;  // ...in stdout's tail (2>&1)
    bool job_finished = false;  // srun saw the job through: nothing left to cancel
    int stop_signal = SIGTERM;  // the worker's: any other signal (a warning) stops nothing
  };

  /// A stop the supervisor began already named the reason ("timed out
  /// after 30s"); srun's view of the same end must not replace it.
  static void note_error(WorkerInfo& worker, std::string text) {
    if (worker.error.empty()) worker.error = std::move(text);
  }

  static std::string key_of(const LaunchContext& context) {
    return context.job_id + "\n" + context.worker_id + "\n" + std::to_string(context.attempt);
  }

  std::optional<long long> time_limit(const WorkerSpec& spec) const {
    if (options_.time_limit) return options_.time_limit->count();
    if (!options_.derive_time_limit || spec.timeout.count() <= 0) return std::nullopt;
    auto minutes = std::chrono::ceil<std::chrono::minutes>(spec.timeout).count();
    return minutes + 1;
  }

  /// srun must find the cluster even when the worker starts from an empty
  /// environment, and must make a job of its own even when the host runs
  /// inside a Slurm allocation (an inherited SLURM_JOB_ID would turn the
  /// worker into a step of the host's job, which no `scancel --name` finds).
  static void adjust_environment(std::vector<std::string>& env, const WorkerSpec& spec) {
    env.erase(std::remove_if(env.begin(), env.end(),
                             [](const std::string& entry) {
                               for (const char* name : {"SLURM_JOB_ID=", "SLURM_JOBID=",
                                                        "SLURM_STEP_ID=", "SLURM_STEPID="}) {
                                 if (entry.rfind(name, 0) == 0) return true;
                               }
                               return false;
                             }),
              env.end());
    if (!spec.inherit_env) {
      bool has_conf = std::any_of(env.begin(), env.end(), [](const std::string& entry) {
        return entry.rfind("SLURM_CONF=", 0) == 0;
      });
      const char* conf = std::getenv("SLURM_CONF");
      if (!has_conf && conf != nullptr) env.push_back(std::string("SLURM_CONF=") + conf);
    }
  }

  static std::string resolve_host_program(const std::string& name, std::string& error) {
    const char* path_env = std::getenv("PATH");
    int error_number = 0;
    std::string path = detail::resolve_program(name, path_env ? path_env : "", error_number);
    if (error_number != 0) {
      error = "cannot run \"" + name + "\": " + std::generic_category().message(error_number) +
              " (is the Slurm client installed and in PATH?)";
      return {};
    }
    return path;
  }

  std::string scancel_path() {
    if (scancel_.empty()) {
      std::string ignored;
      scancel_ = resolve_host_program(options_.scancel_program, ignored);
    }
    return scancel_;
  }

  bool ensure_scratch(std::string& error) {
    if (!scratch_.empty()) return true;
    if (!options_.scratch_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(options_.scratch_dir, ec);
      if (ec) {
        error = "cannot create \"" + options_.scratch_dir + "\": " + ec.message();
        return false;
      }
      scratch_ = options_.scratch_dir;
      return true;
    }
    std::error_code ec;
    std::string pattern =
        (std::filesystem::temp_directory_path(ec) / "jobwarden-slurm-XXXXXX").string();
    if (ec || ::mkdtemp(pattern.data()) == nullptr) {
      error = "cannot create a scratch directory for srun's stderr: " +
              (ec ? ec.message() : std::generic_category().message(errno));
      return false;
    }
    scratch_ = pattern;
    own_scratch_ = true;
    return true;
  }

  /// What `path` holds from `offset` on, at most the last 64 KiB (srun's
  /// verdict is at the end).
  static std::string read_tail(const std::string& path, off_t offset) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return {};
    struct stat st;
    std::string text;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > offset) {
      constexpr off_t limit = off_t{64} * 1024;
      off_t from = std::max(offset, st.st_size - limit);
      text.resize(static_cast<std::size_t>(st.st_size - from));
      ssize_t n = ::pread(fd, text.data(), text.size(), from);
      text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    ::close(fd);
    return text;
  }

  static void forward_to_stderr(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buffer[16384];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(2, buffer + done, static_cast<std::size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          done = n;
          n = -1;
          break;
        }
        done += w;
      }
      if (n < 0) break;
    }
    ::close(fd);
  }

  static bool cloexec_pipe(int fds[2]) {
#if defined(__linux__)
    return ::pipe2(fds, O_CLOEXEC) == 0;
#else
    if (::pipe(fds) != 0) return false;
    ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return true;
#endif
  }

  int null_fd() {
    if (null_fd_ < 0) null_fd_ = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    return null_fd_;
  }

  /// Starts `argv` with the host's environment, output discarded, and
  /// returns at once; the pid is reaped by a later `reap_commands`.
  void run_command(std::vector<std::string> argv) {
    detail::SpawnPlan plan;
    plan.path = argv.front();
    plan.argv = std::move(argv);
    for (const auto& [key, value] : detail::current_environment()) {
      plan.env.push_back(key + "=" + value);
    }
    plan.stdio[0] = plan.stdio[1] = plan.stdio[2] = null_fd();
    plan.max_fd = detail::max_descriptor_bound();
    plan.seal();
    auto outcome = detail::spawn(plan);
    if (outcome.pidfd >= 0) ::close(outcome.pidfd);
    if (outcome.pid > 0) commands_.push_back(outcome.pid);
  }

  void reap_commands() {
    commands_.erase(std::remove_if(commands_.begin(), commands_.end(),
                                   [](int pid) {
                                     int status;
                                     int rc = ::waitpid(pid, &status, WNOHANG);
                                     return rc == pid || (rc < 0 && errno == ECHILD);
                                   }),
                    commands_.end());
  }

  void finish_commands(std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    reap_commands();
    while (!commands_.empty() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // no event for "any of these"
      reap_commands();
    }
    for (int pid : commands_) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    commands_.clear();
  }

  /// The guard: a shell started through a lifeline (`detail::Lifeline`, the
  /// mechanism the supervisor's orphan guard uses too: a socket pair, signals
  /// ignored from exec on, its own process group). EOF without the release
  /// line means we died: it cancels every job carrying this launcher's token,
  /// then once more two seconds later for a submission that was in flight,
  /// and removes our private scratch directory.
  void start_guard() {
    std::string ignored;
    std::string squeue = resolve_host_program(options_.squeue_program, ignored);
    std::string scancel = scancel_path();
    if (squeue.empty() || scancel.empty()) return;
    // The guard runs in "/": a program (or a scratch directory) named
    // relative to our directory must still be found there.
    std::string scratch = own_scratch_ ? scratch_ : std::string();
    for (std::string* path : {&squeue, &scancel, &scratch}) {
      std::error_code ec;
      auto absolute = path->empty() ? std::filesystem::path() : std::filesystem::absolute(*path, ec);
      if (!ec && !absolute.empty()) *path = absolute.string();
    }
    static const char* script =
        "read -r word && [ \"$word\" = q ] && exit 0\n"
        "sweep() {\n"
        "  ids=$(\"$1\" --noheader --user=\"$3\" --format='%i %j' 2>/dev/null |\n"
        "    while read -r id name; do case $name in $4) echo \"$id\";; esac; done)\n"
        "  [ -n \"$ids\" ] || return 0\n"
        "  \"$2\" --signal=KILL --state=RUNNING $ids 2>/dev/null\n"
        "  \"$2\" $ids 2>/dev/null\n"
        "}\n"
        "sweep \"$@\"; sleep 2; sweep \"$@\"\n"
        "[ -n \"$5\" ] && rm -rf -- \"$5\"\n";
    detail::SpawnPlan plan;
    plan.path = "/bin/sh";
    plan.argv = {"/bin/sh",
                         "-c",
                         script,
                         "jobwarden-slurm-guard",
                         squeue,
                         scancel,
                         std::to_string(::getuid()),
                         options_.job_name_prefix + ":*:" + token_,
                         scratch};
    for (const auto& [key, value] : detail::current_environment()) {
      plan.env.push_back(key + "=" + value);
    }
    plan.stdio[1] = plan.stdio[2] = null_fd();
    plan.max_fd = detail::max_descriptor_bound();
    if (guard_.open()) guard_.spawn(std::move(plan));  // best effort, like the orphan guard
  }

  /// Lets the guard go without cancelling anything, and reaps it.
  void stop_guard() { guard_.finish(true); }

  /// Runs `argv` to its end (killed after `limit`), capturing its stdout.
  /// Returns its exit code, or -1 when it could not run or was killed.
  static int run_and_read(const std::vector<std::string>& argv, std::string& output,
                          std::chrono::milliseconds limit) {
    output.clear();
    int fds[2];
    if (!cloexec_pipe(fds)) return -1;
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    detail::SpawnPlan plan;
    plan.path = argv.front();
    plan.argv = argv;
    for (const auto& [key, value] : detail::current_environment()) {
      plan.env.push_back(key + "=" + value);
    }
    plan.stdio[0] = null;
    plan.stdio[1] = fds[1];
    plan.stdio[2] = null;
    plan.max_fd = detail::max_descriptor_bound();
    plan.seal();
    auto outcome = detail::spawn(plan);
    ::close(fds[1]);
    if (null >= 0) ::close(null);
    if (outcome.pidfd >= 0) ::close(outcome.pidfd);
    if (outcome.pid <= 0) {
      ::close(fds[0]);
      return -1;
    }
    auto until = std::chrono::steady_clock::now() + limit;
    char buffer[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd pfd{fds[0], POLLIN, 0};
      int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      ssize_t n = ::read(fds[0], buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      output.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    if (std::chrono::steady_clock::now() >= until) ::kill(outcome.pid, SIGKILL);
    int status = 0;
    while (::waitpid(outcome.pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  SlurmOptions options_;
  std::string token_;
  std::mutex mutex_;  // everything below
  std::map<std::string, Launch> launches_;
  std::vector<int> commands_;  // scancel calls in flight
  std::string scancel_;
  std::string scratch_;
  bool own_scratch_ = false;
  int null_fd_ = -1;
  detail::Lifeline guard_;  // the orphan guard (see start_guard)
};

}  // namespace jobwarden
