#pragma once
/// \file
/// `StatusAggregator`: reads a job directory from any process — the host, a
/// web endpoint, `jobwarden status` — and merges it into one typed
/// `JobStatus`, whose `to_json()` is the aggregated JSON of docs/contract.md
/// (`schemas/aggregated-status.schema.json`). Also lists the jobs under a root
/// and removes old finished ones (`clean`).
///
/// Merge rules (one writer per file, so no file is ever "wrong" for its writer):
/// - `process.json` (the supervisor's) is authoritative for `state`, `pid`,
///   `attempt`, `exit_code`, `signal`, `core_dumped`, `started_at`, `ended_at`.
///   Only the exit status proves how a worker ended, so a worker that
///   reported `failed` but exited 0 reads `succeeded` (what it reported is kept
///   as `reported_state`, and its `error` is shown).
/// - `status.json` (the worker's) supplies `progress`, `message`, `result`,
///   `error` (when the supervisor recorded none) and the heartbeat. Its state
///   only refines a non-terminal record: `pending` + reported `running` reads
///   `running` (the worker started before the supervisor rewrote its record).
///   A status from an older attempt than the record's is ignored.
/// - With no `process.json`, the worker's own report is all there is and is
///   taken as it stands (a directory with neither file is `pending`).
/// - Stale: a `running` worker whose last sign of life (the newer of its
///   status heartbeat and its start) is older than `stale_after`. A timestamp
///   in the future (clock skew between writer and reader) counts as now, never
///   as stale. Pending workers are never stale: waiting for a slot is normal.
/// - Lost: the supervisor is alive while its `supervisor.lock` is held (probed
///   with a shared non-blocking `flock`, never created); when the lock cannot
///   be probed (no lock file, unreadable), while its recorded pid is provably
///   the same running process (`is_running_process`, only on the host that
///   wrote `job.json`). With the supervisor dead, a non-terminal worker reads
///   `lost` once neither its recorded process nor its reporting process runs
///   (a zombie does not run: under a parent that reaps late or never, it
///   would otherwise read `running` forever), and the job reads `lost`.
/// - Job state: `job.json`'s state when it is terminal (the supervisor wrote
///   its verdict). Otherwise, with a live supervisor: `pending` until a worker
///   starts, then `running` (also while a starting supervisor holds the lock
///   but has not written `job.json` yet: `pending`). With a dead one: `lost`
///   if any worker was not terminal, or if there is no `job.json` at all (a
///   start that was interrupted: `errors` says so, `jobwarden stop` has
///   nothing to stop and `clean` removes it once old enough), else what the
///   workers imply (`job_state_from_workers`).
/// - Elapsed: from `created_at` to `ended_at` for a finished job, to now for
///   a live one, and for a `lost` job to its last sign of life: the newest of
///   `job.json`'s update (a live supervisor rewrites it at least every
///   `job_refresh_interval`, sooner while the job is young) and its workers'
///   records and reports.
///
/// Hostile files: anything unreadable, truncated, not JSON, wrongly shaped,
/// oversized, not a regular file, or a symlink becomes an `errors` entry
/// (`{"path": "workers/5/status.json", "error": "not valid JSON"}`, paths
/// relative to the job directory) and the rest still reads. Nothing is read
/// through a link: the job directory, `workers/`, each worker directory and
/// each file are opened relative to their parent's descriptor with
/// `O_NOFOLLOW`. File content never makes a call throw. (Watches are added
/// by path with `IN_DONT_FOLLOW`, `workers/` through its open descriptor: a
/// watch only decides what is re-read, never what is read through.)
///
/// Cheap to call often: every file's parsed content is cached in the
/// aggregator, keyed by (device, inode, size, mtime, ctime), and reused while
/// the file is unchanged. On Linux (`watch_for_changes`, on by default) a
/// job's `workers/` directory and each worker directory are watched with
/// inotify from the job's first `read`: a later read takes in the events and
/// re-reads only the files they name, so it costs O(changed workers) plus
/// building the result, and sees a change in place or within one timestamp
/// tick at once. Without watching (other systems, `JOBWARDEN_PORTABLE`, the
/// option off, no inotify resources left, or once after the event queue
/// overflowed), stamps decide: because every jobwarden writer replaces a
/// file by renaming a new one over it, which changes the worker's directory
/// too, an unchanged worker costs a single `fstatat` of its directory; files
/// are still checked one by one every `in_place_write_check_interval`, for
/// writers that rewrite in place, and anything changed within the last
/// second (`recent_change_window`) is checked every time: timestamps are too
/// coarse to show a second change within one tick. A worker read for the
/// first time is opened directly (a non-blocking open that refuses links,
/// then `fstat`: a FIFO or device under a status file's name is opened, never
/// read), and many workers to check at once are spread over a few threads
/// (`read_threads`). Keep one aggregator and call `read` as often as you
/// like. The methods lock an internal
/// mutex: one aggregator may serve several threads.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__) && !defined(JOBWARDEN_PORTABLE)
/// 1 where `StatusAggregator` can watch job directories with inotify.
#define JOBWARDEN_STATUS_INOTIFY 1
#include <sys/inotify.h>
#else
#define JOBWARDEN_STATUS_INOTIFY 0
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <exception>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_layout.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/job_records.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/status_record.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// A wall-clock instant as used in status files.
using WallTime = std::chrono::system_clock::time_point;

/// One file (or directory) of a job that could not be used, and why.
struct StatusFileError {
  std::string path;    ///< relative to the job directory: `"workers/5/status.json"`
  std::string error;   ///< a short fixed phrase: `"not valid JSON"`, `"wrong shape"`, `"oversized"`,
                       ///< `"symbolic link not followed"`, `"not a regular file"`, `"not a directory"`,
                       ///< `"unreadable"`, `"missing"`, `"not a valid worker id"`
  std::string detail;  ///< specifics for humans (the parser's message, the limit...)

  /// `{"path", "error", "detail"}`.
  nlohmann::json to_json() const { return {{"path", path}, {"error", error}, {"detail", detail}}; }
};

/// Everything known about one worker, merged from its two files.
template <class Progress = nlohmann::json>
struct WorkerStatus {
  std::string id;
  WorkerState state = WorkerState::pending;
  std::optional<WorkerState> reported_state;  ///< what the worker itself last said
  std::optional<int> pid;
  int attempt = 0;
  std::optional<int> exit_code;
  std::optional<std::string> signal;          ///< `"SIGSEGV"`
  bool core_dumped = false;
  std::optional<Progress> progress;
  std::optional<std::string> message;
  nlohmann::json result = nullptr;
  std::optional<std::string> error;
  std::optional<WallTime> started_at;
  std::optional<WallTime> ended_at;
  std::optional<WallTime> last_update;        ///< the newest time any of its files mentions
  bool stale = false;
  std::uint64_t seq = 0;                      ///< the worker's last `seq` (0: no report)
  std::optional<ResourceUsage> usage;         ///< when it ended

  /// The worker object of the aggregated JSON (docs/contract.md) (plus `reported_state`,
  /// `seq` and `usage`).
  nlohmann::json to_json() const {
    nlohmann::json usage_json = nullptr;
    if (usage) {
      usage_json = {{"user_cpu_seconds", std::chrono::duration<double>(usage->user_cpu).count()},
                    {"system_cpu_seconds", std::chrono::duration<double>(usage->system_cpu).count()},
                    {"max_rss_kib", usage->max_rss_kib}};
    }
    return {{"id", id},
            {"state", std::string(to_string(state))},
            {"pid", detail::json_or_null(pid)},
            {"attempt", attempt},
            {"exit_code", detail::json_or_null(exit_code)},
            {"signal", detail::json_or_null(signal)},
            {"core_dumped", core_dumped},
            {"progress", progress ? nlohmann::json(*progress) : nlohmann::json(nullptr)},
            {"message", detail::json_or_null(message)},
            {"result", result},
            {"error", detail::json_or_null(error)},
            {"started_at", detail::time_or_null(started_at)},
            {"ended_at", detail::time_or_null(ended_at)},
            {"last_update", detail::time_or_null(last_update)},
            {"stale", stale},
            {"reported_state",
             reported_state ? nlohmann::json(std::string(to_string(*reported_state))) : nlohmann::json(nullptr)},
            {"seq", seq},
            {"usage", std::move(usage_json)}};
  }
};

