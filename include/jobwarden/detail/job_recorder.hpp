#pragma once
/// \file
/// The supervisor's side of the job directory: `JobRecorder` writes `job.json`
/// and each worker's `process.json`, and holds `supervisor.lock`. What those
/// files hold and how their text is made is `job_format.hpp`.
/// One writer per file: the supervisor writes `job.json` and `process.json`
/// only, the worker writes its `status.json` only (`WorkerStatusWriter`).
///
/// How `JobSupervisor` drives it:
/// ```
/// detail::JobRecorder recorder({root, job_id}, {.durable = false});
/// recorder.open(ec);               // creates <root>/<job>/, takes the lock, writes job.json
///                                  // (errc::invalid_id, errc::job_locked, errc::job_exists)
/// // per worker, on submit (before it can be seen as anything but pending):
/// recorder.prepare_worker(info.id, ec);         // creates workers/<id>/ (logs go there)
/// recorder.write_process(info, ec);             // state pending
/// env[status_file_env] = recorder.status_file(info.id);
/// // on every state change of a worker (spawned, exited, restarted, stopped):
/// recorder.write_process(info, ec);
/// recorder.write_job(JobState::running, summary, ec);   // refresh counts (cheap; may be batched)
/// // when the supervisor will accept no more work and every worker is terminal:
/// recorder.write_job(job_state_from_workers(summary) /* or cancelled */, summary, ec);
/// // destruction (or close()) releases the lock; readers then see a finished job,
/// // or — had the supervisor died before the final write_job — a lost one.
/// ```
/// A failed write returns its error and leaves the previous file as it was;
/// the supervisor carries on (the next write of the same file repairs it).

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/hostname.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// How a `JobRecorder` writes.
struct JobRecorderOptions {
  /// `fsync` every record and its directory (see `AtomicWriteOptions::durable`).
  bool durable = false;
  /// What `open()` does when a finished job with the same id is on disk:
  /// `false` fails with `errc::job_exists` and changes nothing; `true`
  /// removes the old job's records (never following a link) and starts anew.
  bool replace_finished = false;
  /// How long `open()` retries a busy lock before it counts as a live
  /// supervisor's (readers hold it for microseconds when they probe it).
  std::chrono::milliseconds lock_patience{200};
  /// The supervisor's own cgroup tree, recorded in `job.json` for recovery
  /// (`CgroupTree::parent()`; empty: none).
  std::string supervisor_cgroup;
};

/// The supervisor's writer of the job directory (see the file comment for how
/// the supervisor calls it). Move-only; holds `supervisor.lock` from `open()`
/// until it is destroyed or `close()`d. Not thread-safe: the supervisor calls
/// it from its one thread (or under its own mutex).
class JobRecorder {
 public:
  /// A recorder for the job `layout.job_id` under `layout.root`; touches
  /// nothing on disk until `open()`.
  explicit JobRecorder(JobLayout layout, JobRecorderOptions options = {})
      : layout_(std::move(layout)), options_(options) {}

  JobRecorder(const JobRecorder&) = delete;
  JobRecorder& operator=(const JobRecorder&) = delete;
  /// Moves the open job (and its lock) to the new recorder.
  JobRecorder(JobRecorder&&) noexcept = default;
  /// Releases this recorder's lock, then takes `other`'s job.
  JobRecorder& operator=(JobRecorder&&) noexcept = default;
  /// Releases the lock. Writes nothing: the supervisor writes the final
  /// `job.json` with `write_job` first, or readers see the job as lost.
  ~JobRecorder() = default;

