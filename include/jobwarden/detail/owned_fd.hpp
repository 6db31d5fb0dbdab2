#pragma once
/// \file
/// A file descriptor that closes itself: the RAII handle the status protocol's
/// headers (atomic files, directory walks, the job lock) hold their fds in.

#include <unistd.h>

#include <utility>

namespace jobwarden::detail {

/// Owns one file descriptor (or none, `-1`) and closes it when destroyed.
/// Move-only: exactly one owner closes each descriptor.
class OwnedFd {
 public:
  /// An empty handle.
  OwnedFd() noexcept = default;
  /// Takes ownership of `fd` (may be `-1`, meaning none).
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  /// Moves ownership; `other` is left empty.
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  /// Closes the current descriptor and takes `other`'s.
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  /// Closes the descriptor, if any.
  ~OwnedFd() { reset(); }

  /// The descriptor, still owned (`-1` if none).
  int get() const noexcept { return fd_; }
  /// Whether a descriptor is held.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the held descriptor (if any) and holds `fd` instead. A close
  /// interrupted by a signal is not retried: on Linux the fd is gone anyway,
  /// and retrying could close a descriptor another thread just opened.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace jobwarden::detail
