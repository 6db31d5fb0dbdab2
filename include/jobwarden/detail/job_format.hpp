#pragma once
/// \file
/// What every record of the job directory holds, and the one place its text
/// is written and parsed: the journal's job lines (`JobRecord`, and its
/// `summary`) and worker lines (a `WorkerInfo`), a worker's status file
/// (`StatusRecord`; the worker-side writer's hand-written text is
/// `status_text.hpp`), and `stop.request` (`StopRequest`). One function per
/// direction per record (how journal lines are appended, followed and folded
/// is `journal.hpp`):
///
/// | record | written with | read with |
/// | --- | --- | --- |
/// | job line | `job_line_text` (`job_record_to_json`) | `job_record_from_json` |
/// | its `summary` | `job_summary_to_json` | `job_summary_from_json` |
/// | worker line | `worker_line_text` | `worker_line_from_json` |
/// | `<id>.status.json` | `status_record_to_json` / `append_status_text` | `status_record_from_json` |
/// | `stop.request` | `stop_request_text` | `parse_stop_request` |
/// | `<nonce>.control` | `control_request_text` | `parse_control_request` |
/// | `<nonce>.reply` | `control_reply_text` | `parse_control_reply` |
///
/// Used by the supervisor's writer (`job_recorder.hpp`), recovery, job
/// control, the supervisor and the reader. Names and paths of the files are
/// `job_files.hpp`; docs/job-directory.md describes every field.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "jobwarden/control_request.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/detail/status_text.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

// ---------------------------------------------------------------------------
// The summary (a job line's `summary`)

/// A job line's `summary` object for `summary`: every count, `cancelled` and
/// `lost` included.
inline nlohmann::json job_summary_to_json(const JobSummary& s) {
  return {{"total", s.total},         {"pending", s.pending}, {"running", s.running},
          {"succeeded", s.succeeded}, {"failed", s.failed},   {"done", s.done},
          {"cancelled", s.cancelled}, {"lost", s.lost}};
}

/// Parses a `summary` object (missing counts read 0); on a wrongly shaped one
/// returns false and says why. `summary` keeps what was read either way.
inline bool job_summary_from_json(const nlohmann::json& object, JobSummary& summary, std::string& problem) {
  FieldReader counts(object);
  auto count = [&counts](const char* key) { return static_cast<std::size_t>(counts.integer(key, 0).value_or(0)); };
  summary.total = count("total");
  summary.pending = count("pending");
  summary.running = count("running");
  summary.succeeded = count("succeeded");
  summary.failed = count("failed");
  summary.done = count("done");
  summary.cancelled = count("cancelled");
  summary.lost = count("lost");
  problem = counts.problem();
  return counts.ok();
}

// ---------------------------------------------------------------------------
// Job lines

/// What a job line of the journal says about a job.
struct JobRecord {
  std::string job_id;
  JobState state = JobState::running;
  std::optional<std::chrono::system_clock::time_point> created_at;
  std::optional<std::chrono::system_clock::time_point> updated_at;
  std::optional<std::chrono::system_clock::time_point> ended_at;
  /// When the latest run of a resumed job began (`resume_finished_job`: a
  /// finished job run again, keeping its workers that had succeeded); empty
  /// for a job never resumed. `created_at` stays the job's first start.
  std::optional<std::chrono::system_clock::time_point> resumed_at;
  int supervisor_pid = 0;                         ///< 0 when unknown
  unsigned long long supervisor_start_time = 0;   ///< `process_start_time` of the supervisor; 0 unknown
  std::string supervisor_hostname;                ///< pids mean something only on this host
  /// The supervisor's own cgroup tree (`.../jobwarden-<pid>-<start time>-<n>`,
  /// where its workers' cgroups are), so recovery can kill what is left in it
  /// and remove it; empty when its workers had no cgroups.
  std::string supervisor_cgroup;
  /// The exit status its host gave for the job (`JobSupervisor::set_exit_status`;
  /// `jobwarden run` records the status it exits with); empty when none was given.
  std::optional<int> supervisor_exit_status;
  std::optional<JobSummary> summary;              ///< the supervisor's last counts
  /// Why the job halted (fail fast, `SupervisorOptions::halt`), empty when it
  /// did not; the line has a `halted` field only when it did.
  std::string halted;
};

