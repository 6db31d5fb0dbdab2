#pragma once
/// \file
/// `StatusAggregator`: reads a job directory from any process — the host, a
/// web endpoint, `jobwarden status` — and merges it into one typed
/// `JobStatus` (job_status.hpp), whose `to_json()` is the aggregated JSON of
/// docs/contract.md (`schemas/aggregated-status.schema.json`). Also lists the
/// jobs under a root. Where the rest of the reader lives:
/// - the result types: job_status.hpp;
/// - the merge rule (what a worker's and a job's state are, stale, lost,
///   elapsed): detail/status_merge.hpp, pure functions over parsed records;
/// - the cache of parsed files and what is re-read when:
///   detail/status_cache.hpp, and its inotify watching: detail/status_watch.hpp;
/// - the engine that ties them together (liveness probes, `list_jobs`):
///   detail/status_reader.hpp;
/// - removing old finished jobs: `clean_jobs` in job_cleanup.hpp.
///
/// Hostile files: anything unreadable, truncated, not JSON, wrongly shaped,
/// oversized, not a regular file, or a symlink becomes an `errors` entry
/// (`{"path": "workers/5.status.json", "error": "not valid JSON"}`, paths
/// relative to the job directory) and the rest still reads. A journal line
/// that cannot be used is an entry with the path `journal.jsonl` and the
/// line's byte offset in its `detail`; the line is skipped. Nothing is read
/// through a link: the job directory, the journal, `workers/` and each file
/// are opened relative to their parent's descriptor with `O_NOFOLLOW`. File
/// content never makes a call throw.
///
/// Schema 1 job directories (`job.json` and `workers/<id>/process.json`, no
/// `journal.jsonl`), and journals whose first line names another schema
/// version, are not read: `read` of such a job throws (and the
/// `error_code` form returns) `errc::unsupported_layout`; `list_jobs` leaves
/// it out and adds an `errors` entry (`<job>/journal.jsonl`, "unsupported
/// layout").
///
/// Cheap to call often: the journal is followed (only what was appended
/// since the last call is read), every file's parsed content is cached in the
/// aggregator and reused while the file is unchanged, and only workers whose
/// records changed are merged again; on Linux
/// (`watch_for_changes`) a watched job costs O(changed workers) per read.
/// Keep one aggregator and call `read` as often as you like. The methods lock
/// an internal mutex: one aggregator may serve several threads.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/status_cache.hpp"
#include "jobwarden/detail/status_reader.hpp"
#include "jobwarden/detail/status_watch.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/status_aggregator_options.hpp"
#include "jobwarden/job_cleanup.hpp"
#include "jobwarden/job_status.hpp"

namespace jobwarden {

/// Reads job directories under one root. The merge rules are in
/// detail/status_merge.hpp (and docs/job-directory.md). Move-only; keep one
/// and call it often (it caches).
template <class Progress = nlohmann::json>
class StatusAggregator {
 public:
  /// An aggregator for the jobs under `root`; touches nothing until called.
  explicit StatusAggregator(std::string root, StatusAggregatorOptions options = {})
      : impl_(std::make_unique<detail::StatusReader>(std::move(root), reader_settings(std::move(options)))) {}

  StatusAggregator(const StatusAggregator&) = delete;
  StatusAggregator& operator=(const StatusAggregator&) = delete;
  /// Moves the root, options and cache.
  StatusAggregator(StatusAggregator&&) noexcept = default;
  /// Moves the root, options and cache.
  StatusAggregator& operator=(StatusAggregator&&) noexcept = default;

  /// The root directory read.
  const std::string& root() const noexcept { return impl_->root(); }

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
      detail::JobReading reading;
      {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        reading = impl_->read_job(job_id, typed_progress, ec);
      }
      return detail::typed_status<Progress>(std::move(reading));
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
    if (ec) detail::throw_error(ec, "cannot read job " + detail::quote_id(job_id) + " under " + impl_->root());
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
    if (ec) detail::throw_error(ec, "cannot list jobs under " + impl_->root());
    return list;
  }

  /// `clean_jobs` (job_cleanup.hpp) under this aggregator's root, with its
  /// options (its clock) and its cache. Kept for compatibility: a reader
  /// that deletes belongs with the retention code; call `clean_jobs`.
  CleanReport clean(std::chrono::milliseconds older_than, bool dry_run, std::error_code& ec) {
    ec.clear();
    try {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return detail::clean_jobs_with(*impl_, older_than, dry_run, ec);
    } catch (const std::bad_alloc&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return {};
    }
  }

  /// Throwing form of `clean`; kept for compatibility (see `clean_jobs`).
  CleanReport clean(std::chrono::milliseconds older_than, bool dry_run = false) {
    std::error_code ec;
    CleanReport report = clean(older_than, dry_run, ec);
    if (ec) detail::throw_error(ec, "cannot clean jobs under " + impl_->root());
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
    const detail::StatusCache& cache = impl_->cache();
    CacheStatistics statistics;
    statistics.files_read = cache.counters().files_read;
    statistics.files_reused = cache.counters().files_reused;
    statistics.full_checks = cache.counters().full_checks;
    statistics.watched_directories = cache.watched_directories();
    return statistics;
  }

  /// Forgets every cached file (the next `read` parses everything again) and
  /// drops every watch.
  void clear_cache() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->cache().clear();
  }

 private:
  /// Whether errors must be placed for progress that may not convert.
  static constexpr bool typed_progress = !std::is_same_v<Progress, nlohmann::json>;

  static detail::StatusReaderSettings reader_settings(StatusAggregatorOptions options) {
    detail::StatusReaderSettings settings;
    settings.cache.max_file_size = options.max_file_size;
    settings.cache.max_cached_jobs = options.max_cached_jobs;
    settings.cache.recent_change_window = options.recent_change_window;
    settings.cache.in_place_write_check_interval = options.in_place_write_check_interval;
    settings.cache.watch_for_changes = options.watch_for_changes;
    settings.cache.read_threads = options.read_threads;
    settings.stale_after = options.stale_after;
    settings.now = std::move(options.now);
    return settings;
  }

  std::unique_ptr<detail::StatusReader> impl_;
};

}  // namespace jobwarden

#include "jobwarden/compiled/status_aggregator.hpp"  // the separately compiled mode
