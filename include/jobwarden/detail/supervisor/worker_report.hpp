#pragma once
/// \file
/// What a worker says about itself, for the host: its status file's latest
/// `message` and `error` (written by `WorkerStatusWriter`) copied into
/// `WorkerInfo::message` and `WorkerInfo::worker_error`. Read when the engine
/// looks at the status file anyway (a stall check) and once when the worker
/// ends; read again only when the file changed (its stamp: size, mtime,
/// ctime, inode), and opened as the readers open it (`O_NOFOLLOW`, without
/// blocking, at most the readers' size limit): a FIFO, a symlink or a huge
/// file under that name is never read. Runs under the engine's `mutex`.

#include <memory>

#include "jobwarden/detail/cached_file.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"

namespace jobwarden::detail {

inline bool parse_worker_report(const nlohmann::json& document, StatusRecord& out, std::string& problem) {
  return status_record_from_json(document, out, problem);
}

/// Brings `record.info.message` and `worker_error` up to date from the
/// worker's status file (nothing without a job directory). A report of
/// another attempt (an earlier one's file, not yet rewritten) is left out;
/// a file that is missing or unusable leaves them as they were.
template <class Clock>
void refresh_worker_report(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  if (!s.recorder || s.recorder->workers_dir_fd() < 0) return;
  if (!record.report) record.report = std::make_unique<CachedFile<StatusRecord>>();
  FileCounters counters;
  refresh_file(s.recorder->workers_dir_fd(), status_file_name(record.info.id).c_str(), *record.report,
               &parse_worker_report, s.options.status_options.max_file_size,
               s.options.status_options.recent_change_window, counters);
  const StatusRecord* reported = record.report->usable();
  if (reported == nullptr) return;
  if (reported->attempt != 0 && reported->attempt != record.info.attempt) return;
  record.info.message = reported->message.value_or(std::string{});
  record.info.worker_error = reported->error.value_or(std::string{});
}

}  // namespace jobwarden::detail
