#pragma once
/// \file
/// What the running system offers, decided once per process. Linux gives
/// pidfds (exit notification and race-free waiting) and close_range (closing
/// every inherited descriptor in one call). The portable path — forced by
/// `JOBWARDEN_PORTABLE`, and what macOS or an old kernel gets — uses only
/// POSIX: fork/exec with an error pipe, a SIGCHLD self-pipe, and a close loop.

#include <cerrno>

#include <unistd.h>

#if defined(__linux__) && !defined(JOBWARDEN_PORTABLE)
#define JOBWARDEN_LINUX_FAST_PATH 1
#include <sched.h>
#include <sys/syscall.h>
#else
#define JOBWARDEN_LINUX_FAST_PATH 0
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define JOBWARDEN_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define JOBWARDEN_UNDER_SANITIZER 1
#endif
#endif
#ifndef JOBWARDEN_UNDER_SANITIZER
#define JOBWARDEN_UNDER_SANITIZER 0
#endif

namespace jobwarden::detail {

/// Kernel facilities found at run time.
struct Features {
  bool pidfd = false;        ///< pidfd_open(2) / CLONE_PIDFD (Linux 5.3)
  bool close_range = false;  ///< close_range(2) (Linux 5.9)
  bool vfork_spawn = false;  ///< clone(CLONE_VM|CLONE_VFORK): spawn cost independent of host size
};

#if JOBWARDEN_LINUX_FAST_PATH
inline int sys_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

/// pidfd_send_signal(2) (Linux 5.1, so present wherever pidfd_open is):
/// sends `sig` to the process `pidfd` refers to, never to a reused pid.
inline int sys_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
#else
  (void)pidfd;
  (void)sig;
  errno = ENOSYS;
  return -1;
#endif
}

inline int sys_close_range(unsigned first, unsigned last) {
#ifdef SYS_close_range
  return static_cast<int>(::syscall(SYS_close_range, first, last, 0));
#else
  (void)first;
  (void)last;
  errno = ENOSYS;
  return -1;
#endif
}
#endif

/// The features of this process's kernel (probed once, thread-safe).
inline const Features& features() {
  static const Features probed = [] {
    Features f;
#if JOBWARDEN_LINUX_FAST_PATH
    int fd = sys_pidfd_open(static_cast<int>(::getpid()));
    if (fd >= 0) {
      f.pidfd = true;
      ::close(fd);
    }
    // An empty range far above any descriptor: succeeds iff the call exists.
    f.close_range = sys_close_range(~0U - 1, ~0U - 1) == 0;
    // Sanitizer runtimes intercept calls made in a CLONE_VM child and may
    // corrupt the parent's shadow state, so sanitized builds use fork.
    f.vfork_spawn = !JOBWARDEN_UNDER_SANITIZER;
#endif
    return f;
  }();
  return probed;
}

}  // namespace jobwarden::detail