  /// Creates `<root>` (like `mkdir -p`), `<root>/<job_id>/` and `workers/`,
  /// takes the job's lock and writes `job.json` (state `running`). Errors:
  /// `errc::invalid_id` / `errc::invalid_argument` before anything touches
  /// the disk; `errc::job_locked` when another supervisor holds the job;
  /// `errc::job_exists` when a finished job of that id is there (see
  /// `JobRecorderOptions::replace_finished`); `ELOOP` when the job directory
  /// is a symlink; or the system error. A job directory this call created is
  /// removed again when it fails. Calling it on an open recorder does nothing.
  void open(std::error_code& ec) {
    ec.clear();
    if (is_open()) return;
    if (!is_valid_id(layout_.job_id)) {
      ec = make_error_code(errc::invalid_id);
      return;
    }
    if (layout_.root.empty()) {
      ec = make_error_code(errc::invalid_argument);
      return;
    }
    if ((ec = make_directories(layout_.root))) return;
    OwnedFd root = open_directory(layout_.root, ec);
    if (ec) return;
    const bool created_job_dir = ::mkdirat(root.get(), layout_.job_id.c_str(), 0777) == 0;
    if (!created_job_dir && errno != EEXIST) {
      ec = errno_code();
      return;
    }
    auto undo = [&] {
      lock_.reset();
      workers_dir_.reset();
      job_dir_.reset();
      if (created_job_dir) {
        std::error_code ignored = remove_tree_at(root.get(), layout_.job_id);
        (void)ignored;
      }
    };
    job_dir_ = open_directory_at(root.get(), layout_.job_id.c_str(), ec);
    if (ec) return undo();
    lock_ = acquire_supervisor_lock(job_dir_.get(), /*create=*/true, options_.lock_patience, ec);
    if (ec) return undo();

    FileStamp existing;
    if (!created_job_dir && !stat_file_at(job_dir_.get(), job_file_name, existing)) {
      if (!options_.replace_finished) {
        ec = make_error_code(errc::job_exists);
        return undo();
      }
      if ((ec = remove_tree_at(job_dir_.get(), workers_dir_name))) return undo();
      // A request that reached the finished job is not for the new one. Only
      // here, before job.json says `running`: a request written after that is
      // this job's, and must never be removed unread.
      if (::unlinkat(job_dir_.get(), stop_request_file_name, 0) != 0 && errno != ENOENT) {
        ec = errno_code();
        return undo();
      }
    }
    if (::mkdirat(job_dir_.get(), workers_dir_name, 0777) != 0 && errno != EEXIST) {
      ec = errno_code();
      return undo();
    }
    workers_dir_ = open_directory_at(job_dir_.get(), workers_dir_name, ec);
    if (ec) return undo();

    record_ = JobRecord{};
    record_.job_id = layout_.job_id;
    record_.state = JobState::running;
    record_.created_at = std::chrono::system_clock::now();
    record_.supervisor_pid = static_cast<int>(::getpid());
    record_.supervisor_start_time = process_start_time(record_.supervisor_pid).value_or(0);
    record_.supervisor_hostname = local_hostname();
    record_.supervisor_cgroup = options_.supervisor_cgroup;
    record_.summary = JobSummary{};
    if ((ec = store_job_record())) return undo();
    recorded_workers_.clear();
  }

  /// Throwing form of `open`: `std::system_error` naming the job and root.
  void open() {
    std::error_code ec;
    open(ec);
    if (ec) throw_error(ec, "cannot open job " + quote_id(layout_.job_id) + " under " + layout_.root);
  }

  /// The open job directory (-1 before `open()`): files in it are read and
  /// removed relative to it, never by path.
  int job_dir_fd() const noexcept { return job_dir_.get(); }

  /// Whether `open()` succeeded and the lock is held.
  bool is_open() const noexcept { return static_cast<bool>(lock_); }

  /// The job's paths.
  const JobLayout& layout() const noexcept { return layout_; }

  /// The path to give a worker as `JOBWARDEN_STATUS_FILE`.
  std::string status_file(const std::string& worker_id) const { return layout_.status_file(worker_id); }

  /// When `open()` created this job record.
  std::optional<std::chrono::system_clock::time_point> created_at() const { return record_.created_at; }

  /// Creates `workers/<worker_id>/` (fine if it exists; refused if it is a
  /// symlink). `errc::invalid_id` for a bad id, before touching the disk.
  void prepare_worker(const std::string& worker_id, std::error_code& ec) {
    (void)open_worker_dir(worker_id, ec);
  }

  /// Throwing form of `prepare_worker`.
  void prepare_worker(const std::string& worker_id) {
    std::error_code ec;
    prepare_worker(worker_id, ec);
    if (ec) throw_error(ec, "cannot create the directory of worker " + quote_id(worker_id));
  }

