#pragma once
/// \file
/// Where the bytes of a stream the supervisor reads end up (`LogSink`):
/// nowhere, the supervisor's own stdout or stderr, or a log file that is
/// created on the first byte and kept within its cap — its head only, or its
/// head and its tail with a note of the gap between them. A log that cannot
/// be created or written loses its bytes (counted as dropped, the reason
/// kept in `error()`); nothing here is ever fatal to the supervisor.
///
/// A head-and-tail log keeps memory bounded whatever the cap: the tail half
/// lives in a ring in an unlinked scratch file next to the log, and is
/// appended to the log (after the note) when the stream ends. The log itself
/// is only ever appended to, so a reader following it never sees it shrink.

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "jobwarden/detail/platform.hpp"
#include "jobwarden/detail/sigpipe_shield.hpp"

#if JOBWARDEN_LINUX_FAST_PATH
#include <sys/ioctl.h>
#endif

namespace jobwarden::detail {

/// Writes all of `data` to `fd` (short writes and EINTR retried; a
/// non-blocking `fd` that is full is waited for). With `guard_sigpipe` a
/// reader that went away is EPIPE, not SIGPIPE. Returns 0 or the errno.
inline int write_fully(int fd, const char* data, std::size_t size, bool guard_sigpipe) {
  std::optional<SigpipeShield> shield;
  if (guard_sigpipe) {
    shield.emplace();
    if (!shield->active()) return EPIPE;  // unprotected, a write could kill the host: none
  }
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, -1);
      continue;
    }
    if (n < 0 && errno == EPIPE && shield) shield->note_epipe();
    if (n < 0) return errno;
    if (n == 0) return EIO;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// Opens a log for writing, close-on-exec, never blocking on a FIFO without
