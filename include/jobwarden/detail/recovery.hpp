#pragma once
/// \file
/// Recovery of a job whose supervisor died: stopping what is left of its
/// workers and writing the verdict the supervisor never wrote.
///
/// The orphan guard (`orphan_guard.hpp`) normally kills a dead supervisor's
/// workers at once. Recovery is for when it could not: the guard was turned
/// off, could not be started, or was killed together with its supervisor (a
/// kill aimed at both, an OOM kill of both). `jobwarden stop` on a job without
/// a live supervisor, and a supervisor re-opening a job directory, call it.
///
/// What makes it safe:
/// - It holds `supervisor.lock` for its whole run, so it never races a live
///   supervisor (which holds that lock for its whole life) nor a second
///   recovery, and it becomes the single writer of the job's journal
///   (`journal.jsonl`, `journal.hpp`) while it holds it.
/// - It signals only processes proven to be the recorded ones: pid *and*
///   kernel start time, checked after a pidfd is opened where there are pidfds
///   (then the pidfd pins the process, so no later signal can reach a process
///   that reused the pid). A process group is signalled only while its leader
///   is proven alive: while it lives, no other process can own a group with
///   its pid as id. A record from another host is never acted upon.
/// - It never follows a symlink inside the job directory (every file is opened
///   relative to its parent's descriptor with `O_NOFOLLOW`).
/// - It reads the journal's fold (`read_journal`: the job line gives the
///   supervisor's host, pid and cgroup; each worker's latest line its pid
///   and start time) and appends its verdict to the same journal: a worker
///   line per worker it marks lost first, the job line last, then one
///   `fdatasync`; so a recovery that is itself interrupted is simply run
///   again. Their text is the supervisor's own (`worker_line_text`,
///   `job_line_text` of `job_format.hpp`).
/// - A schema 1 job directory (`job.json`, a directory per worker), or a
///   journal naming another schema version, is not read:
///   `errc::unsupported_layout`, and nothing is stopped.
///
/// Escapees: a process that left its worker's process group (`setsid`) is
/// out of reach of every provable signal once recorded only by pid. Where the
/// dead supervisor used cgroups, its job line records its cgroup tree; once that
/// tree is proven to be the dead supervisor's (its name carries the
/// supervisor's pid and start time, which no longer name a live process:
/// `CgroupTree::is_abandoned_tree`), recovery writes its `cgroup.kill` —
/// after the process groups' grace period, so escapees get SIGKILL, not
/// the stop signal — and removes it. Without cgroups (the portable path,
/// macOS, no writable cgroup v2) escapees stay out of reach.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__)
#include <dirent.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/control_files.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/hostname.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/journal.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/platform.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/recovery_report.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// What `recover_abandoned_job` found and did (the public type).
using RecoveryReport = jobwarden::RecoveryReport;

/// `error` of a worker whose leftover processes recovery stopped.
inline constexpr const char* recovery_stopped_error = "its supervisor died; stopped by recovery";
/// `error` of a worker of which nothing was running any more.
inline constexpr const char* recovery_not_running_error = "its supervisor died; nothing of it was running";

/// How long recovery retries a busy lock before it counts as a live
/// supervisor's (readers hold it for microseconds when they probe it).
inline constexpr std::chrono::milliseconds recovery_lock_patience{200};
/// How long recovery waits for SIGKILLed processes to disappear. They are not
/// its children, so their teardown can only be watched, not reaped.
inline constexpr std::chrono::milliseconds recovery_kill_wait{5000};

/// A process proven (by pid and start time) to be one that was recorded, held
/// so it can be watched and signalled without ever reaching a process that
/// reused its pid: on Linux a pidfd pins it; elsewhere its start time is
/// checked again before every signal. Not our child: it is never reaped here.
class ProvenProcess {
 public:
  /// An empty handle (no process).
  ProvenProcess() = default;

