#pragma once
/// \file
/// The supervisor's event loop: the one descriptor a host puts into its own
/// event loop, and behind it everything that can give `poll()` work. It is
/// the one owner of "which children may have exited" (learnt without polling
/// and without waitpid(-1)), of the deadline timer, of wake-ups from other
/// threads, of capped-log pipes with data (`add_reader`), of stdin pipes
/// with room again (`arm_writer`) and of the job directory watch that sees `stop.request` appear (`watch_directory`).
///
/// - Linux with pidfds: an epoll set holding each worker's pidfd (readable
///   once that process exits), a timerfd for the next deadline, an eventfd
///   for wake-ups from other threads, the capped-log pipes, the stdin pipes
///   waiting for room and an inotify descriptor. One descriptor tells the host everything.
/// - Otherwise (macOS, old kernels, `JOBWARDEN_PORTABLE`): a SIGCHLD handler,
///   chained to the host's own handler, writes to a self-pipe of
///   every live supervisor; each then checks its own pids with
///   `waitid(P_PID, ..., WNOWAIT)`, never touching children it did not start.
///   There is no timer descriptor and no pipe readiness: the host uses
///   `next_timeout()`, and the caller tries its pipes at every poll.
///
/// Either way an exited worker must stay a zombie until jobwarden reads its
/// status: `EventLoop::keep_children_waitable` undoes a host's SIGCHLD
/// settings that would make the kernel reap it first.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

#include "jobwarden/detail/name_suffix.hpp"
#include "jobwarden/detail/platform.hpp"

#if JOBWARDEN_LINUX_FAST_PATH
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#endif

namespace jobwarden::detail {

/// Whether `action` makes the kernel reap exited children by itself (SIGCHLD
/// ignored, or SA_NOCLDWAIT), so that nobody can read their exit status.
inline bool auto_reaps(const struct sigaction& action) {
  // The kernel compares the handler whatever SA_SIGINFO says (one union).
  return action.sa_handler == SIG_IGN || (action.sa_flags & SA_NOCLDWAIT) != 0;
}

/// The pidfd mode's answer to a host that ignores SIGCHLD (`SIG_IGN`) or set
/// `SA_NOCLDWAIT`: the kernel would reap every worker the moment it exits, and
/// its exit status would be gone. `SIG_IGN` becomes `SIG_DFL` — for SIGCHLD
/// that also means "nothing happens", only exited children now wait as
/// zombies to be reaped — and `SA_NOCLDWAIT` is cleared; a host's handler
/// stays as it is. Anything else the host set is left alone.
inline void stop_auto_reaping() {
  struct sigaction current;
  if (::sigaction(SIGCHLD, nullptr, &current) != 0 || !auto_reaps(current)) return;
  if (current.sa_handler == SIG_IGN) current.sa_handler = SIG_DFL;
  current.sa_flags &= ~SA_NOCLDWAIT;
  ::sigaction(SIGCHLD, &current, nullptr);
}

/// Write ends of the self-pipes of every live supervisor (SIGCHLD mode).
///
/// The handler is put back whenever a spawn finds it replaced (the host set
/// SIGCHLD to `SIG_IGN`, or its own handler, after a supervisor started), and
/// it always calls the handler it replaced last, if that was one: the host's
/// handler keeps being called for the host's own children.
struct SigchldRegistry {
  static constexpr int slots = 256;
  std::atomic<int> fds[slots];
  /// The handlers replaced so far, the last one in `chained`. A handler
  /// running in another thread may still read an older entry, so entries are
  /// never rewritten until the ring comes round (the host would have to
  /// replace our handler 16 times while that handler runs).
  static constexpr int saved_slots = 16;
  struct sigaction saved[saved_slots];
  int next_saved = 0;
  std::atomic<const struct sigaction*> chained{nullptr};  ///< null: nothing to chain to
  std::mutex install_mutex;

  static SigchldRegistry& instance() {
    static SigchldRegistry registry;
    return registry;
  }

  SigchldRegistry() {
    for (auto& fd : fds) fd.store(-1, std::memory_order_relaxed);
  }

  static void handler(int sig, siginfo_t* info, void* context) {
    int saved_errno = errno;
    SigchldRegistry& self = instance();
    for (auto& slot : self.fds) {
      int fd = slot.load(std::memory_order_acquire);
      if (fd >= 0) {
        char byte = 1;
        ssize_t ignored = ::write(fd, &byte, 1);  // non-blocking: a full pipe already says "check"
        (void)ignored;
      }
    }
    // Chain to the host's handler, if it had one.
    const struct sigaction* previous = self.chained.load(std::memory_order_acquire);
    if (previous != nullptr) {
      if ((previous->sa_flags & SA_SIGINFO) != 0) {
        previous->sa_sigaction(sig, info, context);
      } else {
        previous->sa_handler(sig);
      }
    }
    errno = saved_errno;
  }

