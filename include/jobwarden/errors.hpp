#pragma once
/// \file
/// jobwarden's error codes. Functions come in pairs (Boost.Process v2 style):
/// one taking `std::error_code&` that never throws, and one that throws
/// `std::system_error` whose message names the id, path or value at fault.
/// What happened to a worker (exit code, signal, timeout) is never an error:
/// it is data in the worker's result.

#include <string>
#include <system_error>
#include <type_traits>

namespace jobwarden {

/// Errors that are jobwarden's own (system errors use `std::system_category`).
enum class errc {
  invalid_id = 1,       ///< a job or worker id does not match `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`
  duplicate_id,         ///< a worker id is already used in this supervisor
  empty_argv,           ///< a spec has no program to run
  invalid_duration,     ///< a negative duration, or text that is not a duration
  invalid_signal,       ///< a signal number or name that is not a signal
  invalid_argument,     ///< any other malformed argument (the message says which)
  unknown_worker,       ///< no worker with that id in this supervisor
  unknown_job,          ///< no job with that id under the root
  job_locked,           ///< the job already has a live supervisor
  supervisor_shut_down, ///< the supervisor no longer accepts work
  bad_status_file,      ///< a status file is not valid (see the aggregator's `errors`)
  job_exists,           ///< a finished job with that id is already on disk (clean it or pick another id)
  oversized_file,       ///< a file is larger than the reader's (or writer's) size limit
  not_regular_file,     ///< a path names a directory, device, FIFO or socket, not a regular file
  invalid_state_transition,  ///< a state change the state rules forbid (e.g. out of a terminal state)
  no_status_file,       ///< `JOBWARDEN_STATUS_FILE` is not set: the process is not a jobwarden worker
  input_closed,         ///< the worker's stdin is not open for the host (not kept open, closed, or the worker ended)
  unsupported_layout,   ///< a job directory this version does not read: schema 1 (`job.json`, a directory per worker), or a journal naming another schema version
  worker_not_running,   ///< a control (signal, pause, resume) for a worker that is not running: pending, ended, or already reaped
  no_live_supervisor,   ///< the job has no live supervisor to carry out a control request (`control_job`)
  worker_not_finished,  ///< `JobSupervisor::forget` of a worker that is not in a terminal state (or whose record is not yet in the journal)
  bad_control_reply,    ///< a supervisor's answer to a control request that cannot be read (damaged, or of another version)
};

namespace detail {
class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "jobwarden"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_id: return "invalid id";
      case errc::duplicate_id: return "duplicate worker id";
      case errc::empty_argv: return "empty argv";
      case errc::invalid_duration: return "invalid duration";
      case errc::invalid_signal: return "invalid signal";
      case errc::invalid_argument: return "invalid argument";
      case errc::unknown_worker: return "unknown worker";
      case errc::unknown_job: return "unknown job";
      case errc::job_locked: return "job already has a live supervisor";
      case errc::supervisor_shut_down: return "supervisor is shut down";
      case errc::bad_status_file: return "bad status file";
      case errc::job_exists: return "a job with that id already exists";
      case errc::oversized_file: return "file exceeds the size limit";
      case errc::not_regular_file: return "not a regular file";
      case errc::invalid_state_transition: return "state transition not allowed";
      case errc::no_status_file: return "JOBWARDEN_STATUS_FILE is not set";
      case errc::input_closed: return "the worker's stdin is not open for writing";
      case errc::unsupported_layout:
        return "job directory of an older or newer jobwarden (schema 1's job.json, or a journal of another "
               "schema version); read it with the version that wrote it, or remove it";
      case errc::worker_not_running: return "the worker is not running";
      case errc::no_live_supervisor: return "the job has no live supervisor";
      case errc::worker_not_finished: return "the worker has not finished";
      case errc::bad_control_reply: return "the supervisor's reply to a control request cannot be read";
    }
    return "unknown jobwarden error";
  }
};
}  // namespace detail

/// The category of `jobwarden::errc` values.
inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl instance;
  return instance;
}

/// Makes `std::error_code` from a `jobwarden::errc` (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

namespace detail {
/// Throws `std::system_error` carrying `ec` and a message naming what failed.
[[noreturn]] inline void throw_error(std::error_code ec, const std::string& what) {
  throw std::system_error(ec, what);
}
/// Sets `out` (when given) or throws: the bridge between the two overload styles.
inline void report(std::error_code* out, std::error_code ec, const std::string& what) {
  if (out != nullptr) {
    *out = ec;
    return;
  }
  throw_error(ec, what);
}
}  // namespace detail

}  // namespace jobwarden

template <>
struct std::is_error_code_enum<jobwarden::errc> : std::true_type {};
