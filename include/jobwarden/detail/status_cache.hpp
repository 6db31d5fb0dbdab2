#pragma once
/// \file
/// The cache of a job directory's reader: the fold of the job's journal, kept
/// up to date by reading only what was appended to it, and every worker
/// file's parsed content, keyed by its stamp (device, inode, size, mtime,
/// ctime) and reused while the file is unchanged; and the decision of what to
/// look at again on the next read.
///
/// The journal (`journal.jsonl`, detail/journal.hpp) is followed by offset:
/// a read costs two `fstat`s when nothing was appended, reads only the new
/// whole lines otherwise, and folds a replaced (compacted) journal anew after
/// reading the old one to its end. The workers whose line changed
/// (`JournalFold::take_changed_workers`) are the only ones merged again.
///
/// The flat `workers/` directory holds the workers' own files
/// (`<id>.status.json`, `<id>.stdout.log`, `<id>.stderr.log`). On Linux
/// (`watch_for_changes`) it is watched with one inotify watch per job
/// (detail/status_watch.hpp) from the job's first read: a later read takes in
/// the events and re-reads only the files they name, so it costs O(changed
/// workers), and sees a change in place or within one timestamp tick at once.
/// Without watching (other systems, `JOBWARDEN_PORTABLE`, the option off, no
/// inotify resources left, or once after the event queue overflowed), stamps
/// decide: every jobwarden writer replaces a status file by renaming a new one
/// over it, which changes `workers/` too, so an unchanged `workers/` costs a
/// single `fstat`; files are still checked one by one every
/// `in_place_write_check_interval` (spread over reads), for writers that
/// rewrite in place, and anything changed within `recent_change_window` is
/// checked every time: timestamps are too coarse to show a second change
/// within one tick. Many files to check at once are spread over a few
/// threads.
///
/// One file's cached verdict, and how it is refreshed, is
/// detail/cached_file.hpp: hostile files become errors, never exceptions.
/// Nothing is read through a link: the journal, `workers/` and each file are
/// opened relative to their parent's descriptor with `O_NOFOLLOW`.

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
#include "jobwarden/detail/journal.hpp"
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

/// Whether the aggregated JSON quotes the worker's stderr: it ended and did not succeed.
inline bool wants_stderr_tail(WorkerState state) noexcept {
  return is_terminal(state) && state != WorkerState::succeeded;
}

/// One worker as cached: its files in `workers/`, where its journal line is
/// in the fold, and its last merge (detail/status_reader.hpp keeps it).
struct WorkerCache {
  std::string id;
  CachedFile<StatusRecord> status;
  /// Its log files: whether they exist, and the stderr log's tail once the
  /// worker ended without succeeding (`wants_stderr_tail`).
  CachedLog stdout_log;
  CachedLog stderr_log;
  /// What the last listing of `workers/` found of it.
  bool has_status = false;
  bool has_stdout = false;
  bool has_stderr = false;
  /// Its index in the journal's fold (-1: no line in the journal).
  long journal_index = -1;
  /// Its journal line says it ended without succeeding: its stderr tail is read.
  bool tail_wanted = false;
  /// Its files were looked at since it was last merged (or never merged).
  bool merge_dirty = true;
  /// Watched: an event named one of its files (or it is new, or a file of it
  /// changed too recently to trust its stamp) since it was last read.
  bool dirty = true;
  bool checked = false;  ///< its files were looked at once
  /// When its files must be checked even if `workers/` looks unchanged (a
  /// writer that rewrites in place does not change the directory).
  std::chrono::steady_clock::time_point next_file_check{};
  /// Processes of this worker proven gone: a (pid, start time) pair that
  /// stopped running never runs again, so it is not asked twice.
  std::pair<int, unsigned long long> gone_recorded{0, 0};
  std::pair<int, unsigned long long> gone_reporter{0, 0};
  /// The last merge, and what it depended on beyond the files.
  bool merged_valid = false;
  bool merged_unfinished = false;
  std::optional<WallTime> sign_of_life;
  WorkerStatus<> merged;