  static bool is_ours(const struct sigaction& action) {
    return (action.sa_flags & SA_SIGINFO) != 0 &&
           action.sa_sigaction == &SigchldRegistry::handler && !auto_reaps(action);
  }

  /// Installs the handler unless it is in place. What it replaces is chained
  /// to if it is a handler; `SIG_DFL` and `SIG_IGN` are not (a previous
  /// SIG_IGN would make the kernel reap our children before we could read
  /// their status, so it is replaced, and the host's own children become
  /// zombies it must reap), nor is `SA_NOCLDWAIT` kept.
  void ensure_installed() {
    struct sigaction current;
    if (::sigaction(SIGCHLD, nullptr, &current) == 0 && is_ours(current)) return;
    std::lock_guard<std::mutex> lock(install_mutex);
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_sigaction = &SigchldRegistry::handler;
    sigemptyset(&action.sa_mask);
    // SA_NOCLDSTOP: only exits matter.
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    struct sigaction replaced;
    if (::sigaction(SIGCHLD, &action, &replaced) != 0 || is_ours(replaced)) return;
    // SIG_DFL, SIG_IGN or ours with SA_NOCLDWAIT added: nothing of the host's
    // to call (the handler is one union whatever SA_SIGINFO says).
    bool host_handler = replaced.sa_handler != SIG_DFL && replaced.sa_handler != SIG_IGN &&
                        !((replaced.sa_flags & SA_SIGINFO) != 0 &&
                          replaced.sa_sigaction == &SigchldRegistry::handler);
    if (!host_handler) {
      chained.store(nullptr, std::memory_order_release);
      return;
    }
    struct sigaction& slot = saved[next_saved];
    next_saved = (next_saved + 1) % saved_slots;
    slot = replaced;
    chained.store(&slot, std::memory_order_release);
  }

  /// Registers a write end; false when every slot is taken.
  bool add(int fd) {
    ensure_installed();
    for (auto& slot : fds) {
      int expected = -1;
      if (slot.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) return true;
    }
    return false;
  }

  void remove(int fd) {
    for (auto& slot : fds) {
      int expected = fd;
      if (slot.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return;
    }
  }
};

inline void set_nonblocking_cloexec(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

inline void drain(int fd) {
  char buffer[256];
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
}

/// See the file comment. Not copyable; owned by one supervisor.
class EventLoop {
 public:
  /// What `collect()` found.
  struct Ready {
    std::vector<void*> exited;    ///< tokens whose pidfd became readable
    std::vector<void*> readable;  ///< tokens of `add_reader` descriptors with data
    std::vector<void*> writable;  ///< tokens of `arm_writer` descriptors with room (or an error)
    bool directory_changed = false;  ///< something was created in the watched directory
    bool check_all = false;     ///< SIGCHLD mode: any child may have exited
  };

  /// Throws `std::system_error` when the kernel refuses the descriptors
  /// (EMFILE, ENFILE), naming which one.
  EventLoop() {
    use_pidfd_ = features().pidfd;
#if JOBWARDEN_LINUX_FAST_PATH
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) fail("epoll_create1");
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) fail("eventfd");
    timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd_ < 0) fail("timerfd_create");
    add_to_epoll(wake_fd_, wake_token());
    add_to_epoll(timer_fd_, timer_token());
#endif
    if (use_pidfd_) {
      stop_auto_reaping();
    } else {
      if (::pipe(pipe_) != 0) fail("pipe");
      set_nonblocking_cloexec(pipe_[0]);
      set_nonblocking_cloexec(pipe_[1]);
      if (!SigchldRegistry::instance().add(pipe_[1])) {
        errno = EMFILE;
        fail("SIGCHLD registry (too many supervisors in one process)");
      }
#if JOBWARDEN_LINUX_FAST_PATH
      add_to_epoll(pipe_[0], wake_token());
#endif
    }
  }

  ~EventLoop() { close_all(); }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// The descriptor that becomes readable when `collect()` has something.
  int fd() const {
#if JOBWARDEN_LINUX_FAST_PATH
    return epoll_fd_;
#else
    return pipe_[0];
#endif
  }

  /// Undoes what the host may have done to SIGCHLD since: `SIG_IGN` or
  /// `SA_NOCLDWAIT` (the kernel would reap workers before jobwarden reads
  /// their status; see `stop_auto_reaping`) or, in SIGCHLD mode, a handler
  /// that replaced ours (ours goes back, chained to it). One sigaction call
  /// when nothing changed; call before every spawn. Thread-safe.
  void keep_children_waitable() {
    if (use_pidfd_) {
      stop_auto_reaping();
    } else {
      SigchldRegistry::instance().ensure_installed();
    }
  }

