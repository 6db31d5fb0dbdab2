#pragma once
/// \file
/// Feeding a worker's stdin from the supervisor: `InputFeeder` holds the
/// bytes queued for one worker and writes them into the non-blocking write
/// end of its stdin pipe as the pipe accepts them, never blocking; EPIPE (the
/// worker closed its stdin, or ended) stops the feeding and is reported, never
/// raised — and never kills the host with SIGPIPE, whatever the host's
/// disposition of SIGPIPE is (see `SigpipeShield`).

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>

#include "jobwarden/detail/sigpipe_shield.hpp"

namespace jobwarden::detail {

/// A stdin pipe: `read_end` for the worker (blocking, close-on-exec: the spawn
/// makes it fd 0), `write_end` for the supervisor (non-blocking,
/// close-on-exec). False (errno set) when the kernel refuses a pipe. No
/// pipe2 on macOS: the flags are set one by one there (another thread's spawn
/// in between would not exec-inherit them anyway: the spawn closes every
/// descriptor but 0, 1 and 2).
inline bool make_input_pipe(int& read_end, int& write_end) {
  int fds[2];
#if defined(__linux__)
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
#else
  if (::pipe(fds) != 0) return false;
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
#if defined(F_SETNOSIGPIPE)
  ::fcntl(fds[1], F_SETNOSIGPIPE, 1);
#endif
  read_end = fds[0];
  write_end = fds[1];
  return true;
}

/// The bytes queued for one worker's stdin and, while an attempt runs, the
/// supervisor's end of its pipe. Not thread-safe: the engine's mutex guards it.
///
/// The queue outlives attempts: what the host queues while the worker waits
/// to start (or to restart) goes to the next attempt, after the spec's
/// `data`. What an attempt did not take when it ended is dropped
/// (`end_attempt`): a new attempt never sees an old one's host bytes.
class InputFeeder {
 public:
  InputFeeder() = default;
  InputFeeder(const InputFeeder&) = delete;
  InputFeeder& operator=(const InputFeeder&) = delete;
  ~InputFeeder() { close_fd(); }

  /// What one `feed` call ended with.
  enum class Result {
    idle,     ///< nothing queued (or no pipe): nothing to do until more is queued
    blocked,  ///< the pipe is full: try again when it is writable
    budget_used,  ///< wrote `budget` bytes; more is queued and may fit now
    closed,   ///< the pipe was closed: everything written and no more was wanted
    failed,   ///< writing failed (EPIPE...): feeding stopped, see `error()`
  };

  /// Begins an attempt on `write_end` (owned from now on): `first` (not
  /// copied: it must outlive the attempt, as the spec's `data` does) goes
  /// ahead of what the host queued while the worker waited; the pipe is
  /// closed once the queue is empty if `keep_open` is false or the host
  /// already asked for it (`request_close`).
  void start_attempt(int write_end, std::string_view first, bool keep_open) {
    close_fd();
    fd_ = write_end;
    written_ = 0;
    error_.clear();
    failed_ = false;
    done_ = false;
    waiting_ = false;
    watched_ = false;
    if (!keep_open) close_requested_ = true;
    first_ = first;
    pending_ += first.size();
  }

  /// Adds bytes to the queue (written after everything queued before).
  void queue(std::string_view bytes) {
    if (bytes.empty()) return;
    // Many small writes share a chunk instead of one allocation each.
    if (!queue_.empty() && queue_.back().size() + bytes.size() <= 64 * 1024) {
      queue_.back().append(bytes.data(), bytes.size());
    } else {
      queue_.emplace_back(bytes);
    }
    pending_ += bytes.size();
  }

  /// Closes the pipe once the queue is written (now, if it is empty: at the
  /// next `feed`).
  void request_close() { close_requested_ = true; }
  bool close_requested() const { return close_requested_; }

  /// Whether an attempt's pipe is open.
  bool attached() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  /// Whether `feed` has something to do: bytes to write, or a close to make.
  bool wants_feed() const { return fd_ >= 0 && !done_ && (pending_ > 0 || close_requested_); }