  bool listed() const noexcept { return has_status || has_stdout || has_stderr; }
  /// Whether its files' stamps can be trusted to show the next change.
  bool settled() const noexcept {
    return (!status.cached || status.trusted) &&
           (stdout_log.outcome != CachedLog::Outcome::ok || stdout_log.trusted) &&
           (stderr_log.outcome != CachedLog::Outcome::ok || stderr_log.trusted);
  }
};

/// Everything cached of one job.
struct JobCache {
  /// The journal: its reader, its fold, and the last read's error (`ENOENT`:
  /// there is none).
  JournalFollower follower;
  JournalFold fold;
  std::uint64_t fold_resets_seen = 0;
  std::error_code journal_error;
  /// The workers: those with a journal line and those with files, ids in
  /// natural order, and where each id is.
  std::vector<WorkerCache> workers;
  std::unordered_map<std::string, std::size_t> positions;
  /// An entry was added out of natural order since the last sort.
  bool unsorted = false;
  /// Entries were added, removed or moved (or all made to be merged again)
  /// since the last merge: indexes kept from it no longer hold.
  bool layout_changed = true;
  /// Indexes of the entries made to be merged again (`merge_dirty`) since
  /// the last merge (meaningful while `layout_changed` is false; may repeat).
  std::vector<std::size_t> touched;
  /// The last merge's result, kept so that the next read patches the few
  /// workers that changed instead of walking every entry
  /// (detail/status_reader.hpp): per worker, in `workers`' order, its merged
  /// status and, side by side, what the job's merge needs of it.
  struct MergedWorkers {
    bool valid = false;
    std::vector<WorkerStatus<>> workers;
    std::vector<std::string> ids;
    std::vector<WorkerState> states;
    std::vector<std::optional<WallTime>> last_updates;
    /// Running with a sign of life: stale once `stale_from` is older than `stale_after`.
    std::vector<char> may_go_stale;
    std::vector<WallTime> stale_from;
    std::vector<char> stale;
    /// Whether the entry had errors to report when last looked at.
    std::vector<char> has_errors;
    /// The job's summary and id lists, in `workers`' order.
    JobSummary summary;
    std::vector<std::string> running, pending, completed, failed;
    /// Their stderr log was read during the last merge, after their errors
    /// were reported: they are looked at again on the next read.
    std::vector<std::size_t> recheck;
  } merged;
  /// Names in `workers/` that are no worker's file.
  std::vector<std::string> invalid_names;
  /// `workers/` as last listed (a file added or removed changes its stamp).
  FileStamp workers_dir_stamp;
  bool workers_listed = false;
  bool workers_listing_trusted = false;
  std::uint64_t last_used = 0;
  /// Watched: `workers/` changed since it was listed.
  bool relist = true;
  /// Watched: events may have been lost; check every worker once.
  bool full_check = true;
  /// What the workers' merges depended on (detail/status_reader.hpp).
  bool merged_alive = false;
  bool merged_on_host = false;
#if JOBWARDEN_STATUS_INOTIFY
  std::unique_ptr<JobWatch> watch;
  std::chrono::steady_clock::time_point watch_retry_at{};
#endif

