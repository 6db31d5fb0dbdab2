#pragma once
/// \file
/// The cache of a job directory's reader: every file's parsed content, keyed
/// by its stamp (device, inode, size, mtime, ctime) and reused while the file
/// is unchanged, and the decision of what to look at again on the next read.
///
/// On Linux (`watch_for_changes`) a job's `workers/` directory and each
/// worker directory are watched with inotify (detail/status_watch.hpp) from
/// the job's first read: a later read takes in the events and re-reads only
/// the files they name, so it costs O(changed workers), and sees a change in
/// place or within one timestamp tick at once. Without watching (other
/// systems, `JOBWARDEN_PORTABLE`, the option off, no inotify resources left,
/// or once after the event queue overflowed), stamps decide: because every
/// jobwarden writer replaces a file by renaming a new one over it, which
/// changes the worker's directory too, an unchanged worker costs a single
/// `fstatat` of its directory; files are still checked one by one every
/// `in_place_write_check_interval`, for writers that rewrite in place, and
/// anything changed within `recent_change_window` is checked every time:
/// timestamps are too coarse to show a second change within one tick. A
/// worker read for the first time is opened directly (a non-blocking open
/// that refuses links, then `fstat`: a FIFO or device under a status file's
/// name is opened, never read), and many workers to check at once are spread
/// over a few threads.
///
/// One file's cached verdict, and how it is refreshed, is
/// detail/cached_file.hpp: hostile files become errors, never exceptions.
/// Nothing is read through a link: `workers/`, each worker directory and each
/// file are opened relative to their parent's descriptor with `O_NOFOLLOW`.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
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
#include "jobwarden/detail/cached_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/log_tail.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/status_watch.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_status.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// "2" < "10" < "a": digit runs compare as numbers.
inline bool natural_less(const std::string& a, const std::string& b) {
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

/// `process.json`, parsed.
struct ParsedProcess {
  WorkerInfo info;
  std::optional<WallTime> updated_at;
};

/// One worker's files as last read.
struct WorkerCache {
  CachedFile<ParsedProcess> process;
  CachedFile<StatusRecord> status;
  /// Its log files: whether they exist, and the stderr log's tail once the
  /// worker ended without succeeding (`wants_stderr_tail`).
  CachedLog stdout_log;
  CachedLog stderr_log;
  /// The worker directory as it was when its files were last checked:
  /// every atomic write renames into it, which changes its stamp.
  FileStamp dir_stamp;
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

/// Whether the aggregated JSON quotes the worker's stderr: it ended and did not succeed.
inline bool wants_stderr_tail(WorkerState state) noexcept {
  return is_terminal(state) && state != WorkerState::succeeded;
}

/// Brings a worker's cached logs (in `worker_fd`) up to date; the stderr
/// tail is read when its `process.json` shows an end other than success.
inline void refresh_logs(int worker_fd, WorkerCache& cache, std::chrono::milliseconds recent_change_window,
                         bool want_tail = false) {
  if (const ParsedProcess* process = cache.process.usable()) {
    want_tail = want_tail || wants_stderr_tail(process->info.state);
  }
  refresh_log(worker_fd, stdout_file_name, cache.stdout_log, false, recent_change_window);
  refresh_log(worker_fd, stderr_file_name, cache.stderr_log, want_tail, recent_change_window);
}

/// One entry of a job's `workers/` directory.
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
  bool log_dirty = false;  ///< a log was written (watched jobs)
  int wd = -1;        ///< the watch on its directory (-1: none)
  int stale_wd = -1;  ///< a watch it had before, to drop
  dev_t watched_device = 0;
  ino_t watched_inode = 0;
};

/// Everything cached of one job.
struct JobCache {
  CachedFile<JobRecord> job;
  /// `workers/` as last listed: ids in natural order, names that are no
  /// worker ids, and the directory's stamp (a new or removed worker changes it).
  std::vector<WorkerEntry> workers;
  std::vector<std::string> invalid_names;
  FileStamp workers_dir_stamp;
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

  /// The cached worker with this id, or null.
  WorkerEntry* find_worker(std::string_view id) {
    const std::string key(id);
    auto found = std::lower_bound(workers.begin(), workers.end(), key,
                                  [](const WorkerEntry& entry, const std::string& value) {
                                    return natural_less(entry.id, value);
                                  });
    return found != workers.end() && found->id == key ? &*found : nullptr;
  }
};

/// How a `StatusCache` reads (from `StatusAggregatorOptions`).
struct StatusCacheSettings {
  std::size_t max_file_size = default_max_file_size;
  std::size_t max_cached_jobs = 16;
  std::chrono::milliseconds recent_change_window{std::chrono::seconds(1)};
  std::chrono::milliseconds in_place_write_check_interval{std::chrono::seconds(10)};
  bool watch_for_changes = true;
  unsigned read_threads = 0;
};

/// Counters of the cache's work since construction.
struct StatusCacheCounters {
  std::uint64_t files_read = 0;
  std::uint64_t files_reused = 0;
  std::uint64_t full_checks = 0;
};

/// The parsed files of the jobs under one root, kept between reads. Not
/// thread-safe: its owner locks (it uses threads of its own while reading).
class StatusCache {
 public:
  StatusCache(std::string root, StatusCacheSettings settings) : root_(std::move(root)), settings_(settings) {}

  const StatusCacheSettings& settings() const noexcept { return settings_; }
  const StatusCacheCounters& counters() const noexcept { return counters_; }

  /// Directories watched right now (inotify).
  std::uint64_t watched_directories() const {
    std::uint64_t count = 0;
#if JOBWARDEN_STATUS_INOTIFY
    for (const auto& job : jobs_) {
      if (job.second.watch) count += job.second.watch->ids.size() + 1;
    }
#endif
    return count;
  }

  /// Forgets every cached file and drops every watch.
  void clear() { jobs_.clear(); }

  /// Forgets one job (removed from disk).
  void forget(const std::string& job_id) { jobs_.erase(job_id); }

  /// The cache of job `job_id`, made on first use; the least recently used
  /// other job is forgotten beyond `max_cached_jobs`.
  JobCache& job(const std::string& job_id) {
    JobCache& cache = jobs_[job_id];
    cache.last_used = ++use_counter_;
    if (jobs_.size() > settings_.max_cached_jobs && settings_.max_cached_jobs > 0) {
      auto oldest = jobs_.end();
      for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
        if (&it->second == &cache) continue;
        if (oldest == jobs_.end() || it->second.last_used < oldest->second.last_used) oldest = it;
      }
      if (oldest != jobs_.end()) jobs_.erase(oldest);  // rehash-safe: `cache` is a node reference
    }
    return cache;
  }

  /// Brings `cache.job` (`job.json` in `job_fd`) up to date.
  void refresh_job_record(int job_fd, JobCache& cache) {
    Counters counters;
    refresh(job_fd, job_file_name, cache.job, &parse_job, counters);
    counters_.files_read += counters.read;
    counters_.files_reused += counters.reused;
  }

  /// Brings the workers of job `job_id` (open as `job_fd`) up to date in
  /// `cache.workers`: lists `workers/` if it changed, and re-reads what
  /// changed. Problems with `workers/` and its entries go to `errors` (files'
  /// own errors stay in their `CachedFile`). `start_watching`: false for
  /// readers that read every job once (a job already watched stays watched).
  void update_workers(const std::string& job_id, int job_fd, bool start_watching, JobCache& cache,
                      std::vector<StatusFileError>& errors);

 private:
  /// Work counters of one reading thread.
  using Counters = FileCounters;

  /// How one read checks the workers it visits.
  struct VisitContext {
    int workers_fd = -1;
    std::chrono::steady_clock::time_point steady_now;
    bool forced = false;  ///< an event named them: read both files, whatever their stamps
#if JOBWARDEN_STATUS_INOTIFY
    const JobWatch* watch = nullptr;            ///< the job's inotify instance (null: not watched)
    std::atomic<bool>* watch_failed = nullptr;  ///< set when a watch could not be added for want of resources
#endif
    bool watched() const noexcept {
#if JOBWARDEN_STATUS_INOTIFY
      return watch != nullptr;
#else
      return false;
#endif
    }
  };

  static bool parse_job(const nlohmann::json& document, JobRecord& out, std::string& problem) {
    return job_record_from_json(document, out, problem);
  }
  static bool parse_process(const nlohmann::json& document, ParsedProcess& out, std::string& problem) {
    return process_record_from_json(document, out.info, out.updated_at, problem);
  }
  static bool parse_status(const nlohmann::json& document, StatusRecord& out, std::string& problem) {
    return status_record_from_json(document, out, problem);
  }

  bool is_trusted(const FileStamp& stamp) const { return is_settled(stamp, settings_.recent_change_window); }

  /// `refresh_file` with this cache's limits.
  template <class Parsed>
  void refresh(int dir_fd, const char* name, CachedFile<Parsed>& cache,
               bool (*parse)(const nlohmann::json&, Parsed&, std::string&), Counters& counters,
               bool force = false) const {
    refresh_file(dir_fd, name, cache, parse, settings_.max_file_size, settings_.recent_change_window, counters,
                 force);
  }

  void list_workers(int workers_fd, const FileStamp& stamp, JobCache& cache, std::vector<StatusFileError>& errors,
                    bool watched);
  void drop_watches(JobCache& cache, WorkerEntry& entry);
  void visit_worker(const VisitContext& context, WorkerEntry& entry, std::size_t index, Counters& counters) const;
  std::size_t visit_threads(std::size_t count) const;
  void visit_all(const VisitContext& context, std::vector<WorkerEntry>& workers, const std::vector<std::size_t>& order);
#if JOBWARDEN_STATUS_INOTIFY
  static void add_watch(const VisitContext& context, WorkerEntry& entry);
  bool update_watch(const std::string& job_id, int workers_fd, const FileStamp& stamp, JobCache& cache,
                    bool start_watching, std::chrono::steady_clock::time_point steady_now);
  static void stop_watch(JobCache& cache);
  void start_watch(const std::string& job_id, int workers_fd, const FileStamp& stamp, JobCache& cache,
                   std::chrono::steady_clock::time_point steady_now);
  static bool drain_events(JobCache& cache);
#endif

  std::string root_;
  StatusCacheSettings settings_;
  std::unordered_map<std::string, JobCache> jobs_;
  std::uint64_t use_counter_ = 0;
  StatusCacheCounters counters_;
};