  /// Whether exits arrive per pidfd (true) or as "check all" (false).
  bool uses_pidfd() const { return use_pidfd_; }

  /// Whether deadlines wake `fd()` by themselves (a timerfd in the set).
  bool has_timer() const { return JOBWARDEN_LINUX_FAST_PATH != 0; }

  /// Watches a worker's pidfd; `token` comes back in `Ready::exited`.
  /// Returns false (errno set: ENOMEM, ENOSPC) when the kernel refuses.
  bool add(int pidfd, void* token) {
#if JOBWARDEN_LINUX_FAST_PATH
    if (pidfd < 0) return true;
    epoll_event event;
    std::memset(&event, 0, sizeof event);
    event.events = EPOLLIN;
    event.data.ptr = token;
    return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pidfd, &event) == 0;
#else
    (void)pidfd;
    (void)token;
    return true;
#endif
  }

  /// Watches a pipe's read end; `token` comes back in `Ready::readable`.
  /// Portable mode cannot multiplex it: the caller pumps on every `collect`.
  bool add_reader(int fd, void* token) {
#if JOBWARDEN_LINUX_FAST_PATH
    epoll_event event;
    std::memset(&event, 0, sizeof event);
    event.events = EPOLLIN;
    event.data.u64 = reinterpret_cast<std::uintptr_t>(token) | reader_tag;
    return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0;
#else
    (void)fd;
    (void)token;
    return true;
#endif
  }

  /// Reports `fd` (a pipe's write end) once in `Ready::writable` when it has
  /// room for a write, or when writing would fail (the reader is gone). One
  /// shot: after it was reported, call again to wait for room again. The
  /// first call adds `fd`, later ones re-arm it; `remove_writer` before
  /// closing it. `token` must be 8-aligned (its low bits are the loop's). Portable mode: nothing (the caller tries its writes at every
  /// poll). Returns false (errno set) when the kernel refuses.
  bool arm_writer(int fd, void* token, bool first_time) {
#if JOBWARDEN_LINUX_FAST_PATH
    epoll_event event;
    std::memset(&event, 0, sizeof event);
    // One shot: a pipe with room is writable all the time, and a level-
    // triggered registration would wake the host for nothing while there is
    // nothing to write.
    event.events = EPOLLOUT | EPOLLONESHOT;
    event.data.u64 = reinterpret_cast<std::uintptr_t>(token) | writer_tag;
    return ::epoll_ctl(epoll_fd_, first_time ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) == 0;
#else
    (void)fd;
    (void)token;
    (void)first_time;
    return true;
#endif
  }

  /// Stops watching a writer added by `arm_writer` (call before closing it).
  void remove_writer(int fd) { remove(fd); }

  /// Whether writers wake `fd()` by themselves (false: try them at every poll).
  bool multiplexes_writers() const { return JOBWARDEN_LINUX_FAST_PATH != 0; }

  /// Wakes `fd()` when a file called `name`, or one whose name ends in
  /// `suffix` (when not empty), is created or renamed into `path` (inotify;
  /// other names are ignored, so our own writes there do not wake the host);
  /// false where that is not available (the caller then looks at intervals).
  bool watch_directory(const std::string& path, const std::string& name, const std::string& suffix = {}) {
    watched_name_ = name;
    watched_suffix_ = suffix;
#if JOBWARDEN_LINUX_FAST_PATH
    if (inotify_fd_ < 0) {
      inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
      if (inotify_fd_ < 0) return false;
      epoll_event event;
      std::memset(&event, 0, sizeof event);
      event.events = EPOLLIN;
      event.data.ptr = directory_token();
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, inotify_fd_, &event) != 0) return false;
    }
    return ::inotify_add_watch(inotify_fd_, path.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) >= 0;
#else
    (void)path;
    return false;