  /// The cached worker with this id, or null.
  WorkerCache* find_worker(std::string_view id) {
    auto found = positions.find(std::string(id));
    return found == positions.end() ? nullptr : &workers[found->second];
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

/// The journal and the parsed files of the jobs under one root, kept between
/// reads. Not thread-safe: its owner locks (it uses threads of its own while
/// reading).
class StatusCache {
 public:
  StatusCache(std::string root, StatusCacheSettings settings) : root_(std::move(root)), settings_(settings) {}

  const StatusCacheSettings& settings() const noexcept { return settings_; }
  const StatusCacheCounters& counters() const noexcept { return counters_; }

  /// Directories watched right now (inotify): one per watched job.
  std::uint64_t watched_directories() const {
    std::uint64_t count = 0;
#if JOBWARDEN_STATUS_INOTIFY
    for (const auto& job : jobs_) count += job.second.watch ? 1 : 0;
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

  /// Reads what was appended to the journal of the job open as `job_fd`
  /// into `cache.fold`, and makes sure every worker with a journal line has
  /// an entry whose `journal_index` is right; the workers whose line changed
  /// are marked to be merged again (and their files looked at).
  void update_journal(int job_fd, JobCache& cache);

  /// Brings the workers' files of job `job_id` (open as `job_fd`) up to
  /// date: lists `workers/` if it changed, and re-reads what changed.
  /// Problems with `workers/` and its entries go to `errors` (files' own
  /// errors stay in their `CachedFile`). `start_watching`: false for readers
  /// that read every job once (a job already watched stays watched).
  void update_workers(const std::string& job_id, int job_fd, bool start_watching, JobCache& cache,
                      std::vector<StatusFileError>& errors);

  /// Reads a worker's stderr tail now (a worker found `lost` only by the merge).
  void read_tail(int job_fd, WorkerCache& worker) const {
    std::error_code ec;
    OwnedFd workers_fd = open_directory_at(job_fd, workers_dir_name, ec);
    if (ec) return;
    refresh_log(workers_fd.get(), stderr_file_name(worker.id).c_str(), worker.stderr_log, true,
                settings_.recent_change_window);
  }

 private:
  using Counters = FileCounters;

  static bool parse_status(const nlohmann::json& document, StatusRecord& out, std::string& problem) {
    return status_record_from_json(document, out, problem);
  }

  bool is_trusted(const FileStamp& stamp) const { return is_settled(stamp, settings_.recent_change_window); }

  WorkerCache& entry_for(JobCache& cache, const std::string& id, bool& added);
  void drop_unused(JobCache& cache);
  void sort_workers(JobCache& cache);
  void list_workers(int workers_fd, const FileStamp& stamp, JobCache& cache, std::vector<StatusFileError>& errors,
                    bool watched);
  void visit_worker(int workers_fd, bool forced, std::chrono::steady_clock::time_point steady_now,
                    WorkerCache& worker, std::size_t index, Counters& counters) const;
  std::size_t visit_threads(std::size_t count) const;
  void visit_all(int workers_fd, bool forced, std::chrono::steady_clock::time_point steady_now,
                 std::vector<WorkerCache>& workers, const std::vector<std::size_t>& order);
#if JOBWARDEN_STATUS_INOTIFY
  bool update_watch(int workers_fd, const FileStamp& stamp, JobCache& cache, bool start_watching,
                    std::chrono::steady_clock::time_point steady_now);
  static void stop_watch(JobCache& cache);
  static bool drain_events(JobCache& cache);
#endif

  std::string root_;
  StatusCacheSettings settings_;
  std::unordered_map<std::string, JobCache> jobs_;
  std::uint64_t use_counter_ = 0;
  StatusCacheCounters counters_;
};

/// Calls `work(k, thread)` for every `k` below `count`, on `threads` threads
/// (the caller's among them), in chunks; the first exception is rethrown once
/// all threads stopped.
template <class Work>
void for_each_parallel(std::size_t count, std::size_t threads, Work&& work) {
  if (threads <= 1) {
    for (std::size_t k = 0; k < count; ++k) work(k, std::size_t{0});
    return;
  }
  constexpr std::size_t chunk = 64;
  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> failures(threads);
  auto run = [&](std::size_t thread) {
    try {
      for (;;) {
        const std::size_t begin = next.fetch_add(chunk);
        if (begin >= count) break;
        const std::size_t end = std::min(count, begin + chunk);
        for (std::size_t k = begin; k < end; ++k) work(k, thread);
      }
    } catch (...) {
      failures[thread] = std::current_exception();
      next.store(count);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (std::size_t thread = 1; thread < threads; ++thread) {
    try {
      pool.emplace_back(run, thread);
    } catch (...) {
      break;  // no thread to be had: the others do the work
    }
  }
  run(0);
  for (std::thread& thread : pool) thread.join();
  for (const std::exception_ptr& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }
}

/// The entry of worker `id`, added (at the end: `sort_workers` puts it in
/// its place) when there is none.
inline WorkerCache& StatusCache::entry_for(JobCache& cache, const std::string& id, bool& added) {
  auto found = cache.positions.find(id);
  if (found != cache.positions.end()) return cache.workers[found->second];
  // Ids mostly come in natural order (the journal lists workers as they are
  // planned): only an entry out of order makes a sort necessary.
  if (!cache.workers.empty() && !natural_less(cache.workers.back().id, id)) cache.unsorted = true;
  cache.layout_changed = true;
  cache.positions.emplace(id, cache.workers.size());
  cache.workers.emplace_back();
  cache.workers.back().id = id;
  added = true;
  return cache.workers.back();
}

/// Drops the entries of workers with neither a journal line nor a file.
inline void StatusCache::drop_unused(JobCache& cache) {
  auto unused = [](const WorkerCache& worker) { return worker.journal_index < 0 && !worker.listed(); };
  if (std::none_of(cache.workers.begin(), cache.workers.end(), unused)) return;
  cache.layout_changed = true;
  cache.workers.erase(std::remove_if(cache.workers.begin(), cache.workers.end(), unused), cache.workers.end());
  cache.positions.clear();
  for (std::size_t i = 0; i < cache.workers.size(); ++i) cache.positions.emplace(cache.workers[i].id, i);
}

/// Puts the workers in natural order of their ids again (after some were added).
inline void StatusCache::sort_workers(JobCache& cache) {
  if (!cache.unsorted) return;  // every entry was added after those before it
  cache.unsorted = false;
  cache.layout_changed = true;
  // Sorted by index, then moved once: an entry is large.
  std::vector<std::size_t> order(cache.workers.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&cache](std::size_t a, std::size_t b) {
    return natural_less(cache.workers[a].id, cache.workers[b].id);
  });
  std::vector<WorkerCache> sorted;
  sorted.reserve(order.size());
  for (std::size_t i : order) sorted.push_back(std::move(cache.workers[i]));
  cache.workers = std::move(sorted);
  cache.positions.clear();
  cache.positions.reserve(cache.workers.size());
  for (std::size_t i = 0; i < cache.workers.size(); ++i) cache.positions.emplace(cache.workers[i].id, i);
}

inline void StatusCache::update_journal(int job_fd, JobCache& cache) {
  JournalFold& fold = cache.fold;
  const std::uint64_t offset_before = cache.follower.offset();
  const std::uint64_t resets_before = fold.resets();
  try {
    cache.journal_error = cache.follower.follow(
        job_fd, [&] { fold.reset(); },
        [&](std::string_view line, std::uint64_t offset) { fold.apply(line, offset); },
        [&](JournalProblem problem) { fold.note(std::move(problem)); });
  } catch (...) {
    cache.journal_error = std::make_error_code(std::errc::not_enough_memory);
  }
  if (!cache.journal_error || cache.follower.offset() != offset_before) {
    if (cache.follower.offset() != offset_before || fold.resets() != resets_before) ++counters_.files_read;
    else ++counters_.files_reused;
  }
  (void)fold.take_job_changed();  // the job line is read on every merge: nothing to invalidate
  const bool fold_reset = fold.resets() != cache.fold_resets_seen;
  if (fold_reset) {
    // A new journal (compaction, or a new job under this name): every index changed.
    cache.fold_resets_seen = fold.resets();
    cache.layout_changed = true;
    for (WorkerCache& worker : cache.workers) {
      worker.journal_index = -1;
      worker.tail_wanted = false;
      worker.merge_dirty = true;
    }
  }
  const std::vector<std::size_t> changed = fold.take_changed_workers();
  // Each changed line is parsed on first use; many (a first read, a new
  // journal) are parsed on several threads first. Distinct workers' lines
  // are independent.
  if (changed.size() > 1) {
    for_each_parallel(changed.size(), visit_threads(changed.size()),
                      [&](std::size_t k, std::size_t) { (void)fold.worker(changed[k]); });
  }
  if (cache.workers.capacity() < fold.worker_count()) cache.workers.reserve(fold.worker_count() + 64);
  bool added = false;
  for (std::size_t index : changed) {
    const JournalWorker& line = fold.worker(index);
    WorkerCache& worker = entry_for(cache, line.id, added);
    worker.journal_index = static_cast<long>(index);
    worker.tail_wanted = line.ok && wants_stderr_tail(line.info.state);
    worker.merge_dirty = true;
    if (!cache.layout_changed) cache.touched.push_back(static_cast<std::size_t>(&worker - cache.workers.data()));
    if (worker.tail_wanted && !worker.stderr_log.tail_read) worker.dirty = true;  // its stderr tail is due
  }
  // Only a new journal takes lines away (an appended line only adds one).
  if (fold_reset) drop_unused(cache);
  if (added) sort_workers(cache);
}

/// Lists `workers/` again unless its stamp shows nothing was added or
/// removed (or, watched, unless an event said so), and notes which files
/// each worker has.
inline void StatusCache::list_workers(int workers_fd, const FileStamp& stamp, JobCache& cache,
                                      std::vector<StatusFileError>& errors, bool watched) {
  if (watched ? !cache.relist && cache.workers_listed
              : cache.workers_listed && cache.workers_listing_trusted && cache.workers_dir_stamp == stamp) {
    return;
  }
  std::error_code ec;
  std::vector<DirectoryEntry> entries = list_directory(workers_fd, ec);
  if (ec) errors.push_back({workers_dir_name, "unreadable", ec.message()});
  for (WorkerCache& worker : cache.workers) {
    worker.has_status = worker.has_stdout = worker.has_stderr = false;
  }
  cache.invalid_names.clear();
  bool added = false;
  std::string id;
  for (DirectoryEntry& entry : entries) {
    if (entry.name.empty() || entry.name[0] == '.') continue;  // temporary files, hidden leftovers
    const WorkerFileKind kind = classify_worker_file(entry.name, id);
    if (kind == WorkerFileKind::other || !is_valid_id(id)) {
      cache.invalid_names.push_back(std::move(entry.name));
      continue;
    }
    WorkerCache& worker = entry_for(cache, id, added);
    bool& has = kind == WorkerFileKind::status ? worker.has_status
                : kind == WorkerFileKind::stdout_log ? worker.has_stdout
                                                     : worker.has_stderr;
    if (!has) {
      has = true;
    }
  }
  std::sort(cache.invalid_names.begin(), cache.invalid_names.end());
  drop_unused(cache);
  if (added) sort_workers(cache);
  cache.workers_dir_stamp = stamp;
  cache.workers_listed = !ec;
  cache.workers_listing_trusted = is_trusted(stamp);
  cache.relist = false;
}

/// Brings one worker's cached files up to date; thread-safe for distinct
/// workers. `forced` (an event named them): read whatever their stamps say.
inline void StatusCache::visit_worker(int workers_fd, bool forced, std::chrono::steady_clock::time_point steady_now,
                                      WorkerCache& worker, std::size_t index, Counters& counters) const {
  if (worker.has_status) {
    refresh_file(workers_fd, status_file_name(worker.id).c_str(), worker.status, &parse_status,
                 settings_.max_file_size, settings_.recent_change_window, counters, forced);
  } else {
    worker.status = CachedFile<StatusRecord>{};
  }
  if (worker.has_stdout) {
    refresh_log(workers_fd, stdout_file_name(worker.id).c_str(), worker.stdout_log, false,
                settings_.recent_change_window);
  } else {
    worker.stdout_log = CachedLog{};
  }
  const bool want_tail = worker.tail_wanted || worker.stderr_log.tail_read;
  if (worker.has_stderr) {
    refresh_log(workers_fd, stderr_file_name(worker.id).c_str(), worker.stderr_log, want_tail,
                settings_.recent_change_window);
  } else {
    worker.stderr_log = CachedLog{};
  }
  // Spread the periodic in-place checks over the interval, so that a big
  // job does not re-check all its files in the same call.
  const auto interval = settings_.in_place_write_check_interval;
  worker.next_file_check =
      steady_now + (!worker.checked ? interval * static_cast<long>(index % 64 + 1) / 64 : interval);
  worker.checked = true;
  worker.merge_dirty = true;
}

/// Threads for `count` visits: several only when there are many.
inline std::size_t StatusCache::visit_threads(std::size_t count) const {
  constexpr std::size_t per_thread_minimum = 256;
  std::size_t threads = settings_.read_threads;
  if (threads == 0) threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), 4);
  return std::max<std::size_t>(1, std::min(threads, count / per_thread_minimum));
}

/// Visits `order`'s workers, on several threads when there are many.
inline void StatusCache::visit_all(int workers_fd, bool forced, std::chrono::steady_clock::time_point steady_now,
                                   std::vector<WorkerCache>& workers, const std::vector<std::size_t>& order) {
  const std::size_t threads = visit_threads(order.size());
  std::vector<Counters> counters(threads);
  for_each_parallel(order.size(), threads, [&](std::size_t k, std::size_t thread) {
    visit_worker(workers_fd, forced, steady_now, workers[order[k]], order[k], counters[thread]);
  });
  for (const Counters& counted : counters) {
    counters_.files_read += counted.read;
    counters_.files_reused += counted.reused;
  }
}

#if JOBWARDEN_STATUS_INOTIFY
/// Makes sure `cache` has a working watch on the `workers/` directory open
/// as `workers_fd` (identified by `stamp`), and takes in the events since
/// the last read. False: the job is read without watching.
inline bool StatusCache::update_watch(int workers_fd, const FileStamp& stamp, JobCache& cache, bool start_watching,
                                      std::chrono::steady_clock::time_point steady_now) {
  if (cache.watch && !cache.watch->watches(stamp)) stop_watch(cache);  // another `workers/` than the one watched
  if (cache.watch && !drain_events(cache)) stop_watch(cache);
  if (!cache.watch && start_watching && steady_now >= cache.watch_retry_at) {
    cache.watch = JobWatch::start(workers_fd, stamp);
    if (!cache.watch) {
      cache.watch_retry_at = steady_now + std::chrono::minutes(1);
    } else {
      // Watched from now on: whatever changed before is found by one full check.
      cache.relist = true;
      cache.full_check = true;
    }
  }
  return cache.watch != nullptr;
}

inline void StatusCache::stop_watch(JobCache& cache) {
  cache.watch.reset();
  cache.relist = cache.full_check = true;
}

/// Takes in the queued events: marks what they name to be read again. False:
/// the watch on `workers/` is gone.
inline bool StatusCache::drain_events(JobCache& cache) {
  struct Sink {
    JobCache& cache;
    std::string id;
    void lost_track() { cache.full_check = cache.relist = true; }
    void file_changed(std::string_view name, int change) {
      const WorkerFileKind kind = classify_worker_file(std::string(name), id);
      WorkerCache* worker = kind == WorkerFileKind::other ? nullptr : cache.find_worker(id);
      if (worker == nullptr) {
        if (change != 0) cache.relist = true;  // a new worker, or a stray name came or went
        return;
      }
      worker->dirty = true;
      if (change > 0) {
        // A file of a known worker came: noted here, no listing needed
        // (the common case: a status file replaced by a rename).
        bool& has = kind == WorkerFileKind::status ? worker->has_status
                    : kind == WorkerFileKind::stdout_log ? worker->has_stdout
                                                         : worker->has_stderr;
        has = true;
      } else if (change < 0) {
        cache.relist = true;  // went: the listing says whether it is back and what is left
      }
    }
  } sink{cache, {}};
  return cache.watch->drain(sink);
}
#endif

inline void StatusCache::update_workers(const std::string& job_id, int job_fd, bool start_watching,
                                        JobCache& cache, std::vector<StatusFileError>& errors) {
  (void)job_id;
  std::error_code ec;
  OwnedFd workers_fd = open_directory_at(job_fd, workers_dir_name, ec);
  struct stat workers_info {};
  if (!ec && ::fstat(workers_fd.get(), &workers_info) != 0) ec = errno_code();
  if (ec) {
    // No files: the workers are what the journal says.
    cache.layout_changed = true;
    for (WorkerCache& worker : cache.workers) {
      if (worker.listed() || worker.status.present()) worker.merge_dirty = true;
      worker.has_status = worker.has_stdout = worker.has_stderr = false;
      worker.status = CachedFile<StatusRecord>{};
      worker.stdout_log = worker.stderr_log = CachedLog{};
    }
    drop_unused(cache);
    cache.invalid_names.clear();
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
    watched = update_watch(workers_fd.get(), workers_stamp, cache, start_watching, steady_now);
  } else if (cache.watch) {
    stop_watch(cache);
  }
#else
  (void)start_watching;
#endif
  const bool listing_unchanged = cache.workers_listed && cache.workers_listing_trusted &&
                                 cache.workers_dir_stamp == workers_stamp;
  list_workers(workers_fd.get(), workers_stamp, cache, errors, watched);
  for (const std::string& name : cache.invalid_names) {
    errors.push_back({std::string(workers_dir_name) + "/" + name, "not a worker file",
                      "not <id>.status.json, <id>.stdout.log or <id>.stderr.log with a valid worker id"});
  }

  // Which workers to check: watched, those events named (and the new, the
  // unsettled and those whose journal line changed); unwatched, all of them
  // when `workers/` changed, else those due for a check.
  std::vector<std::size_t> order;
  const bool check_all = watched ? cache.full_check : !listing_unchanged;
  if (check_all) {
    order.resize(cache.workers.size());
    for (std::size_t index = 0; index < order.size(); ++index) order[index] = index;
  } else {
    for (std::size_t index = 0; index < cache.workers.size(); ++index) {
      const WorkerCache& worker = cache.workers[index];
      const bool due = watched ? worker.dirty
                               : worker.dirty || !worker.checked || !worker.settled() ||
                                     steady_now >= worker.next_file_check;
      if (due) order.push_back(index);
    }
  }
#if JOBWARDEN_STATUS_INOTIFY
  if (watched && check_all) ++counters_.full_checks;
#endif
  // Forced only when events named the files (their stamps may not show it).
  visit_all(workers_fd.get(), watched && !check_all, steady_now, cache.workers, order);
  if (!cache.layout_changed) cache.touched.insert(cache.touched.end(), order.begin(), order.end());
  for (std::size_t index : order) {
    WorkerCache& worker = cache.workers[index];
    // A file changed within the last timestamp tick may change again unseen
    // by its stamp: such a worker is looked at again next time, until it has aged.
    worker.dirty = !worker.settled();
  }
  cache.full_check = false;
  if (order.size() < cache.workers.size()) {
    // Not visited: unchanged since they were last read.
    std::vector<bool> visited(cache.workers.size());
    for (std::size_t index : order) visited[index] = true;
    for (std::size_t index = 0; index < cache.workers.size(); ++index) {
      if (!visited[index]) counters_.files_reused += cache.workers[index].status.present();
    }
  }
}

}  // namespace jobwarden::detail
