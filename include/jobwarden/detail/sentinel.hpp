#pragma once
/// \file
/// The orphan guard: a tiny process per supervisor that kills every running
/// worker's process tree when the supervisor dies, however it dies (SIGKILL
/// included), with no action by anyone.
///
/// Why a sentinel and not PR_SET_PDEATHSIG: the death signal fires when the
/// *thread* that spawned a worker exits (a host that submits from a short-lived
/// thread would lose its workers), and it reaches only the direct child, never
/// grandchildren. The sentinel (erlexec's approach) is forked once, holds one
/// end of a socket pair, and learns each worker's pid and start time as it
/// starts and ends. When the supervisor dies the kernel closes its end; the
/// sentinel reads EOF and sends SIGKILL to the process group of every worker
/// still proven (by pid and start time) to be the one recorded, then exits.
///
/// The sentinel is a fork without exec, so after the fork it uses only
/// async-signal-safe system calls and memory prepared before the fork.

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <cerrno>
#include <cstring>
#include <vector>

#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/spawn.hpp"

namespace jobwarden::detail {

/// One message from the supervisor to its sentinel.
struct SentinelMessage {
  int op;     ///< 1: a worker started; 2: a worker was reaped
  int pid;    ///< the worker's pid, which is also its process-group id
  unsigned long long start_time;
  long cgroup_serial;  ///< the worker's cgroup `w<serial>` under the tree, or -1
};

/// The supervisor's handle on its sentinel. Move-only; the destructor lets the
/// sentinel exit (EOF with nothing recorded) and reaps it.
class Sentinel {
 public:
  /// How many workers one sentinel tracks at once; more are still supervised,
  /// but not guarded against the supervisor's death (reported by `add`).
  static constexpr std::size_t capacity = 65536;

  Sentinel() = default;
  Sentinel(const Sentinel&) = delete;
  Sentinel& operator=(const Sentinel&) = delete;
  ~Sentinel() { stop(); }

  /// Forks the sentinel. Returns false (with errno set) when it cannot; the
  /// supervisor then runs without the guard rather than not at all.
  bool start(const std::string& cgroup_parent) {
    int sockets[2];
#if defined(SOCK_CLOEXEC)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) return false;
#else
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) return false;
    ::fcntl(sockets[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(sockets[1], F_SETFD, FD_CLOEXEC);
#endif
    // Memory the child uses, allocated before the fork.
    std::vector<SentinelMessage> table(capacity);
    int max_fd = max_descriptor_bound();
    bool use_close_range = features().close_range;
    pid_t pid;
    {
      SignalBlock block;
      pid = ::fork();
      if (pid == 0) {
        ::close(sockets[0]);
        run(sockets[1], table.data(), max_fd, use_close_range, cgroup_parent.c_str());
      }
    }
    int saved = errno;
    ::close(sockets[1]);
    if (pid < 0) {
      ::close(sockets[0]);
      errno = saved;
      return false;
    }
    pid_ = pid;
    fd_ = sockets[0];
    return true;
  }

  /// Whether the guard is running.
  bool active() const { return fd_ >= 0; }

  /// The sentinel's pid (0 when not running).
  int pid() const { return pid_; }

  /// Records a started worker. False if the sentinel is gone or full.
  bool add(int pid, unsigned long long start_time, long cgroup_serial) {
    return send({1, pid, start_time, cgroup_serial});
  }

  /// Forgets a reaped worker.
  bool remove(int pid) { return send({2, pid, 0, -1}); }

  /// Ends the sentinel and reaps it. It kills whatever is still recorded, so
  /// a supervisor calls this after reaping (and so forgetting) its workers.
  void stop() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (pid_ > 0) {
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = 0;
  }

 private:
  bool send(SentinelMessage message) {
    if (fd_ < 0) return false;
    const char* data = reinterpret_cast<const char*>(&message);
    std::size_t left = sizeof message;
    while (left > 0) {
      ssize_t n = ::send(fd_, data, left, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      left -= static_cast<std::size_t>(n);
    }
    return true;
  }

  /// The sentinel's whole life. Never returns.
  [[noreturn]] static void run(int fd, SentinelMessage* table, int max_fd, bool use_close_range,
                               const char* cgroup_parent) {
    // Out of the host's process group, so a Ctrl-C or a group kill aimed at
    // the host does not take the guard down with it.
    ::setpgid(0, 0);
    struct sigaction ignore;
    std::memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2}) {
      ::sigaction(sig, &ignore, nullptr);
    }
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
#if defined(__linux__)
    ::prctl(PR_SET_NAME, "jobwarden-guard", 0, 0, 0);
#endif
    // Keep only our socket (it may sit anywhere: move it to 3 first).
    if (fd != 3) {
      if (::dup2(fd, 3) < 0) ::_exit(1);
      fd = 3;
    }
    close_inherited_fds(max_fd, 3, use_close_range);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      if (devnull > 3) ::close(devnull);
    }

    std::size_t used = 0;
    SentinelMessage message;
    std::size_t have = 0;
    for (;;) {
      ssize_t n = ::read(fd, reinterpret_cast<char*>(&message) + have, sizeof message - have);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF: the supervisor is gone (or let us go)
      have += static_cast<std::size_t>(n);
      if (have < sizeof message) continue;
      have = 0;
      if (message.op == 1 && used < capacity) {
        table[used++] = message;
      } else if (message.op == 2) {
        for (std::size_t i = 0; i < used; ++i) {
          if (table[i].pid == message.pid) {
            table[i] = table[--used];
            break;
          }
        }
      }
    }
    for (std::size_t i = 0; i < used; ++i) {
      // Only a leader proven to be the recorded process: never a reused pid.
      if (is_same_process(table[i].pid, table[i].start_time)) ::kill(-table[i].pid, SIGKILL);
      // The worker's cgroup is ours alone: kill everything in it, escapees too.
      if (table[i].cgroup_serial >= 0 && cgroup_parent[0] != '\0') {
        char path[4096];
        std::size_t n = 0;
        for (const char* p = cgroup_parent; *p != '\0' && n < sizeof path - 64; ++p) path[n++] = *p;
        const char suffix[] = "/w";
        for (const char* p = suffix; *p != '\0'; ++p) path[n++] = *p;
        n += format_unsigned(static_cast<unsigned long>(table[i].cgroup_serial), path + n);
        const char kill_file[] = "/cgroup.kill";
        for (const char* p = kill_file; *p != '\0'; ++p) path[n++] = *p;
        path[n] = '\0';
        write_control(path, "1");
      }
    }
    ::_exit(0);
  }

  /// Decimal digits of `value` into `out`; returns their count. Async-signal-safe.
  static std::size_t format_unsigned(unsigned long value, char* out) {
    char digits[24];
    std::size_t count = 0;
    do {
      digits[count++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    for (std::size_t i = 0; i < count; ++i) out[i] = digits[count - 1 - i];
    return count;
  }

  int fd_ = -1;
  int pid_ = 0;
};

}  // namespace jobwarden::detail