  /// The process `pid` if it is alive and started at `start_time`; an empty
  /// handle when it is gone, is someone else, or `start_time` is unknown (0).
  static ProvenProcess find(int pid, unsigned long long start_time) {
    ProvenProcess process;
    if (pid <= 1 || start_time == 0 || pid == static_cast<int>(::getpid())) return process;
#if JOBWARDEN_LINUX_FAST_PATH
    if (features().pidfd) {
      OwnedFd pidfd(sys_pidfd_open(pid));
      if (pidfd) {
        // Checked after the pidfd is open: if the pid still names a process that
        // started then, the pidfd names it too (a reuse would show a new start).
        if (!is_same_process(pid, start_time)) return process;
        process.pidfd_ = std::move(pidfd);
        process.pid_ = pid;
        process.start_time_ = start_time;
        if (process.has_exited()) return ProvenProcess{};  // a zombie waiting for init
        return process;
      }
      if (errno == ESRCH) return process;
      // Out of descriptors (EMFILE): proven by pid and start time alone, as
      // elsewhere; never taken for "not running" because of our own limits.
    }
#endif
    if (!is_same_process(pid, start_time)) return process;
    process.pid_ = pid;
    process.start_time_ = start_time;
    return process;
  }

  /// Whether a process is held.
  explicit operator bool() const noexcept { return pid_ > 0; }
  /// Its pid (0 for an empty handle).
  int pid() const noexcept { return pid_; }
  /// A descriptor that polls readable once it has exited; -1 without pidfds.
  int exit_fd() const noexcept { return pidfd_.get(); }

  /// Whether it has exited (a zombie has, where a pidfd tells; otherwise a
  /// zombie counts as alive until init reaps it). An empty handle has.
  bool has_exited() const {
    if (pid_ <= 0) return true;
    if (pidfd_) {
      pollfd exit_event{pidfd_.get(), POLLIN, 0};
      int ready;
      do {
        ready = ::poll(&exit_event, 1, 0);
      } while (ready < 0 && errno == EINTR);
      if (ready >= 0) return ready > 0;
    }
    return !is_running_process(pid_, start_time_);  // a zombie has exited
  }

  /// Sends `sig` to this process alone. False when it has exited.
  bool signal(int sig) const {
    if (has_exited()) return false;
#if JOBWARDEN_LINUX_FAST_PATH
    if (pidfd_) return sys_pidfd_send_signal(pidfd_.get(), sig) == 0;
#endif
    return ::kill(pid_, sig) == 0;
  }

  /// Sends `sig` to the process group whose id is this process's pid — only
  /// while this process is proven alive: then no other process can have made
  /// a group with that id, so the group is this process's own (a worker is
  /// spawned as its group's leader). Never our own group. False when it has
  /// exited (nothing is provable any more) or there is no such group.
  bool signal_group(int sig) const {
    if (pid_ <= 1 || pid_ == static_cast<int>(::getpgrp()) || has_exited()) return false;
    return ::kill(-pid_, sig) == 0;
  }

 private:
  int pid_ = 0;
  unsigned long long start_time_ = 0;
  OwnedFd pidfd_;
};

/// For each leader, the other processes of the group it leads, each proven
/// and held. A member is taken only when seen in the group while its leader
/// was proven alive before and after the scan (so the group's id could not
/// pass to another owner meanwhile); that lets a grandchild that ignores
/// SIGTERM still be SIGKILLed after its leader exited. Linux only (one walk
/// of `/proc` for all leaders); elsewhere the group signal while the leader
/// lives is all there is.
inline std::vector<std::vector<ProvenProcess>> process_group_members(
    const std::vector<const ProvenProcess*>& leaders) {
  std::vector<std::vector<ProvenProcess>> members(leaders.size());
#if defined(__linux__)
  std::unordered_map<int, std::size_t> leader_of_group;
  const int own_group = static_cast<int>(::getpgrp());
  for (std::size_t i = 0; i < leaders.size(); ++i) {
    const ProvenProcess& leader = *leaders[i];
    if (leader && leader.pid() != own_group && !leader.has_exited()) leader_of_group.emplace(leader.pid(), i);
  }
  if (leader_of_group.empty()) return members;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return members;
  const int self = static_cast<int>(::getpid());
  while (const dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 1 || pid > INT_MAX || pid == self) continue;
    const int group = static_cast<int>(::getpgid(static_cast<pid_t>(pid)));
    auto leader = leader_of_group.find(group);
    if (leader == leader_of_group.end() || group == pid) continue;
    const auto start_time = process_start_time(static_cast<int>(pid));
    if (!start_time) continue;
    ProvenProcess member = ProvenProcess::find(static_cast<int>(pid), *start_time);
    // Asked again now that the process is held: the one held is in the group.
    if (member && ::getpgid(static_cast<pid_t>(pid)) == group) members[leader->second].push_back(std::move(member));
  }
  ::closedir(proc);
  for (const auto& [group, index] : leader_of_group) {
    if (leaders[index]->has_exited()) members[index].clear();  // the group's id may have passed on meanwhile
  }
