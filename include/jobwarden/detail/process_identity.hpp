#pragma once
/// \file
/// Proving that a pid still names the process we recorded: a pid alone can be
/// reused, so every record keeps the kernel's start time of the process too.
/// Linux reads `/proc/<pid>/stat`; macOS asks `sysctl(KERN_PROC_PID)`.

#include <optional>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

namespace jobwarden::detail {

/// The process's start time in an opaque, monotonic unit (clock ticks since
/// boot on Linux, microseconds since the epoch on macOS); `std::nullopt` when
/// no such process exists or it cannot be read.
inline std::optional<unsigned long long> process_start_time(int pid) {
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
  // Field 3 is the state; starttime is field 22, i.e. the 20th after the ')'.
  for (int field = 3; field < 22; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
    if (*p == '\0') return std::nullopt;
  }
  while (*p == ' ') ++p;
  char* end = nullptr;
  unsigned long long value = std::strtoull(p, &end, 10);
  if (end == p) return std::nullopt;
  return value;
#elif defined(__APPLE__)
  struct kinfo_proc info;
  size_t size = sizeof info;
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, pid};
  if (::sysctl(mib, 4, &info, &size, nullptr, 0) != 0 || size == 0) return std::nullopt;
  const auto& tv = info.kp_proc.p_starttime;
  return static_cast<unsigned long long>(tv.tv_sec) * 1000000ULL +
         static_cast<unsigned long long>(tv.tv_usec);
#else
  return std::nullopt;
#endif
}

/// Whether `pid` is alive and is the very process that started at `start_time`
/// (a zombie counts as alive until reaped). With `start_time == 0` (unknown),
/// identity cannot be proven and the answer is false.
inline bool is_same_process(int pid, unsigned long long start_time) {
  if (pid <= 0 || start_time == 0) return false;
  auto now = process_start_time(pid);
  return now && *now == start_time;
}

/// Whether a process with this pid exists at all (it may be someone else's).
inline bool pid_exists(int pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace jobwarden::detail
