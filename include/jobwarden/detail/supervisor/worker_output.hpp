#pragma once
/// \file
/// Where a worker's stdout and stderr go: resolving `automatic` to the
/// worker's log file, opening log files, capped logs (a pipe and a pump that
/// keeps the cap), and one shared target for `cmd >f 2>&1`. Opening runs
/// outside the engine's mutex (in `launch`); pumping and finishing run under it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/output_pump.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// Where one of a worker's output streams goes, while it is being started.
struct OutputTarget {
  int child_fd = -1;   // what the child gets as its fd 1 or 2 (-1: inherit); may be
                       // borrowed from the other stream's target (then neither below is set)
  int file_fd = -1;    // the log file, when one was opened
  int pipe_read = -1;  // capped logs: the supervisor's end of the pipe
  std::uint64_t limit = 0;

  /// After the spawn: the child has its copy; keep only what a pump needs.
  void release_child_side() {
    if (pipe_read >= 0) {
      ::close(child_fd);
    } else if (file_fd >= 0) {
      ::close(file_fd);
      file_fd = -1;
    }
    child_fd = -1;
  }
  /// When the worker never ran.
  void close_all() {
    for (int fd : {pipe_read, file_fd}) {
      if (fd >= 0) ::close(fd);
    }
    if (pipe_read >= 0 && child_fd >= 0) ::close(child_fd);
    pipe_read = file_fd = child_fd = -1;
  }
};

/// `automatic` means the worker's log file in the job directory (appended
/// to by restarts), or the supervisor's own stream without one.
inline OutputSpec resolve_output(const JobRecorder* recorder, const WorkerInfo& worker,
                                 const OutputSpec& spec, bool is_stdout) {
  if (spec.kind != OutputSpec::Kind::automatic || recorder == nullptr) return spec;
  const auto& layout = recorder->layout();
  OutputSpec resolved = spec;
  resolved.kind = OutputSpec::Kind::file;
  resolved.path = is_stdout ? layout.stdout_file(worker.id) : layout.stderr_file(worker.id);
  resolved.append = worker.attempt > 1;
  return resolved;
}

/// Puts a pipe between the worker and `target`'s file, moved by a pump
/// that keeps `limit`. False (errno set) when the kernel refuses a pipe.
inline bool make_capped_pipe(OutputTarget& target, std::uint64_t limit) {
  int pipe_fds[2];
#if defined(__linux__)
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return false;
#else
  if (::pipe(pipe_fds) != 0) return false;
  ::fcntl(pipe_fds[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(pipe_fds[1], F_SETFD, FD_CLOEXEC);
#endif
  ::fcntl(pipe_fds[0], F_SETFL, ::fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
  target.pipe_read = pipe_fds[0];
  target.child_fd = pipe_fds[1];
  target.limit = limit;
  return true;
}

/// Opens what an output spec asks for; `null_out` is /dev/null, open for writing.
inline bool open_output(int null_out, const OutputSpec& spec, OutputTarget& target, std::string& error,
                        int& error_number) {
  auto fail = [&](const std::string& what) {
    error_number = errno;
    error = what + ": " + std::strerror(error_number);
    target.close_all();
    return false;
  };
  switch (spec.kind) {
    case OutputSpec::Kind::automatic:
    case OutputSpec::Kind::inherit: return true;
    case OutputSpec::Kind::discard: target.child_fd = null_out; return true;
    case OutputSpec::Kind::file: break;
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append ? O_APPEND : O_TRUNC);
  target.file_fd = ::open(spec.path.c_str(), flags, 0644);
  if (target.file_fd < 0) return fail("cannot open \"" + spec.path + "\"");
  if (!spec.max_bytes) {
    target.child_fd = target.file_fd;
    return true;
  }
  if (!make_capped_pipe(target, *spec.max_bytes)) {
    return fail("cannot make a pipe for a capped log");
  }
  return true;
}

/// `cmd >f 2>&1`: when stderr's spec names the file stdout's target just
/// opened (the same file, however the path is spelled), stderr shares that
/// target instead of opening the file a second time — two opens would mean
/// two file offsets, and each stream would overwrite the other. Shared, the
/// streams go through one open file description, in the order written:
/// uncapped, straight into the file with O_APPEND; capped, through one pipe
/// and one pump, whose cap is the smaller of the two and whose dropped
/// bytes are counted as stdout's. stdout's spec decides append or truncate.
/// Returns whether stderr now shares stdout's target (false with `error`
/// set when the pipe could not be made).
inline bool share_output(const OutputSpec& stderr_spec, OutputTarget targets[2], std::string& error,
                  int& error_number) {
  OutputTarget& out = targets[0];
  if (stderr_spec.kind != OutputSpec::Kind::file || out.file_fd < 0) return false;
  struct stat opened, named;
  if (::fstat(out.file_fd, &opened) != 0 || ::stat(stderr_spec.path.c_str(), &named) != 0 ||
      opened.st_dev != named.st_dev || opened.st_ino != named.st_ino) {
    return false;
  }
  if (stderr_spec.max_bytes) {
    if (out.pipe_read >= 0) {
      out.limit = std::min(out.limit, *stderr_spec.max_bytes);
    } else if (!make_capped_pipe(out, *stderr_spec.max_bytes)) {
      error_number = errno;
      error = "cannot make a pipe for a capped log: " + std::string(std::strerror(error_number));
      out.close_all();
      return true;
    }
  } else if (out.pipe_read < 0) {
    // One description already orders the writes; O_APPEND also keeps each
    // one whole at the end where a shared offset alone may not (POSIX).
    ::fcntl(out.file_fd, F_SETFL, ::fcntl(out.file_fd, F_GETFL) | O_APPEND);
  }
  targets[1].child_fd = out.child_fd;  // borrowed: closed with stdout's target
  return true;
}

/// Moves capped output; on the portable path there is no per-pipe wake-up,
/// so every poll pumps every capped log.
template <class Clock>
void pump_outputs(EngineState<Clock>& s, const std::vector<void*>& readable) {
  if (s.active_pumps == 0) return;
  if (s.watcher.multiplexes_readers()) {
    for (void* token : readable) static_cast<OutputPump*>(token)->pump();
    return;
  }
  for (auto* record : s.live) {
    for (auto& pump : record->pumps) {
      if (pump) pump->pump();
    }
  }
}

/// A worker ended: take the rest of its capped output and record what was dropped.
template <class Clock>
void finish_outputs(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  std::uint64_t* dropped[2] = {&record.info.stdout_dropped_bytes,
                               &record.info.stderr_dropped_bytes};
  for (int i = 0; i < 2; ++i) {
    auto& pump = record.pumps[i];
    if (!pump) continue;
    s.watcher.remove(pump->read_fd());
    pump->finish();
    *dropped[i] = pump->dropped();
    pump.reset();
    --s.active_pumps;
  }
}

}  // namespace jobwarden::detail
