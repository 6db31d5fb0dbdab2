#pragma once
/// \file
/// What a reader of job directories returns: one worker merged from its two
/// files (`WorkerStatus`), a whole job (`JobStatus`, whose `to_json()` is the
/// aggregated JSON of docs/contract.md and
/// `schemas/aggregated-status.schema.json`), the jobs under a root
/// (`JobList`) and what a clean-up removed (`CleanReport`). Plain values, safe
/// to copy and keep; `StatusAggregator` (status_aggregator.hpp) makes them,
/// `clean_jobs` (job_cleanup.hpp) makes `CleanReport`s.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// `schema_version` of the aggregated JSON (`JobStatus::to_json`,
/// `JobList::to_json`; schemas/aggregated-status.schema.json): its own
/// format, unchanged when the job directory's layout changes.
inline constexpr int aggregated_schema_version = 1;

/// A wall-clock instant as used in status files.
using WallTime = std::chrono::system_clock::time_point;

/// `{"total", "pending", "running", "succeeded", "failed", "done"}`: the
/// `summary` object of the aggregated JSON and of `JobList`'s jobs.
/// (The journal's job line records `cancelled` and `lost` too; that is its own format.)
inline nlohmann::json summary_to_json(const JobSummary& summary) {
  return {{"total", summary.total},         {"pending", summary.pending}, {"running", summary.running},
          {"succeeded", summary.succeeded}, {"failed", summary.failed},   {"done", summary.done}};
}

/// One file (or directory) of a job that could not be used, and why.
struct StatusFileError {
  std::string path;    ///< relative to the job directory: `"workers/5.status.json"`, `"journal.jsonl"`
  std::string error;   ///< a short fixed phrase: `"not valid JSON"`, `"wrong shape"`, `"oversized"`,
                       ///< `"symbolic link not followed"`, `"not a regular file"`, `"not a directory"`,
                       ///< `"unreadable"`, `"missing"`, `"not a worker file"`, `"oversized line"`,
                       ///< `"unsupported layout"`
  std::string detail;  ///< specifics for humans (the parser's message, the limit...)

  /// `{"path", "error", "detail"}`.
  nlohmann::json to_json() const { return {{"path", path}, {"error", error}, {"detail", detail}}; }
};

/// Everything known about one worker, merged from its two files (the rules
/// are in detail/status_merge.hpp and docs/job-directory.md).
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
  /// The paths of its log files (`<root>/<job>/workers/<id>.stdout.log`),
  /// unset when there is none: a log the supervisor writes is created on the
  /// first byte, so a worker that printed nothing has none.
  std::optional<std::string> stdout_log;
  std::optional<std::string> stderr_log;
  /// For a worker that ended without succeeding (failed, crashed, timed_out,
  /// stalled, cancelled, spawn_failed, lost): the end of its stderr log, at
  /// most 2 KiB, starting at a line start when it can, as valid UTF-8
  /// (invalid bytes replaced by U+FFFD). Unset otherwise, and when it has no
  /// stderr log.
  std::optional<std::string> stderr_tail;
  /// The command it runs, as its journal line records it (`WorkerSpec::argv`;
  /// past 64 KiB of JSON text the trailing arguments are left out, see
  /// docs/job-directory.md). Null when the journal has no usable line for it.
  /// Shared and immutable: a reader hands out the same command on every read
  /// until the worker's line changes, so a re-read of a large job copies a
  /// pointer per worker, not its whole command line.
  std::shared_ptr<const std::vector<std::string>> argv;
  /// Its `WorkerSpec::label`; unset when it has none (or no usable journal line).
  std::optional<std::string> label;
  /// Paused by its supervisor's host (`JobSupervisor::pause`), as its journal
  /// line says; only ever true for a `running` worker (paused is a flag, not
  /// a state).
  bool paused = false;

  /// The worker object of the aggregated JSON (docs/contract.md) (plus `reported_state`,
  /// `seq`, `usage`, `stdout_log`, `stderr_log`, `stderr_tail`, `argv`, `label` and `paused`).
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
            {"usage", std::move(usage_json)},
            {"stdout_log", detail::json_or_null(stdout_log)},
            {"stderr_log", detail::json_or_null(stderr_log)},
            {"stderr_tail", detail::json_or_null(stderr_tail)},
            {"argv", argv ? nlohmann::json(*argv) : nlohmann::json(nullptr)},
            {"label", detail::json_or_null(label)},
            {"paused", paused}};
  }
};

/// The supervisor of a job as a reader sees it.
struct SupervisorStatus {
  std::optional<int> pid;
  bool alive = false;
  std::string hostname;  ///< where it ran (its pid means something only there)
  /// The exit status its host recorded for the job (`JobSupervisor::set_exit_status`;
  /// `jobwarden run` records the status it exits with), once it has; empty
  /// before, and for a supervisor that died first.
  std::optional<int> exit_status;
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
  /// `ended_at`, `supervisor.hostname` and `supervisor.exit_status`).
  nlohmann::json to_json() const {
    nlohmann::json workers_json = nlohmann::json::array();
    for (const auto& worker : workers) workers_json.push_back(worker.to_json());
    nlohmann::json errors_json = nlohmann::json::array();
    for (const auto& error : errors) errors_json.push_back(error.to_json());
    return {{"schema_version", aggregated_schema_version},
            {"job_id", job_id},
            {"state", std::string(to_string(state))},
            {"summary", summary_to_json(summary)},
            {"elapsed_seconds", elapsed_seconds},
            {"last_update", detail::time_or_null(last_update)},
            {"created_at", detail::time_or_null(created_at)},
            {"ended_at", detail::time_or_null(ended_at)},
            {"supervisor",
             {{"pid", detail::json_or_null(supervisor.pid)},
              {"alive", supervisor.alive},
              {"hostname", supervisor.hostname},
              {"exit_status", detail::json_or_null(supervisor.exit_status)}}},
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
    return {{"job_id", job_id},
            {"state", std::string(to_string(state))},
            {"created_at", detail::time_or_null(created_at)},
            {"ended_at", detail::time_or_null(ended_at)},
            {"supervisor_alive", supervisor_alive},
            {"summary", summary ? summary_to_json(*summary) : nlohmann::json(nullptr)}};
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
    return {{"schema_version", aggregated_schema_version}, {"jobs", std::move(jobs_json)},
            {"errors", std::move(errors_json)}};
  }
};

/// What `clean_jobs` (job_cleanup.hpp) did (or, with `dry_run`, would do).
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

}  // namespace jobwarden
