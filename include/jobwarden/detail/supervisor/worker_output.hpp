#pragma once
/// \file
/// Where a worker's stdout and stderr go, and how the bytes travel: resolving
/// `automatic` (the worker's log in the job directory, else the supervisor's
/// own stream) and the route (`direct`: the worker writes its target itself;
/// `supervisor`: a pipe the supervisor reads, output_pump.hpp), `2>&1` and
/// one file named for both streams, opening targets, pumping in `poll()`,
/// finishing at the worker's exit, and handing what was read to the host's
/// line and chunk handlers in order with the events.
///
/// Locks: planning runs under the engine's mutex, opening outside it (in
/// `launch`), pumping and finishing under it, delivering under `poll_mutex`
/// only (handlers may call back in).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/log_sink.hpp"
#include "jobwarden/detail/output_pump.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/worker_record.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// The tail kept of a stream whose `OutputSpec::tail_bytes` is unset:
/// stderr's end is where a failure says why, stdout's is seldom worth it.
inline constexpr std::size_t default_stdout_tail_bytes = 0;
inline constexpr std::size_t default_stderr_tail_bytes = 4096;

/// Most bytes one `poll()` moves from all supervised streams together, and
/// from one stream: what it reads for handlers is bounded by this too.
inline constexpr std::size_t output_poll_budget = std::size_t{4} << 20;

/// How often the portable path (no wake-up per pipe) pumps supervised
/// streams; at once again after a pump found this much waiting.
inline constexpr std::chrono::milliseconds output_pump_interval{20};
inline constexpr std::uint64_t output_full_pipe = 16 * 1024;

/// The route rule, in one place. Returns `spec` (its kind already resolved)
/// with `route` made `direct` or `supervisor` and `tail_bytes` set (0 when
/// direct): `automatic` is `supervisor` when something must see the bytes —
/// a cap on a log file, a tail (after the stream's default above; a stream
/// carrying stderr too, 2>&1, takes stderr's), or a line or chunk handler
/// registered before the spawn — and `direct` otherwise.
///
/// A stream the worker shares with the supervisor (`inherit`) gets no default
/// tail and is not routed through the supervisor for handlers: relaying it
/// would move the worker's blocking on a full terminal or pipe into `poll()`.
/// Asked for explicitly (a tail, `Route::supervisor`), it is.
inline OutputSpec resolve_route(OutputSpec spec, OutputStream stream, bool handlers,
                                bool carries_stderr = false) {
  bool shared = spec.kind == OutputSpec::Kind::inherit;
  std::size_t default_tail = stream == OutputStream::out ? default_stdout_tail_bytes
                                                         : default_stderr_tail_bytes;
  if (carries_stderr) default_tail = std::max(default_tail, default_stderr_tail_bytes);
  std::size_t tail = spec.tail_bytes.value_or(shared ? 0 : default_tail);
  bool capped = spec.kind == OutputSpec::Kind::file && spec.max_bytes.has_value();
  if (spec.route == OutputSpec::Route::automatic) {
    spec.route = capped || tail > 0 || (handlers && !shared) ? OutputSpec::Route::supervisor
                                                             : OutputSpec::Route::direct;
  }
  spec.tail_bytes = spec.route == OutputSpec::Route::supervisor ? tail : 0;
  return spec;
}

/// `automatic` means the worker's log file in the job directory (appended
/// to by restarts, written through the supervisor unless `direct` is asked
/// for); without a job directory, the supervisor's own stream —
/// or, once a line or chunk handler is registered, the handlers alone (the
/// host asked for the lines: printing them too would show each twice).
/// Then the route.
inline OutputSpec resolve_output(const JobRecorder* recorder, const WorkerInfo& worker,
                                 const OutputSpec& spec, OutputStream stream, bool handlers,
                                 bool carries_stderr = false) {
  OutputSpec resolved = spec;
  if (spec.kind == OutputSpec::Kind::automatic) {
    if (recorder == nullptr) {
      resolved.kind = handlers ? OutputSpec::Kind::discard : OutputSpec::Kind::inherit;
    } else {
      const auto& layout = recorder->layout();
      resolved.kind = OutputSpec::Kind::file;
      resolved.path = stream == OutputStream::out ? layout.stdout_file(worker.id)
                                                  : layout.stderr_file(worker.id);
      resolved.append = worker.attempt > 1;
      // The job's own logs go through the supervisor unless the spec asks
      // for `direct`: then a log exists only once there is output, and a
      // worker that prints nothing adds no file to the job directory.
      if (resolved.route == OutputSpec::Route::automatic) resolved.route = OutputSpec::Route::supervisor;
    }
  }
  return resolve_route(std::move(resolved), stream, handlers, carries_stderr);
}