#endif
  }

  /// Whether readers wake `fd()` by themselves (false: pump them at every poll).
  bool multiplexes_readers() const { return JOBWARDEN_LINUX_FAST_PATH != 0; }

  /// Stops watching a pidfd (call before closing it).
  void remove(int pidfd) {
#if JOBWARDEN_LINUX_FAST_PATH
    if (pidfd >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, pidfd, nullptr);
#else
    (void)pidfd;
#endif
  }

  /// Arms the timer to fire after `delay` (none: disarm). Portable mode: no-op.
  void set_timer(std::optional<std::chrono::nanoseconds> delay) {
#if JOBWARDEN_LINUX_FAST_PATH
    // Disarming a disarmed timer is the common case (no deadlines at all):
    // no system call for it.
    if (!delay && !timer_armed_) return;
    timer_armed_ = delay.has_value();
    struct itimerspec spec;
    std::memset(&spec, 0, sizeof spec);
    if (delay) {
      auto ns = delay->count() <= 0 ? 1 : delay->count();  // zero would disarm
      spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
      spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    }
    ::timerfd_settime(timer_fd_, 0, &spec, nullptr);
#else
    (void)delay;
#endif
  }

  /// Makes `fd()` readable from any thread.
  void wake() {
#if JOBWARDEN_LINUX_FAST_PATH
    std::uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
#else
    char byte = 1;
    ssize_t ignored = ::write(pipe_[1], &byte, 1);
#endif
    (void)ignored;
  }

  /// Takes what is ready without blocking.
  Ready collect() {
    Ready ready;
#if JOBWARDEN_LINUX_FAST_PATH
    epoll_event events[64];
    int n;
    do {
      n = ::epoll_wait(epoll_fd_, events, 64, 0);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; ++i) {
      void* token = events[i].data.ptr;
      if (token == wake_token()) {
        drain(wake_fd_);
        if (!use_pidfd_) {
          drain(pipe_[0]);
          ready.check_all = true;
        }
      } else if (token == timer_token()) {
        drain(timer_fd_);
      } else if (token == directory_token()) {
        ready.directory_changed = watched_name_appeared();
      } else if ((events[i].data.u64 & tag_mask) == reader_tag) {
        ready.readable.push_back(
            reinterpret_cast<void*>(static_cast<std::uintptr_t>(events[i].data.u64 & ~tag_mask)));
      } else if ((events[i].data.u64 & tag_mask) == writer_tag) {
        ready.writable.push_back(
            reinterpret_cast<void*>(static_cast<std::uintptr_t>(events[i].data.u64 & ~tag_mask)));
      } else {
        ready.exited.push_back(token);
      }
    }
    if (n == 64) ready.check_all = true;  // more may be waiting: let the caller look at everyone
#else
    drain(pipe_[0]);
    ready.check_all = true;
#endif
    return ready;
  }

 private:
  // Tokens are 8-aligned pointers: their low bits say what kind of descriptor
  // an event is for (1, 2 and 3 alone are the loop's own descriptors).
  static constexpr std::uint64_t tag_mask = 7;
  static constexpr std::uint64_t reader_tag = 4;
  static constexpr std::uint64_t writer_tag = 5;
  static void* wake_token() { return reinterpret_cast<void*>(std::uintptr_t{1}); }
  static void* timer_token() { return reinterpret_cast<void*>(std::uintptr_t{2}); }
  static void* directory_token() { return reinterpret_cast<void*>(std::uintptr_t{3}); }

#if JOBWARDEN_LINUX_FAST_PATH
  bool watched_name_appeared() {
    alignas(inotify_event) char buffer[4096];
    bool seen = false;
    for (;;) {
      ssize_t n = ::read(inotify_fd_, buffer, sizeof buffer);
      if (n <= 0) return seen;
      for (ssize_t at = 0; at < n;) {
        auto* event = reinterpret_cast<inotify_event*>(buffer + at);
        if (event->len > 0) {
          const std::string_view appeared(event->name);
          if (appeared == watched_name_ || has_suffix(appeared, watched_suffix_)) {
            seen = true;
          }
        }
        at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
  }
#endif

  [[noreturn]] void fail(const char* what) {
    int saved = errno;
    close_all();
    throw std::system_error(saved, std::system_category(),
                            std::string("jobwarden: cannot create the supervisor's ") + what);
  }

#if JOBWARDEN_LINUX_FAST_PATH
  void add_to_epoll(int fd, void* token) {
    epoll_event event;
    std::memset(&event, 0, sizeof event);
    event.events = EPOLLIN;
    event.data.ptr = token;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) fail("epoll registration");
  }
#endif

  void close_all() {
    if (pipe_[1] >= 0) SigchldRegistry::instance().remove(pipe_[1]);
    for (int* fd : {&epoll_fd_, &wake_fd_, &timer_fd_, &inotify_fd_, &pipe_[0], &pipe_[1]}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  bool use_pidfd_ = false;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int timer_fd_ = -1;
  bool timer_armed_ = false;  ///< whether the last set_timer armed it (it may have fired since)
  int inotify_fd_ = -1;
  std::string watched_name_;
  std::string watched_suffix_;
  int pipe_[2] = {-1, -1};
};

}  // namespace jobwarden::detail
