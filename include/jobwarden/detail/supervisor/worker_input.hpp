#pragma once
/// \file
/// Where a worker's stdin comes from: /dev/null, a file, the supervisor's own
/// stdin, or a pipe the supervisor feeds (`InputSpec::Kind::host`, through an
/// `InputFeeder`). Opening runs outside the engine's mutex (in `launch`);
/// feeding, the host's `write_input`/`close_input` and an attempt's end run
/// under it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "jobwarden/detail/input_feeder.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// A worker's stdin while it is being started.
struct InputTarget {
  int child_fd = -1;   ///< what the child gets as fd 0 (-1: the supervisor's own)
  int opened = -1;     ///< a file or a pipe's read end opened for it: closed after the spawn
  int write_end = -1;  ///< `Kind::host`: the supervisor's end of the pipe

  /// After the spawn: the child has its copy (the write end is kept).
  void release_child_side() {
    if (opened >= 0) ::close(opened);
    opened = child_fd = -1;
  }
  /// When the worker never ran.
  void close_all() {
    release_child_side();
    if (write_end >= 0) ::close(write_end);
    write_end = -1;
  }
};

/// Opens what `spec` asks for; `null_in` is /dev/null, open for reading.
/// False with `error` and `error_number` set when it cannot (the worker then
/// ends `spawn_failed`).
inline bool open_input(int null_in, const InputSpec& spec, InputTarget& target,
                       std::string& error, int& error_number) {
  switch (spec.kind) {
    case InputSpec::Kind::null: target.child_fd = null_in; return true;
    case InputSpec::Kind::inherit: target.child_fd = -1; return true;
    case InputSpec::Kind::file: {
      auto fail = [&](int number) {
        error_number = number;
        error = "cannot open stdin file \"" + spec.path + "\": " + std::strerror(error_number);
        if (target.opened >= 0) ::close(target.opened);
        target.opened = -1;
        return false;
      };
      // Non-blocking: opening a FIFO without a writer would otherwise wait,
      // inside poll() or submit(), for as long as no writer comes.
      target.opened = ::open(spec.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
      if (target.opened < 0) return fail(errno);
      struct stat st;
      if (::fstat(target.opened, &st) != 0) return fail(errno);
      if (S_ISDIR(st.st_mode)) return fail(EISDIR);
      // The worker gets a blocking descriptor, as from a shell's `<`.
      int flags = ::fcntl(target.opened, F_GETFL);
      if (flags < 0 || ::fcntl(target.opened, F_SETFL, flags & ~O_NONBLOCK) != 0) return fail(errno);
      target.child_fd = target.opened;
      return true;
    }
    case InputSpec::Kind::host:
      if (!make_input_pipe(target.opened, target.write_end)) {
        error_number = errno;
        error = "cannot make a pipe for stdin: " + std::string(std::strerror(error_number));
        return false;
      }
      target.child_fd = target.opened;
      return true;
  }
  return true;
}

/// Copies a feeder's counters into the worker's `WorkerInfo`.
template <class Record>
void sync_input_info(Record& record) {
  if (!record.input) return;
  record.info.stdin_written_bytes = record.input->written();
  record.info.stdin_pending_bytes = record.input->pending();
  record.info.input_error = record.input->error();
}

/// Stops watching the feeder's pipe and closes it (the worker reads EOF).
template <class Clock>
void close_feeder(EngineState<Clock>& s, InputFeeder& feeder) {
  if (!feeder.attached()) return;
  if (feeder.watched()) s.watcher.remove_writer(feeder.fd());
  feeder.close_fd();
  --s.active_feeders;
}

/// Writes what `record`'s stdin pipe takes now; closes the pipe when the
/// feeding is over, or asks the event loop to say when the pipe has room.
template <class Clock>
void feed_input(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  InputFeeder& feeder = *record.input;
  if (!feeder.wants_feed()) return;
  auto result = feeder.feed();
  switch (result) {
    case InputFeeder::Result::idle: break;
    case InputFeeder::Result::budget_used:
      s.watcher.wake();  // more to write: come back after the rest of the work
      break;
    case InputFeeder::Result::blocked:
      feeder.set_waiting_for_room(true);
      if (s.watcher.multiplexes_writers()) {
        if (s.watcher.arm_writer(feeder.fd(), &feeder, !feeder.watched())) {
          feeder.set_watched();
        } else {
          // Not watched (ENOMEM, ENOSPC): try again at every poll, like the
          // portable path; next_timeout asks for it.
          feeder.set_waiting_for_room(false);
        }
      }
      break;
    case InputFeeder::Result::closed:
    case InputFeeder::Result::failed: close_feeder(s, feeder); break;
  }
  sync_input_info(record);
}

/// The feed step of `poll()`: the pipes the event loop found writable, and
/// every pipe with bytes queued that is not waiting for room (the host wrote,
/// or an attempt just started). The portable path has no writer readiness:
/// every pipe with bytes queued is tried.
template <class Clock>
void feed_inputs(EngineState<Clock>& s, const std::vector<void*>& writable) {
  if (s.active_feeders == 0) return;
  for (void* token : writable) static_cast<InputFeeder*>(token)->set_waiting_for_room(false);
  bool portable = !s.watcher.multiplexes_writers();
  for (auto* record : s.live) {
    if (!record->input || !record->input->wants_feed()) continue;
    if (record->input->waiting_for_room() && !portable) continue;
    feed_input(s, *record);
  }
}

/// Whether a pipe has bytes to write and nothing will announce room for
/// them (the portable path; or a pipe the event loop could not watch):
/// `next_timeout` then asks the host to come back soon.
template <class Clock>
bool input_needs_retry(const EngineState<Clock>& s) {
  if (s.active_feeders == 0) return false;
  bool portable = !s.watcher.multiplexes_writers();
  for (const auto* record : s.live) {
    const auto& feeder = record->input;
    if (feeder && feeder->wants_feed() && (portable || !feeder->waiting_for_room())) return true;
  }
  return false;
}

/// An attempt started: its stdin pipe's write end goes to the worker's
/// feeder, which writes `data` first, then what the host queued meanwhile.
template <class Clock>
void start_input(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record,
                 InputTarget& target) {
  if (target.write_end < 0) return;
  if (!record.input) record.input = std::make_unique<InputFeeder>();
  record.input->start_attempt(target.write_end, record.spec.stdin_spec.data,
                              record.spec.stdin_spec.keep_open);
  target.write_end = -1;
  ++s.active_feeders;
  feed_input(s, record);
}

/// An attempt ended: one last write (a worker that exited without reading
/// gives EPIPE, reported as such), then the pipe is closed and whatever it
/// did not take is dropped.
template <class Clock>
void finish_input(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  if (!record.input || !record.input->attached()) return;
  InputFeeder& feeder = *record.input;
  if (feeder.wants_feed()) feeder.feed();
  feeder.end_attempt();
  close_feeder(s, feeder);
  sync_input_info(record);
}

/// Finds worker `id` for `write_input`/`close_input`, its feeder made, or
/// reports why its stdin is not open for the host (`errc::unknown_worker`,
/// `errc::input_closed`) and returns null.
template <class Clock>
WorkerRecord<typename Clock::time_point>* host_input(EngineState<Clock>& s, const std::string& id,
                                                     const char* what, std::error_code* ec) {
  auto it = s.records.find(id);
  if (it == s.records.end()) {
    report(ec, make_error_code(errc::unknown_worker),
           std::string("cannot ") + what + " unknown worker " + quote_id(id) + " in job \"" +
               s.options.job_id + "\"");
    return nullptr;
  }
  auto& record = *it->second;
  const InputSpec& spec = record.spec.stdin_spec;
  auto closed = [&](const std::string& why) {
    report(ec, make_error_code(errc::input_closed),
           std::string("cannot ") + what + " worker " + quote_id(id) + ": " + why);
    return nullptr;
  };
  if (spec.kind != InputSpec::Kind::host || !spec.keep_open) {
    return closed("its stdin is not kept open for the host (InputSpec::kept_open)");
  }
  if (is_terminal(record.info.state)) return closed("it has ended");
  if (!record.input) record.input = std::make_unique<InputFeeder>();
  InputFeeder& feeder = *record.input;
  if (feeder.close_requested()) return closed("its stdin was closed by close_input");
  bool started = record.info.state == WorkerState::running && !record.launching;
  if (started && (feeder.done() || !feeder.attached())) {
    return closed(feeder.error().empty() ? std::string("its stdin is closed")
                                         : "its stdin is closed: " + feeder.error());
  }
  return &record;
}

/// `write_input`: queues `bytes` for the worker's stdin. Returns whether
/// they were queued (the caller then wakes the loop, which writes them).
template <class Clock>
bool queue_host_input(EngineState<Clock>& s, const std::string& id, std::string_view bytes,
                      std::error_code* ec) {
  std::lock_guard<std::mutex> lock(s.mutex);
  auto* record = host_input(s, id, "write to the stdin of", ec);
  if (record == nullptr) return false;
  record->input->queue(bytes);
  sync_input_info(*record);
  return true;
}

/// `close_input`: the worker's stdin closes once what is queued is written.
template <class Clock>
bool close_host_input(EngineState<Clock>& s, const std::string& id, std::error_code* ec) {
  std::lock_guard<std::mutex> lock(s.mutex);
  auto* record = host_input(s, id, "close the stdin of", ec);
  if (record == nullptr) return false;
  record->input->request_close();
  return true;
}

}  // namespace jobwarden::detail
