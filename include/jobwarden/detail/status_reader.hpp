#pragma once
/// \file
/// The engine behind `StatusAggregator`: reads one job directory through the
/// cache (detail/status_cache.hpp), probes what the files cannot say (is the
/// supervisor alive, does a recorded process still run) and merges the
/// records with the merge rule (detail/status_merge.hpp). Not a template: the
/// progress payload stays JSON here, and `typed_status` turns it into the
/// user's `Progress` type when the result is handed out.
///
/// The supervisor is alive while its `supervisor.lock` is held (probed with a
/// shared non-blocking `flock`, never created); when the lock cannot be
/// probed (no lock file, unreadable), while its recorded pid is provably the
/// same running process (`is_running_process`, only on the host that wrote
/// the journal's job line; elsewhere, while that line is not terminal). A process a
/// worker's records name runs while its pid has the recorded start time and
/// is no zombie; a pair found gone is remembered and never asked again.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/hostname.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/journal.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/status_cache.hpp"
#include "jobwarden/detail/status_merge.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/job_status.hpp"

namespace jobwarden::detail {

/// How a `StatusReader` reads (from `StatusAggregatorOptions`).
struct StatusReaderSettings {
  StatusCacheSettings cache;
  std::chrono::milliseconds stale_after{std::chrono::seconds(30)};
  std::function<WallTime()> now;  ///< empty: `system_clock::now()`
};

/// One job as read, progress still JSON.
struct JobReading {
  JobStatus<> status;
  /// Asked for typed progress: for each worker of `status`, the index in
  /// `status.errors` where a complaint about its progress belongs (after its
  /// own files' errors, before the next worker's).
  std::vector<std::size_t> progress_error_slots;
  /// The job directory is of schema 1 (`errc::unsupported_layout`): not read.
  bool unsupported_layout = false;
};

/// Reads job directories under one root, with a cache. Not thread-safe by
/// itself: its owner holds `mutex` around every call.
class StatusReader {
 public:
  StatusReader(std::string root, StatusReaderSettings settings)
      : root_(root), settings_(std::move(settings)), cache_(std::move(root), settings_.cache) {}

  /// Held by the owner around every call.
  std::mutex mutex;

  const std::string& root() const noexcept { return root_; }
  StatusCache& cache() noexcept { return cache_; }
  const StatusCache& cache() const noexcept { return cache_; }

  /// The reader's "now" (the settings' clock, else the system clock).
  WallTime now() const { return settings_.now ? settings_.now() : std::chrono::system_clock::now(); }

  /// Reads job `job_id` (a valid id). Errors: `errc::unknown_job` when there
  /// is no such job directory, `errc::unsupported_layout` for a schema 1 job
  /// directory (`job.json` and no `journal.jsonl`) or a journal of another
  /// schema version, or the system error
  /// opening it.
  JobReading read_job(const std::string& job_id, bool typed_progress, std::error_code& ec) {
    std::error_code open_ec;
    OwnedFd root_fd = open_directory(root_, open_ec);
    if (open_ec) {
      ec = open_ec == std::errc::no_such_file_or_directory ? make_error_code(errc::unknown_job) : open_ec;
      return {};
    }
    OwnedFd job_fd = open_directory_at(root_fd.get(), job_id.c_str(), open_ec);
    if (open_ec) {
      ec = (open_ec == std::errc::no_such_file_or_directory || open_ec == std::errc::not_a_directory)
               ? make_error_code(errc::unknown_job)
               : open_ec;
      return {};
    }
    JobReading reading = read_open_job(job_id, job_fd.get(), /*start_watching=*/true, typed_progress);
    if (reading.unsupported_layout) {
      ec = make_error_code(errc::unsupported_layout);
      return {};
    }
    return reading;
  }

