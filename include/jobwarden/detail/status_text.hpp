#pragma once
/// \file
/// A worker's `status.json` written by hand, for the worker-side writer
/// (`worker_status_writer_base.hpp`), which must not need a JSON library. The
/// text is what `dump_json(status_record_to_json(...))` writes for the same
/// record (`job_format.hpp`, which also parses the file): one compact object,
/// keys in nlohmann's order (sorted), numbers and strings as nlohmann writes
/// them. Progress and result are JSON text already and are written as given
/// (`progress_json`, `result_json`: spacing and number spelling kept), so the
/// file matches nlohmann's byte for byte only when that text came from it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// What a worker reports about itself, with its JSON payloads as text.
struct StatusRecordText {
  std::string job_id;
  std::string worker_id;
  int attempt = 0;                            ///< 1-based
  int pid = 0;                                ///< the reporting process; 0: written as `null`
  unsigned long long process_start_time = 0;  ///< of `pid`; 0: written as `null`
  std::optional<WorkerState> state;
  std::string progress = "null";              ///< compact JSON text
  std::optional<std::string> message;
  std::string result = "null";                ///< compact JSON text
  std::optional<std::string> error;
  std::uint64_t seq = 0;
  std::optional<std::chrono::system_clock::time_point> updated_at;
};

/// Appends `status.json`'s text for `record`.
inline void append_status_text(std::string& out, const StatusRecordText& record) {
  auto optional_string = [&out](const std::optional<std::string>& text) {
    if (text) append_json_string(out, *text);
    else out += "null";
  };
  out.reserve(out.size() + 300 + record.progress.size() + record.result.size() +
              (record.message ? record.message->size() : 0) + (record.error ? record.error->size() : 0));
  out += "{\"attempt\":";
  append_integer(out, record.attempt);
  out += ",\"error\":";
  optional_string(record.error);
  out += ",\"job_id\":";
  append_json_string(out, record.job_id);
  out += ",\"message\":";
  optional_string(record.message);
  out += ",\"pid\":";
  if (record.pid > 0) append_integer(out, record.pid);
  else out += "null";
  out += ",\"process_start_time\":";
  if (record.process_start_time > 0) append_integer(out, record.process_start_time);
  else out += "null";
  out += ",\"progress\":";
  out += record.progress;
  out += ",\"result\":";
  out += record.result;
  out += ",\"schema_version\":";
  append_integer(out, status_schema_version);
  out += ",\"seq\":";
  append_integer(out, record.seq);
  out += ",\"state\":";
  if (record.state) append_json_string(out, to_string(*record.state));
  else out += "null";
  out += ",\"updated_at\":";
  if (record.updated_at) append_json_string(out, format_rfc3339(*record.updated_at));
  else out += "null";
  out += ",\"worker_id\":";
  append_json_string(out, record.worker_id);
  out += '}';
}

/// `status.json`'s text for `record`.
inline std::string status_text(const StatusRecordText& record) {
  std::string out;
  append_status_text(out, record);
  return out;
}

}  // namespace jobwarden::detail
