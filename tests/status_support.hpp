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

/// A job directory written by hand, file by file, through `JobLayout`'s names.
struct CraftedJob {
  jobwarden::detail::JobLayout layout;

  CraftedJob(std::string root, std::string job_id) : layout{std::move(root), std::move(job_id)} {
    make_dir(layout.job_dir());
    make_dir(layout.workers_dir());
  }

  void write_job(const json& document) const { write_text(layout.job_file(), document.dump()); }
  void add_worker(const std::string& id) const { make_dir(layout.worker_dir(id)); }
  void write_process(const std::string& id, const json& document) const {
    add_worker(id);
    write_text(layout.process_file(id), document.dump());
  }
  void write_status(const std::string& id, const json& document) const {
    add_worker(id);
    write_text(layout.status_file(id), document.dump());
  }
  void write_status_text(const std::string& id, const std::string& text) const {
    add_worker(id);
    write_text(layout.status_file(id), text);
  }
};

/// A `job.json` whose supervisor is `pid` with start time `start_time`.
inline json job_document(const std::string& job_id, const std::string& state, int pid,
                         unsigned long long start_time, const std::string& created_at = ago(std::chrono::seconds(60)),
                         const json& ended_at = nullptr) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {{"schema_version", 1},
          {"job_id", job_id},
          {"state", state},
          {"created_at", created_at},
          {"updated_at", created_at},
          {"ended_at", ended_at},
          {"supervisor", {{"pid", pid}, {"start_time", start_time}, {"hostname", host}}},
          {"summary", nullptr}};
}

/// A `process.json` for worker `id`.
inline json process_document(const std::string& id, const std::string& state, json pid = nullptr,
                             json start_time = nullptr, json exit_code = nullptr) {
  return {{"schema_version", 1},
          {"id", id},
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

/// A `status.json` as a worker writes it.
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