#else
  (void)leaders;
#endif
  return members;
}

/// Waits until every process in `processes` has exited or `deadline` passes;
/// returns whether all exited. Polls their pidfds where there are pidfds, and
/// checks every few milliseconds otherwise (there is no event for the exit of
/// a process that is not our child).
inline bool wait_for_exits(const std::vector<const ProvenProcess*>& processes,
                           std::chrono::steady_clock::time_point deadline) {
  std::vector<pollfd> exit_events;
  for (;;) {
    exit_events.clear();
    bool any_alive = false;
    bool any_without_fd = false;
    for (const ProvenProcess* process : processes) {
      if (process->has_exited()) continue;
      any_alive = true;
      if (process->exit_fd() >= 0) exit_events.push_back({process->exit_fd(), POLLIN, 0});
      else any_without_fd = true;
    }
    if (!any_alive) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    if (any_without_fd) wait = std::min(wait, std::chrono::milliseconds(5));
    const int timeout = static_cast<int>(std::min<std::chrono::milliseconds::rep>(wait.count(), INT_MAX));
    if (exit_events.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout));
    } else if (::poll(exit_events.data(), static_cast<nfds_t>(exit_events.size()), timeout) < 0 &&
               errno != EINTR) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout, 5)));
    }
  }
}

/// What recovery found of one worker that was not terminal.
struct LeftoverWorker {
  std::string id;
  ProvenProcess leader;                 ///< the recorded process, if it is proven alive
  std::vector<ProvenProcess> members;   ///< the rest of its process group, if any
};

/// The stop sequence for workers that are not our children, in steps that
/// never block, so a supervisor can drive it from `poll()`:
/// `start_stopping_leftovers` sends SIGTERM to each group (while its leader
/// is proven alive); `step_stopping_leftovers`, called again and again, sees
/// who has exited, sends SIGKILL to each group still led by its leader and to
/// every held process still alive once `grace` has passed, and gives up a
/// bounded while (`recovery_kill_wait`) later, reporting processes that
/// outlive SIGKILL (uninterruptible sleep) in `problems`.
class LeftoverStop {
 public:
  using steady_time = std::chrono::steady_clock::time_point;

  /// Takes `workers` (their leaders proven alive), finds the rest of their
  /// groups and sends them the stop signal; the SIGKILL is due after `grace`.
  void start(std::vector<LeftoverWorker> workers, std::chrono::milliseconds grace, steady_time now) {
    workers_ = std::move(workers);
    std::vector<const ProvenProcess*> leaders;
    for (const LeftoverWorker& worker : workers_) leaders.push_back(&worker.leader);
    std::vector<std::vector<ProvenProcess>> members = process_group_members(leaders);
    for (std::size_t i = 0; i < workers_.size(); ++i) workers_[i].members = std::move(members[i]);
    for (const LeftoverWorker& worker : workers_) send(worker, SIGTERM);
    killed_ = false;
    done_ = workers_.empty();
    next_at_ = now + grace;
  }

  /// One step: true once every process is gone, or once the bounded wait
  /// after SIGKILL is over (the survivors then are in `problems`).
  bool step(steady_time now, std::vector<std::pair<std::string, std::string>>& problems) {
    if (done_) return true;
    if (all_exited()) return done_ = true;
    if (now < next_at_) return false;
    if (!killed_) {
      for (const LeftoverWorker& worker : workers_) {
        send(worker, SIGKILL);
        for (const ProvenProcess& member : worker.members) member.signal(SIGKILL);
      }
      killed_ = true;
      next_at_ = now + recovery_kill_wait;
      return false;
    }
    for (const LeftoverWorker& worker : workers_) {
      if (!worker.leader.has_exited()) {
        problems.emplace_back(worker.id, "process " + std::to_string(worker.leader.pid()) + " still runs after SIGKILL");
      }
      for (const ProvenProcess& member : worker.members) {
        if (!member.has_exited()) {
          problems.emplace_back(worker.id, "process " + std::to_string(member.pid()) + " still runs after SIGKILL");
        }
      }
    }
    return done_ = true;
  }