/// Lists `workers/` again unless its stamp shows nothing was added or
/// removed (or, watched, unless an event said so); keeps what is known of
/// the workers that are still there and drops the watches of the others.
inline void StatusCache::list_workers(int workers_fd, const FileStamp& stamp, JobCache& cache,
                                      std::vector<StatusFileError>& errors, bool watched) {
  if (watched ? !cache.relist && cache.workers_listed
              : cache.workers_listed && cache.workers_listing_trusted && cache.workers_dir_stamp == stamp) {
    return;
  }
  std::error_code ec;
  std::vector<DirectoryEntry> entries = list_directory(workers_fd, ec);
  if (ec) errors.push_back({workers_dir_name, "unreadable", ec.message()});
  std::vector<std::string> ids;
  cache.invalid_names.clear();
  for (DirectoryEntry& entry : entries) {
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
inline void StatusCache::drop_watches(JobCache& cache, WorkerEntry& entry) {
#if JOBWARDEN_STATUS_INOTIFY
  if (!cache.watch) return;
  cache.watch->remove_worker(entry.wd, entry.id);
  cache.watch->remove_worker(entry.stale_wd, entry.id);
#else
  (void)cache;
#endif
  entry.wd = entry.stale_wd = -1;
}

#if JOBWARDEN_STATUS_INOTIFY
/// Watches a worker's directory before its files are read: any change
/// after this is an event. A directory that cannot be watched (gone, a
/// symlink, not a directory, unreadable) is visited on every read instead.
inline void StatusCache::add_watch(const VisitContext& context, WorkerEntry& entry) {
  int error = 0;
  const int wd = context.watch->add_worker(entry.id, error);
  if (wd == entry.wd) return;
  if (entry.wd >= 0 && entry.stale_wd < 0) entry.stale_wd = entry.wd;
  entry.wd = wd;
  if (wd < 0 && (error == ENOSPC || error == ENOMEM)) context.watch_failed->store(true);
}
#endif

/// Brings one worker's cached files up to date; thread-safe for distinct
/// entries. Unwatched, an unchanged and trusted worker directory costs one
/// `fstatat`, its files being checked one by one every
/// `in_place_write_check_interval`; a worker never read is opened directly.
inline void StatusCache::visit_worker(const VisitContext& context, WorkerEntry& entry, std::size_t index,
                                      Counters& counters) const {
  using Presence = WorkerEntry::Presence;
  const std::string& id = entry.id;
  WorkerCache& cache = entry.cache;
  const bool watched = context.watched();
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
  FileStamp dir_stamp;
  if (!must_open) {
    struct stat info {};
    if (::fstatat(context.workers_fd, id.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      ec = errno_code();
    } else if (S_ISLNK(info.st_mode)) {
      ec = std::make_error_code(std::errc::too_many_symbolic_link_levels);
    } else if (!S_ISDIR(info.st_mode)) {
      ec = std::make_error_code(std::errc::not_a_directory);
    } else {
      dir_stamp = stamp_of(info);
      if (watched && (dir_stamp.inode != entry.watched_inode || dir_stamp.device != entry.watched_device)) {
        // Another directory under that name since it was watched.
#if JOBWARDEN_STATUS_INOTIFY
        add_watch(context, entry);
#endif
        must_open = true;
      } else if (cache.dir_trusted && cache.dir_stamp == dir_stamp && context.steady_now < cache.next_file_check) {
        counters.reused += cache.process.present() + cache.status.present();
        entry.presence = Presence::present;
        return;
      }
    }
  }
  OwnedFd worker_fd;
  if (!ec) {
    worker_fd = open_directory_at(context.workers_fd, id.c_str(), ec);
    struct stat info {};
    if (!ec && ::fstat(worker_fd.get(), &info) != 0) ec = errno_code();
    if (!ec) dir_stamp = stamp_of(info);
  }
  if (ec == std::errc::no_such_file_or_directory) {  // removed since the listing
    entry.presence = Presence::gone;
    return;
  }
  if (ec) {
    cache = WorkerCache{};
    entry.presence = Presence::broken;
    entry.dir_error.path = std::string(workers_dir_name) + "/" + id;
    entry.dir_error.detail.clear();
    entry.dir_error.error = describe_file_error(ec, entry.dir_error.detail, settings_.max_file_size, 0);
    return;
  }
  if (read_process) {
    refresh(worker_fd.get(), process_file_name, cache.process, &parse_process, counters, context.forced);
  } else {
    counters.reused += cache.process.present();
  }
  if (read_status) {
    refresh(worker_fd.get(), status_file_name, cache.status, &parse_status, counters, context.forced);
  } else {
    counters.reused += cache.status.present();
  }
  refresh_logs(worker_fd.get(), cache, settings_.recent_change_window);
  // The stamp is the one taken *before* the files were read: a write
  // racing with this read changes the directory again and is seen next time.
  const bool first_check = !cache.dir_trusted && cache.next_file_check == std::chrono::steady_clock::time_point{};
  cache.dir_stamp = dir_stamp;
  cache.dir_checked = true;
  cache.dir_trusted = is_trusted(dir_stamp);
  // Spread the periodic in-place checks over the interval, so that a
  // big job does not re-check all its files in the same call.
  const auto interval = settings_.in_place_write_check_interval;
  cache.next_file_check =
      context.steady_now + (first_check ? interval * static_cast<long>(index % 64 + 1) / 64 : interval);
  entry.presence = Presence::present;
  if (watched && entry.wd >= 0) {
    entry.watched_device = dir_stamp.device;
    entry.watched_inode = dir_stamp.inode;
  }
}

/// Threads for `count` visits: several only when there are many.
inline std::size_t StatusCache::visit_threads(std::size_t count) const {
  constexpr std::size_t per_thread_minimum = 256;
  std::size_t threads = settings_.read_threads;
  if (threads == 0) threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), 4);
  return std::max<std::size_t>(1, std::min(threads, count / per_thread_minimum));
}

/// Visits `order`'s workers, on several threads when there are many.
inline void StatusCache::visit_all(const VisitContext& context, std::vector<WorkerEntry>& workers,
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
    counters_.files_read += counted.read;
    counters_.files_reused += counted.reused;
  }
}