  /// Reads the job open as `job_fd`. `start_watching`: false for readers of
  /// every job at once (`list_jobs`, clean-ups; a job already watched stays
  /// watched). A schema 1 job directory is not read: the result has
  /// `unsupported_layout` set and one `errors` entry saying so.
  JobReading read_open_job(const std::string& job_id, int job_fd, bool start_watching = false,
                           bool typed_progress = false) {
    JobReading reading;
    JobStatus<>& status = reading.status;
    status.job_id = job_id;
    JobCache& cache = cache_.job(job_id);
    // The last merge can be patched only if this read completes (an
    // exception midway leaves entries marked that `touched` may not list).
    const bool merged_was_valid = std::exchange(cache.merged.valid, false);

    // The journal: what was appended since the last read.
    cache_.update_journal(job_fd, cache);
    const std::error_code journal_ec = cache.journal_error;
    const bool no_journal = journal_ec == std::errc::no_such_file_or_directory;
    std::string layout_problem;
    if (no_journal && is_legacy_job_dir(job_fd)) {
      layout_problem = "a schema 1 job directory (job.json, no journal.jsonl): this version reads schema " +
                       std::to_string(journal_schema_version) + " only";
    } else {
      layout_problem = journal_schema_problem(cache.fold);
    }
    if (!layout_problem.empty()) {
      cache_.forget(job_id);
      reading.unsupported_layout = true;
      status.errors.push_back({journal_file_name, "unsupported layout", std::move(layout_problem)});
      return reading;
    }
    const WallTime now_wall = now();
    JournalFold& fold = cache.fold;
    const JobRecord* record = fold.job() ? &*fold.job() : nullptr;
    const LockProbe probe = probe_supervisor_lock(job_fd);
    bool alive = probe == LockProbe::held;
    if (probe == LockProbe::unknown && record != nullptr) {
      // No lock to ask: the pid is the only witness, and only on its own host.
      alive = is_local(record->supervisor_hostname)
                  ? is_running_process(record->supervisor_pid, record->supervisor_start_time)
                  : !is_terminal(record->state);
    }
    if (journal_ec && !no_journal) {
      std::string detail;
      const std::string error = describe_file_error(journal_ec, detail, settings_.cache.max_file_size, 0);
      status.errors.push_back({journal_file_name, error, detail});
    }
    if (!fold.header_seen() && (fold.job() || fold.worker_count() > 0)) {
      // Records without the header that names their format.
      status.errors.push_back(
          {journal_file_name, "wrong shape", line_detail(0, "the first line is not the journal's header")});
    }
    for (const JournalProblem& problem : fold.problems()) {
      status.errors.push_back({journal_file_name, problem.error, line_detail(problem.offset, problem.detail)});
    }
    // No job line at all: only when nothing else could have been it (a bad
    // line, an unreadable journal, which `errors` already names).
    const bool record_missing =
        record == nullptr && fold.job_problem().empty() && fold.problems().empty() && (!journal_ec || no_journal);
    if (record_missing && !alive) {
      status.errors.push_back({journal_file_name, "missing",
                               no_journal ? "no supervisor recorded this job: its start was interrupted, or "
                                            "its journal was removed"
                                          : "no job line: no supervisor recorded this job, or its start was "
                                            "interrupted"});
    }

    // The workers' files.
    cache_.update_workers(job_id, job_fd, start_watching, cache, status.errors);
    const bool on_recording_host = record == nullptr || is_local(record->supervisor_hostname);
    const bool facts_changed = cache.merged_alive != alive || cache.merged_on_host != on_recording_host;
    JobFacts job_facts;
    job_facts.record = record;
    job_facts.record_missing = record_missing;
    job_facts.supervisor_alive = alive;
    job_facts.now = now_wall;
    // With a live supervisor and the same entries as last time, only the
    // workers marked since then are merged again, and the last result is
    // patched; otherwise every worker is walked. Both give the same result.
    const bool patch = merged_was_valid && !cache.layout_changed && !facts_changed && alive &&
                       cache.merged.workers.size() == cache.workers.size();
    if (patch) {
      patch_workers(job_id, job_fd, cache, on_recording_host, now_wall, typed_progress, reading);
    } else {
      const bool same_entries =
          merged_was_valid && !cache.layout_changed && cache.merged.workers.size() == cache.workers.size();
      merge_all_workers(job_id, job_fd, cache, same_entries, alive, on_recording_host, now_wall, typed_progress,
                        reading, job_facts.any_worker_unfinished);
    }
    cache.touched.clear();
    cache.layout_changed = false;
    cache.merged_alive = alive;
    cache.merged_on_host = on_recording_host;

    const JobCache::MergedWorkers& merged = cache.merged;
    status.workers = merged.workers;
    merge_job_record(job_facts, status);
    status.summary = merged.summary;
    for (const std::optional<WallTime>& last_update : merged.last_updates) {
      if (last_update && (!status.last_update || *last_update > *status.last_update)) status.last_update = last_update;
    }
    status.running = merged.running;
    status.pending = merged.pending;
    status.completed = merged.completed;
    status.failed = merged.failed;
    merge_job_state(job_facts, status);
    cache.merged.valid = true;
    return reading;
  }