/// The supervisor of a job as a reader sees it.
struct SupervisorStatus {
  std::optional<int> pid;
  bool alive = false;
  std::string hostname;  ///< where it ran (its pid means something only there)
};

/// A whole job, merged: the aggregated status (docs/contract.md) as a C++ value.
template <class Progress = nlohmann::json>
struct JobStatus {
  std::string job_id;
  JobState state = JobState::pending;
  JobSummary summary;
  double elapsed_seconds = 0;          ///< from creation to its end (or to now)
  std::optional<WallTime> created_at;
  std::optional<WallTime> ended_at;
  std::optional<WallTime> last_update;  ///< the newest time any file of the job mentions
  SupervisorStatus supervisor;
  std::vector<WorkerStatus<Progress>> workers;  ///< in natural id order ("2" before "10")
  std::vector<std::string> running;    ///< ids of running workers
  std::vector<std::string> pending;    ///< ids of pending workers
  std::vector<std::string> completed;  ///< ids of workers that succeeded
  std::vector<std::string> failed;     ///< ids of workers in any other terminal state
  std::vector<StatusFileError> errors;

  /// The worker with this id, or `nullptr`.
  const WorkerStatus<Progress>* find_worker(std::string_view id) const {
    for (const auto& worker : workers) {
      if (worker.id == id) return &worker;
    }
    return nullptr;
  }

  /// The aggregated JSON of docs/contract.md, `schema_version` 1 (plus `created_at`,
  /// `ended_at` and `supervisor.hostname`).
  nlohmann::json to_json() const {
    nlohmann::json workers_json = nlohmann::json::array();
    for (const auto& worker : workers) workers_json.push_back(worker.to_json());
    nlohmann::json errors_json = nlohmann::json::array();
    for (const auto& error : errors) errors_json.push_back(error.to_json());
    return {{"schema_version", detail::schema_version},
            {"job_id", job_id},
            {"state", std::string(to_string(state))},
            {"summary",
             {{"total", summary.total},
              {"pending", summary.pending},
              {"running", summary.running},
              {"succeeded", summary.succeeded},
              {"failed", summary.failed},
              {"done", summary.done}}},
            {"elapsed_seconds", elapsed_seconds},
            {"last_update", detail::time_or_null(last_update)},
            {"created_at", detail::time_or_null(created_at)},
            {"ended_at", detail::time_or_null(ended_at)},
            {"supervisor",
             {{"pid", detail::json_or_null(supervisor.pid)},
              {"alive", supervisor.alive},
              {"hostname", supervisor.hostname}}},
            {"workers", std::move(workers_json)},
            {"running", running},
            {"pending", pending},
            {"completed", completed},
            {"failed", failed},
            {"errors", std::move(errors_json)}};
  }
};

/// One job of `StatusAggregator::list_jobs`.
struct JobListing {
  std::string job_id;
  JobState state = JobState::pending;
  std::optional<WallTime> created_at;
  std::optional<WallTime> ended_at;
  bool supervisor_alive = false;
  std::optional<JobSummary> summary;  ///< the supervisor's last recorded counts

  /// `{"job_id", "state", "created_at", "ended_at", "supervisor_alive", "summary"}`.
  nlohmann::json to_json() const {
    nlohmann::json summary_json = nullptr;
    if (summary) {
      summary_json = {{"total", summary->total},         {"pending", summary->pending},
                      {"running", summary->running},     {"succeeded", summary->succeeded},
                      {"failed", summary->failed},       {"done", summary->done}};
    }
    return {{"job_id", job_id},
            {"state", std::string(to_string(state))},
            {"created_at", detail::time_or_null(created_at)},
            {"ended_at", detail::time_or_null(ended_at)},
            {"supervisor_alive", supervisor_alive},
            {"summary", std::move(summary_json)}};
  }
};

/// The jobs under a root, oldest first.
struct JobList {
  std::vector<JobListing> jobs;
  std::vector<StatusFileError> errors;  ///< paths relative to the root

  /// `{"schema_version": 1, "jobs": [...], "errors": [...]}`.
  nlohmann::json to_json() const {
    nlohmann::json jobs_json = nlohmann::json::array();
    for (const auto& job : jobs) jobs_json.push_back(job.to_json());
    nlohmann::json errors_json = nlohmann::json::array();
    for (const auto& error : errors) errors_json.push_back(error.to_json());
    return {{"schema_version", detail::schema_version}, {"jobs", std::move(jobs_json)},
            {"errors", std::move(errors_json)}};
  }
};

/// What `StatusAggregator::clean` did (or, with `dry_run`, would do).
struct CleanReport {
  /// A job left in place, and why.
  struct Kept {
    std::string job_id;
    std::string reason;  ///< "supervisor alive", "not finished", "a worker is still running", "too recent"...
  };
  bool dry_run = false;
  std::vector<std::string> removed;  ///< removed (or, in a dry run, to be removed)
  std::vector<Kept> kept;
  std::vector<StatusFileError> errors;  ///< removals that failed; paths relative to the root

  /// `{"dry_run", "removed", "kept": [{"job_id", "reason"}], "errors"}`.
  nlohmann::json to_json() const {
    nlohmann::json kept_json = nlohmann::json::array();
    for (const auto& job : kept) kept_json.push_back({{"job_id", job.job_id}, {"reason", job.reason}});
    nlohmann::json errors_json = nlohmann::json::array();
    for (const auto& error : errors) errors_json.push_back(error.to_json());
    return {{"dry_run", dry_run}, {"removed", removed}, {"kept", std::move(kept_json)},
            {"errors", std::move(errors_json)}};
  }
};

/// How a `StatusAggregator` reads.
struct StatusAggregatorOptions {
  /// A running worker silent for longer than this is `stale`.
  std::chrono::milliseconds stale_after{std::chrono::seconds(30)};
  /// Files larger than this are reported as `oversized`, not read.
  std::size_t max_file_size = detail::default_max_file_size;
  /// Where "now" comes from for staleness, elapsed time and retention; empty
  /// means `std::chrono::system_clock::now()`. Tests move time here.
  std::function<WallTime()> now;
  /// How many jobs' parsed files are kept between calls (least recently read
  /// jobs are forgotten first).
  std::size_t max_cached_jobs = 16;
  /// Files changed more recently than this are re-read on every call even if
  /// their stamp looks unchanged: file system timestamps are coarse (a few
  /// milliseconds locally, a second or more on some network file systems),
  /// so two changes within one tick could otherwise look like none.
  std::chrono::milliseconds recent_change_window{std::chrono::seconds(1)};
  /// Every jobwarden writer replaces a file by renaming a new one over it,
  /// which also changes the worker's directory, so an unchanged directory
  /// means unchanged files and costs one `fstatat`. A foreign writer that
  /// rewrites a status file in place changes only the file: it is noticed
  /// within this interval (the files are checked one by one that often,
  /// spread over calls).
  std::chrono::milliseconds in_place_write_check_interval{std::chrono::seconds(10)};
  /// Linux (not with `JOBWARDEN_PORTABLE`): watch each job read with inotify
  /// (its `workers/` directory and every worker directory), from its first
  /// read on, so that a later read re-reads only what changed — it costs
  /// O(changed workers), not a check per worker — and a change in place or
  /// within one timestamp tick is seen at once. Setting the watches costs
  /// about 2-3 us per worker on that first read and one inotify instance and
  /// one watch per worker directory while the job is cached; dropping them
  /// (`clear_cache`, a job evicted from the cache, the destructor) costs about
  /// as much again. Turn it off for one-shot readers. Where watching is not
  /// possible (no instance or watch left: `EMFILE`, `ENOSPC`...), the job is
  /// read with the stamp checks described above and watching is tried again a
  /// minute later; when the event queue overflows, the next read checks every
  /// worker as without watching, then relies on the watches again.
  bool watch_for_changes = true;
  /// Threads that read workers' files when many need checking at once (a
  /// first read, a full check): 0 picks the hardware's concurrency, at most 4;
  /// 1 reads on the calling thread only. `Progress`'s `from_json` then runs on
  /// those threads.
  unsigned read_threads = 0;
};

/// Reads job directories under one root. See the file comment for the merge
/// rules. Move-only; keep one and call it often (it caches).
template <class Progress = nlohmann::json>
class StatusAggregator {
 public:
  /// An aggregator for the jobs under `root`; touches nothing until called.
  explicit StatusAggregator(std::string root, StatusAggregatorOptions options = {})
      : impl_(std::make_unique<Impl>(std::move(root), std::move(options))) {}