  /// When the next step has work whatever happens (SIGKILL, or giving up);
  /// exits may come sooner (`watched()` tells which processes to watch).
  steady_time next_step_at() const { return next_at_; }
  /// Whether SIGKILL was sent.
  bool killed() const { return killed_; }
  /// The ids of the workers that had processes left.
  bool stopped(const std::string& id) const {
    return std::any_of(workers_.begin(), workers_.end(), [&](const LeftoverWorker& w) { return w.id == id; });
  }
  /// Every process held: leaders and the members of their groups.
  std::vector<const ProvenProcess*> watched() const {
    std::vector<const ProvenProcess*> out;
    for (const LeftoverWorker& worker : workers_) {
      out.push_back(&worker.leader);
      for (const ProvenProcess& member : worker.members) out.push_back(&member);
    }
    return out;
  }

 private:
  static void send(const LeftoverWorker& worker, int sig) {
    worker.leader.signal_group(sig);
    // A leader that moved to another group is not reached by its old group's signal.
    if (::getpgid(static_cast<pid_t>(worker.leader.pid())) != worker.leader.pid()) worker.leader.signal(sig);
  }
  bool all_exited() const {
    for (const ProvenProcess* process : watched()) {
      if (!process->has_exited()) return false;
    }
    return true;
  }

  std::vector<LeftoverWorker> workers_;
  steady_time next_at_{};
  bool killed_ = false;
  bool done_ = true;
};

/// The first half of `reclaim_recorded_cgroup`, which never waits: writes
/// `cgroup.kill` of the cgroup tree the job line records as its dead
/// supervisor's — only once it is proven to be that supervisor's and
/// abandoned (`CgroupTree::is_abandoned_tree`). True when it did: wait for
/// the tree to empty (`wait_cgroup_empty`), then `end_cgroup_reclaim`.
inline bool begin_cgroup_reclaim(const JobRecord& job, RecoveryReport& report) {
  if (job.supervisor_cgroup.empty()) return false;
  std::string why_not;
  if (!CgroupTree::is_abandoned_tree(job.supervisor_cgroup, job.supervisor_pid, job.supervisor_start_time,
                                     why_not)) {
    if (!why_not.empty()) {
      report.problems.emplace_back(journal_file_name, "supervisor.cgroup \"" + job.supervisor_cgroup + "\": " + why_not);
    }
    return false;
  }
  cgroup_kill(job.supervisor_cgroup);
  return true;
}

/// The second half: removes the killed tree, or says it could not.
inline void end_cgroup_reclaim(const JobRecord& job, RecoveryReport& report) {
  if (remove_cgroup_dirs(job.supervisor_cgroup)) {
    report.reclaimed_cgroup = job.supervisor_cgroup;
  } else {
    report.problems.emplace_back(journal_file_name, "supervisor.cgroup \"" + job.supervisor_cgroup +
                                                    "\": still holds processes after cgroup.kill; not removed");
  }
}

/// Kills what is left in the cgroup tree the job line records as its dead
/// supervisor's, and removes it (see `begin_cgroup_reclaim`); waits at most
/// `recovery_kill_wait` for it to empty.
inline void reclaim_recorded_cgroup(const JobRecord& job, RecoveryReport& report) {
  if (!begin_cgroup_reclaim(job, report)) return;
  wait_cgroup_empty(job.supervisor_cgroup, recovery_kill_wait);
  end_cgroup_reclaim(job, report);
}

/// A short reason for a file recovery could not use.
inline std::string describe_file_error(std::error_code ec) {
  if (ec == std::errc::too_many_symbolic_link_levels) return "symbolic link not followed";
  if (ec == errc::not_regular_file) return "not a regular file";
  if (ec == std::errc::not_a_directory) return "not a directory";
  if (ec == errc::oversized_file) return "oversized";
  return "unreadable: " + ec.message();
}