  /// Writes `workers/<info.id>/process.json` atomically (creating the worker's
  /// directory if needed). A terminal state is final for its attempt:
  /// recording a different state for the same or an earlier attempt is
  /// refused with `errc::invalid_state_transition` (a restart records a
  /// higher `attempt`). On error the previous file stays as it was.
  void write_process(const WorkerInfo& info, std::error_code& ec) {
    ec.clear();
    auto recorded = recorded_workers_.find(info.id);
    if (recorded != recorded_workers_.end() && is_terminal(recorded->second.state) &&
        info.state != recorded->second.state && info.attempt <= recorded->second.attempt) {
      ec = make_error_code(errc::invalid_state_transition);
      return;
    }
    OwnedFd dir = open_worker_dir(info.id, ec);
    if (ec) return;
    try {
      const std::string content = process_record_text(info, std::chrono::system_clock::now());
      ec = write_file_atomically_at(dir.get(), process_file_name, content, write_options());
      if (!ec) recorded_workers_[info.id] = {info.state, info.attempt};
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
  }

  /// Throwing form of `write_process`.
  void write_process(const WorkerInfo& info) {
    std::error_code ec;
    write_process(info, ec);
    if (ec) throw_error(ec, "cannot write " + layout_.process_file(info.id));
  }

  /// Rewrites `job.json` with `state` and `summary`. The first terminal state
  /// also sets `ended_at`; after it, any other state is refused with
  /// `errc::invalid_state_transition` (a finished job never runs again:
  /// a client waiting for it would hang), so write a terminal state only once
  /// the supervisor accepts no more work. On error the previous file stays.
  void write_job(JobState state, const JobSummary& summary, std::error_code& ec) {
    ec.clear();
    if (!is_open()) {
      ec = std::make_error_code(std::errc::bad_file_descriptor);
      return;
    }
    if (is_terminal(record_.state) && state != record_.state) {
      ec = make_error_code(errc::invalid_state_transition);
      return;
    }
    JobRecord next = record_;
    next.state = state;
    next.summary = summary;
    if (is_terminal(state) && !next.ended_at) next.ended_at = std::chrono::system_clock::now();
    std::swap(next, record_);
    if ((ec = store_job_record())) std::swap(next, record_);  // the file did not change: neither does the record
  }

  /// Throwing form of `write_job`.
  void write_job(JobState state, const JobSummary& summary) {
    std::error_code ec;
    write_job(state, summary, ec);
    if (ec) throw_error(ec, "cannot write " + layout_.job_file());
  }

  /// Releases the lock and the directory handles; the files stay as last
  /// written. The recorder can be `open()`ed again (which rewrites job.json).
  void close() noexcept {
    lock_.reset();
    workers_dir_.reset();
    job_dir_.reset();
  }

 private:
  struct RecordedWorker {
    WorkerState state;
    int attempt;
  };

  AtomicWriteOptions write_options() const { return AtomicWriteOptions{options_.durable, 0644}; }

  std::error_code store_job_record() {
    try {
      record_.updated_at = std::chrono::system_clock::now();
      return write_file_atomically_at(job_dir_.get(), job_file_name, job_record_text(record_),
                                      write_options());
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }

  OwnedFd open_worker_dir(const std::string& worker_id, std::error_code& ec) {
    ec.clear();
    if (!is_valid_id(worker_id)) {
      ec = make_error_code(errc::invalid_id);
      return {};
    }
    if (!is_open()) {
      ec = std::make_error_code(std::errc::bad_file_descriptor);
      return {};
    }
    // A worker written before has its directory: open it straight away (and
    // create it again only if someone removed it since).
    if (recorded_workers_.count(worker_id) != 0) {
      OwnedFd dir = open_directory_at(workers_dir_.get(), worker_id.c_str(), ec);
      if (ec != std::errc::no_such_file_or_directory) return dir;
      ec.clear();
    }
    if (::mkdirat(workers_dir_.get(), worker_id.c_str(), 0777) != 0 && errno != EEXIST) {
      ec = errno_code();
      return {};
    }
    return open_directory_at(workers_dir_.get(), worker_id.c_str(), ec);
  }

  JobLayout layout_;
  JobRecorderOptions options_;
  OwnedFd job_dir_;
  OwnedFd workers_dir_;
  OwnedFd lock_;
  JobRecord record_;
  std::unordered_map<std::string, RecordedWorker> recorded_workers_;
};

}  // namespace jobwarden::detail
