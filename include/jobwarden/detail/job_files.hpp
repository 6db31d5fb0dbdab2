#pragma once
/// \file
/// The one place that knows how a job directory is laid out on disk: every
/// file name, every path, the records' `schema_version`, and the names of the
/// environment variables a worker is started with. Cheap to include (no JSON
/// library): the worker-side writer uses it too. What the files hold, and how
/// their text is written and parsed, is `job_format.hpp`.
///
/// ```
/// <root>/<job_id>/job.json                   supervisor: job record + summary
/// <root>/<job_id>/supervisor.lock            supervisor: held (flock) while a supervisor is alive
/// <root>/<job_id>/workers/<id>/process.json  supervisor: pid, start time, attempt, exit, state
/// <root>/<job_id>/workers/<id>/status.json   the worker: state, progress, message, result, heartbeat
/// <root>/<job_id>/workers/<id>/stdout.log    the worker's stdout
/// <root>/<job_id>/workers/<id>/stderr.log    the worker's stderr
/// ```
/// Every JSON file carries `schema_version`. One writer per file.

#include <cstddef>
#include <string>

namespace jobwarden::detail {

/// Version of every file in the job directory.
inline constexpr int schema_version = 1;

/// File names inside a job directory (for readers that walk it).
inline constexpr const char* job_file_name = "job.json";
inline constexpr const char* lock_file_name = "supervisor.lock";
inline constexpr const char* workers_dir_name = "workers";
inline constexpr const char* process_file_name = "process.json";
inline constexpr const char* status_file_name = "status.json";
inline constexpr const char* stdout_file_name = "stdout.log";
inline constexpr const char* stderr_file_name = "stderr.log";
/// Written by anyone (`jobwarden stop`) to ask the job's live supervisor to
/// stop everything. Removed by the supervisor that honours it, by recovery
/// (the supervisor it was meant for is dead), and when a finished job's id is
/// reused; never by a supervisor that has not read it (a request written while
/// a job starts is not lost).
inline constexpr const char* stop_request_file_name = "stop.request";
/// A stop request is a few dozen bytes; anything larger is still a request,
/// but its content (the grace period) is not read.
inline constexpr std::size_t max_stop_request_size = 4096;

/// The environment variables every worker is started with (docs/contract.md,
/// "What a worker gets"): set by the supervisor, read by `WorkerStatusWriter`.
inline constexpr const char* job_id_env = "JOBWARDEN_JOB_ID";
inline constexpr const char* worker_id_env = "JOBWARDEN_WORKER_ID";
/// 1 for the first attempt, one more for every restart.
inline constexpr const char* attempt_env = "JOBWARDEN_ATTEMPT";
/// The path of the worker's own `status.json`.
inline constexpr const char* status_file_env = "JOBWARDEN_STATUS_FILE";

/// Paths of one job's files.
struct JobLayout {
  std::string root;    ///< the root directory all jobs live under
  std::string job_id;  ///< a validated id

  std::string job_dir() const { return root + "/" + job_id; }
  std::string job_file() const { return in_job(job_file_name); }
  std::string lock_file() const { return in_job(lock_file_name); }
  std::string workers_dir() const { return in_job(workers_dir_name); }
  std::string stop_request_file() const { return in_job(stop_request_file_name); }
  std::string worker_dir(const std::string& worker_id) const {
    return workers_dir() + "/" + worker_id;
  }
  std::string process_file(const std::string& worker_id) const {
    return in_worker(worker_id, process_file_name);
  }
  std::string status_file(const std::string& worker_id) const {
    return in_worker(worker_id, status_file_name);
  }
  std::string stdout_file(const std::string& worker_id) const {
    return in_worker(worker_id, stdout_file_name);
  }
  std::string stderr_file(const std::string& worker_id) const {
    return in_worker(worker_id, stderr_file_name);
  }

 private:
  std::string in_job(const char* name) const { return job_dir() + "/" + name; }
  std::string in_worker(const std::string& worker_id, const char* name) const {
    return worker_dir(worker_id) + "/" + name;
  }
};

}  // namespace jobwarden::detail