/// Reads and parses one JSON file in `dir_fd`: the document, or
/// `std::nullopt` with `problem` set (`ec` gets the read error, if that was it).
inline std::optional<nlohmann::json> read_json_at(int dir_fd, const char* name, std::string& problem,
                                                  std::error_code& ec) {
  std::string content;
  ec = read_file_at(dir_fd, name, content);
  if (ec) {
    problem = describe_file_error(ec);
    return std::nullopt;
  }
  nlohmann::json document = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    problem = "not valid JSON";
    return std::nullopt;
  }
  return document;
}

/// Where a journal problem was found, for `RecoveryReport::problems`.
inline std::string describe_journal_problem(const JournalProblem& problem) {
  std::string text = problem.error;
  if (!problem.detail.empty()) text += ": " + problem.detail;
  return text + " (line at byte " + std::to_string(problem.offset) + ")";
}

/// The problem recovery reports for a schema 1 job directory.
inline constexpr const char* legacy_layout_problem =
    "a job directory of an older jobwarden (schema 1: job.json and workers/<id>/process.json); "
    "not read, nothing was stopped";

/// A recovery under way, between `begin_recovery` (which read the journal
/// and sent what is left of the workers their stop signal) and
/// `finish_recovery` (which writes the verdict); `step_recovery` drives the
/// stop sequence in between without blocking. `recover_locked_job` runs the
/// three at once; a supervisor recovering in the background spreads the
/// steps over its `poll()` calls. Holds processes (pidfds), not the lock.
struct RecoveryTask {
  /// One worker of the journal (its latest line), in id order.
  struct Worker {
    std::string id;
    std::optional<WorkerInfo> record;  ///< empty when its latest line is unusable
  };
  JobRecord job;                  ///< the journal's job line, as the dead supervisor left it
  std::string journal_job_id;     ///< the job id the journal names
  std::uint64_t generation = 0;   ///< the journal's generation, to append to it
  std::vector<Worker> workers;
  bool any_unfinished = false;    ///< a worker was not terminal (or unreadable)
  bool reclaim_only = false;      ///< a finished job: only its cgroup tree, if any, is left to reclaim
  /// When its supervisor was last seen alive (its latest line's times).
  std::optional<std::chrono::system_clock::time_point> last_sign_of_life;
  LeftoverStop stop;              ///< the stop sequence of what was proven to be left
};