/// Whether two paths name one file, however spelled: the same inode when
/// both exist, the same normalised path when neither does yet (a supervised
/// log is created on its first byte).
inline bool same_file(const std::string& a, const std::string& b) {
  if (a == b) return true;
  struct stat first, second;
  bool a_exists = ::stat(a.c_str(), &first) == 0;
  bool b_exists = ::stat(b.c_str(), &second) == 0;
  if (a_exists && b_exists) return first.st_dev == second.st_dev && first.st_ino == second.st_ino;
  if (a_exists != b_exists) return false;
  std::error_code ec;
  auto normal_a = std::filesystem::absolute(a, ec).lexically_normal();
  auto normal_b = std::filesystem::absolute(b, ec).lexically_normal();
  return !ec && normal_a == normal_b;
}

/// `cmd >f 2>&1` written as one file named for both streams: two opens would
/// mean two file offsets, each stream overwriting the other. Instead stderr
/// joins stdout's target (as with `stderr_to_stdout`): one pipe, or one open
/// file, in the order written. stdout's spec decides append or truncate; a
/// cap on either caps the file (the smaller one), its dropped bytes counted
/// as stdout's; the stream is supervised if either would be. Returns whether
/// stderr now goes with stdout.
inline bool join_one_file(LaunchContext& context) {
  OutputSpec& out = context.stdout_spec;
  const OutputSpec& err = context.stderr_spec;
  if (out.kind != OutputSpec::Kind::file || err.kind != OutputSpec::Kind::file ||
      !same_file(out.path, err.path)) {
    return false;
  }
  if (err.max_bytes) {
    if (!out.max_bytes) out.keep = err.keep;
    out.max_bytes = std::min(out.max_bytes.value_or(std::numeric_limits<std::uint64_t>::max()),
                             *err.max_bytes);
  }
  if (err.route == OutputSpec::Route::supervisor) out.route = OutputSpec::Route::supervisor;
  if (out.route == OutputSpec::Route::supervisor) {
    out.tail_bytes = std::max(out.tail_bytes.value_or(0), err.tail_bytes.value_or(0));
  }
  context.stderr_spec = out;
  return true;
}

/// Decides this attempt's outputs (under the mutex, before the launcher's
/// `prepare`, which sees the result in the context) and clears what the
/// last attempt left in the worker's info.
template <class TimePoint>
void plan_outputs(WorkerRecord<TimePoint>& record, const JobRecorder* recorder, bool handlers) {
  LaunchContext& context = record.context;
  if (recorder != nullptr) {
    context.job_dir = recorder->layout().job_dir();
    context.worker_dir = recorder->layout().workers_dir();
  }
  record.merged_output = record.spec.stderr_to_stdout;
  context.stdout_spec = resolve_output(recorder, record.info, record.spec.stdout_spec,
                                       OutputStream::out, handlers, record.merged_output);
  if (record.merged_output) {
    context.stderr_spec = context.stdout_spec;
  } else {
    context.stderr_spec =
        resolve_output(recorder, record.info, record.spec.stderr_spec, OutputStream::err, handlers);
    // The job directory's two logs are never one file: no look at the disk for them.
    bool named = record.spec.stdout_spec.kind == OutputSpec::Kind::file ||
                 record.spec.stderr_spec.kind == OutputSpec::Kind::file;
    record.merged_output = named && join_one_file(context);
  }
  WorkerInfo& info = record.info;
  info.stdout_dropped_bytes = info.stderr_dropped_bytes = 0;
  info.stdout_tail.clear();
  info.stderr_tail.clear();
  info.stdout_log.clear();
  info.stderr_log.clear();
  info.output_error.clear();
}

template <class Clock>
void plan_outputs(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  bool handlers = s.wants_lines.load(std::memory_order_relaxed) ||
                  s.wants_chunks.load(std::memory_order_relaxed);
  plan_outputs(record, s.recorder ? &*s.recorder : nullptr, handlers);
}