#if JOBWARDEN_STATUS_INOTIFY
/// Makes sure `cache` has a working watch on the `workers/` directory
/// open as `workers_fd` (identified by `stamp`), and takes in the events
/// since the last read. False: the job is read without watching.
inline bool StatusCache::update_watch(const std::string& job_id, int workers_fd, const FileStamp& stamp,
                                      JobCache& cache, bool start_watching,
                                      std::chrono::steady_clock::time_point steady_now) {
  if (cache.watch && !cache.watch->watches(stamp)) {
    stop_watch(cache);  // another `workers/` directory than the one watched
  }
  if (cache.watch && !drain_events(cache)) stop_watch(cache);
  if (!cache.watch && start_watching && steady_now >= cache.watch_retry_at) {
    start_watch(job_id, workers_fd, stamp, cache, steady_now);
  }
  return cache.watch != nullptr;
}

inline void StatusCache::stop_watch(JobCache& cache) {
  cache.watch.reset();
  for (WorkerEntry& entry : cache.workers) {
    entry.wd = entry.stale_wd = -1;
    entry.dirty = true;
  }
}

inline void StatusCache::start_watch(const std::string& job_id, int workers_fd, const FileStamp& stamp,
                                     JobCache& cache, std::chrono::steady_clock::time_point steady_now) {
  std::unique_ptr<JobWatch> watch =
      JobWatch::start(workers_fd, stamp, root_ + "/" + job_id + "/" + workers_dir_name + "/");
  if (!watch) {
    cache.watch_retry_at = steady_now + std::chrono::minutes(1);
    return;
  }
  cache.watch = std::move(watch);
  for (WorkerEntry& entry : cache.workers) {
    entry.wd = entry.stale_wd = -1;
    entry.dirty = true;
  }
  cache.relist = true;
  cache.full_check = true;
}