/// The first part of `recover_locked_job` (same errors, same report): reads
/// the journal, removes a stop or control request the dead supervisor never
/// honoured, finds what is proven to be left of the workers and sends it the
/// stop signal. Never waits. Then `step_recovery` until it says done, then
/// `finish_recovery`.
inline void begin_recovery(int job_dir_fd, std::chrono::milliseconds grace, RecoveryTask& task,
                           RecoveryReport& report, std::error_code& ec) {
  ec.clear();
  if (is_legacy_job_dir(job_dir_fd)) {
    report.problems.emplace_back(legacy_job_file_name, legacy_layout_problem);
    ec = make_error_code(errc::unsupported_layout);
    return;
  }

  // The journal: without a usable job line there is no host to trust pids on.
  JournalFold fold;
  if ((ec = read_journal(job_dir_fd, fold))) {
    if (ec == std::errc::no_such_file_or_directory) ec = make_error_code(errc::unknown_job);
    else report.problems.emplace_back(journal_file_name, describe_file_error(ec));
    return;
  }
  if (std::string problem = journal_schema_problem(fold); !problem.empty()) {
    report.problems.emplace_back(journal_file_name, problem + "; not read, nothing was stopped");
    ec = make_error_code(errc::unsupported_layout);
    return;
  }
  for (const JournalProblem& problem : fold.problems()) {
    report.problems.emplace_back(journal_file_name, describe_journal_problem(problem));
  }
  if (!fold.job()) {
    if (fold.job_problem().empty()) report.problems.emplace_back(journal_file_name, "no job line");
    ec = make_error_code(errc::bad_status_file);
    return;
  }
  task.job = *fold.job();
  const JobRecord& job = task.job;
  if (!job.supervisor_hostname.empty() && job.supervisor_hostname != local_hostname()) {
    report.problems.emplace_back(journal_file_name, "its supervisor ran on host \"" + job.supervisor_hostname +
                                                        "\": only there can its processes be told from others");
    ec = std::make_error_code(std::errc::operation_not_supported);
    return;
  }
  task.journal_job_id = fold.job_id().empty() ? job.job_id : fold.job_id();
  task.generation = fold.generation();

  // The workers (each one's latest line), in id order.
  std::vector<RecoveryTask::Worker>& workers = task.workers;
  // The job ran until its supervisor's last line (it appends a job line at
  // least every job_refresh_interval while it lives): its ended_at, rather
  // than the moment recovery noticed.
  std::optional<std::chrono::system_clock::time_point>& last_sign_of_life = task.last_sign_of_life;
  last_sign_of_life = job.updated_at;
  if (!last_sign_of_life) last_sign_of_life = job.created_at;
  for (std::size_t i = 0; i < fold.worker_count(); ++i) {
    const JournalWorker& line = fold.worker(i);
    RecoveryTask::Worker worker{line.id, {}};
    if (line.ok) {
      // What its supervisor wrote is a sign that it was still alive then.
      auto newest = [&](const std::optional<std::chrono::system_clock::time_point>& time) {
        if (time && (!last_sign_of_life || *time > *last_sign_of_life)) last_sign_of_life = time;
      };
      newest(line.updated_at);
      newest(line.info.started_at);
      newest(line.info.ended_at);
      worker.record = line.info;
    } else {
      report.problems.emplace_back(journal_file_name, "worker \"" + line.id + "\": " + line.problem +
                                                          " (line at byte " + std::to_string(line.offset) + ")");
    }
    workers.push_back(std::move(worker));
  }
  std::sort(workers.begin(), workers.end(),
            [](const RecoveryTask::Worker& a, const RecoveryTask::Worker& b) { return a.id < b.id; });

  for (const RecoveryTask::Worker& worker : workers) {
    if (!worker.record || !is_terminal(worker.record->state)) task.any_unfinished = true;
  }
  if (is_terminal(job.state) && !task.any_unfinished) {  // finished, and nothing left behind but maybe escapees
    task.reclaim_only = true;
    return;
  }
  report.job_was_abandoned = !is_terminal(job.state);
  if (report.job_was_abandoned) {
    // A stop request its dead supervisor never honoured is done with now
    // (recovery stops everything); it must not stop the job id's next run.
    ::unlinkat(job_dir_fd, stop_request_file_name, 0);
    remove_stale_control_files(job_dir_fd);  // and control requests, likewise
  }

  // Stop what is proven to be left.
  std::vector<LeftoverWorker> leftovers;
  for (const RecoveryTask::Worker& worker : workers) {
    if (!worker.record || is_terminal(worker.record->state)) continue;
    ProvenProcess leader = ProvenProcess::find(worker.record->pid, worker.record->process_start_time);
    if (!leader) continue;
    if (leader.pid() == static_cast<int>(::getpgrp())) {
      // Recovery itself runs inside this worker's group (a worker stopping its own job).
      report.problems.emplace_back(worker.id, "recovery runs inside this worker's process group; not stopped");
      continue;
    }
    leftovers.push_back({worker.id, std::move(leader), {}});
  }
  task.stop.start(std::move(leftovers), grace, std::chrono::steady_clock::now());
}

/// One step of the stop sequence `begin_recovery` began; never waits. True
/// once it is over and `finish_recovery` may run. Until then, call it again
/// by `task.stop.next_step_at()` at the latest (processes that exit sooner
/// are seen at the next call).
inline bool step_recovery(RecoveryTask& task, RecoveryReport& report) {
  return task.stop.step(std::chrono::steady_clock::now(), report.problems);
}