/// One output stream of a worker while it is being started.
struct OutputTarget {
  int child_fd = -1;       // the child's fd 1 or 2 (-1: the supervisor's own)
  bool owns_child = false;  // child_fd is ours to close after the spawn (else /dev/null or borrowed)
  int pipe_read = -1;      // supervised: the supervisor's end of the pipe
  int log_fd = -1;         // supervised: the log, opened before the spawn because it existed

  /// After the spawn: the child has its copy.
  void release_child_side() {
    if (owns_child && child_fd >= 0) ::close(child_fd);
    child_fd = -1;
    owns_child = false;
  }
  /// When the worker never ran (idempotent).
  void close_all() {
    release_child_side();
    for (int* fd : {&pipe_read, &log_fd}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
};

/// Opens one stream's target; `null_out` is /dev/null, open for writing.
inline bool open_target(int null_out, const OutputSpec& spec, const char* name,
                        OutputTarget& target, std::string& error, int& error_number) {
  auto fail = [&](const std::string& what) {
    error_number = errno;
    error = what + ": " + std::strerror(error_number);
    target.close_all();
    return false;
  };
  if (spec.route == OutputSpec::Route::supervisor) {
    int fds[2];
#if defined(__linux__)
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail(std::string("cannot make a pipe for ") + name);
#else
    if (::pipe(fds) != 0) return fail(std::string("cannot make a pipe for ") + name);
    ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    target.pipe_read = fds[0];
    target.child_fd = fds[1];
    target.owns_child = true;
    // A log to be truncated that exists already is emptied now, so a worker
    // that prints nothing does not leave an earlier run's text under its
    // name; one that does not exist is created on the first byte.
    if (spec.kind == OutputSpec::Kind::file && !spec.append) {
      target.log_fd = open_log(spec.path, false, false);
    }
    return true;
  }
  switch (spec.kind) {
    case OutputSpec::Kind::automatic:
    case OutputSpec::Kind::inherit: return true;
    case OutputSpec::Kind::discard: target.child_fd = null_out; return true;
    case OutputSpec::Kind::file: break;
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append ? O_APPEND : O_TRUNC);
  target.child_fd = ::open(spec.path.c_str(), flags, 0644);
  if (target.child_fd < 0) return fail("cannot open \"" + spec.path + "\"");
  target.owns_child = true;
  return true;
}

/// Opens both streams' targets (outside the mutex). A merged stderr gets
/// stdout's descriptor: the same pipe, the same open file (O_APPEND keeps
/// each write whole at the end), or the supervisor's own stdout.
template <class TimePoint>
bool open_outputs(int null_out, const WorkerRecord<TimePoint>& record, OutputTarget targets[2],
                  std::string& error, int& error_number) {
  const LaunchContext& context = record.context;
  if (!open_target(null_out, context.stdout_spec, "stdout", targets[0], error, error_number)) {
    return false;
  }
  if (record.merged_output) {
    OutputTarget& out = targets[0];
    if (out.owns_child && out.pipe_read < 0) {
      ::fcntl(out.child_fd, F_SETFL, ::fcntl(out.child_fd, F_GETFL) | O_APPEND);
    }
    targets[1].child_fd = out.child_fd >= 0 ? out.child_fd : STDOUT_FILENO;  // borrowed
    return true;
  }
  if (!open_target(null_out, context.stderr_spec, "stderr", targets[1], error, error_number)) {
    targets[0].close_all();
    return false;
  }
  return true;
}

/// Copies what the pumps know into the worker's info: dropped bytes, the
/// tails, the logs once they exist, why output was lost.
template <class TimePoint>
void refresh_output_info(WorkerRecord<TimePoint>& record) {
  WorkerInfo& info = record.info;
  std::uint64_t* dropped[2] = {&info.stdout_dropped_bytes, &info.stderr_dropped_bytes};
  std::string* tails[2] = {&info.stdout_tail, &info.stderr_tail};
  std::string* logs[2] = {&info.stdout_log, &info.stderr_log};
  std::string error;
  for (int i = 0; i < 2; ++i) {
    OutputPump* pump = record.pumps[i].get();
    if (pump == nullptr) continue;
    *dropped[i] = pump->dropped();
    if (pump->take_tail_change()) *tails[i] = pump->tail();
    if (logs[i]->empty() && !pump->log_path().empty()) {
      *logs[i] = pump->log_path();
      if (record.merged_output) info.stderr_log = pump->log_path();
    }
    if (!pump->error().empty()) error += (error.empty() ? "" : "; ") + pump->error();
  }
  if (!error.empty() && error != info.output_error) info.output_error = error;
}

/// After a successful spawn (under the mutex): a pump for each supervised
/// stream, on the event loop; the paths of logs the worker writes itself.
template <class Clock>
void start_outputs(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record,
                   OutputTarget targets[2]) {
  const OutputSpec* specs[2] = {&record.context.stdout_spec, &record.context.stderr_spec};
  std::string* logs[2] = {&record.info.stdout_log, &record.info.stderr_log};
  for (int i = 0; i < 2; ++i) {
    const OutputSpec& spec = *specs[i];
    if (targets[i].pipe_read < 0) {
      bool own_target = i == 0 || !record.merged_output;
      if (own_target && spec.route != OutputSpec::Route::supervisor &&
          spec.kind == OutputSpec::Kind::file) {
        *logs[i] = spec.path;
        if (record.merged_output) record.info.stderr_log = spec.path;
      }
      continue;
    }
    OutputPump::Options options;
    options.stream = i == 0 ? OutputStream::out : OutputStream::err;
    options.tail_bytes = spec.tail_bytes.value_or(0);
    options.max_line_bytes = s.options.max_line_bytes;
    switch (spec.kind) {
      case OutputSpec::Kind::file:
        options.sink.kind = LogSinkOptions::Kind::file;
        options.sink.path = spec.path;
        options.sink.append = spec.append;
        options.sink.limit = spec.max_bytes;
        options.sink.keep_tail = spec.keep == OutputSpec::Keep::head_and_tail;
        break;
      case OutputSpec::Kind::automatic:
      case OutputSpec::Kind::inherit:
        options.sink.kind = LogSinkOptions::Kind::descriptor;
        options.sink.fd = i == 0 ? STDOUT_FILENO : STDERR_FILENO;
        break;
      case OutputSpec::Kind::discard: options.sink.kind = LogSinkOptions::Kind::discard; break;
    }
    auto pump = std::make_unique<OutputPump>(targets[i].pipe_read, std::move(options), targets[i].log_fd);
    targets[i].pipe_read = targets[i].log_fd = -1;  // the pump's now
    pump->owner = &record;
    pump->slot = i;
    pump->watched = s.watcher.add_reader(pump->read_fd(), pump.get());
    if (!pump->watched || !s.watcher.multiplexes_readers()) ++s.unwatched_pumps;
    ++s.active_pumps;
    record.pumps[i] = std::move(pump);
  }
  refresh_output_info(record);
}

/// Queues what a pump read for the handlers, in order with the events.
template <class Clock>
void queue_output(EngineState<Clock>& s, const WorkerRecord<typename Clock::time_point>& record,
                  std::vector<OutputPiece>& pieces) {
  for (OutputPiece& piece : pieces) {
    s.output.push_back(QueuedOutput{s.events.size(), record.info.id, record.info.attempt, std::move(piece)});
  }
  pieces.clear();
}

template <class Clock>
OutputPump::Wants output_wants(const EngineState<Clock>& s) {
  return {s.wants_lines.load(std::memory_order_relaxed), s.wants_chunks.load(std::memory_order_relaxed)};
}

/// Pumps one stream within what is left of this poll's budget.
template <class Clock>
void pump_stream(EngineState<Clock>& s, OutputPump& pump, OutputPump::Wants wants,
                 std::size_t& budget, std::vector<OutputPiece>& pieces) {
  using Record = WorkerRecord<typename Clock::time_point>;
  Record& record = *static_cast<Record*>(pump.owner);
  if (budget == 0) {
    s.output_backlog = true;
    return;
  }
  std::uint64_t before = pump.read_bytes();
  auto result = pump.pump(pieces, wants, std::min(OutputPump::default_budget, budget));
  std::uint64_t moved = pump.read_bytes() - before;
  budget -= static_cast<std::size_t>(std::min<std::uint64_t>(budget, moved));
  queue_output(s, record, pieces);
  if (result == OutputPump::Result::end_of_file && pump.read_fd() >= 0) {
    // The worker closed the stream (or handed it on and exited): a pipe at
    // its end is always readable, and must stop waking the loop.
    if (pump.watched) s.watcher.remove(pump.read_fd());
    pump.close_reader();
  }
  // More is likely waiting: the budget ran out, or a pipe was found (nearly)
  // full, its writer waiting. Without a wake-up per pipe, look again at once.
  if (result == OutputPump::Result::budget_used || moved >= output_full_pipe) {
    s.output_backlog = true;
  }
  refresh_output_info(record);
}

/// Moves supervised output in `poll()` (under the mutex): the streams the
/// event loop says have data, and on the portable path (no per-pipe
/// wake-ups) every stream. Runs before exits are looked at, so no stream in
/// `readable` has been finished yet.
template <class Clock>
void pump_outputs(EngineState<Clock>& s, const std::vector<void*>& readable) {
  s.output_backlog = false;
  if (s.active_pumps == 0) return;
  auto wants = output_wants(s);
  std::size_t budget = output_poll_budget;
  std::vector<OutputPiece> pieces;
  bool every_stream = !s.watcher.multiplexes_readers();
  if (!every_stream) {
    for (void* token : readable) pump_stream(s, *static_cast<OutputPump*>(token), wants, budget, pieces);
    if (s.unwatched_pumps == 0) return;
  }
  for (auto* record : s.live) {
    for (auto& pump : record->pumps) {
      if (pump && (every_stream || !pump->watched)) pump_stream(s, *pump, wants, budget, pieces);
    }
  }
}

/// How soon `poll()` must run again for supervised output the event loop
/// cannot announce (the portable path, or a pipe it refused to watch).
template <class Clock>
std::optional<std::chrono::milliseconds> output_wait(const EngineState<Clock>& s) {
  if (s.unwatched_pumps == 0) return std::nullopt;
  if (s.output_backlog) return std::chrono::milliseconds(0);
  return output_pump_interval;
}

/// A worker ended (under the mutex, before a launcher reads its logs): the
/// rest of its output, its last partial line, the logs completed (a
/// head-and-tail log gets its tail), the info brought up to date.
template <class Clock>
void finish_outputs(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  auto wants = output_wants(s);
  std::vector<OutputPiece> pieces;
  for (auto& pump : record.pumps) {
    if (!pump) continue;
    if (pump->watched && pump->read_fd() >= 0) s.watcher.remove(pump->read_fd());
    pump->finish(pieces, wants);
    queue_output(s, record, pieces);
  }
  refresh_output_info(record);
  for (auto& pump : record.pumps) {
    if (!pump) continue;
    if (!pump->watched || !s.watcher.multiplexes_readers()) --s.unwatched_pumps;
    pump.reset();
    --s.active_pumps;
  }
}

/// Runs the handlers (under `poll_mutex`, not the mutex): each event, and
/// before it the output that was read before it was raised; then the rest.
/// Returns the number of events. `reached` (when given) counts the events
/// whose handlers began: when one throws, the events before it and its own.
template <class Clock>
std::size_t deliver_events_and_output(EngineState<Clock>& s, const std::vector<WorkerEvent>& events,
                                      const std::vector<QueuedOutput>& output, std::size_t* reached = nullptr) {
  if (reached != nullptr) *reached = 0;
  if (events.empty() && output.empty()) return 0;
  auto handlers = s.handlers;  // a handler may register another
  std::vector<output_line_handler> line_handlers;
  std::vector<output_chunk_handler> chunk_handlers;
  if (!output.empty()) {
    line_handlers = s.line_handlers;
    chunk_handlers = s.chunk_handlers;
  }
  std::size_t next = 0;
  auto output_until = [&](std::size_t event_index) {
    for (; next < output.size() && output[next].before_event <= event_index; ++next) {
      const QueuedOutput& item = output[next];
      if (item.piece.line) {
        OutputLine line{item.worker_id, item.attempt, item.piece.stream, item.piece.data, item.piece.partial};
        for (const auto& handler : line_handlers) handler(line);
      } else {
        OutputChunk chunk{item.worker_id, item.attempt, item.piece.stream, item.piece.data};
        for (const auto& handler : chunk_handlers) handler(chunk);
      }
    }
  };
  for (std::size_t i = 0; i < events.size(); ++i) {
    output_until(i);
    if (reached != nullptr) *reached = i + 1;
    for (const auto& handler : handlers) handler(events[i]);
  }
  output_until(std::numeric_limits<std::size_t>::max());
  return events.size();
}

}  // namespace jobwarden::detail
