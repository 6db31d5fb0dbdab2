#pragma once
// Helpers for the status protocol's tests: crafting job directories by hand
// (including hostile ones), and running code in a forked child that is always
// reaped.

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include <jobwarden/detail/job_files.hpp>
#include <jobwarden/detail/process_identity.hpp>
#include <jobwarden/detail/time_format.hpp>

namespace jwstatus {

using nlohmann::json;

/// The paths of a status's `errors`, with their error phrase.
template <class Status>
std::map<std::string, std::string> errors_of(const Status& status) {
  std::map<std::string, std::string> errors;
  for (const auto& error : status.errors) errors[error.path] = error.error;
  return errors;
}

/// Writes `text` to `path` directly (not atomically): for crafting files.
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Creates `path` (one level).
inline void make_dir(const std::string& path) { ::mkdir(path.c_str(), 0755); }

/// An RFC 3339 time `age` before now.
inline std::string ago(std::chrono::milliseconds age) {
  return jobwarden::detail::format_rfc3339(std::chrono::system_clock::now() - age);
}

/// Appends `text` to `path` as it is (no newline added): for crafting journals.
inline void append_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << text;
}

/// A journal line for `document` of `type`: `"type"` first (and, for a
/// worker, `"id"` second, as the supervisor writes it), `schema_version`
/// dropped, a newline at the end.
inline std::string journal_line(const std::string& type, json document) {
  document.erase("schema_version");
  document.erase("type");
  std::string line = "{\"type\":" + json(type).dump();
  if (type == "worker" && document.contains("id")) {
    line += ",\"id\":" + document["id"].dump();
    document.erase("id");
  }
  const std::string rest = document.dump();
  if (rest.size() > 2) line += "," + rest.substr(1, rest.size() - 2);
  return line + "}\n";
}

/// A job directory written by hand, record by record, through `JobLayout`'s
/// names: the journal gets its first line at once.
struct CraftedJob {
  jobwarden::detail::JobLayout layout;

  CraftedJob(std::string root, std::string job_id) : layout{std::move(root), std::move(job_id)} {
    make_dir(layout.job_dir());
    make_dir(layout.workers_dir());
    write_text(layout.journal_file(), "{\"type\":\"journal\",\"schema_version\":2,\"job_id\":" +
                                          json(layout.job_id).dump() + ",\"generation\":1}\n");
  }

  /// Appends a job line.
  void write_job(const json& document) const { append_text(layout.journal_file(), journal_line("job", document)); }
  /// Appends a worker line (its latest record).
  void write_process(const std::string& id, json document) const {
    document["id"] = id;
    append_text(layout.journal_file(), journal_line("worker", std::move(document)));
  }
  /// Appends raw text to the journal (torn or hostile lines).
  void write_journal_text(const std::string& text) const { append_text(layout.journal_file(), text); }
  void write_status(const std::string& id, const json& document) const {
    write_text(layout.status_file(id), document.dump());
  }
  void write_status_text(const std::string& id, const std::string& text) const {
    write_text(layout.status_file(id), text);
  }
};

/// A job line whose supervisor is `pid` with start time `start_time`.
inline json job_document(const std::string& job_id, const std::string& state, int pid,
                         unsigned long long start_time, const std::string& created_at = ago(std::chrono::seconds(60)),
                         const json& ended_at = nullptr) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {{"job_id", job_id},
          {"state", state},
          {"created_at", created_at},
          {"updated_at", created_at},
          {"ended_at", ended_at},
          {"supervisor", {{"pid", pid}, {"start_time", start_time}, {"hostname", host}}},
          {"summary", nullptr}};
}

/// A worker line's record for worker `id`.
inline json process_document(const std::string& id, const std::string& state, json pid = nullptr,
                             json start_time = nullptr, json exit_code = nullptr) {
  return {{"id", id},
          {"state", state},
          {"attempt", 1},
          {"pid", pid},
          {"process_start_time", start_time},
          {"exit_code", exit_code},
          {"signal", nullptr},
          {"core_dumped", false},
          {"error", nullptr},
          {"started_at", ago(std::chrono::seconds(5))},
          {"ended_at", nullptr},
          {"updated_at", ago(std::chrono::seconds(5))},
          {"usage", nullptr},
          {"argv", {"scan"}}};
}

/// A status file as a worker writes it.
inline json status_document(const std::string& state, json progress = nullptr,
                            const std::string& updated_at = ago(std::chrono::milliseconds(0))) {
  return {{"schema_version", 1}, {"state", state},           {"progress", std::move(progress)},
          {"message", nullptr},  {"result", nullptr},         {"error", nullptr},
          {"seq", 1},            {"updated_at", updated_at}, {"attempt", 1}};
}

/// Runs `body` in a forked child and returns its exit code once reaped
/// (-signal if a signal ended it). The child never returns into the test
/// framework: it `_exit`s with `body`'s result (2 if it threw).
inline int run_in_child(const std::function<int()>& body) {
  const pid_t child = ::fork();
  if (child < 0) return -1000;
  if (child == 0) {
    int code = 2;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

}  // namespace jwstatus