/// The last part of `recover_locked_job`, once the stop sequence is over:
/// reclaims the dead supervisor's cgroup tree (escapees; not when the caller
/// did already, `cgroup_reclaimed`) and appends the verdict to the journal.
/// Needs the lock still held.
inline void finish_recovery(int job_dir_fd, RecoveryTask& task, RecoveryReport& report, std::error_code& ec,
                            bool cgroup_reclaimed = false) {
  ec.clear();
  JobRecord& job = task.job;
  // What the groups could not reach (escapees), and a worker started but
  // never recorded: everything in the dead supervisor's cgroup tree.
  if (!cgroup_reclaimed) reclaim_recorded_cgroup(job, report);
  if (task.reclaim_only) return;
  const auto now = std::chrono::system_clock::now();

  // The verdict is appended to the dead supervisor's journal: we hold its
  // lock, so we are its single writer now. Worth an fdatasync: it is written
  // once and nobody will write it again.
  JournalWriter journal;
  journal.options().durable = true;
  journal.open_existing(job_dir_fd, task.journal_job_id, task.generation, ec);
  if (ec) {
    report.problems.emplace_back(journal_file_name, "cannot write: " + ec.message());
    return;
  }
  // A worker's own report names the process that wrote it; read relative to
  // `workers/`, never through a link.
  std::error_code workers_error;
  const OwnedFd workers_dir = open_directory_at(job_dir_fd, workers_dir_name, workers_error);

  // Mark every worker that was not terminal lost: worker lines first.
  JobSummary summary;
  for (RecoveryTask::Worker& worker : task.workers) {
    if (!worker.record) {
      summary.add(WorkerState::lost);  // unknown, and certainly not finished by its supervisor
      continue;
    }
    WorkerInfo& info = *worker.record;
    if (is_terminal(info.state)) {
      summary.add(info.state);
      continue;
    }
    const bool stopped = task.stop.stopped(worker.id);
    if (stopped) report.stopped.push_back(worker.id);
    info.state = WorkerState::lost;
    info.error = stopped ? recovery_stopped_error : recovery_not_running_error;
    if (!info.ended_at) info.ended_at = now;
    summary.add(WorkerState::lost);
    if (std::error_code write_error = journal.append(worker_line_text(info, now))) {
      report.problems.emplace_back(journal_file_name,
                                   "cannot write worker \"" + worker.id + "\": " + write_error.message());
      continue;
    }
    report.marked_lost.push_back(worker.id);

    // A worker's own report names the process that wrote it. It is the
    // worker's word, not proof that the process is the worker's, so nothing
    // is signalled on its strength (a worker could name any process); but a
    // reporter still running after the worker was stopped — it left the
    // group, or the group had no leader left to prove it — is worth saying.
    if (!workers_dir) continue;
    const std::string status_name = status_file_name(worker.id);
    std::string ignored_problem;
    std::error_code ignored_error;
    if (auto status = read_json_at(workers_dir.get(), status_name.c_str(), ignored_problem, ignored_error)) {
      StatusRecord reported;
      if (status_record_from_json(*status, reported, ignored_problem) && reported.pid > 0 &&
          reported.pid != info.pid && (reported.attempt == 0 || reported.attempt >= info.attempt) &&
          is_same_process(reported.pid, reported.process_start_time)) {
        report.problems.emplace_back(std::string(workers_dir_name) + "/" + status_name,
                                     "its reporting process " + std::to_string(reported.pid) +
                                         " still runs; not stopped (a worker's own report proves nothing)");
      }
    }
  }

  // The job line last: a recovery interrupted before it is run again.
  if (!is_terminal(job.state)) {  // a verdict the supervisor wrote stays
    job.state = task.any_unfinished || summary.total == 0 ? JobState::lost : job_state_from_workers(summary);
    job.summary = summary;
    if (!job.ended_at) {
      const auto& seen = task.last_sign_of_life;
      job.ended_at = seen && *seen < now ? *seen : now;
    }
    job.updated_at = now;
    if (std::error_code write_error = journal.append(job_line_text(job))) {
      report.problems.emplace_back(journal_file_name, "cannot write the job line: " + write_error.message());
      ec = write_error;
    }
  }
  if (std::error_code sync_error = journal.sync()) {
    report.problems.emplace_back(journal_file_name, "cannot sync: " + sync_error.message());
    if (!ec) ec = sync_error;
  }
}


/// The body of `recover_abandoned_job`, once it holds the job's
/// `supervisor.lock` and has the job directory open as `job_dir_fd`. Same
/// contract otherwise: `begin_recovery`, the stop sequence waited out, then
/// `finish_recovery`.
inline void recover_locked_job(int job_dir_fd, std::chrono::milliseconds grace, RecoveryReport& report,
                               std::error_code& ec) {
  RecoveryTask task;
  begin_recovery(job_dir_fd, grace, task, report, ec);
  if (ec) return;
  while (!step_recovery(task, report)) wait_for_exits(task.stop.watched(), task.stop.next_step_at());
  finish_recovery(job_dir_fd, task, report, ec);
}

