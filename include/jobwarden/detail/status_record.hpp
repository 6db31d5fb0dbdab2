#pragma once
/// \file
/// The format of a worker's own report, `workers/<id>/status.json`: written by
/// `WorkerStatusWriter` (or `jobwarden report`, or any program in any language
/// that follows `schemas/worker-status.schema.json`), read by the aggregator.
/// The progress payload stays JSON here; the aggregator turns it into the
/// user's `Progress` type.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/job_layout.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// What a worker reports about itself.
struct StatusRecord {
  std::string job_id;
  std::string worker_id;
  int attempt = 0;                                 ///< 1-based; 0 when not reported
  int pid = 0;                                     ///< the reporting process; 0 when not reported
  unsigned long long process_start_time = 0;       ///< of `pid`, proving it was not reused; 0 unknown
  std::optional<WorkerState> state;                ///< what the worker says it is doing
  nlohmann::json progress = nullptr;               ///< `null` when it reported none
  std::optional<std::string> message;
  nlohmann::json result = nullptr;                 ///< `null` when it reported none
  std::optional<std::string> error;
  std::uint64_t seq = 0;                           ///< increases with every write of one writer
  std::optional<std::chrono::system_clock::time_point> updated_at;  ///< the heartbeat
};

/// `status.json`'s content for `record`.
inline nlohmann::json status_record_to_json(const StatusRecord& record) {
  return {{"schema_version", schema_version},
          {"job_id", record.job_id},
          {"worker_id", record.worker_id},
          {"attempt", record.attempt},
          {"pid", record.pid > 0 ? nlohmann::json(record.pid) : nlohmann::json(nullptr)},
          {"process_start_time", record.process_start_time > 0 ? nlohmann::json(record.process_start_time)
                                                               : nlohmann::json(nullptr)},
          {"state", record.state ? nlohmann::json(std::string(to_string(*record.state))) : nlohmann::json(nullptr)},
          {"progress", record.progress},
          {"message", json_or_null(record.message)},
          {"result", record.result},
          {"error", json_or_null(record.error)},
          {"seq", record.seq},
          {"updated_at", time_or_null(record.updated_at)}};
}

/// Parses `status.json`; on a wrongly shaped document returns false and says
/// why. Only `schema_version` is required: a shell script that writes
/// `{"schema_version": 1, "progress": {"done": 3, "total": 9}}` is a valid worker.
inline bool status_record_from_json(const nlohmann::json& document, StatusRecord& record, std::string& problem) {
  FieldReader fields(document);
  fields.require_schema_version(schema_version);
  record.job_id = fields.string("job_id").value_or("");
  record.worker_id = fields.string("worker_id").value_or("");
  record.attempt = static_cast<int>(fields.integer("attempt", 0, 1'000'000'000).value_or(0));
  record.pid = static_cast<int>(fields.integer("pid", 0, 0x7fffffff).value_or(0));
  record.process_start_time = fields.unsigned_integer("process_start_time").value_or(0);
  if (auto state = fields.string("state")) {
    record.state = worker_state_from_string(*state);
    if (!record.state) fields.fail("state \"" + state->substr(0, 40) + "\" is not a worker state");
  }
  if (const nlohmann::json* progress = fields.find("progress")) record.progress = *progress;
  record.message = fields.string("message");
  if (const nlohmann::json* result = fields.find("result")) record.result = *result;
  record.error = fields.string("error");
  record.seq = fields.unsigned_integer("seq").value_or(0);
  record.updated_at = fields.time("updated_at");
  problem = fields.problem();
  return fields.ok();
}

}  // namespace jobwarden::detail