  StatusAggregator(const StatusAggregator&) = delete;
  StatusAggregator& operator=(const StatusAggregator&) = delete;
  /// Moves the root, options and cache.
  StatusAggregator(StatusAggregator&&) noexcept = default;
  /// Moves the root, options and cache.
  StatusAggregator& operator=(StatusAggregator&&) noexcept = default;

  /// The root directory read.
  const std::string& root() const noexcept { return impl_->root; }

  /// Reads and merges the job `job_id`. Errors (as a whole): `errc::invalid_id`
  /// before anything touches the disk; `errc::unknown_job` when there is no
  /// such job directory; `ELOOP` when the job directory is a symlink; or the
  /// system error opening it. Bad files inside the job are not errors of the
  /// call: they are `errors` entries of the result.
  JobStatus<Progress> read(const std::string& job_id, std::error_code& ec) {
    ec.clear();
    if (!is_valid_id(job_id)) {
      ec = make_error_code(errc::invalid_id);
      return {};
    }
    try {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return impl_->read_job(job_id, ec);
    } catch (const std::bad_alloc&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return {};
    }
  }

  /// Throwing form of `read`: `std::system_error` naming the job and root.
  JobStatus<Progress> read(const std::string& job_id) {
    validate_id(job_id, "job id");
    std::error_code ec;
    JobStatus<Progress> status = read(job_id, ec);
    if (ec) detail::throw_error(ec, "cannot read job " + detail::quote_id(job_id) + " under " + impl_->root);
    return status;
  }

  /// The jobs under the root with their state and times, oldest first. A
  /// missing root has no jobs. Entries that are not job directories (other
  /// names, symlinks) are skipped; broken ones are `errors` entries.
  JobList list_jobs(std::error_code& ec) {
    ec.clear();
    try {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return impl_->list_jobs(ec);
    } catch (const std::bad_alloc&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return {};
    }
  }

  /// Throwing form of `list_jobs`.
  JobList list_jobs() {
    std::error_code ec;
    JobList list = list_jobs(ec);
    if (ec) detail::throw_error(ec, "cannot list jobs under " + impl_->root);
    return list;
  }

  /// Removes finished jobs that ended more than `older_than` ago (by
  /// `ended_at`, else their last update, else the directory's mtime). Never
  /// removes a job whose supervisor is alive (lock held, or pid provably
  /// alive when there is no lock to probe), nor one with a worker still
  /// running. The lock is taken for the removal, the directory is first
  /// renamed to a hidden name (readers never see half a job), then removed
  /// without following any link. With `dry_run`, only reports.
  CleanReport clean(std::chrono::milliseconds older_than, bool dry_run, std::error_code& ec) {
    ec.clear();
    try {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return impl_->clean(older_than, dry_run, ec);
    } catch (const std::bad_alloc&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return {};
    }
  }

  /// Throwing form of `clean`.
  CleanReport clean(std::chrono::milliseconds older_than, bool dry_run = false) {
    std::error_code ec;
    CleanReport report = clean(older_than, dry_run, ec);
    if (ec) detail::throw_error(ec, "cannot clean jobs under " + impl_->root);
    return report;
  }

  /// Counters of the cache's work since construction.
  struct CacheStatistics {
    std::uint64_t files_read = 0;    ///< files opened, read and parsed
    std::uint64_t files_reused = 0;  ///< files found unchanged and served from the cache
    std::uint64_t full_checks = 0;   ///< reads of a watched job that checked every worker
                                     ///< (the first, and after the event queue overflowed)
    std::uint64_t watched_directories = 0;  ///< directories watched right now (inotify)
  };

  /// How much the cache saved so far (for benchmarks and tests).
  CacheStatistics cache_statistics() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    CacheStatistics statistics = impl_->statistics;
#if JOBWARDEN_STATUS_INOTIFY
    for (const auto& job : impl_->jobs) {
      if (job.second.watch) statistics.watched_directories += job.second.watch->ids.size() + 1;
    }
#endif
    return statistics;
  }

  /// Forgets every cached file (the next `read` parses everything again) and
  /// drops every watch.
  void clear_cache() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->jobs.clear();
  }

 private:
  /// The verdict on one file, cached with the stamp it was made for.
  template <class Parsed>
  struct CachedFile {
    enum class Outcome { missing, error, ok };
    Outcome outcome = Outcome::missing;
    bool cached = false;   ///< `stamp` is meaningful
    bool trusted = false;  ///< old enough that an unchanged stamp proves unchanged content
    detail::FileStamp stamp;
    Parsed parsed{};
    std::string error;
    std::string detail;
  };

  struct ParsedProcess {
    WorkerInfo info;
    std::optional<WallTime> updated_at;
  };

  struct ParsedStatus {
    detail::StatusRecord record;
    std::optional<Progress> progress;
    std::string progress_problem;  ///< from_json's complaint, if any
  };

  struct WorkerCache {
    CachedFile<ParsedProcess> process;
    CachedFile<ParsedStatus> status;
    /// The worker directory as it was when its files were last checked:
    /// every atomic write renames into it, which changes its stamp.
    detail::FileStamp dir_stamp;
    bool dir_checked = false;  ///< `dir_stamp` is meaningful
    bool dir_trusted = false;
    /// When the files must be checked even if the directory looks unchanged
    /// (a writer that rewrites in place does not change the directory).
    std::chrono::steady_clock::time_point next_file_check{};
    /// Processes of this worker proven gone: a (pid, start time) pair that
    /// stopped running never runs again, so it is not asked twice.
    std::pair<int, unsigned long long> gone_recorded{0, 0};
    std::pair<int, unsigned long long> gone_reporter{0, 0};
  };

  struct WorkerEntry {
    std::string id;
    WorkerCache cache;
    /// What the last check of its directory found.
    enum class Presence : unsigned char { present, gone, broken };
    Presence presence = Presence::present;
    StatusFileError dir_error;  ///< when `broken`
    /// Watched jobs: an event named its directory (or it is new) since it was
    /// last read, or just one of its files.
    bool dirty = true;
    bool process_dirty = false;
    bool status_dirty = false;
    int wd = -1;        ///< the watch on its directory (-1: none)
    int stale_wd = -1;  ///< a watch it had before, to drop
    dev_t watched_device = 0;
    ino_t watched_inode = 0;
  };

#if JOBWARDEN_STATUS_INOTIFY
  /// The inotify instance of one job: released with the job's cache.
  struct JobWatch {
    detail::OwnedFd fd;
    int workers_wd = -1;
    dev_t device = 0;  ///< the `workers/` directory watched
    ino_t inode = 0;
    std::string prefix;  ///< `<root>/<job>/workers/`: worker watches are added by path
    std::unordered_map<int, std::string> ids;  ///< worker watch -> worker id
  };