/// Takes in the queued events: marks what they name to be read again. False:
/// the watch on `workers/` is gone.
inline bool StatusCache::drain_events(JobCache& cache) {
  struct Sink {
    JobCache& cache;
    void lost_track() { cache.full_check = cache.relist = true; }
    void workers_changed(std::string_view name) {
      cache.relist = true;  // a worker came, went or was replaced
      if (WorkerEntry* entry = cache.find_worker(name)) entry->dirty = true;
    }
    void worker_changed(std::string_view id, std::string_view name) {
      WorkerEntry* entry = cache.find_worker(id);
      if (entry == nullptr) return;
      if (name.empty()) entry->dirty = true;
      else if (name == process_file_name) entry->process_dirty = true;
      else if (name == status_file_name) entry->status_dirty = true;
      else if (name == stdout_file_name || name == stderr_file_name) entry->log_dirty = true;
    }
    void worker_unwatched(std::string_view id, int wd) {
      WorkerEntry* entry = cache.find_worker(id);
      if (entry != nullptr && entry->wd == wd) {
        entry->wd = -1;
        entry->dirty = true;
      }
    }
  } sink{cache};
  return cache.watch->drain(sink);
}
#endif

inline void StatusCache::update_workers(const std::string& job_id, int job_fd, bool start_watching,
                                        JobCache& cache, std::vector<StatusFileError>& errors) {
  using Presence = WorkerEntry::Presence;
  std::error_code ec;
  OwnedFd workers_fd = open_directory_at(job_fd, workers_dir_name, ec);
  struct stat workers_info {};
  if (!ec && ::fstat(workers_fd.get(), &workers_info) != 0) ec = errno_code();
  if (ec) {
    for (WorkerEntry& entry : cache.workers) drop_watches(cache, entry);
    cache.workers.clear();
    cache.workers_listed = false;
#if JOBWARDEN_STATUS_INOTIFY
    cache.watch.reset();
#endif
    if (ec == std::errc::no_such_file_or_directory) return;
    std::string detail;
    std::string error = describe_file_error(ec, detail, settings_.max_file_size, 0);
    errors.push_back({workers_dir_name, error, detail});
    return;
  }
  const FileStamp workers_stamp = stamp_of(workers_info);
  const auto steady_now = std::chrono::steady_clock::now();
  bool watched = false;
#if JOBWARDEN_STATUS_INOTIFY
  if (settings_.watch_for_changes) {
    watched = update_watch(job_id, workers_fd.get(), workers_stamp, cache, start_watching, steady_now);
  }
#else
  (void)job_id;
  (void)start_watching;
#endif
  list_workers(workers_fd.get(), workers_stamp, cache, errors, watched);
  for (const std::string& name : cache.invalid_names) {
    errors.push_back({std::string(workers_dir_name) + "/" + name, "not a valid worker id", ""});
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
      if (entry.dirty || entry.process_dirty || entry.status_dirty || entry.log_dirty || entry.wd < 0) {
        order.push_back(index);
      }
    }
    context.forced = true;
  }
#if JOBWARDEN_STATUS_INOTIFY
  if (watched) {
    context.watch = cache.watch.get();
    context.watch_failed = &watch_failed;
    if (check_all) ++counters_.full_checks;
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
      entry.process_dirty = entry.status_dirty = entry.log_dirty = false;
      if (entry.stale_wd >= 0) {
        cache.watch->remove_worker(entry.stale_wd, entry.id);
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
      counters_.files_reused += entry.cache.process.present() + entry.cache.status.present();
    }
  }
}

}  // namespace jobwarden::detail
