#pragma once
/// \file
/// Proving that a pid still names the process we recorded (a `ProcessIdentity`):
/// a pid alone can be reused, so every record keeps the kernel's start time of
/// the process too.
/// Linux reads `/proc/<pid>/stat`; macOS asks `sysctl(KERN_PROC_PID)`.

#include <optional>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "jobwarden/process_identity.hpp"

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

namespace jobwarden::detail {

/// What `/proc/<pid>/stat` (or `sysctl` on macOS) says of a process.
struct ProcessSnapshot {
  unsigned long long start_time = 0;  ///< opaque, monotonic (see `process_start_time`)
  bool zombie = false;                ///< it has exited and waits to be reaped
};

/// Reads the start time and run state of `pid`; `std::nullopt` when no such
/// process exists or it cannot be read.
inline std::optional<ProcessSnapshot> process_snapshot(int pid) {
  if (pid <= 0) return std::nullopt;
#if defined(__linux__)
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and ')': fields resume after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return std::nullopt;
  ++p;
  ProcessSnapshot snapshot;
  while (*p == ' ') ++p;
  // Field 3 is the state: Z (zombie) or X (dead, being reaped).
  snapshot.zombie = *p == 'Z' || *p == 'X';
  // starttime is field 22, i.e. the 20th after the ')'.
  for (int field = 3; field < 22; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
    if (*p == '\0') return std::nullopt;
  }
  while (*p == ' ') ++p;
  char* end = nullptr;
  snapshot.start_time = std::strtoull(p, &end, 10);
  if (end == p) return std::nullopt;
  return snapshot;
#elif defined(__APPLE__)
  struct kinfo_proc info;
  size_t size = sizeof info;
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, pid};
  if (::sysctl(mib, 4, &info, &size, nullptr, 0) != 0 || size == 0) return std::nullopt;
  const auto& tv = info.kp_proc.p_starttime;
  ProcessSnapshot snapshot;
  snapshot.start_time = static_cast<unsigned long long>(tv.tv_sec) * 1000000ULL +
                        static_cast<unsigned long long>(tv.tv_usec);
  snapshot.zombie = info.kp_proc.p_stat == SZOMB;
  return snapshot;
#else
  return std::nullopt;
#endif
}

/// The process's start time in an opaque, monotonic unit (clock ticks since
/// boot on Linux, microseconds since the epoch on macOS); `std::nullopt` when
/// no such process exists or it cannot be read.
inline std::optional<unsigned long long> process_start_time(int pid) {
  auto snapshot = process_snapshot(pid);
  if (!snapshot) return std::nullopt;
  return snapshot->start_time;
}

/// Whether `pid` is alive and is the very process that started at `start_time`
/// (a zombie counts: it still pins its pid and process group, so a zombie
/// leader's group can still be signalled). With `start_time == 0` (unknown),
/// identity cannot be proven and the answer is false.
inline bool is_same_process(int pid, unsigned long long start_time) {
  if (pid <= 0 || start_time == 0) return false;
  auto now = process_start_time(pid);
  return now && *now == start_time;
}

/// `is_same_process` for a recorded identity.
inline bool is_same_process(const ProcessIdentity& process) {
  return is_same_process(process.pid, process.start_time);
}

/// The identity of the live process `pid` (start time 0 when it cannot be read).
inline ProcessIdentity identify_process(int pid) {
  return ProcessIdentity{pid, process_start_time(pid).value_or(0)};
}

/// Whether `pid` is the process that started at `start_time` *and still
/// runs*: a zombie does not (it has exited, and under a parent that reaps
/// adopted orphans late, or never, it would otherwise read as running
/// forever). For "is it running?"; `is_same_process` for "may I signal it?".
inline bool is_running_process(int pid, unsigned long long start_time) {
  if (pid <= 0 || start_time == 0) return false;
  auto now = process_snapshot(pid);
  return now && now->start_time == start_time && !now->zombie;
}

/// `is_running_process` for a recorded identity.
inline bool is_running_process(const ProcessIdentity& process) {
  return is_running_process(process.pid, process.start_time);
}

/// Whether a process with this pid exists at all (it may be someone else's).
inline bool pid_exists(int pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace jobwarden::detail