  /// The jobs under the root, oldest first (see `StatusAggregator::list_jobs`).
  JobList list_jobs(std::error_code& ec) {
    JobList list;
    std::error_code open_ec;
    OwnedFd root_fd = open_directory(root_, open_ec);
    if (open_ec) {
      if (open_ec != std::errc::no_such_file_or_directory) ec = open_ec;
      return list;
    }
    std::vector<DirectoryEntry> entries = list_directory(root_fd.get(), ec);
    if (ec) return list;
    for (const DirectoryEntry& entry : entries) {
      if (!is_valid_id(entry.name)) continue;  // hidden tombstones and things that are not jobs
      OwnedFd job_fd = open_directory_at(root_fd.get(), entry.name.c_str(), open_ec);
      if (open_ec == std::errc::not_a_directory) continue;
      if (open_ec) {
        std::string detail;
        list.errors.push_back(
            {entry.name, describe_file_error(open_ec, detail, settings_.cache.max_file_size, 0), detail});
        continue;
      }
      JobReading reading = read_open_job(entry.name, job_fd.get());
      const JobStatus<>& status = reading.status;
      for (const StatusFileError& error : status.errors) {
        if (error.path == journal_file_name) {
          list.errors.push_back({entry.name + "/" + error.path, error.error, error.detail});
        }
      }
      if (reading.unsupported_layout) continue;  // said in `errors`; not listed
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

 private:
  /// The worker's journal line in the fold, or null.
  static const JournalWorker* line_of(JournalFold& fold, const WorkerCache& worker) {
    return worker.journal_index >= 0 ? &fold.worker(static_cast<std::size_t>(worker.journal_index)) : nullptr;
  }

  /// Whether `report_worker` has anything to say.
  static bool worker_has_errors(const WorkerCache& worker, const JournalWorker* line) {
    return (line != nullptr && !line->ok) || worker.status.failed() ||
           worker.stdout_log.outcome == CachedLog::Outcome::error ||
           worker.stderr_log.outcome == CachedLog::Outcome::error;
  }

  /// The worker's own errors (its journal line, its files), in this order.
  static void report_worker(const WorkerCache& worker, const JournalWorker* line,
                            std::vector<StatusFileError>& errors) {
    if (line != nullptr && !line->ok) {
      const std::size_t colon = line->problem.find(": ");
      const std::string error = colon == std::string::npos ? line->problem : line->problem.substr(0, colon);
      std::string why = "worker " + worker.id;
      if (colon != std::string::npos) why += ": " + line->problem.substr(colon + 2);
      errors.push_back({journal_file_name, error, line_detail(line->offset, why)});
    }
    const bool log_failed = worker.stdout_log.outcome == CachedLog::Outcome::error ||
                            worker.stderr_log.outcome == CachedLog::Outcome::error;
    if (worker.status.failed() || log_failed) {
      const std::string prefix = std::string(workers_dir_name) + "/";
      worker.status.report(prefix + status_file_name(worker.id), errors);
      report_log(worker.stdout_log, prefix + stdout_file_name(worker.id), errors);
      report_log(worker.stderr_log, prefix + stderr_file_name(worker.id), errors);
    }
  }

  /// Merges one worker again from its records. True when its stderr log was
  /// read meanwhile (its error, if any, is reported from the next read on).
  bool remerge(const std::string& job_id, int job_fd, WorkerCache& worker, const JournalWorker* line, bool alive,
               bool on_recording_host, WallTime now_wall) {
    WorkerRecords records;
    if (line != nullptr && line->ok) {
      records.process = &line->info;
      records.process_updated_at = line->updated_at;
    }
    records.status = worker.status.usable();
    worker.merged_unfinished = worker_unfinished(records);
    worker.sign_of_life = last_sign_of_life(records);
    WorkerFacts facts;
    facts.supervisor_alive = alive;
    facts.now = now_wall;
    facts.stale_after = settings_.stale_after;
    const ProcessesToAsk ask = processes_to_ask(records, alive, on_recording_host);
    facts.still_runs =
        still_runs(ask.recorded, worker.gone_recorded) || still_runs(ask.reporter, worker.gone_reporter);
    worker.merged = merge_worker(worker.id, records, facts, records.process != nullptr ? line->argv : nullptr);
    const bool log_read = add_logs(job_id, job_fd, worker);
    worker.merged_valid = true;
    worker.merge_dirty = false;
    return log_read;
  }

  /// Keeps entry `i`'s merge in `cache.merged`, with what the job's merge needs of it.
  static void keep_merged(JobCache::MergedWorkers& merged, std::size_t i, const WorkerCache& worker) {
    merged.workers[i] = worker.merged;
    merged.ids[i] = worker.id;
    merged.states[i] = worker.merged.state;
    merged.last_updates[i] = worker.merged.last_update;
    merged.may_go_stale[i] = worker.merged.state == WorkerState::running && worker.sign_of_life.has_value();
    merged.stale_from[i] = worker.sign_of_life.value_or(WallTime{});
    merged.stale[i] = worker.merged.stale;
  }

  /// The job's summary and id lists from the kept states.
  static void count_states(JobCache::MergedWorkers& merged) {
    JobStatus<> counted;
    for (std::size_t i = 0; i < merged.states.size(); ++i) {
      merge_job_worker(merged.states[i], merged.ids[i], std::nullopt, counted);
    }
    merged.summary = counted.summary;
    merged.running = std::move(counted.running);
    merged.pending = std::move(counted.pending);
    merged.completed = std::move(counted.completed);
    merged.failed = std::move(counted.failed);
  }

  /// Walks every worker: reports its errors, merges it again when something
  /// it depends on changed (else only its staleness moves with the clock),
  /// and keeps the result in `cache.merged`. `same_entries`: `cache.merged`
  /// holds the last merge of these very entries (only what changed is copied).
  void merge_all_workers(const std::string& job_id, int job_fd, JobCache& cache, bool same_entries, bool alive,
                         bool on_recording_host, WallTime now_wall, bool typed_progress, JobReading& reading,
                         bool& any_unfinished) {
    JournalFold& fold = cache.fold;
    const bool facts_changed = cache.merged_alive != alive || cache.merged_on_host != on_recording_host;
    std::vector<StatusFileError>& errors = reading.status.errors;
    const std::size_t count = cache.workers.size();
    JobCache::MergedWorkers& merged = cache.merged;
    if (!same_entries) {
      merged.workers.clear();
      merged.workers.resize(count);
      merged.ids.assign(count, std::string());
      merged.states.assign(count, WorkerState::pending);
      merged.last_updates.assign(count, std::nullopt);
      merged.may_go_stale.assign(count, 0);
      merged.stale_from.assign(count, WallTime{});
      merged.stale.assign(count, 0);
    }
    merged.has_errors.assign(count, 0);
    merged.recheck.clear();
    any_unfinished = false;
    if (typed_progress) reading.progress_error_slots.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      WorkerCache& worker = cache.workers[i];
      const JournalWorker* line = line_of(fold, worker);
      merged.has_errors[i] = worker_has_errors(worker, line);
      if (merged.has_errors[i]) report_worker(worker, line, errors);
      if (typed_progress) reading.progress_error_slots.push_back(errors.size());

      // Merged again only when something it depends on changed; else only
      // its staleness moves with the clock.
      const bool again =
          worker.merge_dirty || !worker.merged_valid || facts_changed || (!alive && worker.merged_unfinished);
      if (again) {
        if (remerge(job_id, job_fd, worker, line, alive, on_recording_host, now_wall)) merged.recheck.push_back(i);
        keep_merged(merged, i, worker);
      } else {
        worker.merged.stale =
            is_stale(worker.merged.state, worker.sign_of_life, now_wall, settings_.stale_after);
        if (same_entries) {
          merged.workers[i].stale = worker.merged.stale;
          merged.stale[i] = worker.merged.stale;
        } else {
          keep_merged(merged, i, worker);
        }
      }
      any_unfinished = any_unfinished || worker.merged_unfinished;
    }
    count_states(merged);
  }

  /// Patches `cache.merged` (valid, same entries, a live supervisor): the
  /// workers marked since the last merge are looked at again, the others
  /// only for their staleness, from the kept side arrays. Gives what
  /// `merge_all_workers` would.
  void patch_workers(const std::string& job_id, int job_fd, JobCache& cache, bool on_recording_host,
                     WallTime now_wall, bool typed_progress, JobReading& reading) {
    JournalFold& fold = cache.fold;
    JobCache::MergedWorkers& merged = cache.merged;
    std::vector<StatusFileError>& errors = reading.status.errors;
    const std::size_t count = cache.workers.size();
    // Marked since the last merge, and those whose stderr log was read
    // during the last merge (after their errors were reported).
    std::vector<std::size_t> candidates = cache.touched;
    candidates.insert(candidates.end(), merged.recheck.begin(), merged.recheck.end());
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    for (std::size_t i : candidates) {
      merged.has_errors[i] = worker_has_errors(cache.workers[i], line_of(fold, cache.workers[i]));
    }
    if (typed_progress) reading.progress_error_slots.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (merged.has_errors[i]) report_worker(cache.workers[i], line_of(fold, cache.workers[i]), errors);
      if (typed_progress) reading.progress_error_slots.push_back(errors.size());
    }
    merged.recheck.clear();
    bool states_changed = false;
    for (std::size_t i : candidates) {
      WorkerCache& worker = cache.workers[i];
      if (!worker.merge_dirty && worker.merged_valid) continue;
      if (remerge(job_id, job_fd, worker, line_of(fold, worker), /*alive=*/true, on_recording_host, now_wall)) {
        merged.recheck.push_back(i);
      }
      states_changed = states_changed || merged.states[i] != worker.merged.state;
      keep_merged(merged, i, worker);
    }
    for (std::size_t i = 0; i < count; ++i) {
      const bool stale = merged.may_go_stale[i] && now_wall - merged.stale_from[i] > settings_.stale_after;
      if (stale != static_cast<bool>(merged.stale[i])) {
        merged.stale[i] = stale;
        merged.workers[i].stale = stale;
        cache.workers[i].merged.stale = stale;
      }
    }
    if (states_changed) count_states(merged);
  }