#endif

  struct JobCache {
    CachedFile<detail::JobRecord> job;
    /// `workers/` as last listed: ids in natural order, names that are no
    /// worker ids, and the directory's stamp (a new or removed worker changes it).
    std::vector<WorkerEntry> workers;
    std::vector<std::string> invalid_names;
    detail::FileStamp workers_dir_stamp;
    bool workers_listed = false;
    bool workers_listing_trusted = false;
    std::uint64_t last_used = 0;
    /// Watched: `workers/` changed since it was listed.
    bool relist = true;
    /// Watched: events may have been lost; check every worker once.
    bool full_check = true;
#if JOBWARDEN_STATUS_INOTIFY
    std::unique_ptr<JobWatch> watch;
    std::chrono::steady_clock::time_point watch_retry_at{};
#endif
  };

  /// Work counters of one reading thread.
  struct Counters {
    std::uint64_t read = 0;
    std::uint64_t reused = 0;
  };

  struct Impl {
    Impl(std::string root_dir, StatusAggregatorOptions opts) : root(std::move(root_dir)), options(std::move(opts)) {}

    std::mutex mutex;
    std::string root;
    StatusAggregatorOptions options;
    std::unordered_map<std::string, JobCache> jobs;
    std::uint64_t use_counter = 0;
    CacheStatistics statistics;
    std::string hostname = local_hostname();

    static std::string local_hostname() {
      char name[256] = {};
      if (::gethostname(name, sizeof name - 1) != 0) return {};
      return name;
    }

    WallTime now() const { return options.now ? options.now() : std::chrono::system_clock::now(); }

    // -- reading one file through the cache ---------------------------------

    static std::string describe(std::error_code ec, std::string& detail, std::size_t limit, off_t size) {
      if (ec == std::errc::too_many_symbolic_link_levels) return "symbolic link not followed";
      if (ec == errc::not_regular_file) return "not a regular file";
      if (ec == std::errc::not_a_directory) return "not a directory";
      if (ec == errc::oversized_file) {
        detail = std::to_string(size) + " bytes, more than the limit of " + std::to_string(limit);
        return "oversized";
      }
      detail = ec.message();
      return "unreadable";
    }

    /// Refreshes `cache` from `name` in `dir_fd`, reusing the cached verdict
    /// while the file is unchanged. `parse` turns the document into `Parsed`
    /// or returns a problem text.
    /// With `force` (an event named the file) or nothing cached, the file is
    /// read without a `stat` first: `read_file_at` refuses what it must.
    template <class Parsed, class Parse>
    void refresh(int dir_fd, const char* name, CachedFile<Parsed>& cache, Parse&& parse, Counters& counters,
                 bool force = false) {
      using Outcome = typename CachedFile<Parsed>::Outcome;
      detail::FileStamp stamp;
      std::error_code ec;
      if (cache.cached && !force) {
        ec = detail::stat_file_at(dir_fd, name, stamp);
        if (ec == std::errc::no_such_file_or_directory) {
          cache = CachedFile<Parsed>{};
          return;
        }
        if (ec) {  // a symlink, a FIFO, a device: not opened
          cache = CachedFile<Parsed>{};
          cache.outcome = Outcome::error;
          cache.error = describe(ec, cache.detail, options.max_file_size, 0);
          return;
        }
        if (cache.trusted && cache.stamp == stamp) {
          ++counters.reused;
          return;
        }
      }

      cache = CachedFile<Parsed>{};
      std::string content;
      ec = detail::read_file_at(dir_fd, name, content, &stamp, options.max_file_size);
      if (ec == std::errc::no_such_file_or_directory) return;  // no such file (any more)
      if (ec == std::errc::too_many_symbolic_link_levels || ec == errc::not_regular_file) {
        cache.outcome = Outcome::error;
        cache.error = describe(ec, cache.detail, options.max_file_size, 0);
        return;
      }
      ++counters.read;
      cache.stamp = stamp;
      cache.cached = !ec || ec == errc::oversized_file;
      // A file changed within the last timestamp tick may change again within
      // the same tick (and, where inodes are reused, with the same inode and
      // size). Its ctime is set by the kernel on every change and cannot be
      // set back, so once it is older than the window, any later change shows.
      cache.trusted = is_trusted(stamp);
      if (ec) {
        cache.outcome = Outcome::error;
        cache.error = describe(ec, cache.detail, options.max_file_size, stamp.size);
        return;
      }
      if (content.empty()) {
        cache.outcome = Outcome::error;
        cache.error = "not valid JSON";
        cache.detail = "empty file";
        return;
      }
      nlohmann::json document;
      try {
        document = nlohmann::json::parse(content);
      } catch (const nlohmann::json::exception& e) {
        cache.outcome = Outcome::error;
        cache.error = "not valid JSON";
        cache.detail = detail::printable_text(e.what());
        return;
      }
      std::string problem;
      if (!parse(document, cache.parsed, problem)) {
        cache.outcome = Outcome::error;
        cache.error = "wrong shape";
        cache.detail = detail::printable_text(problem);
        cache.parsed = Parsed{};
        return;
      }
      cache.outcome = Outcome::ok;
    }

    static bool parse_process(const nlohmann::json& document, ParsedProcess& out, std::string& problem) {
      return detail::process_record_from_json(document, out.info, out.updated_at, problem);
    }

    static bool parse_status(const nlohmann::json& document, ParsedStatus& out, std::string& problem) {
      if (!detail::status_record_from_json(document, out.record, problem)) return false;
      if (!out.record.progress.is_null()) {
        try {
          out.progress = out.record.progress.template get<Progress>();
        } catch (const std::exception& e) {
          out.progress_problem = std::string("progress: ") + e.what();
        }
      }
      return true;
    }

    template <class Parsed>
    static void report(const CachedFile<Parsed>& cache, const std::string& path,
                       std::vector<StatusFileError>& errors) {
      if (cache.outcome == CachedFile<Parsed>::Outcome::error) errors.push_back({path, cache.error, cache.detail});
    }

    // -- one job --------------------------------------------------------------

    JobCache& cache_for(const std::string& job_id) {
      JobCache& cache = jobs[job_id];
      cache.last_used = ++use_counter;
      if (jobs.size() > options.max_cached_jobs && options.max_cached_jobs > 0) {
        auto oldest = jobs.end();
        for (auto it = jobs.begin(); it != jobs.end(); ++it) {
          if (&it->second == &cache) continue;
          if (oldest == jobs.end() || it->second.last_used < oldest->second.last_used) oldest = it;
        }
        if (oldest != jobs.end()) jobs.erase(oldest);  // rehash-safe: `cache` is a node reference
      }
      return cache;
    }

    bool is_local(const std::string& recorded_hostname) const {
      return recorded_hostname.empty() || recorded_hostname == hostname;
    }

    JobStatus<Progress> read_job(const std::string& job_id, std::error_code& ec) {
      std::error_code open_ec;
      detail::OwnedFd root_fd = detail::open_directory(root, open_ec);
      if (open_ec) {
        ec = open_ec == std::errc::no_such_file_or_directory ? make_error_code(errc::unknown_job) : open_ec;
        return {};
      }
      detail::OwnedFd job_fd = detail::open_directory_at(root_fd.get(), job_id.c_str(), open_ec);
      if (open_ec) {
        ec = (open_ec == std::errc::no_such_file_or_directory || open_ec == std::errc::not_a_directory)
                 ? make_error_code(errc::unknown_job)
                 : open_ec;
        return {};
      }
      return read_open_job(job_id, job_fd.get(), /*start_watching=*/true);
    }

    /// `start_watching`: false for `list_jobs` and `clean`, which read every
    /// job once (a job already watched stays watched).
    JobStatus<Progress> read_open_job(const std::string& job_id, int job_fd, bool start_watching = false) {
      using JobOutcome = typename CachedFile<detail::JobRecord>::Outcome;
      JobCache& cache = cache_for(job_id);
      JobStatus<Progress> status;
      status.job_id = job_id;
      const WallTime now_wall = now();

      // job.json and the supervisor's liveness.
      Counters job_counters;
      refresh(job_fd, detail::job_file_name, cache.job,
              [](const nlohmann::json& doc, detail::JobRecord& out, std::string& problem) {
                return detail::job_record_from_json(doc, out, problem);
              },
              job_counters);
      statistics.files_read += job_counters.read;
      statistics.files_reused += job_counters.reused;
      const bool have_record = cache.job.outcome == JobOutcome::ok;
      const detail::JobRecord& record = cache.job.parsed;
      const detail::LockProbe probe = detail::probe_supervisor_lock(job_fd);
      bool alive = probe == detail::LockProbe::held;
      if (probe == detail::LockProbe::unknown && have_record) {
        // No lock to ask: the pid is the only witness, and only on its own host.
        alive = is_local(record.supervisor_hostname)
                    ? detail::is_running_process(record.supervisor_pid, record.supervisor_start_time)
                    : !is_terminal(record.state);
      }
      status.supervisor.alive = alive;
      if (have_record) {
        if (record.supervisor_pid > 0) status.supervisor.pid = record.supervisor_pid;
        status.supervisor.hostname = record.supervisor_hostname;
        status.created_at = record.created_at;
        status.ended_at = record.ended_at;
        status.last_update = record.updated_at;
      }
      report(cache.job, detail::job_file_name, status.errors);
      if (cache.job.outcome == JobOutcome::missing && !alive) {
        status.errors.push_back({detail::job_file_name, "missing",
                                 "no supervisor recorded this job: its start was interrupted, or "
                                 "the record was removed"});
      }

      // The workers.
      const bool check_processes = !alive;
      bool any_unfinished = false;
      read_workers(job_id, job_fd, start_watching, cache, status, check_processes, have_record ? record.supervisor_hostname : "", now_wall,
                   any_unfinished);

      // Summary, lists and the job state.
      for (const auto& worker : status.workers) {
        status.summary.add(worker.state);
        switch (worker.state) {
          case WorkerState::pending: status.pending.push_back(worker.id); break;
          case WorkerState::running: status.running.push_back(worker.id); break;
          case WorkerState::succeeded: status.completed.push_back(worker.id); break;
          default: status.failed.push_back(worker.id); break;
        }
        if (worker.last_update && (!status.last_update || *worker.last_update > *status.last_update)) {
          status.last_update = worker.last_update;
        }
      }
      if (have_record && is_terminal(record.state)) {
        status.state = record.state;
      } else if (alive) {
        const bool none_started = status.summary.pending == status.summary.total;
        status.state = none_started ? JobState::pending : JobState::running;
      } else if (any_unfinished || status.summary.total == 0 || cache.job.outcome == JobOutcome::missing) {
        // A supervisor that died with nothing terminal (or nothing at all, or
        // before it wrote job.json) never finished.
        status.state = JobState::lost;
      } else {
        status.state = job_state_from_workers(status.summary);
      }

      if (status.created_at) {
        WallTime until = now_wall;
        if (status.state == JobState::lost) {
          // How long it ran: to its last sign of life, not to when someone
          // noticed (recovery's ended_at) or to when job.json was first written.
          until = status.last_update.value_or(*status.created_at);
          if (!status.running.empty()) until = now_wall;  // a worker of it still runs
          if (status.ended_at && *status.ended_at < until) until = *status.ended_at;
        } else if (status.ended_at && is_terminal(status.state)) {
          until = *status.ended_at;
        }
        status.elapsed_seconds = std::max(0.0, detail::seconds_between(*status.created_at, until));
      }
      return status;
    }

    bool is_trusted(const detail::FileStamp& stamp) const {
      const auto wall_now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
      return wall_now_ns - stamp.changed_ns >
             std::chrono::duration_cast<std::chrono::nanoseconds>(options.recent_change_window).count();
    }

    /// Lists `workers/` again unless its stamp shows nothing was added or
    /// removed (or, watched, unless an event said so); keeps what is known of
    /// the workers that are still there and drops the watches of the others.
    void list_workers(int workers_fd, const detail::FileStamp& stamp, JobCache& cache,
                      std::vector<StatusFileError>& errors, bool watched) {
      if (watched ? !cache.relist && cache.workers_listed
                  : cache.workers_listed && cache.workers_listing_trusted && cache.workers_dir_stamp == stamp) {
        return;
      }
      std::error_code ec;
      std::vector<detail::DirectoryEntry> entries = detail::list_directory(workers_fd, ec);
      if (ec) errors.push_back({detail::workers_dir_name, "unreadable", ec.message()});
      std::vector<std::string> ids;
      cache.invalid_names.clear();
      for (detail::DirectoryEntry& entry : entries) {
        if (entry.name.empty() || entry.name[0] == '.') continue;  // temporary files, hidden leftovers
        if (is_valid_id(entry.name)) ids.push_back(std::move(entry.name));
        else cache.invalid_names.push_back(std::move(entry.name));
      }
      std::sort(ids.begin(), ids.end(), natural_less);
      std::sort(cache.invalid_names.begin(), cache.invalid_names.end());
      std::unordered_map<std::string, WorkerEntry> previous;
      previous.reserve(cache.workers.size());
      for (WorkerEntry& entry : cache.workers) {
        std::string id = entry.id;
        previous.emplace(std::move(id), std::move(entry));
      }
      cache.workers.clear();
      cache.workers.reserve(ids.size());
      for (std::string& id : ids) {
        auto found = previous.find(id);
        if (found != previous.end()) {
          cache.workers.push_back(std::move(found->second));
          previous.erase(found);
        } else {
          WorkerEntry entry;
          entry.id = std::move(id);
          cache.workers.push_back(std::move(entry));
        }
      }
      // Removed workers: their watches go first, so that a directory renamed
      // to another worker's name is watched again under that name.
      for (auto& gone : previous) drop_watches(cache, gone.second);
      cache.workers_dir_stamp = stamp;
      cache.workers_listed = !ec;
      cache.workers_listing_trusted = is_trusted(stamp);
      cache.relist = false;
    }

    /// Removes a worker's watches (when it leaves the listing).
    void drop_watches(JobCache& cache, WorkerEntry& entry) {
#if JOBWARDEN_STATUS_INOTIFY
      if (!cache.watch) return;
      for (int wd : {entry.wd, entry.stale_wd}) {
        if (wd < 0) continue;
        auto found = cache.watch->ids.find(wd);
        if (found != cache.watch->ids.end() && found->second == entry.id) {
          cache.watch->ids.erase(found);
          (void)::inotify_rm_watch(cache.watch->fd.get(), wd);
        }
      }
#else
      (void)cache;
#endif
      entry.wd = entry.stale_wd = -1;
    }

    /// How one read checks the workers it visits.
    struct VisitContext {
      int workers_fd = -1;
      std::chrono::steady_clock::time_point steady_now;
      bool forced = false;   ///< an event named them: read both files, whatever their stamps
      int watch_fd = -1;     ///< the job's inotify instance (-1: not watched)
      const std::string* watch_prefix = nullptr;
      std::atomic<bool>* watch_failed = nullptr;  ///< set when a watch could not be added for want of resources
    };

#if JOBWARDEN_STATUS_INOTIFY
    static constexpr std::uint32_t worker_watch_mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                                       IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
                                                       IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW;
    static constexpr std::uint32_t workers_watch_mask =
        IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

    /// Watches a worker's directory before its files are read: any change
    /// after this is an event. A directory that cannot be watched (gone, a
    /// symlink, not a directory, unreadable) is visited on every read instead.
    static void add_watch(const VisitContext& context, WorkerEntry& entry) {
      const std::string path = *context.watch_prefix + entry.id;
      const int wd = ::inotify_add_watch(context.watch_fd, path.c_str(), worker_watch_mask);
      if (wd == entry.wd) return;
      if (entry.wd >= 0 && entry.stale_wd < 0) entry.stale_wd = entry.wd;
      entry.wd = wd;
      if (wd < 0 && (errno == ENOSPC || errno == ENOMEM)) context.watch_failed->store(true);
    }
#endif

    /// Brings one worker's cached files up to date; thread-safe for distinct
    /// entries. Unwatched, an unchanged and trusted worker directory costs one
    /// `fstatat`, its files being checked one by one every
    /// `in_place_write_check_interval`; a worker never read is opened
    /// directly.
    void visit_worker(const VisitContext& context, WorkerEntry& entry, std::size_t index, Counters& counters) {
      using Presence = typename WorkerEntry::Presence;
      const std::string& id = entry.id;
      WorkerCache& cache = entry.cache;
      const bool watched = context.watch_fd >= 0;
      bool must_open = context.forced || !cache.dir_checked;
      // Forced (watched, named by events): only the files named are read
      // again, unless the directory itself changed or was not watched.
      const bool whole = !context.forced || entry.dirty || entry.wd < 0 || !cache.dir_checked;
      const bool read_process = whole || entry.process_dirty;
      const bool read_status = whole || entry.status_dirty;
#if JOBWARDEN_STATUS_INOTIFY
      if (watched && (context.forced || entry.wd < 0)) add_watch(context, entry);
#endif
      std::error_code ec;
      detail::FileStamp dir_stamp;
      if (!must_open) {
        struct stat info {};
        if (::fstatat(context.workers_fd, id.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
          ec = detail::errno_code();
        } else if (S_ISLNK(info.st_mode)) {
          ec = std::make_error_code(std::errc::too_many_symbolic_link_levels);
        } else if (!S_ISDIR(info.st_mode)) {
          ec = std::make_error_code(std::errc::not_a_directory);
        } else {
          dir_stamp = detail::stamp_of(info);
          if (watched && (dir_stamp.inode != entry.watched_inode || dir_stamp.device != entry.watched_device)) {
            // Another directory under that name since it was watched.
#if JOBWARDEN_STATUS_INOTIFY
            add_watch(context, entry);
#endif
            must_open = true;
          } else if (cache.dir_trusted && cache.dir_stamp == dir_stamp && context.steady_now < cache.next_file_check) {
            counters.reused += (cache.process.outcome != CachedFile<ParsedProcess>::Outcome::missing) +
                               (cache.status.outcome != CachedFile<ParsedStatus>::Outcome::missing);
            entry.presence = Presence::present;
            return;
          }
        }
      }
      detail::OwnedFd worker_fd;
      if (!ec) {
        worker_fd = detail::open_directory_at(context.workers_fd, id.c_str(), ec);
        struct stat info {};
        if (!ec && ::fstat(worker_fd.get(), &info) != 0) ec = detail::errno_code();
        if (!ec) dir_stamp = detail::stamp_of(info);
      }
      if (ec == std::errc::no_such_file_or_directory) {  // removed since the listing
        entry.presence = Presence::gone;
        return;
      }
      if (ec) {
        cache = WorkerCache{};
        entry.presence = Presence::broken;
        entry.dir_error.path = std::string(detail::workers_dir_name) + "/" + id;
        entry.dir_error.detail.clear();
        entry.dir_error.error = describe(ec, entry.dir_error.detail, options.max_file_size, 0);
        return;
      }
      if (read_process) {
        refresh(worker_fd.get(), detail::process_file_name, cache.process, &Impl::parse_process, counters,
                context.forced);
      } else {
        counters.reused += cache.process.outcome != CachedFile<ParsedProcess>::Outcome::missing;
      }
      if (read_status) {
        refresh(worker_fd.get(), detail::status_file_name, cache.status, &Impl::parse_status, counters,
                context.forced);
      } else {
        counters.reused += cache.status.outcome != CachedFile<ParsedStatus>::Outcome::missing;
      }
      // The stamp is the one taken *before* the files were read: a write
      // racing with this read changes the directory again and is seen next time.
      const bool first_check = !cache.dir_trusted && cache.next_file_check == std::chrono::steady_clock::time_point{};
      cache.dir_stamp = dir_stamp;
      cache.dir_checked = true;
      cache.dir_trusted = is_trusted(dir_stamp);
      // Spread the periodic in-place checks over the interval, so that a
      // big job does not re-check all its files in the same call.
      const auto interval = options.in_place_write_check_interval;
      cache.next_file_check =
          context.steady_now + (first_check ? interval * static_cast<long>(index % 64 + 1) / 64 : interval);
      entry.presence = Presence::present;
      if (watched && entry.wd >= 0) {
        entry.watched_device = dir_stamp.device;
        entry.watched_inode = dir_stamp.inode;
      }
    }

    /// Threads for `count` visits: several only when there are many.
    std::size_t visit_threads(std::size_t count) const {
      constexpr std::size_t per_thread_minimum = 256;
      std::size_t threads = options.read_threads;
      if (threads == 0) threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), 4);
      return std::max<std::size_t>(1, std::min(threads, count / per_thread_minimum));
    }

    /// Visits `order`'s workers, on several threads when there are many.
    void visit_all(const VisitContext& context, std::vector<WorkerEntry>& workers,
                   const std::vector<std::size_t>& order) {
      const std::size_t threads = visit_threads(order.size());
      std::vector<Counters> counters(threads);
      if (threads <= 1) {
        for (std::size_t index : order) visit_worker(context, workers[index], index, counters[0]);
      } else {
        constexpr std::size_t chunk = 64;
        std::atomic<std::size_t> next{0};
        std::vector<std::exception_ptr> failures(threads);
        auto work = [&](std::size_t thread) {
          try {
            for (;;) {
              const std::size_t begin = next.fetch_add(chunk);
              if (begin >= order.size()) break;
              const std::size_t end = std::min(order.size(), begin + chunk);
              for (std::size_t k = begin; k < end; ++k) {
                visit_worker(context, workers[order[k]], order[k], counters[thread]);
              }
            }
          } catch (...) {
            failures[thread] = std::current_exception();
            next.store(order.size());
          }
        };
        std::vector<std::thread> pool;
        pool.reserve(threads - 1);
        for (std::size_t thread = 1; thread < threads; ++thread) {
          try {
            pool.emplace_back(work, thread);
          } catch (...) {
            break;  // no thread to be had: the others do the work
          }
        }
        work(0);
        for (std::thread& thread : pool) thread.join();
        for (const std::exception_ptr& failure : failures) {
          if (failure) std::rethrow_exception(failure);
        }
      }
      for (const Counters& counted : counters) {
        statistics.files_read += counted.read;
        statistics.files_reused += counted.reused;
      }
    }