/// a reader (ENXIO instead). `append` continues the file with O_APPEND, so
/// other writers of the same file (another worker's log appended to, an
/// escapee of an earlier attempt) never overwrite each other's bytes; splice(2)
/// and copy_file_range(2) refuse such a file and the sink then reads and
/// writes. Else the file is truncated. Without `create` a missing file is
/// ENOENT. -1 with errno set.
inline int open_log(const std::string& path, bool append, bool create) {
  int flags = O_WRONLY | O_CLOEXEC | O_NONBLOCK | (create ? O_CREAT : 0) | (append ? O_APPEND : O_TRUNC);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return -1;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

/// Where a supervised stream's bytes go (see the file comment).
struct LogSinkOptions {
  enum class Kind {
    discard,     ///< nowhere (the tail and the handlers may still see them)
    descriptor,  ///< `fd`, the supervisor's own stdout or stderr (not owned)
    file,        ///< `path`, created on the first byte
  };
  Kind kind = Kind::discard;
  int fd = -1;
  std::string path;
  bool append = false;                 ///< continue the file instead of truncating it
  std::optional<std::uint64_t> limit;  ///< the file's cap
  bool keep_tail = false;              ///< a capped file keeps its head and its tail
};

/// See the file comment. Not thread-safe: owned by one pump.
class LogSink {
 public:
  /// `opened` is the log, already opened (truncated at the spawn because it
  /// existed), or -1; owned from here on.
  explicit LogSink(LogSinkOptions options, int opened = -1)
      : options_(std::move(options)), file_fd_(opened) {
    if (options_.kind == Kind::descriptor) {
      struct stat st;
      guard_sigpipe_ = ::fstat(options_.fd, &st) != 0 || !S_ISREG(st.st_mode);
    }
    if (file_fd_ >= 0) note_opened();
  }
  ~LogSink() { close_all(); }
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;

  /// Bytes lost: beyond the cap, or refused by the file or stream.
  std::uint64_t dropped() const {
    std::uint64_t tail_half = ring_size();
    std::uint64_t gap = ring_total_ > tail_half ? ring_total_ - tail_half : 0;
    return lost_ + beyond_cap_ + gap;
  }
  /// Why bytes were lost for another reason than the cap (empty: none were).
  const std::string& error() const { return error_; }
  /// The log's path once it exists (empty before, and for other kinds).
  const std::string& created_path() const { return created_; }

  /// Takes `size` bytes the stream produced.
  void write(const char* data, std::size_t size) {
    if (size == 0) return;
    switch (options_.kind) {
      case Kind::discard: return;
      case Kind::descriptor: {
        if (failed_) {
          lost_ += size;
          return;
        }
        if (int e = write_fully(options_.fd, data, size, guard_sigpipe_)) {
          fail(std::string("cannot write to the supervisor's ") +
                   (options_.fd == 1 ? "stdout" : options_.fd == 2 ? "stderr" : "stream"),
               e, size);
        }
        return;
      }
      case Kind::file: break;
    }
    if (!options_.limit) {
      put(data, size);
      return;
    }
    std::uint64_t head = options_.keep_tail ? *options_.limit / 2 : *options_.limit;
    std::uint64_t room = head_ < head ? head - head_ : 0;
    auto first = static_cast<std::size_t>(std::min<std::uint64_t>(room, size));
    put(data, first);
    head_ += first;
    if (first == size) return;
    if (options_.keep_tail) {
      to_ring(data + first, size - first);
    } else {
      beyond_cap_ += size - first;
    }
  }

  /// How many bytes may go from a pipe straight into the log now
  /// (`splice_from`); 0 when they must be read and `write`n instead: not a
  /// file, a head-and-tail cap, a reached cap, a failed log, or no splice(2).
  std::uint64_t splice_room() const {
#if JOBWARDEN_LINUX_FAST_PATH
    if (options_.kind != Kind::file || options_.keep_tail || failed_ || splice_refused_) return 0;
    if (!options_.limit) return UINT64_MAX;
    return head_ < *options_.limit ? *options_.limit - head_ : 0;
#else
    return 0;
#endif
  }

  /// What one `splice_from` did.
  struct Spliced {
    enum class Status { moved, empty, end, use_read } status;
    std::size_t bytes = 0;
  };

  /// Moves up to `max` bytes from the pipe `from` into the log with
  /// splice(2): they never cross user space. Before the log exists it is
  /// created only when the pipe holds something. `use_read`: read this time
  /// (nothing to tell yet, or splice is refused here).
  Spliced splice_from(int from, std::size_t max) {
#if JOBWARDEN_LINUX_FAST_PATH
    using Status = Spliced::Status;
    if (file_fd_ < 0) {
      int available = 0;
      // Empty, or at its end: a read says which (and creates nothing).
      if (::ioctl(from, FIONREAD, &available) != 0 || available <= 0) return {Status::use_read};
      if (!ensure_open()) return {Status::use_read};
    }
    for (;;) {
      ssize_t n = ::splice(from, nullptr, file_fd_, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        head_ += static_cast<std::uint64_t>(n);
        return {Status::moved, static_cast<std::size_t>(n)};
      }
      if (n == 0) return {Status::end};
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {Status::empty};
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
        splice_refused_ = true;  // this file (system) does not take it: read and write
      } else {
        // The log refused (ENOSPC, EIO, EFBIG...): what is in the pipe is
        // read and dropped from now on.
        fail("cannot write \"" + options_.path + "\"", errno, 0);
      }
      return {Status::use_read};
    }
#else
    (void)from;
    (void)max;
    return {Spliced::Status::use_read};
#endif
  }

  /// The stream ended: the note of what the cap dropped, the tail half of a
  /// head-and-tail log; then closes everything.
  void finish() {
    if (options_.kind == Kind::file && !failed_) {
      std::uint64_t limit = options_.limit.value_or(0);
      if (options_.keep_tail && ring_total_ > 0) {
        std::uint64_t size = ring_size();
        if (ring_total_ > size) {
          write_note("[jobwarden: log limit of " + std::to_string(limit) + " bytes reached; " +
                     std::to_string(ring_total_ - size) + " bytes dropped between the first " +
                     std::to_string(limit / 2) + " and the last " + std::to_string(size) +
                     " bytes]\n");
          std::uint64_t start = ring_total_ % size;
          if (copy_ring(start, size - start)) copy_ring(0, start);
        } else {
          copy_ring(0, ring_total_);
        }
      } else if (beyond_cap_ > 0) {
        write_note("[jobwarden: log limit of " + std::to_string(limit) + " bytes reached; " +
                   std::to_string(beyond_cap_) + " more bytes dropped]\n");
      }
    }
    if (failed_) {
      lost_ += ring_total_;  // past the head, none of it reached the log
      ring_total_ = 0;
    }
    close_all();
  }

 private:
  using Kind = LogSinkOptions::Kind;

  void note_opened() {
    created_ = options_.path;
    struct stat st;
    guard_sigpipe_ = ::fstat(file_fd_, &st) != 0 || !S_ISREG(st.st_mode);  // a FIFO, a tty...
  }

  /// Creates (or opens) the log on its first byte.
  bool ensure_open() {
    if (file_fd_ >= 0) return true;
    if (failed_) return false;
    file_fd_ = open_log(options_.path, options_.append, true);
    if (file_fd_ < 0) {
      fail("cannot create \"" + options_.path + "\"", errno, 0);
      return false;
    }
    note_opened();
    return true;
  }

  /// Writes into the log, or counts the bytes as lost.
  void put(const char* data, std::size_t size) {
    if (size == 0) return;
    if (failed_ || !ensure_open()) {
      lost_ += size;
      return;
    }
    if (int e = write_fully(file_fd_, data, size, guard_sigpipe_)) {
      fail("cannot write \"" + options_.path + "\"", e, size);
    }
  }

  /// The first failure says why output is lost; from then on every byte is.
  void fail(const std::string& what, int error_number, std::uint64_t lost) {
    lost_ += lost;
    if (!failed_) error_ = what + ": " + std::strerror(error_number);
    failed_ = true;
  }

  std::uint64_t ring_size() const {
    if (!options_.keep_tail || !options_.limit) return 0;
    return *options_.limit - *options_.limit / 2;
  }

  /// Keeps the last `ring_size()` bytes of what passed the head, in the
  /// scratch file; what is overwritten is the gap.
  void to_ring(const char* data, std::size_t size) {
    std::uint64_t ring = ring_size();
    if (ring == 0) {
      ring_total_ += size;
      return;
    }
    if (failed_ || (ring_fd_ < 0 && !open_ring())) {
      lost_ += size;
      return;
    }
    if (size > ring) {  // only its end can stay
      ring_total_ += size - ring;
      data += size - ring;
      size = static_cast<std::size_t>(ring);
    }
    while (size > 0) {
      std::uint64_t at = ring_total_ % ring;
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size, ring - at));
      std::size_t done = 0;
      while (done < n) {
        ssize_t w = ::pwrite(ring_fd_, data + done, n - done, static_cast<off_t>(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          fail("cannot write the scratch file of \"" + options_.path + "\"'s tail",
               w < 0 ? errno : EIO, size);
          return;
        }
        done += static_cast<std::size_t>(w);
      }
      ring_total_ += n;
      data += n;
      size -= n;
    }
  }

  /// An unlinked scratch file in the log's directory (the same file system,
  /// so its space is the log's own and the final copy stays in the kernel).
  bool open_ring() {
    auto slash = options_.path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : options_.path.substr(0, slash);
#if defined(__linux__) && defined(O_TMPFILE)
    ring_fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (ring_fd_ >= 0) return true;
#endif
    std::string pattern = dir + "/.jobwarden-tail-XXXXXX";
    ring_fd_ = ::mkstemp(pattern.data());
    if (ring_fd_ < 0) {
      fail("cannot create a scratch file for the tail of \"" + options_.path + "\"", errno, 0);
      return false;
    }
    ::fcntl(ring_fd_, F_SETFD, FD_CLOEXEC);
    ::unlink(pattern.c_str());
    return true;
  }

  /// Appends `size` bytes of the ring from `offset` to the log.
  bool copy_ring(std::uint64_t offset, std::uint64_t size) {
    if (size == 0) return true;
    if (!ensure_open()) return false;
#if JOBWARDEN_LINUX_FAST_PATH
    auto in = static_cast<off_t>(offset);
    while (size > 0) {
      ssize_t n = ::copy_file_range(ring_fd_, &in, file_fd_, nullptr,
                                    static_cast<std::size_t>(std::min<std::uint64_t>(size, 1u << 30)), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EXDEV, EINVAL...: the copy below does the rest
      size -= static_cast<std::uint64_t>(n);
    }
    offset = static_cast<std::uint64_t>(in);
#endif
    char buffer[65536];
    while (size > 0) {
      ssize_t n = ::pread(ring_fd_, buffer, static_cast<std::size_t>(std::min<std::uint64_t>(size, sizeof buffer)),
                          static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fail("cannot read the scratch file of \"" + options_.path + "\"'s tail", n < 0 ? errno : EIO, 0);
        return false;
      }
      if (int e = write_fully(file_fd_, buffer, static_cast<std::size_t>(n), guard_sigpipe_)) {
        fail("cannot write \"" + options_.path + "\"", e, 0);
        return false;
      }
      offset += static_cast<std::uint64_t>(n);
      size -= static_cast<std::uint64_t>(n);
    }
    return true;
  }

  /// The note goes on a line of its own.
  void write_note(const std::string& note) {
    if (!ensure_open()) return;
    std::string text = "\n" + note;
    if (int e = write_fully(file_fd_, text.data(), text.size(), guard_sigpipe_)) {
      fail("cannot write \"" + options_.path + "\"", e, 0);
    }
  }

  void close_all() {
    if (file_fd_ >= 0) ::close(file_fd_);
    if (ring_fd_ >= 0) ::close(ring_fd_);
    file_fd_ = ring_fd_ = -1;
  }

  LogSinkOptions options_;
  int file_fd_ = -1;
  int ring_fd_ = -1;              // the tail half's scratch file
  bool guard_sigpipe_ = false;    // the target is not a regular file
  bool failed_ = false;
  bool splice_refused_ = false;
  std::uint64_t head_ = 0;        // bytes written to the log before the cap
  std::uint64_t beyond_cap_ = 0;  // head-only cap: bytes past it
  std::uint64_t ring_total_ = 0;  // head-and-tail cap: bytes past the head
  std::uint64_t lost_ = 0;        // refused by the log or the stream
  std::string error_;
  std::string created_;
};

}  // namespace jobwarden::detail
