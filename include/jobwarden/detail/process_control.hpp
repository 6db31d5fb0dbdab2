#pragma once
/// \file
/// Waiting for and signalling a worker's process tree: the one owner of
/// "is it gone", "kill the group" and "reap it".
///
/// The rule that keeps every signal on the right process: a worker's pid (and
/// so its process-group id) stays reserved until we reap it. We therefore look
/// at an exit with `waitid(WNOWAIT)` first, kill what is left of the group
/// while the zombie still pins the id, and only then reap.

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "jobwarden/detail/platform.hpp"
#include "jobwarden/launch_plan.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

namespace jobwarden::detail {

/// How a reaped process ended (public, for launchers: launch_plan.hpp).
using ExitStatus = jobwarden::ExitStatus;

/// Whether our child `pid` has exited (it stays a zombie: nothing is reaped).
inline bool has_exited(int pid) {
  siginfo_t info;
  info.si_pid = 0;
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return errno == ECHILD;  // not ours any more (the host reaped it): treat as gone
  return info.si_pid == pid;
}

/// Sends `sig` to the whole process group `pgid`. Call only while the group
/// leader is unreaped (see the file comment). ESRCH (nothing left) is fine.
inline bool signal_group(int pgid, int sig) {
  if (pgid <= 1) return false;  // never -1 (everyone) or 0 (our own group)
  return ::kill(-pgid, sig) == 0;
}

inline void fill_usage(const struct rusage& usage, ExitStatus& out) {
  out.user_cpu = std::chrono::seconds(usage.ru_utime.tv_sec) +
                 std::chrono::microseconds(usage.ru_utime.tv_usec);
  out.system_cpu = std::chrono::seconds(usage.ru_stime.tv_sec) +
                   std::chrono::microseconds(usage.ru_stime.tv_usec);
#if defined(__APPLE__)
  out.max_rss_kib = usage.ru_maxrss / 1024;  // bytes on macOS
#else
  out.max_rss_kib = usage.ru_maxrss;  // KiB on Linux
#endif
}

#if JOBWARDEN_LINUX_FAST_PATH
/// How our child `pid` ended, with its resource usage, leaving it a zombie
/// (so its pid and process group stay pinned until `reap`). Linux's waitid
/// system call takes a rusage, which WNOWAIT fills without reaping (glibc's
/// wrapper does not pass it). 1: it exited (`out` filled); 0: still running;
/// -1: not ours any more (the host reaped it).
inline int peek_exit(int pid, ExitStatus& out) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  struct rusage usage;
  std::memset(&usage, 0, sizeof usage);
  long rc;
  do {
    rc = ::syscall(SYS_waitid, P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT, &usage);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return errno == ECHILD ? -1 : 0;
  if (info.si_pid != pid) return 0;
  switch (info.si_code) {
    case CLD_EXITED: out.exit_code = info.si_status; break;
    case CLD_KILLED: out.signal = info.si_status; break;
    case CLD_DUMPED:
      out.signal = info.si_status;
      out.core_dumped = true;
      break;
    default: return 0;
  }
  fill_usage(usage, out);
  return 1;
}
#endif

/// Reaps `pid`, which must have exited; fills its status and resource usage.
/// Returns false when the pid was not ours to reap (ECHILD: someone else did).
inline bool reap(int pid, ExitStatus& out) {
  int status = 0;
  struct rusage usage;
  std::memset(&usage, 0, sizeof usage);
  pid_t rc;
  do {
    rc = ::wait4(pid, &status, 0, &usage);
  } while (rc < 0 && errno == EINTR);
  if (rc != pid) return false;
  if (WIFEXITED(status)) {
    out.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
#ifdef WCOREDUMP
    out.core_dumped = WCOREDUMP(status);
#endif
  }
  fill_usage(usage, out);
  return true;
}

}  // namespace jobwarden::detail
