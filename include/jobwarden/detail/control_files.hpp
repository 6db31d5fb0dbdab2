#pragma once
/// \file
/// Control requests through the job directory (`control_job`, `jobwarden
/// signal|pause|resume`): the engine takes `<nonce>.control` files
/// (`take_control_requests`, under the engine's mutex, like stop.request)
/// and, once the mutex is released, applies each through its own `signal`,
/// `pause` or `resume` and writes `<nonce>.reply` (`write_control_reply`).
/// File names and the text of both files: job_files.hpp, job_format.hpp.

#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/control_request.hpp"
#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/name_suffix.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"

namespace jobwarden::detail {

/// A request taken from the job directory, waiting to be applied.
struct TakenControlRequest {
  std::string nonce;
  ControlRequest request;
  std::string problem;  ///< not empty: the request could not be read (answered as such)
};

/// Whether `name` is a control request's file name; its nonce in `nonce`.
inline bool control_request_nonce(const std::string& name, std::string& nonce) {
  if (!has_suffix(name, control_request_suffix)) return false;
  nonce = std::string(without_suffix(name, control_request_suffix));
  return is_valid_id(nonce);
}

/// What `take_control_requests` left behind.
enum class ControlBacklog {
  none,     ///< every request there was is taken
  more,     ///< more requests than one look takes: look again at once
  retry,    ///< a listing or a read failed (EMFILE, EIO...): look again later, not at once
};

/// Takes (reads and removes) up to `max_control_requests_per_poll` control
/// requests from the job directory `job_fd`.
/// Read like every file of the job directory: relative to its descriptor,
/// never through a symlink, never a FIFO or other special file (those, and
/// names that are not `<id>.control`, are left alone). A file that cannot be
/// read for want of descriptors or memory is left for a later look.
inline ControlBacklog take_control_requests(int job_fd, std::vector<TakenControlRequest>& taken) {
  std::error_code ec;
  const std::vector<DirectoryEntry> entries = list_directory(job_fd, ec);
  if (ec) return ControlBacklog::retry;
  ControlBacklog backlog = ControlBacklog::none;
  for (const DirectoryEntry& entry : entries) {
    std::string nonce;
    if (!control_request_nonce(entry.name, nonce)) continue;
    if (taken.size() >= max_control_requests_per_poll) {
      backlog = ControlBacklog::more;
      break;
    }
    std::string text;
    ec = read_file_at(job_fd, entry.name.c_str(), text, nullptr, max_control_request_size);
    if (ec == std::errc::no_such_file_or_directory || ec == std::errc::too_many_symbolic_link_levels ||
        ec == errc::not_regular_file) {
      continue;  // withdrawn meanwhile, or not a request
    }
    TakenControlRequest request;
    request.nonce = std::move(nonce);
    if (ec == errc::oversized_file) {
      request.problem = "the request is larger than " + std::to_string(max_control_request_size) + " bytes";
    } else if (ec == std::errc::permission_denied || ec == std::errc::operation_not_permitted) {
      request.problem = "cannot read the request: " + ec.message();  // answered, never retried
    } else if (ec) {
      backlog = ControlBacklog::retry;  // EMFILE, EIO...: look again later
      continue;
    } else {
      parse_control_request(text, request.request, request.problem);  // a bad one: `problem` says why
    }
    // Taken: removed before it is applied, so it is never applied twice. A
    // request withdrawn between the read and here is not applied at all.
    if (::unlinkat(job_fd, entry.name.c_str(), 0) != 0) {
      // Gone meanwhile, or not ours to remove (EACCES, EPERM, EROFS): left
      // alone, unanswered, as a file that is no request.
      if (errno != ENOENT && errno != EACCES && errno != EPERM && errno != EROFS) backlog = ControlBacklog::retry;
      continue;
    }
    taken.push_back(std::move(request));
  }
  return backlog;
}

/// The `ControlFailure::reason` for an error of `signal`/`pause`/`resume`.
inline std::string control_failure_reason(const std::error_code& ec) {
  if (ec == errc::unknown_worker) return "unknown_worker";
  if (ec == errc::worker_not_running) return "worker_not_running";
  if (ec == errc::invalid_signal || ec == errc::invalid_id) return "bad_request";
  return "error";
}

/// Writes the answer to `nonce`'s request, atomically. A requester that gave
/// up has withdrawn its request before we took it, or will not read this:
/// such a reply is left behind (and goes with the job directory).
inline std::error_code write_control_reply(int job_fd, const std::string& nonce, const ControlReply& reply) {
  try {
    return write_file_atomically_at(job_fd, nonce + control_reply_suffix, control_reply_text(reply));
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

/// Removes control requests (and replies) left in the job directory `job_fd`
/// for an earlier run: where `stop.request` is removed (a finished job's id
/// reused, recovery). Best effort.
inline void remove_stale_control_files(int job_fd) {
  std::error_code ec;
  for (const DirectoryEntry& entry : list_directory(job_fd, ec)) {
    std::string nonce;
    const bool reply = has_suffix(entry.name, control_reply_suffix) &&
                       is_valid_id(std::string(without_suffix(entry.name, control_reply_suffix)));
    if (reply || control_request_nonce(entry.name, nonce)) ::unlinkat(job_fd, entry.name.c_str(), 0);
  }
}

/// Removes the requests (`stop.request`, control requests and replies) left
/// in the job directory `job_fd` for an earlier run of the job id. The
/// error of removing `stop.request`, if it exists and cannot be removed.
inline std::error_code clear_stale_requests_at(int job_fd) {
  if (::unlinkat(job_fd, stop_request_file_name, 0) != 0 && errno != ENOENT) {
    return errno_code();
  }
  remove_stale_control_files(job_fd);
  return {};
}

}  // namespace jobwarden::detail