  std::uint64_t written() const { return written_; }
  std::uint64_t pending() const { return pending_; }
  /// Why feeding stopped early; empty while all is well.
  const std::string& error() const { return error_; }
  bool failed() const { return failed_; }

  /// Writes what the pipe takes now, at most `budget` bytes (one worker's
  /// 10 MB does not hold up the rest of the poll). Never blocks. After
  /// `closed` or `failed` the pipe is still open: the caller stops watching
  /// it, then calls `close_fd`.
  Result feed(std::size_t budget = 1 << 20) {
    if (fd_ < 0 || done_) return Result::idle;
    std::size_t moved = 0;
    if (!first_.empty() || !queue_.empty()) {
      SigpipeShield shield;
      if (!shield.active()) {
        stop("cannot write the worker's stdin without risking SIGPIPE (pthread_sigmask failed)");
        return Result::failed;
      }
      while (!first_.empty() || !queue_.empty()) {
        if (moved >= budget) return Result::budget_used;
        std::string_view segment = first_;
        if (segment.empty()) segment = std::string_view(queue_.front()).substr(offset_);
        ssize_t n = ::write(fd_, segment.data(), std::min<std::size_t>(segment.size(), 64 * 1024));
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) return Result::blocked;
          int saved = errno;
          if (saved == EPIPE) shield.note_epipe();
          stop(saved == EPIPE ? "stdin closed by the worker with " +
                                    std::to_string(pending_) + " bytes unwritten"
                              : "cannot write the worker's stdin (" +
                                    std::string(std::strerror(saved)) + ") with " +
                                    std::to_string(pending_) + " bytes unwritten");
          return Result::failed;
        }
        auto wrote = static_cast<std::size_t>(n);
        moved += wrote;
        written_ += wrote;
        pending_ -= wrote;
        if (!first_.empty()) {
          first_.remove_prefix(wrote);
        } else if ((offset_ += wrote) == queue_.front().size()) {
          queue_.pop_front();
          offset_ = 0;
        }
      }
    }
    if (close_requested_) {
      done_ = true;
      return Result::closed;
    }
    return Result::idle;
  }

  /// Whether feeding this attempt is over (all written and closed, or failed).
  bool done() const { return done_; }

  /// Whether the pipe waits for room (`blocked`), so the caller watches it.
  bool waiting_for_room() const { return waiting_; }
  void set_waiting_for_room(bool waiting) { waiting_ = waiting; }
  /// Whether the pipe was ever handed to the event loop (add, not re-arm).
  bool watched() const { return watched_; }
  void set_watched() { watched_ = true; }

  /// The attempt ended: drops what it did not take (noted in `error()` when
  /// bytes were left). The host's close request stays: a later attempt gets
  /// its `data`, then EOF. The caller stops watching the pipe, then calls
  /// `close_fd`.
  void end_attempt() {
    if (fd_ >= 0 && pending_ > 0 && !failed_) {
      error_ = "the worker ended with " + std::to_string(pending_) + " bytes of stdin unwritten";
    }
    done_ = true;
    first_ = {};
    queue_.clear();
    offset_ = 0;
    pending_ = 0;
  }

  /// Closes the pipe (the worker reads EOF).
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    waiting_ = false;
    watched_ = false;
  }

 private:
  void stop(std::string why) {
    error_ = std::move(why);
    failed_ = true;
    done_ = true;
    first_ = {};
    queue_.clear();
    offset_ = 0;
    pending_ = 0;
  }

  int fd_ = -1;
  std::string_view first_;  // the spec's data, not yet written (not owned)
  std::deque<std::string> queue_;  // the host's bytes
  std::size_t offset_ = 0;  // into queue_.front()
  std::uint64_t pending_ = 0;
  std::uint64_t written_ = 0;
  bool close_requested_ = false;
  bool failed_ = false;
  bool done_ = false;
  bool waiting_ = false;
  bool watched_ = false;
  std::string error_;
};

}  // namespace jobwarden::detail