/// A job line's content for `record` (`{"type":"job",...}`).
inline nlohmann::json job_record_to_json(const JobRecord& record) {
  nlohmann::json supervisor = {
      {"pid", record.supervisor_pid > 0 ? nlohmann::json(record.supervisor_pid) : nlohmann::json(nullptr)},
      {"start_time", record.supervisor_start_time > 0 ? nlohmann::json(record.supervisor_start_time)
                                                      : nlohmann::json(nullptr)},
      {"hostname", record.supervisor_hostname},
      {"cgroup", record.supervisor_cgroup.empty() ? nlohmann::json(nullptr) : nlohmann::json(record.supervisor_cgroup)},
      {"exit_status", record.supervisor_exit_status ? nlohmann::json(*record.supervisor_exit_status)
                                                    : nlohmann::json(nullptr)}};
  nlohmann::json summary = record.summary ? job_summary_to_json(*record.summary) : nlohmann::json(nullptr);
  nlohmann::json line = {{"type", "job"},
                         {"job_id", record.job_id},
                         {"state", std::string(to_string(record.state))},
                         {"created_at", time_or_null(record.created_at)},
                         {"updated_at", time_or_null(record.updated_at)},
                         {"ended_at", time_or_null(record.ended_at)},
                         {"supervisor", std::move(supervisor)},
                         {"summary", std::move(summary)}};
  if (record.resumed_at) line["resumed_at"] = time_or_null(record.resumed_at);  // only for a resumed job
  if (!record.halted.empty()) line["halted"] = record.halted;
  return line;
}

/// A job line of the journal for `record`: `job_record_to_json`, compact, and a newline.
inline std::string job_line_text(const JobRecord& record) { return dump_json(job_record_to_json(record)) + "\n"; }

/// Parses a job line; on a wrongly shaped one returns false and says why.
inline bool job_record_from_json(const nlohmann::json& document, JobRecord& record, std::string& problem) {
  FieldReader fields(document);
  record.job_id = fields.string("job_id").value_or("");
  if (auto state = fields.string("state")) {
    auto parsed = job_state_from_string(*state);
    if (parsed) record.state = *parsed;
    else fields.fail("state \"" + state->substr(0, 40) + "\" is not a job state");
  } else if (fields.ok()) {
    fields.fail("state is missing");
  }
  record.created_at = fields.time("created_at");
  record.updated_at = fields.time("updated_at");
  record.ended_at = fields.time("ended_at");
  record.resumed_at = fields.time("resumed_at");
  record.halted = fields.string("halted").value_or("");
  if (const nlohmann::json* supervisor = fields.object("supervisor")) {
    FieldReader sup(*supervisor);
    record.supervisor_pid = static_cast<int>(sup.integer("pid", 0, 0x7fffffff).value_or(0));
    record.supervisor_start_time = sup.unsigned_integer("start_time").value_or(0);
    record.supervisor_hostname = sup.string("hostname").value_or("");
    record.supervisor_cgroup = sup.string("cgroup").value_or("");
    if (auto code = sup.integer("exit_status", -0x7fffffff, 0x7fffffff)) {
      record.supervisor_exit_status = static_cast<int>(*code);
    }
    if (!sup.ok()) fields.fail("supervisor." + sup.problem());
  }
  if (const nlohmann::json* summary = fields.object("summary")) {
    JobSummary s;
    std::string summary_problem;
    if (!job_summary_from_json(*summary, s, summary_problem)) fields.fail("summary." + summary_problem);
    record.summary = s;
  }
  problem = fields.problem();
  return fields.ok();
}

// ---------------------------------------------------------------------------
// Worker lines

/// A journal line recording `info`, stamped `updated_at`:
/// `{"type":"worker","id":...,"attempt":...,...}` and a newline, every field
/// of the worker's record in a fixed order, so the last line of a worker is
/// all a reader needs. Written by hand rather than through an
/// `nlohmann::json` (three lines per worker: building and dumping the object
/// cost about 60,000 instructions per record, this about 7,000); the tests
/// check it against the object model, awkward strings included. `type` and
/// `id` come first so a reader can tell whose line it is without parsing it.
///
/// `label` (`WorkerSpec::label`, at most `max_label_bytes`) comes last, and
/// only when the worker has one.
///
/// `argv` is written up to `max_journal_argv_bytes` of text: a command line
/// can be megabytes long (`tar` of 12,000 paths), and a line a reader cannot
/// take would hide the worker. The arguments past the limit are left out and
/// counted in `"argv_omitted"` (absent when none were).
inline constexpr std::size_t max_journal_argv_bytes = std::size_t{64} << 10;

