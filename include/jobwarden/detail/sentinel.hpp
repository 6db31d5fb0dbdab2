#pragma once
/// \file
/// The orphan guard: a tiny process per supervisor that kills every running
/// worker's process tree when the supervisor dies, however it dies (SIGKILL
/// included), with no action by anyone.
///
/// Why a sentinel and not PR_SET_PDEATHSIG: the death signal fires when the
/// *thread* that spawned a worker exits (a host that submits from a short-lived
/// thread would lose its workers), and it reaches only the direct child, never
/// grandchildren. The sentinel (erlexec's approach) is forked once and holds
/// one end of a socket pair. The running workers (pid, start time, cgroup)
/// sit in a table in an anonymous shared mapping, which the supervisor
/// updates without a system call and without waking the sentinel. When the
/// supervisor dies the kernel closes its end of the socket; the sentinel
/// reads EOF and sends SIGKILL to the process group of every worker
/// still proven (by pid and start time) to be the one recorded, then exits.
///
/// The sentinel is a fork without exec, so after the fork it uses only
/// async-signal-safe system calls and memory prepared before the fork.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/spawn.hpp"

namespace jobwarden::detail {

/// One worker as the sentinel sees it: a slot in memory shared with the
/// supervisor. The supervisor fills the fields, then publishes the slot by
/// setting `state` to 1 (release); the sentinel reads only published slots.
struct SentinelSlot {
  int state;  ///< 0: free; 1: a running worker
  int pid;    ///< the worker's pid, which is also its process-group id
  unsigned long long start_time;
  long cgroup_serial;  ///< the worker's cgroup `w<serial>` under the tree, or -1
};

/// The supervisor's handle on its sentinel. Move-only; the destructor lets the
/// sentinel exit (EOF with nothing recorded) and reaps it.
///
/// Recording a worker costs no system call and never wakes the sentinel: the
/// table lives in a shared anonymous mapping, and the sentinel sleeps in one
/// `read` until the supervisor's end of the socket closes.
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
    // The table and the high-water mark, shared with the child (only the
    // pages of slots in use are ever touched, so only they cost memory).
    const std::size_t bytes = mapping_bytes();
    void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return false;
    auto* shared = static_cast<Shared*>(memory);
    auto* slots = reinterpret_cast<SentinelSlot*>(static_cast<char*>(memory) + sizeof(Shared));
    int sockets[2];
#if defined(SOCK_CLOEXEC)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
#else
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) {
#endif
      int saved = errno;
      ::munmap(memory, bytes);
      errno = saved;
      return false;
    }
#if !defined(SOCK_CLOEXEC)
    ::fcntl(sockets[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(sockets[1], F_SETFD, FD_CLOEXEC);
#endif
    int max_fd = max_descriptor_bound();
    bool use_close_range = features().close_range;
    pid_t pid;
    {
      SignalBlock block;
      pid = ::fork();
      if (pid == 0) {
        ::close(sockets[0]);
        run(sockets[1], shared, slots, max_fd, use_close_range, cgroup_parent.c_str());
      }
    }
    int saved = errno;
    ::close(sockets[1]);
    if (pid < 0) {
      ::close(sockets[0]);
      ::munmap(memory, bytes);
      errno = saved;
      return false;
    }
    pid_ = pid;
    fd_ = sockets[0];
    shared_ = shared;
    slots_ = slots;
    return true;
  }

  /// Whether the guard is running.
  bool active() const { return fd_ >= 0; }

  /// The sentinel's pid (0 when not running).
  int pid() const { return pid_; }

  /// Records a started worker; returns its slot for `remove`, or -1 if the
  /// sentinel is gone or full.
  long add(int pid, unsigned long long start_time, long cgroup_serial) {
    if (fd_ < 0) return -1;
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else if (next_unused_ < capacity) {
      index = static_cast<std::uint32_t>(next_unused_++);
      // Published before the slot can be: the sentinel scans up to here.
      __atomic_store_n(&shared_->high_water, static_cast<std::uint32_t>(next_unused_), __ATOMIC_RELEASE);
    } else {
      return -1;
    }
    SentinelSlot& slot = slots_[index];
    slot.pid = pid;
    slot.start_time = start_time;
    slot.cgroup_serial = cgroup_serial;
    __atomic_store_n(&slot.state, 1, __ATOMIC_RELEASE);
    return static_cast<long>(index);
  }

  /// Forgets a reaped worker by the slot `add` gave it (a slot, not a pid:
  /// the pid of a reaped worker may already belong to a new one).
  bool remove(long slot) {
    if (slot < 0 || slots_ == nullptr || static_cast<std::size_t>(slot) >= next_unused_) return false;
    auto index = static_cast<std::uint32_t>(slot);
    if (__atomic_load_n(&slots_[index].state, __ATOMIC_RELAXED) != 1) return false;
    __atomic_store_n(&slots_[index].state, 0, __ATOMIC_RELEASE);
    try {
      free_.push_back(index);
    } catch (...) {
      // The slot is lost to reuse, not to safety: it is free (state 0).
    }
    return true;
  }

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
    if (shared_ != nullptr) ::munmap(shared_, mapping_bytes());
    shared_ = nullptr;
    slots_ = nullptr;
    free_.clear();
    next_unused_ = 0;
  }

 private:
  struct Shared {
    std::uint32_t high_water;  ///< slots at or above this were never used
    char padding[60];
  };

  /// The shared mapping: `Shared`, then the table.
  static constexpr std::size_t mapping_bytes() { return sizeof(Shared) + capacity * sizeof(SentinelSlot); }

  /// The sentinel's whole life. Never returns.
  [[noreturn]] static void run(int fd, const Shared* shared, const SentinelSlot* slots, int max_fd,
                               bool use_close_range, const char* cgroup_parent) {
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

    // Sleep until the supervisor is gone (or lets us go): EOF.
    for (;;) {
      char ignored[64];
      ssize_t n = ::read(fd, ignored, sizeof ignored);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
    }
    const std::uint32_t used = __atomic_load_n(&shared->high_water, __ATOMIC_ACQUIRE);
    for (std::uint32_t i = 0; i < used && i < capacity; ++i) {
      if (__atomic_load_n(&slots[i].state, __ATOMIC_ACQUIRE) != 1) continue;
      const SentinelSlot& slot = slots[i];
      // Only a leader proven to be the recorded process: never a reused pid.
      if (is_same_process(slot.pid, slot.start_time)) ::kill(-slot.pid, SIGKILL);
      // The worker's cgroup is ours alone: kill everything in it, escapees too.
      if (slot.cgroup_serial >= 0 && cgroup_parent[0] != '\0') {
        char path[4096];
        std::size_t n = 0;
        for (const char* p = cgroup_parent; *p != '\0' && n < sizeof path - 64; ++p) path[n++] = *p;
        const char suffix[] = "/w";
        for (const char* p = suffix; *p != '\0'; ++p) path[n++] = *p;
        n += format_unsigned(static_cast<unsigned long>(slot.cgroup_serial), path + n);
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
  Shared* shared_ = nullptr;  // the start of the shared mapping
  SentinelSlot* slots_ = nullptr;
  std::vector<std::uint32_t> free_;  // published-then-freed slots, for reuse
  std::size_t next_unused_ = 0;
};

}  // namespace jobwarden::detail
