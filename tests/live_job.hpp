#pragma once
// A live job for the readers' tests: written by a `JobRecorder` in this
// process (its lock held, so the job reads as alive), with workers whose
// records are made up.

#include <chrono>
#include <string>

#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/worker_info.hpp>
#include <jobwarden/worker_state.hpp>

#include "status_support.hpp"
#include "support.hpp"

namespace jwstatus {

/// A worker's record in `state`; a started one has a pid no process has
/// (start time one tick after boot), so it is never alive.
inline jobwarden::WorkerInfo worker_info(const std::string& id, jobwarden::WorkerState state) {
  using namespace std::chrono_literals;
  jobwarden::WorkerInfo info;
  info.id = id;
  info.state = state;
  info.argv = {"scan", id};
  if (state != jobwarden::WorkerState::pending) {
    info.attempt = 1;
    info.pid = 999999;
    info.process_start_time = 1;
    info.started_at = std::chrono::system_clock::now() - 2s;
  }
  if (jobwarden::is_terminal(state)) info.ended_at = std::chrono::system_clock::now() - 1s;
  return info;
}

/// The job "scan-42" under a fresh root.
struct LiveJob {
  jwtest::TempDir dir;
  jobwarden::detail::JobLayout layout{dir.path(), "scan-42"};
  jobwarden::detail::JobRecorder recorder{layout};

  LiveJob() { recorder.open(); }
  /// Appends a journal line with `info`.
  void add(const jobwarden::WorkerInfo& info) { recorder.write_worker(info); }
  void write_stderr(const std::string& id, const std::string& text) const {
    write_text(layout.stderr_file(id), text);
  }
  void write_stdout(const std::string& id, const std::string& text) const {
    write_text(layout.stdout_file(id), text);
  }
};

}  // namespace jwstatus