/// Finds the workers a dead supervisor of the job `layout` left behind and
/// stops them — only processes proven to be the recorded ones (pid and start
/// time), never a reused pid — with the stop sequence (SIGTERM to each
/// worker's process group, up to `grace`, then SIGKILL), then marks every
/// worker that was not terminal `lost` and, unless the job line already
/// holds a verdict, the job `lost` (or, when every worker had finished, what
/// its workers imply) with `ended_at` set — lines appended to the job's
/// journal, the job line last, made durable with one `fdatasync`.
///
/// Holds the job's `supervisor.lock` throughout, so it never races a live
/// supervisor. Errors, with nothing changed: `errc::invalid_id` (before
/// touching the disk), `errc::unknown_job` (no such directory, or neither a
/// journal nor a `job.json`), `errc::unsupported_layout` (a schema 1 job
/// directory: `job.json` and no journal; or a journal of another schema
/// version), `errc::job_locked` (a supervisor is
/// alive), `ELOOP` (the job directory or its journal is a symlink),
/// `errc::bad_status_file` (the journal has no usable job line),
/// `ENOTSUP` (the supervisor ran on another host), `ENOENT` (no lock file:
/// nothing proves the supervisor dead). A finished job whose workers are all
/// terminal is left as it is. A journal line that cannot be read, or a
/// worker line that cannot be written, is reported in `problems` and the
/// rest is still recovered.
inline RecoveryReport recover_abandoned_job(const JobLayout& layout, std::chrono::milliseconds grace,
                                            std::error_code& ec) {
  RecoveryReport report;
  ec.clear();
  if (!is_valid_id(layout.job_id)) {
    ec = make_error_code(errc::invalid_id);
    return report;
  }
  if (layout.root.empty()) {
    ec = make_error_code(errc::invalid_argument);
    return report;
  }
  if (grace.count() < 0) {
    ec = make_error_code(errc::invalid_duration);
    return report;
  }
  try {
    auto missing = [](const std::error_code& error) {
      return error == std::errc::no_such_file_or_directory || error == std::errc::not_a_directory;
    };
    OwnedFd root = open_directory(layout.root, ec);
    if (ec) {
      if (missing(ec)) ec = make_error_code(errc::unknown_job);
      return report;
    }
    OwnedFd job_dir = open_directory_at(root.get(), layout.job_id.c_str(), ec);
    if (ec) {
      if (missing(ec)) ec = make_error_code(errc::unknown_job);
      return report;
    }
    if (is_legacy_job_dir(job_dir.get())) {
      report.problems.emplace_back(legacy_job_file_name, legacy_layout_problem);
      ec = make_error_code(errc::unsupported_layout);
      return report;
    }
    FileStamp journal_file;
    if ((ec = stat_file_at(job_dir.get(), journal_file_name, journal_file))) {
      if (ec == std::errc::no_such_file_or_directory) ec = make_error_code(errc::unknown_job);
      else report.problems.emplace_back(journal_file_name, describe_file_error(ec));
      return report;
    }
    const OwnedFd lock = acquire_supervisor_lock(job_dir.get(), /*create=*/false, recovery_lock_patience, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) {
        report.problems.emplace_back(lock_file_name, "missing: nothing proves the supervisor dead");
      }
      return report;
    }
    recover_locked_job(job_dir.get(), grace, report, ec);
  } catch (...) {  // allocation failures: the non-throwing form never throws
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return report;
}

/// Throwing form of `recover_abandoned_job`: `std::system_error` naming the
/// job, its root and the first problem found.
inline RecoveryReport recover_abandoned_job(const JobLayout& layout, std::chrono::milliseconds grace) {
  std::error_code ec;
  RecoveryReport report = recover_abandoned_job(layout, grace, ec);
  if (ec) {
    std::string what = "cannot recover job " + quote_id(layout.job_id) + " under " + layout.root;
    if (!report.problems.empty()) {
      what += " (" + report.problems.front().first + ": " + report.problems.front().second + ")";
    }
    throw_error(ec, what);
  }
  return report;
}

}  // namespace jobwarden::detail