  /// A log that exists but cannot be used, as an entry of `errors`.
  static void report_log(const CachedLog& log, const std::string& path, std::vector<StatusFileError>& errors) {
    if (log.outcome == CachedLog::Outcome::error) errors.push_back({path, log.error, log.detail});
  }

  /// The `detail` of an error about the journal line at `offset`.
  static std::string line_detail(std::uint64_t offset, const std::string& detail) {
    std::string out = "line at byte " + std::to_string(offset);
    if (!detail.empty()) out += ": " + detail;
    return out;
  }

  /// Fills in the merged worker's log paths and, when it ended without
  /// succeeding, its stderr tail. The cache read the tail already when the
  /// journal said so; a worker found `lost` only now has its log read here, once.
  /// True when it read the stderr log just now.
  bool add_logs(const std::string& job_id, int job_fd, WorkerCache& files) {
    WorkerStatus<>& worker = files.merged;
    bool read_now = false;
    if (wants_stderr_tail(worker.state) && !files.stderr_log.tail_read && files.has_stderr &&
        files.stderr_log.outcome != CachedLog::Outcome::error) {
      cache_.read_tail(job_fd, files);
      read_now = true;
    }
    const std::string workers_dir = root_ + "/" + job_id + "/" + workers_dir_name + "/";
    worker.stdout_log.reset();
    worker.stderr_log.reset();
    worker.stderr_tail.reset();
    if (files.stdout_log.outcome == CachedLog::Outcome::ok) worker.stdout_log = workers_dir + stdout_file_name(worker.id);
    if (files.stderr_log.outcome == CachedLog::Outcome::ok) {
      worker.stderr_log = workers_dir + stderr_file_name(worker.id);
      if (wants_stderr_tail(worker.state) && files.stderr_log.tail_read) worker.stderr_tail = files.stderr_log.tail;
    }
    return read_now;
  }