#if JOBWARDEN_STATUS_INOTIFY
    /// Makes sure `cache` has a working watch on the `workers/` directory
    /// open as `workers_fd` (identified by `stamp`), and takes in the events
    /// since the last read. False: the job is read without watching.
    bool update_watch(const std::string& job_id, int workers_fd, const detail::FileStamp& stamp, JobCache& cache,
                      bool start_watching, std::chrono::steady_clock::time_point steady_now) {
      if (cache.watch && (cache.watch->device != stamp.device || cache.watch->inode != stamp.inode)) {
        stop_watch(cache);  // another `workers/` directory than the one watched
      }
      if (cache.watch && !drain_events(cache)) stop_watch(cache);
      if (!cache.watch && start_watching && steady_now >= cache.watch_retry_at) {
        start_watch(job_id, workers_fd, stamp, cache, steady_now);
      }
      return cache.watch != nullptr;
    }

    void stop_watch(JobCache& cache) {
      cache.watch.reset();
      for (WorkerEntry& entry : cache.workers) {
        entry.wd = entry.stale_wd = -1;
        entry.dirty = true;
      }
    }

    void start_watch(const std::string& job_id, int workers_fd, const detail::FileStamp& stamp, JobCache& cache,
                     std::chrono::steady_clock::time_point steady_now) {
      auto watch = std::make_unique<JobWatch>();
      watch->fd.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (watch->fd) {
        // Through the descriptor: exactly the directory this read opened.
        const std::string self = "/proc/self/fd/" + std::to_string(workers_fd);
        watch->workers_wd = ::inotify_add_watch(watch->fd.get(), self.c_str(), workers_watch_mask);
      }
      if (watch->workers_wd < 0) {
        cache.watch_retry_at = steady_now + std::chrono::minutes(1);
        return;
      }
      watch->device = stamp.device;
      watch->inode = stamp.inode;
      watch->prefix = root + "/" + job_id + "/" + detail::workers_dir_name + "/";
      cache.watch = std::move(watch);
      for (WorkerEntry& entry : cache.workers) {
        entry.wd = entry.stale_wd = -1;
        entry.dirty = true;
      }
      cache.relist = true;
      cache.full_check = true;
    }

    /// Takes in the queued events. False: the watch on `workers/` is gone.
    bool drain_events(JobCache& cache) {
      JobWatch& watch = *cache.watch;
      alignas(inotify_event) char buffer[16384];
      bool workers_watched = true;
      for (;;) {
        const ssize_t got = ::read(watch.fd.get(), buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) break;
        if (got <= 0) {  // cannot happen; should it, nothing is known any more
          cache.full_check = cache.relist = true;
          break;
        }
        for (std::size_t offset = 0; offset + sizeof(inotify_event) <= static_cast<std::size_t>(got);) {
          inotify_event event;
          std::memcpy(&event, buffer + offset, sizeof event);
          const char* name_start = buffer + offset + sizeof(inotify_event);
          const std::string_view name(name_start, event.len == 0 ? 0 : ::strnlen(name_start, event.len));
          offset += sizeof(inotify_event) + event.len;
          if (event.mask & IN_Q_OVERFLOW) {
            // Events were lost, IN_IGNORED ones too: no watch can be trusted
            // (a directory removed and made again may even have the same
            // inode). Start over: new watches and a full check.
            cache.full_check = cache.relist = true;
            return false;
          } else if (event.wd == watch.workers_wd) {
            if (event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
              workers_watched = false;
            } else if (name.empty() || name[0] != '.') {
              cache.relist = true;  // a worker came, went or was replaced
              if (WorkerEntry* entry = find_worker(cache, name)) entry->dirty = true;
            }
          } else {
            auto found = watch.ids.find(event.wd);
            if (found == watch.ids.end()) continue;
            WorkerEntry* entry = find_worker(cache, found->second);
            if (event.mask & IN_IGNORED) {
              watch.ids.erase(found);
              if (entry != nullptr && entry->wd == event.wd) {
                entry->wd = -1;
                entry->dirty = true;
              }
            } else if (entry != nullptr) {
              if (name.empty()) entry->dirty = true;
              else if (name == detail::process_file_name) entry->process_dirty = true;
              else if (name == detail::status_file_name) entry->status_dirty = true;
            }
          }
        }
      }
      return workers_watched;
    }
