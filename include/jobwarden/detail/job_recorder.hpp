#pragma once
/// \file
/// The supervisor's side of the job directory: `JobRecorder` appends the
/// job's and each worker's records to the job's journal (`journal.hpp`),
/// compacts it when it grows, and holds `supervisor.lock`. What the records
/// hold and how their text is made is `job_format.hpp`. One writer per file:
/// the supervisor writes the journal only, the worker writes its
/// `workers/<id>.status.json` only (`WorkerStatusWriter`).
///
/// How `JobSupervisor` drives it:
/// ```
/// detail::JobRecorder recorder({root, job_id}, {.durable = false});
/// recorder.open(ec);               // creates <root>/<job>/ and workers/, takes the lock,
///                                  // starts journal.jsonl with a job line (running)
///                                  // (errc::invalid_id, errc::job_locked, errc::job_exists)
/// env[status_file_env] = recorder.status_file(info.id);
/// // on submit, and on every state change of a worker (spawned, exited, restarted, stopped):
/// recorder.write_worker(info, ec);                      // one line, one write
/// recorder.write_job(JobState::running, summary, ec);   // refresh counts (throttled by the caller)
/// recorder.sync(ec);                                    // once per batch: fdatasync when durable
/// recorder.compact_if_due(ec);                          // a snapshot once the journal is large
/// // when the supervisor will accept no more work and every worker is terminal:
/// recorder.write_job(job_state_from_workers(summary) /* or cancelled */, summary, ec);
/// // destruction (or close()) releases the lock; readers then see a finished job,
/// // or — had the supervisor died before the final write_job — a lost one.
/// ```
/// With `resume_finished`, `open()` of a finished job appends to its journal
/// instead of starting a new one, and `earlier_workers()` hands out its
/// workers' records: the supervisor keeps those it does not run again, and
/// the first line it writes for a worker it runs again may follow that
/// worker's terminal record (the new attempt).
/// A failed write returns its error and leaves the journal as it was; the
/// supervisor carries on (and writes the record again later).

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/control_files.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/hostname.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/journal.hpp"
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
  /// `sync()` makes the records appended so far durable (one `fdatasync` for
  /// the batch), and compaction `fsync`s the new journal and its directory.
  bool durable = false;
  /// What `open()` does when a finished job with the same id is on disk:
  /// `false` fails with `errc::job_exists` and changes nothing; `true`
  /// removes the old job's records (never following a link) and starts anew.
  bool replace_finished = false;
  /// What `open()` does instead with a finished job of that id (exclusive
  /// with `replace_finished`): keeps its journal and appends to it — a job
  /// line saying `running` again, with `resumed_at` — and hands its workers'
  /// records out as `earlier_workers()`, so the supervisor can keep those
  /// that succeeded and run the others again as new attempts. A job of that
  /// id that is not on disk is started anew.
  bool resume_finished = false;
  /// How long `open()` retries a busy lock before it counts as a live
  /// supervisor's (readers hold it for microseconds when they probe it).
  std::chrono::milliseconds lock_patience{200};
  /// The supervisor's own cgroup tree, recorded in the job line for recovery
  /// (`CgroupTree::parent()`; empty: none).
  std::string supervisor_cgroup;
  /// `compact_if_due()` rewrites the journal as its fold once it is larger
  /// than this and more than twice the fold's size (a pool that restarts its
  /// workers for months keeps a bounded journal). 0: never.
  std::uint64_t compact_bytes = std::uint64_t{8} << 20;
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
  /// Releases the lock. Writes nothing: the supervisor writes the final job
  /// line with `write_job` first, or readers see the job as lost.
  ~JobRecorder() = default;

  /// Creates `<root>` (like `mkdir -p`), `<root>/<job_id>/` and `workers/`,
  /// takes the job's lock and starts the journal with a job line (state
  /// `running`). Errors: `errc::invalid_id` / `errc::invalid_argument` before
  /// anything touches the disk; `errc::job_locked` when another supervisor
  /// holds the job; `errc::job_exists` when a finished job of that id is
  /// there, of this layout or the old one (see
  /// `JobRecorderOptions::replace_finished`); `ELOOP` when the job directory
  /// is a symlink; or the system error. A job directory this call created is
  /// removed again when it fails. Calling it on an open recorder does nothing.
  /// With `resume_finished`, a job that cannot be resumed: `errc::invalid_argument`
  /// together with `replace_finished`; `errc::unsupported_layout` (schema 1,
  /// or a journal of another version); `errc::bad_status_file` (no usable job
  /// line); `errc::invalid_state_transition` (the job, or one of its workers,
  /// is not finished: its dead supervisor was not recovered).
  void open(std::error_code& ec) {
    ec.clear();
    if (is_open()) return;
    if (!is_valid_id(layout_.job_id)) {
      ec = make_error_code(errc::invalid_id);
      return;
    }
    if (layout_.root.empty() || (options_.resume_finished && options_.replace_finished)) {
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
      journal_.close();
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
    if (adopted_lock_ && !is_lock_file_of(job_dir_.get(), adopted_lock_.get())) {
      // The job directory was removed and made again since the lock was
      // taken (a `clean` during a background recovery): that lock guards
      // nothing here. This directory's own lock is taken as for a new job.
      adopted_lock_.reset();
    }
    // Requests found now are stale (for an earlier run) unless the lock was
    // held since their holder cleared them: then they came for this run.
    clear_requests_ = !(adopted_lock_ && adopted_requests_cleared_);
    if (adopted_lock_) {
      lock_ = std::move(adopted_lock_);  // held since before a recovery: no gap for another supervisor
    } else {
      lock_ = acquire_supervisor_lock(job_dir_.get(), /*create=*/true, options_.lock_patience, ec);
      if (ec) return undo();
    }

    FileStamp existing;
    const bool has_journal = !stat_file_at(job_dir_.get(), journal_file_name, existing);
    const bool has_legacy = !stat_file_at(job_dir_.get(), legacy_job_file_name, existing);
    earlier_workers_.clear();
    if (!created_job_dir && (has_journal || has_legacy) && options_.resume_finished) {
      if (resume(has_legacy, ec), ec) return undo();
      return;
    }
    if (!created_job_dir && (has_journal || has_legacy)) {
      if (!options_.replace_finished) {
        ec = make_error_code(errc::job_exists);
        return undo();
      }
      if ((ec = remove_tree_at(job_dir_.get(), workers_dir_name))) return undo();
      if (has_legacy && ::unlinkat(job_dir_.get(), legacy_job_file_name, 0) != 0 && errno != ENOENT) {
        ec = errno_code();
        return undo();
      }
      // A request that reached the finished job is not for the new one. Only
      // here, before the journal says `running`: a request written after that
      // is this job's, and must never be removed unread.
      if ((ec = clear_stale_requests())) return undo();
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
    record_.updated_at = record_.created_at;
    record_.supervisor_pid = static_cast<int>(::getpid());
    record_.supervisor_start_time = process_start_time(record_.supervisor_pid).value_or(0);
    record_.supervisor_hostname = local_hostname();
    record_.supervisor_cgroup = options_.supervisor_cgroup;
    record_.summary = JobSummary{};
    workers_.clear();
    next_seq_ = 0;
    forget_filter_.clear();
    forgotten_ = 0;
    live_bytes_ = 0;
    journal_.options().durable = options_.durable;
    try {
      // The new journal replaces any old one in one rename: a reader of the
      // old job sees a new file and folds it from the start.
      journal_.create(job_dir_.get(), layout_.job_id, 1, job_line_text(record_), ec);
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
    if (ec) return undo();
  }

  /// Hands `open()` the job's `supervisor.lock`, already taken
  /// (`acquire_supervisor_lock` on this job's directory), instead of taking
  /// it itself: a supervisor that recovered the job holds the lock from the
  /// moment it decided to recover until it has opened the job, so no other
  /// supervisor can slip in between. `open()` keeps it; a failed `open()` drops it
  /// (at once, or with the recorder). `requests_cleared`: the holder removed
  /// the stale `stop.request` and control requests when it took the lock
  /// (`clear_stale_requests_at`), so any found now were written for this
  /// run (the lock said a supervisor was there) and `open()` leaves them.
  void adopt_lock(OwnedFd lock, bool requests_cleared = false) noexcept {
    adopted_lock_ = std::move(lock);
    adopted_requests_cleared_ = requests_cleared;
  }

  /// Whether `lock_fd` is open on the `supervisor.lock` now in the job
  /// directory `job_dir_fd` (the same file, not one of a directory removed
  /// and made again).
  static bool is_lock_file_of(int job_dir_fd, int lock_fd) noexcept {
    struct stat held {}, named {};
    if (::fstat(lock_fd, &held) != 0) return false;
    if (::fstatat(job_dir_fd, lock_file_name, &named, AT_SYMLINK_NOFOLLOW) != 0) return false;
    return held.st_dev == named.st_dev && held.st_ino == named.st_ino;
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
  /// The open `workers/` directory (-1 before `open()`).
  int workers_dir_fd() const noexcept { return workers_dir_.get(); }

  /// Whether `open()` succeeded and the lock is held.
  bool is_open() const noexcept { return static_cast<bool>(lock_); }

  /// The job's paths.
  const JobLayout& layout() const noexcept { return layout_; }

  /// The path to give a worker as `JOBWARDEN_STATUS_FILE`.
  std::string status_file(const std::string& worker_id) const { return layout_.status_file(worker_id); }

  /// When `open()` created this job record (for a resumed job, when it was first created).
  std::optional<std::chrono::system_clock::time_point> created_at() const { return record_.created_at; }

  /// Whether `open()` resumed a finished job (`JobRecorderOptions::resume_finished`).
  bool resumed() const noexcept { return record_.resumed_at.has_value(); }

  /// The records of a resumed job's workers as its journal left them (each
  /// worker's latest usable line, every one terminal), in the order they were
  /// first recorded; empty unless `resumed()`. A worker whose latest line
  /// could not be read is not among them (it runs again when submitted).
  const std::vector<WorkerInfo>& earlier_workers() const noexcept { return earlier_workers_; }

  /// The journal's size in bytes, as this recorder left it.
  std::uint64_t journal_size() const noexcept { return journal_.size(); }
  /// The journal's generation: 1, and one more for every compaction.
  std::uint64_t journal_generation() const noexcept { return journal_.generation(); }

  /// Appends a line recording `info` to the journal. A terminal state is
  /// final for its attempt: recording a different state for the same or an
  /// earlier attempt is refused with `errc::invalid_state_transition` (a
  /// restart records a higher `attempt`). On error the journal stays as it
  /// was (`errc::invalid_id` for a bad id, before touching the disk).
  void write_worker(const WorkerInfo& info, std::error_code& ec) {
    ec.clear();
    if (!is_valid_id(info.id)) {
      ec = make_error_code(errc::invalid_id);
      return;
    }
    if (!is_open()) {
      ec = std::make_error_code(std::errc::bad_file_descriptor);
      return;
    }
    auto found = workers_.find(info.id);
    if (found != workers_.end()) {
      const RecordedWorker& recorded = found->second;
      // An earlier run's record may be followed by this run's: the worker
      // submitted again (pending with the earlier attempt, then attempt + 1).
      if (!recorded.earlier_run && is_terminal(recorded.state) && info.state != recorded.state &&
          info.attempt <= recorded.attempt) {
        ec = make_error_code(errc::invalid_state_transition);
        return;
      }
    }
    try {
      std::string line = worker_line_text(info, std::chrono::system_clock::now());
      if ((ec = journal_.append(line))) return;
      if (found == workers_.end()) {
        found = workers_.emplace(info.id, RecordedWorker{}).first;
        found->second.seq = next_seq_++;
      }
      RecordedWorker& recorded = found->second;
      recorded.state = info.state;
      recorded.attempt = info.attempt;
      recorded.earlier_run = false;
      live_bytes_ += line.size();
      live_bytes_ -= recorded.line.size();
      recorded.line = std::move(line);
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
  }

  /// Throwing form of `write_worker`.
  void write_worker(const WorkerInfo& info) {
    std::error_code ec;
    write_worker(info, ec);
    if (ec) throw_error(ec, "cannot record worker " + quote_id(info.id) + " in " + layout_.journal_file());
  }

  /// Appends a job line with `state` and `summary`. The first terminal state
  /// also sets `ended_at`; after it, any other state is refused with
  /// `errc::invalid_state_transition` (a finished job never runs again:
  /// a client waiting for it would hang), so write a terminal state only once
  /// the supervisor accepts no more work. On error the journal stays as it was.
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
    next.updated_at = std::chrono::system_clock::now();
    if (is_terminal(state) && !next.ended_at) next.ended_at = next.updated_at;
    try {
      if ((ec = journal_.append(job_line_text(next)))) return;  // the journal did not change: neither does the record
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return;
    }
    record_ = std::move(next);
  }

  /// Sets the exit status the host gave for the job (`supervisor.exit_status`,
  /// `null` when empty): the next job line carries it, and so does every one
  /// after (compaction included). Writes nothing by itself.
  void set_exit_status(std::optional<int> code) noexcept { record_.supervisor_exit_status = code; }
  /// Records why the job halted (fail fast): every job line from the next
  /// `write_job` on, and the compacted journal, carry it as `halted`.
  void note_halt(std::string reason) { record_.halted = std::move(reason); }

  /// Throwing form of `write_job`.
  void write_job(JobState state, const JobSummary& summary) {
    std::error_code ec;
    write_job(state, summary, ec);
    if (ec) throw_error(ec, "cannot record job " + quote_id(layout_.job_id) + " in " + layout_.journal_file());
  }

  /// With `durable`, makes every record appended so far durable with one
  /// `fdatasync`; without, does nothing.
  void sync(std::error_code& ec) noexcept { ec = journal_.sync(); }

  /// Whether the journal is due for compaction (see
  /// `JobRecorderOptions::compact_bytes`).
  bool compaction_due() const noexcept {
    if (!is_open() || options_.compact_bytes == 0) return false;
    const std::uint64_t size = journal_.size();
    return size > options_.compact_bytes && size > 2 * (live_bytes_ + 4096);
  }

  /// When `compaction_due()`, rewrites the journal as its fold: a first line
  /// with the next generation, the job's line, each worker's latest line (in
  /// the order they were first recorded), renamed over the journal in one
  /// step. On error the old journal stays, still appended to.
  void compact_if_due(std::error_code& ec) {
    ec.clear();
    if (!compaction_due()) return;
    try {
      std::string lines = job_line_text(record_);
      lines.reserve(lines.size() + live_bytes_);
      std::vector<const RecordedWorker*> kept;  // in memory, in the order first recorded
      kept.reserve(workers_.size());
      for (const auto& entry : workers_) kept.push_back(&entry.second);
      std::sort(kept.begin(), kept.end(),
                [](const RecordedWorker* a, const RecordedWorker* b) { return a->seq < b->seq; });
      std::unordered_set<const RecordedWorker*> written;
      if (forgotten_ > 0) {
        // Forgotten workers' latest lines are only in the journal: its fold
        // gives them, in the order the workers first appeared there, with
        // the ones still held in their places (their latest line is ours).
        JournalFold fold;
        if ((ec = read_journal(job_dir_.get(), fold))) return;
        for (std::size_t i = 0; i < fold.worker_count(); ++i) {
          auto held = workers_.find(fold.worker_id(i));
          if (held == workers_.end()) {
            (lines += fold.worker_line(i)) += '\n';
          } else if (written.insert(&held->second).second) {
            lines += held->second.line;
          }
        }
      }
      for (const RecordedWorker* worker : kept) {
        if (written.count(worker) == 0) lines += worker->line;
      }
      ec = journal_.compact(lines);
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
  }

  /// Drops what the recorder holds of worker `id` (its latest line, kept for
  /// compactions): a long-lived supervisor forgets finished workers so its
  /// memory stays flat. The journal keeps the worker's lines, and a
  /// compaction copies its latest one from the journal. Returns whether it
  /// was held. A worker recorded again later starts a new entry.
  bool forget_worker(const std::string& id) {
    auto found = workers_.find(id);
    if (found == workers_.end()) return false;
    workers_.erase(found);  // its bytes stay in live_bytes_: the fold still holds its line
    if (forget_filter_.empty()) forget_filter_.assign(forget_filter_words, 0);
    for (std::uint64_t bit : filter_bits(id)) forget_filter_[bit / 64] |= std::uint64_t{1} << (bit % 64);
    ++forgotten_;
    return true;
  }

  /// Workers forgotten so far (`forget_worker`).
  std::uint64_t forgotten_count() const noexcept { return forgotten_; }

  /// When `id` was forgotten (`forget_worker`) and is not held now: its
  /// latest record, read from the journal; else `std::nullopt` (never
  /// recorded, held, or its line unusable). Costs a read of the journal only
  /// for an id the filter of forgotten ids may hold. A worker of that id
  /// recorded next replaces the forgotten one (its line is no longer live).
  std::optional<WorkerInfo> forgotten_worker(const std::string& id, std::error_code& ec) {
    ec.clear();
    if (forgotten_ == 0 || workers_.count(id) != 0 || !is_open()) return std::nullopt;
    for (std::uint64_t bit : filter_bits(id)) {
      if ((forget_filter_[bit / 64] & (std::uint64_t{1} << (bit % 64))) == 0) return std::nullopt;
    }
    try {
      JournalFold fold;
      if ((ec = read_journal(job_dir_.get(), fold))) return std::nullopt;
      const JournalWorker* found = fold.find(id);
      if (found == nullptr || !found->ok) return std::nullopt;
      const std::uint64_t bytes = found->line.size() + 1;
      live_bytes_ -= std::min(live_bytes_, bytes);
      return found->info;
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return std::nullopt;
    }
  }

  /// Releases the lock and the directory handles; the files stay as last
  /// written. The recorder can be `open()`ed again (which starts a new journal).
  void close() noexcept {
    journal_.close();
    lock_.reset();
    workers_dir_.reset();
    job_dir_.reset();
  }

 private:
  struct RecordedWorker {
    std::uint64_t seq = 0;  ///< when it was first recorded (compaction keeps that order)
    WorkerState state = WorkerState::pending;
    int attempt = 0;
    bool earlier_run = false;  ///< its latest line is an earlier run's (a resumed job)
    std::string line;  ///< its latest line: what a compaction keeps
  };

  JobLayout layout_;
  JobRecorderOptions options_;
  OwnedFd job_dir_;
  OwnedFd workers_dir_;
  OwnedFd lock_;
  OwnedFd adopted_lock_;  ///< a lock taken before open() (adopt_lock), used by it
  bool adopted_requests_cleared_ = false;  ///< see adopt_lock
  bool clear_requests_ = true;             ///< whether open() removes requests as stale

  /// Removes the stale requests of a job reused under its id, unless they
  /// may be this run's (`adopt_lock`).
  std::error_code clear_stale_requests() {
    if (!clear_requests_) return {};
    return clear_stale_requests_at(job_dir_.get());
  }
  JournalWriter journal_;
  JobRecord record_;
  std::unordered_map<std::string, RecordedWorker> workers_;
  std::uint64_t next_seq_ = 0;
  /// Ids of forgotten workers, as a fixed-size Bloom filter (empty until the
  /// first `forget_worker`): memory stays flat however many are forgotten.
  std::vector<std::uint64_t> forget_filter_;
  std::uint64_t forgotten_ = 0;  ///< workers forgotten (their lines only in the journal)
  static constexpr std::size_t forget_filter_words = 8192;  // 64 KiB, 2^19 bits

  /// The filter's four bits for `id` (FNV-1a, split in two, double hashing).
  static std::array<std::uint64_t, 4> filter_bits(const std::string& id) noexcept {
    std::uint64_t hash = 14695981039346656037ULL;
    for (unsigned char c : id) {
      hash ^= c;
      hash *= 1099511628211ULL;
    }
    const std::uint64_t bits = forget_filter_words * 64;
    const std::uint64_t a = hash & 0xffffffffULL;
    const std::uint64_t b = (hash >> 32) | 1;
    return {a % bits, (a + b) % bits, (a + 2 * b) % bits, (a + 3 * b) % bits};
  }
  std::uint64_t live_bytes_ = 0;  ///< bytes of the workers' latest lines
  std::vector<WorkerInfo> earlier_workers_;  ///< a resumed job's workers, as its journal left them

  /// The resume part of `open()`, with the lock held on an existing job:
  /// reads its journal's fold, checks that the job and every worker are
  /// finished, removes a stale stop request, then appends a job line that
  /// says `running` again (this supervisor, `resumed_at` now, `ended_at`
  /// cleared; the counts of the kept records) to the same journal.
  void resume(bool has_legacy, std::error_code& ec) {
    if (has_legacy && is_legacy_job_dir(job_dir_.get())) {
      ec = make_error_code(errc::unsupported_layout);
      return;
    }
    JournalFold fold;
    if ((ec = read_journal(job_dir_.get(), fold))) return;
    if (!journal_schema_problem(fold).empty()) {
      ec = make_error_code(errc::unsupported_layout);
      return;
    }
    if (!fold.job()) {
      ec = make_error_code(errc::bad_status_file);
      return;
    }
    const JobRecord earlier = *fold.job();
    if (!is_terminal(earlier.state)) {
      ec = make_error_code(errc::invalid_state_transition);
      return;
    }
    std::unordered_map<std::string, RecordedWorker> workers;
    std::uint64_t next_seq = 0;
    std::vector<WorkerInfo> earlier_workers;
    std::uint64_t live_bytes = 0;
    JobSummary summary;
    try {
      for (std::size_t i = 0; i < fold.worker_count(); ++i) {
        const JournalWorker& line = fold.worker(i);
        if (!line.ok) continue;  // unreadable: not kept, so run again if submitted
        if (!is_terminal(line.info.state)) {
          ec = make_error_code(errc::invalid_state_transition);
          return;
        }
        RecordedWorker recorded;
        recorded.state = line.info.state;
        recorded.attempt = line.info.attempt;
        recorded.earlier_run = true;
        recorded.line = line.line + "\n";
        recorded.seq = next_seq++;
        live_bytes += recorded.line.size();
        workers.emplace(line.id, std::move(recorded));
        earlier_workers.push_back(line.info);
        earlier_workers.back().kept = true;
        summary.add(line.info.state);
      }
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return;
    }
    // A request that reached the finished job is not for this run (as when
    // a finished job is replaced): only now, before the journal says `running`.
    if ((ec = clear_stale_requests())) return;
    if (::mkdirat(job_dir_.get(), workers_dir_name, 0777) != 0 && errno != EEXIST) {
      ec = errno_code();
      return;
    }
    workers_dir_ = open_directory_at(job_dir_.get(), workers_dir_name, ec);
    if (ec) return;
    journal_.options().durable = options_.durable;
    journal_.open_existing(job_dir_.get(), fold.job_id().empty() ? layout_.job_id : fold.job_id(),
                           fold.generation(), ec);
    if (ec) return;
    JobRecord record = earlier;
    record.job_id = layout_.job_id;
    record.state = JobState::running;
    record.updated_at = std::chrono::system_clock::now();
    record.resumed_at = record.updated_at;
    if (!record.created_at) record.created_at = record.updated_at;
    record.ended_at.reset();
    record.halted.clear();                  // the earlier run's fail fast, not this run's
    record.supervisor_exit_status.reset();  // this run has not ended yet
    record.supervisor_pid = static_cast<int>(::getpid());
    record.supervisor_start_time = process_start_time(record.supervisor_pid).value_or(0);
    record.supervisor_hostname = local_hostname();
    record.supervisor_cgroup = options_.supervisor_cgroup;
    record.summary = summary;
    try {
      if ((ec = journal_.append(job_line_text(record)))) return;
    } catch (...) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return;
    }
    record_ = std::move(record);
    workers_ = std::move(workers);
    next_seq_ = next_seq;
    forget_filter_.clear();
    forgotten_ = 0;
    earlier_workers_ = std::move(earlier_workers);
    live_bytes_ = live_bytes;
  }
};

}  // namespace jobwarden::detail