  bool is_local(const std::string& recorded_hostname) const {
    return recorded_hostname.empty() || recorded_hostname == hostname_;
  }

  /// Whether `process` still runs, remembering a "no" in `gone`.
  static bool still_runs(const RecordedProcess& process, std::pair<int, unsigned long long>& gone) {
    if (process.pid <= 0 || process.start_time == 0) return false;
    if (gone.first == process.pid && gone.second == process.start_time) return false;
    if (is_running_process(process.pid, process.start_time)) return true;
    gone = {process.pid, process.start_time};
    return false;
  }

  std::string root_;
  StatusReaderSettings settings_;
  StatusCache cache_;
  std::string hostname_ = local_hostname();
};

/// `reading` with its progress turned into `Progress` (`from_json`). Progress
/// that does not convert is left out and becomes a `"wrong shape"` error of
/// the worker's status file (`"progress: <why>"`), in the worker's place
/// among the errors; it never throws out of a read.
template <class Progress>
JobStatus<Progress> typed_status(JobReading&& reading) {
  if constexpr (std::is_same_v<Progress, nlohmann::json>) {
    return std::move(reading.status);
  } else {
    JobStatus<>& source = reading.status;
    JobStatus<Progress> typed;
    typed.job_id = std::move(source.job_id);
    typed.state = source.state;
    typed.summary = source.summary;
    typed.elapsed_seconds = source.elapsed_seconds;
    typed.created_at = source.created_at;
    typed.ended_at = source.ended_at;
    typed.last_update = source.last_update;
    typed.supervisor = std::move(source.supervisor);
    typed.running = std::move(source.running);
    typed.pending = std::move(source.pending);
    typed.completed = std::move(source.completed);
    typed.failed = std::move(source.failed);
    std::vector<std::pair<std::size_t, StatusFileError>> problems;  // (slot, error)
    typed.workers.reserve(source.workers.size());
    for (std::size_t index = 0; index < source.workers.size(); ++index) {
      WorkerStatus<>& worker = source.workers[index];
      WorkerStatus<Progress> out;
      if (worker.progress) {
        try {
          out.progress = worker.progress->template get<Progress>();
        } catch (const std::exception& e) {
          const std::size_t slot =
              index < reading.progress_error_slots.size() ? reading.progress_error_slots[index] : source.errors.size();
          problems.push_back({slot,
                              {std::string(workers_dir_name) + "/" + status_file_name(worker.id),
                               "wrong shape", std::string("progress: ") + e.what()}});
        }
      }
      out.id = std::move(worker.id);
      out.state = worker.state;
      out.reported_state = worker.reported_state;
      out.pid = worker.pid;
      out.attempt = worker.attempt;
      out.exit_code = worker.exit_code;
      out.signal = std::move(worker.signal);
      out.core_dumped = worker.core_dumped;
      out.message = std::move(worker.message);
      out.result = std::move(worker.result);
      out.error = std::move(worker.error);
      out.started_at = worker.started_at;
      out.ended_at = worker.ended_at;
      out.last_update = worker.last_update;
      out.stale = worker.stale;
      out.seq = worker.seq;
      out.usage = worker.usage;
      out.stdout_log = std::move(worker.stdout_log);
      out.stderr_log = std::move(worker.stderr_log);
      out.stderr_tail = std::move(worker.stderr_tail);
      out.argv = std::move(worker.argv);
      out.label = std::move(worker.label);
      out.paused = worker.paused;
      typed.workers.push_back(std::move(out));
    }
    if (problems.empty()) {
      typed.errors = std::move(source.errors);
    } else {
      typed.errors.reserve(source.errors.size() + problems.size());
      std::size_t next = 0;
      for (auto& [slot, error] : problems) {
        while (next < slot && next < source.errors.size()) typed.errors.push_back(std::move(source.errors[next++]));
        typed.errors.push_back(std::move(error));
      }
      while (next < source.errors.size()) typed.errors.push_back(std::move(source.errors[next++]));
    }
    return typed;
  }
}

}  // namespace jobwarden::detail
