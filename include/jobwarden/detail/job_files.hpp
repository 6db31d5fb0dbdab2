#pragma once
/// \file
/// The one place that knows how a job directory is laid out on disk: every
/// file name, every path, the records' `schema_version`, and the names of the
/// environment variables a worker is started with. Cheap to include (no JSON
/// library): the worker-side writer uses it too. What the files hold, and how
/// their text is written and parsed, is `job_format.hpp`.
///
/// ```
/// <root>/<job_id>/journal.jsonl              supervisor: one line per change of the job or a worker
/// <root>/<job_id>/supervisor.lock            supervisor: held (flock) while a supervisor is alive
/// <root>/<job_id>/stop.request               anyone: asks the live supervisor to stop
/// <root>/<job_id>/workers/<id>.status.json   the worker: state, progress, message, result, heartbeat
/// <root>/<job_id>/workers/<id>.stdout.log    the worker's stdout (only once it has output)
/// <root>/<job_id>/workers/<id>.stderr.log    the worker's stderr (only once it has output)
/// ```
/// No directory per worker: a worker that prints nothing and reports
/// nothing adds no file at all. The journal's lines are `journal.hpp`.
/// Every JSON file carries `schema_version`. One writer per file.

#include <cstddef>
#include <string>
#include <string_view>

#include "jobwarden/detail/name_suffix.hpp"

namespace jobwarden::detail {

/// Version of the job directory's layout and of the journal. 2: the journal
/// and the flat `workers/` directory; 1 was `job.json` plus
/// `workers/<id>/process.json`, which this version refuses to read
/// (`errc::unsupported_layout`).
inline constexpr int journal_schema_version = 2;
/// Version of a worker's status file (unchanged since the first layout: a
/// worker written for schema 1 keeps working).
inline constexpr int status_schema_version = 1;

/// File names inside a job directory (for readers that walk it).
inline constexpr const char* journal_file_name = "journal.jsonl";
inline constexpr const char* lock_file_name = "supervisor.lock";
inline constexpr const char* workers_dir_name = "workers";
/// A schema 1 job's record; its presence (without a journal) marks an old layout.
inline constexpr const char* legacy_job_file_name = "job.json";
/// Suffixes of a worker's files in `workers/`: `<id>.status.json` and so on.
inline constexpr const char* status_file_suffix = ".status.json";
inline constexpr const char* stdout_file_suffix = ".stdout.log";
inline constexpr const char* stderr_file_suffix = ".stderr.log";
/// Written by anyone (`jobwarden stop`) to ask the job's live supervisor to
/// stop everything. Removed by the supervisor that honours it, by recovery
/// (the supervisor it was meant for is dead), and when a finished job's id is
/// reused; never by a supervisor that has not read it (a request written while
/// a job starts is not lost).
inline constexpr const char* stop_request_file_name = "stop.request";
/// A stop request is a few dozen bytes; anything larger is still a request,
/// but its content (the grace period) is not read.
inline constexpr std::size_t max_stop_request_size = 4096;
/// Control requests (`control_job`, `jobwarden signal|pause|resume`):
/// `<nonce>.control` written by the requester, `<nonce>.reply` by the
/// supervisor that honoured it. The nonce is an id (`[A-Za-z0-9._-]`).
/// Requests a supervisor has not read are removed where `stop.request` is
/// (recovery, a finished job's id reused): they were for an earlier run.
inline constexpr const char* control_request_suffix = ".control";
inline constexpr const char* control_reply_suffix = ".reply";
/// A request is a few dozen bytes; a larger one is answered as unreadable.
inline constexpr std::size_t max_control_request_size = 4096;
/// At most this many requests are taken per poll (the rest at the next one).
inline constexpr std::size_t max_control_requests_per_poll = 64;

/// The environment variables every worker is started with (docs/contract.md,
/// "What a worker gets"): set by the supervisor, read by `WorkerStatusWriter`.
inline constexpr const char* job_id_env = "JOBWARDEN_JOB_ID";
inline constexpr const char* worker_id_env = "JOBWARDEN_WORKER_ID";
/// 1 for the first attempt, one more for every restart.
inline constexpr const char* attempt_env = "JOBWARDEN_ATTEMPT";
/// The path of the worker's own `status.json`.
inline constexpr const char* status_file_env = "JOBWARDEN_STATUS_FILE";

/// The name, inside `workers/`, of a worker's status file.
inline std::string status_file_name(const std::string& worker_id) { return worker_id + status_file_suffix; }
/// The name, inside `workers/`, of a worker's stdout log.
inline std::string stdout_file_name(const std::string& worker_id) { return worker_id + stdout_file_suffix; }
/// The name, inside `workers/`, of a worker's stderr log.
inline std::string stderr_file_name(const std::string& worker_id) { return worker_id + stderr_file_suffix; }

/// What a name in `workers/` is.
enum class WorkerFileKind { status, stdout_log, stderr_log, other };

/// Splits a name found in `workers/` into the worker id and the kind of file
/// (`other`, with an empty id, for anything else: temporaries, strays).
inline WorkerFileKind classify_worker_file(const std::string& name, std::string& worker_id) {
  struct Kind {
    const char* suffix;
    WorkerFileKind kind;
  };
  for (const Kind& k : {Kind{status_file_suffix, WorkerFileKind::status},
                        Kind{stdout_file_suffix, WorkerFileKind::stdout_log},
                        Kind{stderr_file_suffix, WorkerFileKind::stderr_log}}) {
    if (has_suffix(name, k.suffix)) {
      worker_id = std::string(without_suffix(name, k.suffix));
      return k.kind;
    }
  }
  worker_id.clear();
  return WorkerFileKind::other;
}

/// Paths of one job's files.
struct JobLayout {
  std::string root;    ///< the root directory all jobs live under
  std::string job_id;  ///< a validated id

  std::string job_dir() const { return root + "/" + job_id; }
  std::string journal_file() const { return in_job(journal_file_name); }
  std::string lock_file() const { return in_job(lock_file_name); }
  std::string workers_dir() const { return in_job(workers_dir_name); }
  std::string stop_request_file() const { return in_job(stop_request_file_name); }
  std::string status_file(const std::string& worker_id) const { return in_workers(status_file_name(worker_id)); }
  std::string stdout_file(const std::string& worker_id) const { return in_workers(stdout_file_name(worker_id)); }
  std::string stderr_file(const std::string& worker_id) const { return in_workers(stderr_file_name(worker_id)); }

 private:
  std::string in_job(const char* name) const { return job_dir() + "/" + name; }
  std::string in_workers(const std::string& name) const { return workers_dir() + "/" + name; }
};

}  // namespace jobwarden::detail
