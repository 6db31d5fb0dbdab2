#pragma once
/// \file
/// How a job directory's reader watches a job with inotify (Linux, not with
/// `JOBWARDEN_PORTABLE`): one instance per watched job with one watch, on its
/// flat `workers/` directory (added through the descriptor the read opened),
/// which sees every worker's status file replaced or rewritten and every log
/// created or appended to. The journal is not watched: its reader notices
/// appends and replacement by `fstat` (detail/journal.hpp, `JournalFollower`).
/// `JobWatch` owns the instance and translates its queued events into what
/// they mean for the cache (detail/status_cache.hpp decides what to re-read).

#include <cstdint>

#if defined(__linux__) && !defined(JOBWARDEN_PORTABLE)
/// 1 where `StatusAggregator` can watch job directories with inotify.
#define JOBWARDEN_STATUS_INOTIFY 1
#else
#define JOBWARDEN_STATUS_INOTIFY 0
#endif

#if JOBWARDEN_STATUS_INOTIFY
#include <sys/inotify.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/owned_fd.hpp"

namespace jobwarden::detail {

/// The inotify instance of one job: released with the job's cache.
struct JobWatch {
  static constexpr std::uint32_t workers_watch_mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                                      IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
                                                      IN_MOVE_SELF | IN_ONLYDIR;

  OwnedFd fd;
  int workers_wd = -1;
  dev_t device = 0;  ///< the `workers/` directory watched
  ino_t inode = 0;

  /// A new instance watching the `workers/` directory open as `workers_fd`
  /// (identified by `stamp`); null when no instance or watch is to be had.
  static std::unique_ptr<JobWatch> start(int workers_fd, const FileStamp& stamp) {
    auto watch = std::make_unique<JobWatch>();
    watch->fd.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (watch->fd) {
      // Through the descriptor: exactly the directory this read opened.
      const std::string self = "/proc/self/fd/" + std::to_string(workers_fd);
      watch->workers_wd = ::inotify_add_watch(watch->fd.get(), self.c_str(), workers_watch_mask);
    }
    if (watch->workers_wd < 0) return nullptr;
    watch->device = stamp.device;
    watch->inode = stamp.inode;
    return watch;
  }

  /// Whether this watches the `workers/` directory identified by `stamp`.
  bool watches(const FileStamp& stamp) const noexcept { return device == stamp.device && inode == stamp.inode; }

  /// Takes in the queued events and tells `sink` what they mean:
  /// - `sink.lost_track()`: events may have been lost (the queue overflowed,
  ///   or the instance failed): nothing known from events can be trusted;
  /// - `sink.file_changed(name, change)`: the entry `name` of `workers/`
  ///   changed: `change` is 1 when it came (created, or renamed to that name:
  ///   an atomic write), -1 when it went, 0 when it was written or its
  ///   attributes changed. Hidden names (temporary files) are skipped.
  /// False: the queue overflowed, or the watch on `workers/` is gone (the
  /// watch must be started anew).
  template <class Sink>
  bool drain(Sink& sink) {
    alignas(inotify_event) char buffer[16384];
    bool workers_watched = true;
    for (;;) {
      const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EAGAIN) break;
      if (got <= 0) {  // cannot happen; should it, nothing is known any more
        sink.lost_track();
        break;
      }
      for (std::size_t offset = 0; offset + sizeof(inotify_event) <= static_cast<std::size_t>(got);) {
        inotify_event event;
        std::memcpy(&event, buffer + offset, sizeof event);
        const char* name_start = buffer + offset + sizeof(inotify_event);
        const std::string_view name(name_start, event.len == 0 ? 0 : ::strnlen(name_start, event.len));
        offset += sizeof(inotify_event) + event.len;
        if (event.mask & IN_Q_OVERFLOW) {
          sink.lost_track();
          return false;
        }
        if (event.wd != workers_wd) continue;
        if (event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
          workers_watched = false;
        } else if (!name.empty() && name[0] != '.') {
          const int change = (event.mask & (IN_CREATE | IN_MOVED_TO))       ? 1
                             : (event.mask & (IN_DELETE | IN_MOVED_FROM)) ? -1
                                                                          : 0;
          sink.file_changed(name, change);
        } else if (name.empty()) {
          sink.lost_track();  // the directory itself changed (its mode): look at everything
        }
      }
    }
    return workers_watched;
  }
};

}  // namespace jobwarden::detail
#endif
