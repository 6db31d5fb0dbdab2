#pragma once
/// \file
/// Recovery of a dead predecessor's job driven by the supervisor's `poll()`
/// (`SupervisorOptions::recover_in_background`), instead of inside its
/// constructor.
///
/// The constructor (`begin_background_recovery`) does what is cheap and
/// decides what can fail: it takes the job's `supervisor.lock` (a live
/// supervisor: `errc::job_locked`), refuses a finished job it may not reuse
/// (`errc::job_exists`, before anything is stopped), reads the journal and
/// sends what is proven to be left of the workers their stop signal. From
/// then on it holds the lock, so a second restarted host cannot recover the
/// same job too. `poll()` (`BackgroundRecovery::advance`) sends SIGKILL once
/// the grace has passed, waits for the processes to go, reclaims the dead
/// supervisor's cgroup tree, writes the verdict, and hands the lock to the
/// job recorder, which opens the job without ever letting the lock go. No
/// step waits: the cgroup tree is killed in one poll and removed in a later
/// one, once empty (or once `recovery_kill_wait` has passed).

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/control_files.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/errors.hpp"

namespace jobwarden::detail {

/// How often `poll()` looks at a recovery's processes when nothing else is due
/// (there is no event for the exit of a process that is not our child).
inline constexpr std::chrono::milliseconds background_recovery_check_interval{25};
/// How often it looks whether the dead supervisor's killed cgroup tree has
/// emptied: soon at first (it empties within moments), then at the check
/// interval (a tree that does not empty is looked at for up to
/// `recovery_kill_wait`).
inline constexpr std::chrono::milliseconds background_recovery_cgroup_interval{2};
inline constexpr std::chrono::milliseconds background_recovery_cgroup_soon{100};

/// A recovery under way in the background: the job directory and its lock,
/// held from the constructor until the job is opened.
struct BackgroundRecovery {
  OwnedFd job_dir;
  OwnedFd lock;
  RecoveryTask task;
  RecoveryReport report;
  JobRecorderOptions recorder_options;  ///< how the job is opened once recovery is done
  /// The dead run's stop and control requests were removed when the lock
  /// was taken: any found later were written for this run.
  bool requests_cleared = false;

  /// The dead supervisor's cgroup tree was killed (then) and is being
  /// waited for (until `cgroup_give_up_at` at the latest).
  std::optional<std::chrono::steady_clock::time_point> cgroup_killed_at;
  std::optional<std::chrono::steady_clock::time_point> cgroup_give_up_at;

  /// One non-blocking step; true once the verdict is written (or could not
  /// be: `ec`, and `report.problems` says why) and the lock may be handed on.
  bool advance(std::error_code& ec) {
    ec.clear();
    if (!cgroup_give_up_at) {
      if (!step_recovery(task, report)) return false;
      if (begin_cgroup_reclaim(task.job, report)) {
        cgroup_killed_at = std::chrono::steady_clock::now();
        cgroup_give_up_at = *cgroup_killed_at + recovery_kill_wait;
      }
    }
    if (cgroup_give_up_at) {
      const bool empty = wait_cgroup_empty(task.job.supervisor_cgroup, std::chrono::milliseconds(0));
      if (!empty && std::chrono::steady_clock::now() < *cgroup_give_up_at) return false;
      end_cgroup_reclaim(task.job, report);
    }
    finish_recovery(job_dir.get(), task, report, ec, /*cgroup_reclaimed=*/true);
    return true;
  }

  /// How long until `advance` has something to do for sure.
  std::chrono::milliseconds wait() const {
    // A killed cgroup empties within moments: looked at again soon.
    if (cgroup_killed_at) {
      return std::chrono::steady_clock::now() - *cgroup_killed_at < background_recovery_cgroup_soon
                 ? background_recovery_cgroup_interval
                 : background_recovery_check_interval;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(task.stop.next_step_at() -
                                                                   std::chrono::steady_clock::now());
    return std::clamp(left, std::chrono::milliseconds(0), background_recovery_check_interval);
  }
};

/// The message for `errc::job_exists`: which options reuse the id.
inline std::string job_exists_advice() {
  return "set SupervisorOptions::replace_finished_job to start it anew under this id (its records are "
         "replaced), or resume_finished_job to keep them and run again only what did not succeed "
         "(`jobwarden run --replace` / `--resume`)";
}

/// The constructor's part. Returns the recovery begun, with the lock held;
/// null with `ec` set when the job cannot be opened (`errc::job_locked`,
/// `errc::job_exists`: nothing was touched); null without `ec` when there
/// is nothing to recover in the background — no job directory or journal
/// yet, a journal recovery cannot read (the synchronous path judges those
/// at once, with nothing to wait for), or nothing of the workers left
/// (`finished` then holds the lock and the verdict already written, for the
/// job to be opened at once).
inline std::unique_ptr<BackgroundRecovery> begin_background_recovery(const JobLayout& layout, bool reuse_id,
                                                                     std::chrono::milliseconds grace,
                                                                     std::unique_ptr<BackgroundRecovery>& finished,
                                                                     std::error_code& ec) {
  ec.clear();
  finished.reset();
  if (grace.count() < 0) return nullptr;  // the synchronous path says invalid_duration
  std::error_code ignored;
  OwnedFd root = open_directory(layout.root, ignored);
  if (!root) return nullptr;  // a new job (or one the recorder will say why it cannot make)
  auto recovery = std::make_unique<BackgroundRecovery>();
  recovery->job_dir = open_directory_at(root.get(), layout.job_id.c_str(), ignored);
  if (!recovery->job_dir) return nullptr;
  FileStamp journal;
  if (stat_file_at(recovery->job_dir.get(), journal_file_name, journal)) return nullptr;
  // Never created here: a job directory without its lock file proves no
  // supervisor dead (a live one may hold the lock of an unlinked file), and
  // the synchronous path reports that without stopping anything.
  recovery->lock = acquire_supervisor_lock(recovery->job_dir.get(), /*create=*/false, recovery_lock_patience, ec);
  if (ec == errc::job_locked) return nullptr;
  if (ec) {  // no lock file, or it cannot be taken for another reason: judged by the synchronous path
    ec.clear();
    return nullptr;
  }
  if (!reuse_id) {  // refused before anything is stopped: the host learns at once
    ec = make_error_code(errc::job_exists);
    return nullptr;
  }
  std::error_code recovery_error;
  begin_recovery(recovery->job_dir.get(), grace, recovery->task, recovery->report, recovery_error);
  if (recovery_error) return nullptr;  // nothing was stopped: judged by the synchronous path
  // Recovery is ours now (its checks passed: the dead supervisor was of this
  // host). `jobwarden stop` and control requests take the lock's holder for
  // the job's supervisor: what they write from here on is ours, and the
  // job's opening must not remove it as stale. What is there now was for
  // the dead run (`begin_recovery` removed it already for an abandoned job;
  // a finished job's is removed here).
  recovery->requests_cleared = !clear_stale_requests_at(recovery->job_dir.get());
  std::error_code done_error;
  if (recovery->advance(done_error)) {  // nothing left to wait for
    finished = std::move(recovery);
    return nullptr;
  }
  return recovery;
}

}  // namespace jobwarden::detail