inline std::string worker_line_text(const WorkerInfo& info, std::chrono::system_clock::time_point updated_at) {
  std::string out;
  std::size_t argv_bytes = 0;
  for (const auto& arg : info.argv) argv_bytes += arg.size() + 3;
  out.reserve(400 + std::min(argv_bytes, max_journal_argv_bytes + 1024) + info.error.size() +
              (info.label.empty() ? 0 : info.label.size() + 16));
  auto append_time = [&out](const std::optional<std::chrono::system_clock::time_point>& time) {
    if (time) append_json_string(out, format_rfc3339(*time));
    else out += "null";
  };
  out += "{\"type\":\"worker\",\"id\":";
  append_json_string(out, info.id);
  out += ",\"attempt\":";
  append_integer(out, info.attempt);
  out += ",\"state\":";
  append_json_string(out, to_string(info.state));
  out += ",\"paused\":";
  out += info.paused ? "true" : "false";
  out += ",\"pid\":";
  if (info.pid > 0) append_integer(out, info.pid);
  else out += "null";
  out += ",\"process_start_time\":";
  if (info.process_start_time > 0) append_integer(out, info.process_start_time);
  else out += "null";
  out += ",\"exit_code\":";
  if (info.exit_code) append_integer(out, *info.exit_code);
  else out += "null";
  out += ",\"signal\":";
  if (info.signal) append_json_string(out, signal_name(*info.signal));
  else out += "null";
  out += ",\"core_dumped\":";
  out += info.core_dumped ? "true" : "false";
  out += ",\"error\":";
  if (info.error.empty()) out += "null";
  else append_json_string(out, info.error);
  out += ",\"started_at\":";
  append_time(info.started_at);
  out += ",\"ended_at\":";
  append_time(info.ended_at);
  out += ",\"updated_at\":";
  append_json_string(out, format_rfc3339(updated_at));
  out += ",\"usage\":";
  if (info.ended_at) {
    out += "{\"max_rss_kib\":";
    append_integer(out, info.usage.max_rss_kib);
    out += ",\"system_cpu_seconds\":";
    append_seconds(out, info.usage.system_cpu);
    out += ",\"tree_system_cpu_seconds\":";
    if (info.usage.tree_system_cpu) append_seconds(out, *info.usage.tree_system_cpu);
    else out += "null";
    out += ",\"tree_user_cpu_seconds\":";
    if (info.usage.tree_user_cpu) append_seconds(out, *info.usage.tree_user_cpu);
    else out += "null";
    out += ",\"user_cpu_seconds\":";
    append_seconds(out, info.usage.user_cpu);
    out += '}';
  } else {
    out += "null";
  }
  out += ",\"argv\":[";
  const std::size_t argv_start = out.size();
  std::size_t written = 0;
  for (; written < info.argv.size(); ++written) {
    const std::size_t before = out.size();
    if (written > 0) out += ',';
    append_json_string(out, info.argv[written]);
    if (out.size() - argv_start > max_journal_argv_bytes) {
      out.resize(before);
      break;
    }
  }
  out += ']';
  if (written < info.argv.size()) {
    out += ",\"argv_omitted\":";
    append_integer(out, static_cast<long long>(info.argv.size() - written));
  }
  if (!info.label.empty()) {
    out += ",\"label\":";
    append_json_string(out, info.label);
  }
  out += "}\n";
  return out;
}