#endif

    /// The cached worker with this id, or null.
    static WorkerEntry* find_worker(JobCache& cache, std::string_view id) {
      const std::string key(id);
      auto found = std::lower_bound(cache.workers.begin(), cache.workers.end(), key,
                                    [](const WorkerEntry& entry, const std::string& value) {
                                      return natural_less(entry.id, value);
                                    });
      return found != cache.workers.end() && found->id == key ? &*found : nullptr;
    }

    void read_workers(const std::string& job_id, int job_fd, bool start_watching, JobCache& cache,
                      JobStatus<Progress>& status,
                      bool supervisor_dead, const std::string& recorded_hostname, WallTime now_wall,
                      bool& any_unfinished) {
      using Presence = typename WorkerEntry::Presence;
      std::error_code ec;
      detail::OwnedFd workers_fd = detail::open_directory_at(job_fd, detail::workers_dir_name, ec);
      struct stat workers_info {};
      if (!ec && ::fstat(workers_fd.get(), &workers_info) != 0) ec = detail::errno_code();
      if (ec) {
        for (WorkerEntry& entry : cache.workers) drop_watches(cache, entry);
        cache.workers.clear();
        cache.workers_listed = false;
#if JOBWARDEN_STATUS_INOTIFY
        cache.watch.reset();
#endif
        if (ec == std::errc::no_such_file_or_directory) return;
        std::string detail;
        std::string error = describe(ec, detail, options.max_file_size, 0);
        status.errors.push_back({detail::workers_dir_name, error, detail});
        return;
      }
      const detail::FileStamp workers_stamp = detail::stamp_of(workers_info);
      const auto steady_now = std::chrono::steady_clock::now();
      bool watched = false;
#if JOBWARDEN_STATUS_INOTIFY
      if (options.watch_for_changes) {
        watched = update_watch(job_id, workers_fd.get(), workers_stamp, cache, start_watching, steady_now);
      }
#else
      (void)job_id;
      (void)start_watching;
#endif
      list_workers(workers_fd.get(), workers_stamp, cache, status.errors, watched);
      for (const std::string& name : cache.invalid_names) {
        status.errors.push_back({std::string(detail::workers_dir_name) + "/" + name, "not a valid worker id", ""});
      }

      // Which workers to check: all of them, or, watched, those events named.
      VisitContext context;
      context.workers_fd = workers_fd.get();
      context.steady_now = steady_now;
      std::atomic<bool> watch_failed{false};
      std::vector<std::size_t> order;
      const bool check_all = !watched || cache.full_check;
      if (check_all) {
        order.resize(cache.workers.size());
        for (std::size_t index = 0; index < order.size(); ++index) order[index] = index;
      } else {
        for (std::size_t index = 0; index < cache.workers.size(); ++index) {
          const WorkerEntry& entry = cache.workers[index];
          if (entry.dirty || entry.process_dirty || entry.status_dirty || entry.wd < 0) order.push_back(index);
        }
        context.forced = true;
      }
#if JOBWARDEN_STATUS_INOTIFY
      if (watched) {
        context.watch_fd = cache.watch->fd.get();
        context.watch_prefix = &cache.watch->prefix;
        context.watch_failed = &watch_failed;
        if (check_all) ++statistics.full_checks;
      }
#endif
      visit_all(context, cache.workers, order);
#if JOBWARDEN_STATUS_INOTIFY
      if (watched) {
        cache.full_check = false;
        for (std::size_t index : order) {
          WorkerEntry& entry = cache.workers[index];
          // A file changed within the last timestamp tick may change again
          // unseen by its stamp: such a worker is looked at again next time,
          // as it would be without watching, until it has aged.
          const WorkerCache& files = entry.cache;
          const bool settled = files.dir_trusted && (!files.process.cached || files.process.trusted) &&
                               (!files.status.cached || files.status.trusted);
          entry.dirty = !settled && entry.presence == Presence::present;
          entry.process_dirty = entry.status_dirty = false;
          if (entry.stale_wd >= 0) {
            auto found = cache.watch->ids.find(entry.stale_wd);
            if (found != cache.watch->ids.end() && found->second == entry.id) {
              cache.watch->ids.erase(found);
              (void)::inotify_rm_watch(cache.watch->fd.get(), entry.stale_wd);
            }
            entry.stale_wd = -1;
          }
          if (entry.wd >= 0) cache.watch->ids[entry.wd] = entry.id;
        }
        if (watch_failed.load()) {
          // Out of watches: read this job by its stamps for a while.
          stop_watch(cache);
          cache.watch_retry_at = steady_now + std::chrono::minutes(1);
        }
      }
#endif
      if (!check_all) {
        // Not visited: unchanged since they were last read.
        std::vector<bool> visited(cache.workers.size());
        for (std::size_t index : order) visited[index] = true;
        for (std::size_t index = 0; index < cache.workers.size(); ++index) {
          const WorkerEntry& entry = cache.workers[index];
          if (visited[index] || entry.presence != Presence::present) continue;
          statistics.files_reused += (entry.cache.process.outcome != CachedFile<ParsedProcess>::Outcome::missing) +
                                     (entry.cache.status.outcome != CachedFile<ParsedStatus>::Outcome::missing);
        }
      }

      status.workers.reserve(cache.workers.size());
      for (WorkerEntry& entry : cache.workers) {
        if (entry.presence == Presence::gone) continue;
        if (entry.presence == Presence::broken) {
          status.errors.push_back(entry.dir_error);
          continue;
        }
        const std::string worker_path = std::string(detail::workers_dir_name) + "/" + entry.id;
        WorkerCache& worker = entry.cache;
        using ProcessOutcome = typename CachedFile<ParsedProcess>::Outcome;
        using StatusOutcome = typename CachedFile<ParsedStatus>::Outcome;
        if (worker.process.outcome == ProcessOutcome::error) {
          report(worker.process, worker_path + "/" + detail::process_file_name, status.errors);
        }
        if (worker.status.outcome == StatusOutcome::error) {
          report(worker.status, worker_path + "/" + detail::status_file_name, status.errors);
        } else if (worker.status.outcome == StatusOutcome::ok && !worker.status.parsed.progress_problem.empty()) {
          status.errors.push_back({worker_path + "/" + detail::status_file_name, "wrong shape",
                                   worker.status.parsed.progress_problem});
        }
        status.workers.push_back(
            merge(entry.id, worker, supervisor_dead, recorded_hostname, now_wall, any_unfinished));
      }
    }

    /// Whether the process (pid, start_time) still runs, remembering a "no".
    static bool still_runs_process(int pid, unsigned long long start_time, std::pair<int, unsigned long long>& gone) {
      if (pid <= 0 || start_time == 0) return false;
      if (gone.first == pid && gone.second == start_time) return false;
      if (detail::is_running_process(pid, start_time)) return true;
      gone = {pid, start_time};
      return false;
    }

    WorkerStatus<Progress> merge(const std::string& id, WorkerCache& cache, bool supervisor_dead,
                                 const std::string& recorded_hostname, WallTime now_wall, bool& any_unfinished) {
      const bool have_process = cache.process.outcome == CachedFile<ParsedProcess>::Outcome::ok;
      bool have_status = cache.status.outcome == CachedFile<ParsedStatus>::Outcome::ok;
      const WorkerInfo& info = cache.process.parsed.info;
      const detail::StatusRecord& reported = cache.status.parsed.record;
      // A report left over from an earlier attempt says nothing about this one.
      if (have_process && have_status && reported.attempt > 0 && info.attempt > 0 && reported.attempt < info.attempt) {
        have_status = false;
      }

      WorkerStatus<Progress> worker;
      worker.id = id;
      std::optional<WallTime> last_sign_of_life;
      auto newest = [](std::optional<WallTime>& into, const std::optional<WallTime>& time) {
        if (time && (!into || *time > *into)) into = time;
      };
      if (have_process) {
        worker.state = info.state;
        if (info.pid > 0) worker.pid = info.pid;
        worker.attempt = info.attempt;
        worker.exit_code = info.exit_code;
        if (info.signal) worker.signal = signal_name(*info.signal);
        worker.core_dumped = info.core_dumped;
        if (!info.error.empty()) worker.error = info.error;
        worker.started_at = info.started_at;
        worker.ended_at = info.ended_at;
        if (info.ended_at) worker.usage = info.usage;
        newest(worker.last_update, cache.process.parsed.updated_at);
        newest(worker.last_update, info.started_at);
        newest(worker.last_update, info.ended_at);
        last_sign_of_life = info.started_at;
      }
      if (have_status) {
        worker.reported_state = reported.state;
        worker.progress = cache.status.parsed.progress;
        worker.message = reported.message;
        worker.result = reported.result;
        if (!worker.error) worker.error = reported.error;
        worker.seq = reported.seq;
        newest(worker.last_update, reported.updated_at);
        newest(last_sign_of_life, reported.updated_at);
        if (!have_process) {
          // Nothing but the worker's word: it wrote, so it ran.
          worker.state = reported.state.value_or(WorkerState::running);
          if (reported.pid > 0) worker.pid = reported.pid;
          worker.attempt = reported.attempt;
        } else if (worker.state == WorkerState::pending && reported.state &&
                   *reported.state == WorkerState::running) {
          worker.state = WorkerState::running;
        }
      }

      if (!is_terminal(worker.state)) {
        any_unfinished = true;
        if (supervisor_dead) {
          // Lost once nothing of it runs: neither the process the supervisor
          // recorded nor the one that reported (pids proven by start time,
          // and only where they were recorded).
          bool still_runs = false;
          if (recorded_hostname.empty() || recorded_hostname == hostname) {
            still_runs = (have_process && still_runs_process(info.pid, info.process_start_time, cache.gone_recorded)) ||
                         (have_status &&
                          still_runs_process(reported.pid, reported.process_start_time, cache.gone_reporter));
          }
          if (still_runs) worker.state = WorkerState::running;
          else worker.state = WorkerState::lost;
        }
      }
      if (worker.state == WorkerState::running && last_sign_of_life) {
        // A time in the future (clock skew) counts as now.
        worker.stale = now_wall - *last_sign_of_life > options.stale_after;
      }
      return worker;
    }

    /// "2" < "10" < "a": digit runs compare as numbers.
    static bool natural_less(const std::string& a, const std::string& b) {
      std::size_t i = 0, j = 0;
      auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
      while (i < a.size() && j < b.size()) {
        if (is_digit(a[i]) && is_digit(b[j])) {
          std::size_t i_end = i, j_end = j;
          while (i_end < a.size() && is_digit(a[i_end])) ++i_end;
          while (j_end < b.size() && is_digit(b[j_end])) ++j_end;
          std::size_t i_start = i, j_start = j;
          while (i_start + 1 < i_end && a[i_start] == '0') ++i_start;
          while (j_start + 1 < j_end && b[j_start] == '0') ++j_start;
          const std::size_t i_len = i_end - i_start, j_len = j_end - j_start;
          if (i_len != j_len) return i_len < j_len;
          const int order = a.compare(i_start, i_len, b, j_start, j_len);
          if (order != 0) return order < 0;
          i = i_end;
          j = j_end;
        } else {
          if (a[i] != b[j]) return a[i] < b[j];
          ++i;
          ++j;
        }
      }
      if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
      return a < b;  // "01" vs "1": any fixed order
    }

    // -- all jobs -------------------------------------------------------------

    JobList list_jobs(std::error_code& ec) {
      JobList list;
      std::error_code open_ec;
      detail::OwnedFd root_fd = detail::open_directory(root, open_ec);
      if (open_ec) {
        if (open_ec != std::errc::no_such_file_or_directory) ec = open_ec;
        return list;
      }
      std::vector<detail::DirectoryEntry> entries = detail::list_directory(root_fd.get(), ec);
      if (ec) return list;
      for (const detail::DirectoryEntry& entry : entries) {
        if (!is_valid_id(entry.name)) continue;  // hidden tombstones and things that are not jobs
        detail::OwnedFd job_fd = detail::open_directory_at(root_fd.get(), entry.name.c_str(), open_ec);
        if (open_ec == std::errc::not_a_directory) continue;
        if (open_ec) {
          std::string detail;
          list.errors.push_back({entry.name, describe(open_ec, detail, options.max_file_size, 0), detail});
          continue;
        }
        JobStatus<Progress> status = read_open_job(entry.name, job_fd.get());
        for (const StatusFileError& error : status.errors) {
          if (error.path == detail::job_file_name) {
            list.errors.push_back({entry.name + "/" + error.path, error.error, error.detail});
          }
        }
        JobListing listing;
        listing.job_id = entry.name;
        listing.state = status.state;
        listing.created_at = status.created_at;
        listing.ended_at = status.ended_at;
        listing.supervisor_alive = status.supervisor.alive;
        listing.summary = status.summary;
        list.jobs.push_back(std::move(listing));
      }
      std::sort(list.jobs.begin(), list.jobs.end(), [](const JobListing& a, const JobListing& b) {
        if (a.created_at != b.created_at) {
          if (!a.created_at || !b.created_at) return !a.created_at;  // unknown first
          return *a.created_at < *b.created_at;
        }
        return a.job_id < b.job_id;
      });
      return list;
    }

    CleanReport clean(std::chrono::milliseconds older_than, bool dry_run, std::error_code& ec) {
      CleanReport report;
      report.dry_run = dry_run;
      std::error_code open_ec;
      detail::OwnedFd root_fd = detail::open_directory(root, open_ec);
      if (open_ec) {
        if (open_ec != std::errc::no_such_file_or_directory) ec = open_ec;
        return report;
      }
      std::vector<detail::DirectoryEntry> entries = detail::list_directory(root_fd.get(), ec);
      if (ec) return report;
      const WallTime now_wall = now();
      for (const detail::DirectoryEntry& entry : entries) {
        if (!dry_run && is_tombstone(entry.name)) {
          // Left behind by a clean that was interrupted: nobody can reach it.
          (void)detail::remove_tree_at(root_fd.get(), entry.name);
          continue;
        }
        if (!is_valid_id(entry.name)) continue;
        detail::OwnedFd job_fd = detail::open_directory_at(root_fd.get(), entry.name.c_str(), open_ec);
        if (open_ec) continue;  // symlinks and files are not jobs: never touched
        const JobStatus<Progress> status = read_open_job(entry.name, job_fd.get());
        auto keep = [&](std::string why) { report.kept.push_back({entry.name, std::move(why)}); };
        if (status.supervisor.alive) {
          keep("supervisor alive");
          continue;
        }
        if (!is_terminal(status.state)) {
          keep("not finished");
          continue;
        }
        if (!status.running.empty()) {
          keep("a worker is still running");
          continue;
        }
        std::optional<WallTime> finished_at = status.ended_at ? status.ended_at : status.last_update;
        if (!finished_at) {
          struct stat info {};
          if (::fstat(job_fd.get(), &info) == 0) {
            finished_at = WallTime(std::chrono::duration_cast<WallTime::duration>(
                std::chrono::nanoseconds(detail::stamp_of(info).modified_ns)));
          }
        }
        if (!finished_at || now_wall - *finished_at < older_than) {
          keep("too recent");
          continue;
        }
        if (dry_run) {
          report.removed.push_back(entry.name);
          continue;
        }
        // Hold the lock across the rename: a supervisor starting this job id
        // now fails with job_locked instead of writing into a doomed directory.
        std::error_code lock_ec;
        detail::OwnedFd lock = detail::acquire_supervisor_lock(job_fd.get(), /*create=*/false,
                                                               std::chrono::milliseconds(50), lock_ec);
        if (lock_ec == errc::job_locked) {
          keep("supervisor alive");
          continue;
        }
        if (lock_ec && lock_ec != std::errc::no_such_file_or_directory) {
          report.errors.push_back({entry.name + "/" + detail::lock_file_name, "unreadable", lock_ec.message()});
          continue;
        }
        const std::string tombstone = "." + entry.name + ".removing" + detail::temporary_name_for("").substr(1);
        if (::renameat(root_fd.get(), entry.name.c_str(), root_fd.get(), tombstone.c_str()) != 0) {
          report.errors.push_back({entry.name, "not removed", detail::errno_code().message()});
          continue;
        }
        lock.reset();
        job_fd.reset();
        jobs.erase(entry.name);
        report.removed.push_back(entry.name);
        if (auto remove_ec = detail::remove_tree_at(root_fd.get(), tombstone)) {
          report.errors.push_back({tombstone, "not removed", remove_ec.message()});
        }
      }
      std::sort(report.removed.begin(), report.removed.end());
      return report;
    }

    static bool is_tombstone(const std::string& name) {
      return name.size() > 1 && name[0] == '.' && name.find(".removing.") != std::string::npos;
    }
  };

  std::unique_ptr<Impl> impl_;
};

}  // namespace jobwarden

#include "jobwarden/compiled/status_aggregator.hpp"  // the separately compiled mode
