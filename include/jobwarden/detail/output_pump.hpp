#pragma once
/// \file
/// Capped logs: the one owner of moving a worker's output through the
/// supervisor. A worker whose log has a size cap writes into a pipe; the
/// supervisor moves what arrives into the file up to the cap and counts the
/// rest, so gigabytes of output neither block anything nor fill the disk
/// silently. Uncapped logs never pass through here: the worker writes its file
/// directly, at no cost to the supervisor.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>

namespace jobwarden::detail {

class OutputPump {
 public:
  /// Takes ownership of both descriptors; `read_fd` must be non-blocking.
  OutputPump(int read_fd, int file_fd, std::uint64_t limit)
      : read_fd_(read_fd), file_fd_(file_fd), limit_(limit) {}
  OutputPump(const OutputPump&) = delete;
  OutputPump& operator=(const OutputPump&) = delete;
  ~OutputPump() { close_all(); }

  int read_fd() const { return read_fd_; }
  std::uint64_t written() const { return written_; }
  std::uint64_t dropped() const { return dropped_; }

  /// What one `pump` call ended with.
  enum class Result { drained, budget_used, end_of_file };

  /// Moves what can be read now, at most `budget` bytes (so one noisy worker
  /// cannot hold up the supervisor's other work).
  Result pump(std::size_t budget = 1 << 20) {
    char buffer[65536];
    std::size_t moved = 0;
    while (moved < budget) {
      if (read_fd_ < 0) return Result::end_of_file;
      ssize_t n = ::read(read_fd_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Result::drained;  // EAGAIN: nothing more now
      if (n == 0) return Result::end_of_file;
      moved += static_cast<std::size_t>(n);
      auto size = static_cast<std::uint64_t>(n);
      std::uint64_t room = written_ < limit_ ? limit_ - written_ : 0;
      std::uint64_t keep = std::min(room, size);
      if (keep > 0 && !write_all(buffer, static_cast<std::size_t>(keep))) {
        dropped_ += keep;  // the disk refused (ENOSPC, EIO): counted, never fatal
      } else {
        written_ += keep;
      }
      dropped_ += size - keep;
    }
    return Result::budget_used;
  }

  /// Takes what is left in the pipe, notes any overflow at the end of the log,
  /// and closes both ends.
  void finish() {
    // Stops at the first empty read: a writer that survived (an escapee) may
    // keep the pipe open, and nothing may wait for it.
    while (pump() == Result::budget_used) {
    }
    if (dropped_ > 0 && file_fd_ >= 0) {
      std::string note = "\n[jobwarden: log limit of " + std::to_string(limit_) +
                         " bytes reached; " + std::to_string(dropped_) + " more bytes dropped]\n";
      write_all(note.data(), note.size());
    }
    close_all();
  }

 private:
  bool write_all(const char* data, std::size_t size) {
    while (size > 0) {
      ssize_t n = ::write(file_fd_, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  void close_all() {
    if (read_fd_ >= 0) ::close(read_fd_);
    if (file_fd_ >= 0) ::close(file_fd_);
    read_fd_ = file_fd_ = -1;
  }

  int read_fd_;
  int file_fd_;
  std::uint64_t limit_;
  std::uint64_t written_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace jobwarden::detail