/// Parses a worker line of the journal into `info` (`updated_at` gets its
/// timestamp); on a wrongly shaped one returns false and says why.
inline bool worker_line_from_json(const nlohmann::json& document, WorkerInfo& info,
                                  std::optional<std::chrono::system_clock::time_point>& updated_at,
                                  std::string& problem) {
  FieldReader fields(document);
  info.id = fields.string("id").value_or("");
  if (auto state = fields.string("state")) {
    auto parsed = worker_state_from_string(*state);
    if (parsed) info.state = *parsed;
    else fields.fail("state \"" + state->substr(0, 40) + "\" is not a worker state");
  } else if (fields.ok()) {
    fields.fail("state is missing");
  }
  info.attempt = static_cast<int>(fields.integer("attempt", 0, 1'000'000'000).value_or(0));
  info.pid = static_cast<int>(fields.integer("pid", 0, 0x7fffffff).value_or(0));
  info.process_start_time = fields.unsigned_integer("process_start_time").value_or(0);
  if (auto code = fields.integer("exit_code", -0x7fffffff, 0x7fffffff)) info.exit_code = static_cast<int>(*code);
  if (auto name = fields.string("signal")) {
    std::string_view text = *name;
    // "SIG40" (a signal without a name) is written by number.
    if (text.size() > 3 && text.substr(0, 3) == "SIG" && text[3] >= '0' && text[3] <= '9') text.remove_prefix(3);
    info.signal = signal_from_string(text);
    if (!info.signal) fields.fail("signal \"" + name->substr(0, 40) + "\" is not a signal");
  }
  info.core_dumped = fields.boolean("core_dumped").value_or(false);
  info.paused = fields.boolean("paused").value_or(false);  // absent in lines of older versions
  info.error = fields.string("error").value_or("");
  info.started_at = fields.time("started_at");
  info.ended_at = fields.time("ended_at");
  updated_at = fields.time("updated_at");
  if (const nlohmann::json* usage = fields.object("usage")) {
    FieldReader numbers(*usage);
    // Rounded, not truncated: 0.004049 is 4048.9999... microseconds as a double, and a reader
    // that truncated would disagree by one microsecond with the record (and with other readers).
    auto seconds = [](double value) {
      return std::chrono::round<std::chrono::microseconds>(std::chrono::duration<double>(value));
    };
    info.usage.user_cpu = seconds(numbers.number("user_cpu_seconds").value_or(0));
    info.usage.system_cpu = seconds(numbers.number("system_cpu_seconds").value_or(0));
    info.usage.max_rss_kib = numbers.integer("max_rss_kib", 0).value_or(0);
    // The whole tree's, from the worker's cgroup: absent or null without one.
    if (auto tree = numbers.number("tree_user_cpu_seconds")) info.usage.tree_user_cpu = seconds(*tree);
    if (auto tree = numbers.number("tree_system_cpu_seconds")) info.usage.tree_system_cpu = seconds(*tree);
    if (!numbers.ok()) fields.fail("usage." + numbers.problem());
  }
  if (const nlohmann::json* argv = fields.find("argv")) {
    if (!argv->is_array()) {
      fields.fail("argv is not an array");
    } else {
      info.argv.clear();
      for (const auto& arg : *argv) {
        if (!arg.is_string()) {
          fields.fail("argv is not an array of strings");
          break;
        }
        info.argv.push_back(arg.get<std::string>());
      }
    }
  }
  info.label = fields.string("label").value_or("");
  problem = fields.problem();
  return fields.ok();
}

// ---------------------------------------------------------------------------
// workers/<id>.status.json (its text, written by hand for the worker-side
// writer, is in status_text.hpp)

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
  return {{"schema_version", status_schema_version},
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
/// `WorkerStatusWriterBase`'s `continue_from` applies the same rules without
/// nlohmann: change both together.
inline bool status_record_from_json(const nlohmann::json& document, StatusRecord& record, std::string& problem) {
  FieldReader fields(document);
  fields.require_schema_version(status_schema_version);
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

// ---------------------------------------------------------------------------
// stop.request

/// What a stop request asks for.
struct StopRequest {
  /// The grace period that replaces every running worker's own; empty: each
  /// worker's own.
  std::optional<std::chrono::milliseconds> grace;
};

/// `stop.request`'s text: `{"grace_ms":5000,"requested_by_pid":123}` and a
/// newline (`grace_ms` only when a grace period is given).
inline std::string stop_request_text(std::optional<std::chrono::milliseconds> grace, long long requested_by_pid) {
  std::string out = "{";
  if (grace) {
    out += "\"grace_ms\":";
    append_integer(out, static_cast<std::uint64_t>(grace->count()));
    out += ',';
  }
  out += "\"requested_by_pid\":";
  append_integer(out, requested_by_pid);
  out += "}\n";
  return out;
}

/// Reads a stop request. Any text is a request (a file that is not JSON, or
/// too large to have been read, asks for a stop with each worker's own grace
/// period); only a non-negative integer `grace_ms` names a grace period.
inline StopRequest parse_stop_request(std::string_view text) {
  StopRequest request;
  const auto document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_object()) {
    const auto grace = document.find("grace_ms");
    if (grace != document.end() && grace->is_number_unsigned()) {
      request.grace = std::chrono::milliseconds(grace->get<std::int64_t>());
    }
  }
  return request;
}

/// A control request's text: `{"action":"signal","worker":"3","signal":"SIGUSR1",
/// "scope":"tree","requested_by_pid":123}` and a newline (`worker` null for
/// every running worker; `signal` and `scope` only for a signal).
inline std::string control_request_text(const ControlRequest& request, long long requested_by_pid) {
  std::string out = "{\"action\":";
  append_json_string(out, to_string(request.action));
  out += ",\"worker\":";
  if (request.worker) append_json_string(out, *request.worker);
  else out += "null";
  if (request.action == ControlAction::signal) {
    out += ",\"signal\":";
    append_json_string(out, signal_name(request.signal));
    out += ",\"scope\":";
    append_json_string(out, to_string(request.scope));
  }
  out += ",\"requested_by_pid\":";
  append_integer(out, requested_by_pid);
  out += "}\n";
  return out;
}

/// Reads a control request; false (and `problem` says why) for text that is
/// not one. Unlike a stop request, a control request that cannot be read is
/// not acted on: a signal nobody asked for is worse than none.
inline bool parse_control_request(std::string_view text, ControlRequest& request, std::string& problem) {
  const auto document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) {
    problem = "the request is not a JSON object";
    return false;
  }
  const auto action = document.find("action");
  std::optional<ControlAction> parsed_action;
  if (action != document.end() && action->is_string()) {
    parsed_action = control_action_from_string(action->get_ref<const std::string&>());
  }
  if (!parsed_action) {
    problem = "the request's \"action\" is not signal, pause or resume";
    return false;
  }
  request = ControlRequest{};
  request.action = *parsed_action;
  const auto worker = document.find("worker");
  if (worker != document.end() && worker->is_string()) {
    request.worker = worker->get<std::string>();
  } else if (worker != document.end() && !worker->is_null()) {
    problem = "the request's \"worker\" is not a string or null";
    return false;
  }
  if (request.action == ControlAction::signal) {
    const auto sig = document.find("signal");
    std::optional<int> number;
    if (sig != document.end() && sig->is_string()) number = signal_from_string(sig->get_ref<const std::string&>());
    if (!number) {
      problem = "the request's \"signal\" is not a signal";
      return false;
    }
    request.signal = *number;
    const auto scope = document.find("scope");
    if (scope != document.end() && *scope == "leader") {
      request.scope = SignalScope::leader;
    } else if (scope != document.end() && *scope != "tree") {
      problem = "the request's \"scope\" is not tree or leader";
      return false;
    }
  }
  return true;
}

/// A reply's text: `{"done":["1","2"],"failed":[{"worker":"3","reason":
/// "worker_not_running","message":"the worker is not running"}]}`
/// and a newline.
inline std::string control_reply_text(const ControlReply& reply) {
  std::string out = "{\"done\":[";
  for (std::size_t i = 0; i < reply.done.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, reply.done[i]);
  }
  out += "],\"failed\":[";
  for (std::size_t i = 0; i < reply.failed.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"worker\":";
    append_json_string(out, reply.failed[i].worker);
    out += ",\"reason\":";
    append_json_string(out, reply.failed[i].reason);
    out += ",\"message\":";
    append_json_string(out, reply.failed[i].message);
    out += '}';
  }
  out += "]}\n";
  return out;
}

/// Reads a reply; false for text that is not one.
inline bool parse_control_reply(std::string_view text, ControlReply& reply) {
  const auto document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) return false;
  const auto done = document.find("done");
  const auto failed = document.find("failed");
  if (done == document.end() || !done->is_array() || failed == document.end() || !failed->is_array()) return false;
  reply = ControlReply{};
  for (const auto& id : *done) {
    if (!id.is_string()) return false;
    reply.done.push_back(id.get<std::string>());
  }
  for (const auto& entry : *failed) {
    ControlFailure failure;
    for (auto [name, field] : {std::pair<const char*, std::string*>{"worker", &failure.worker},
                               {"reason", &failure.reason},
                               {"message", &failure.message}}) {
      const auto value = entry.is_object() ? entry.find(name) : entry.end();
      if (value == entry.end() || !value->is_string()) return false;
      *field = value->get<std::string>();
    }
    reply.failed.push_back(std::move(failure));
  }
  return true;
}

}  // namespace jobwarden::detail
