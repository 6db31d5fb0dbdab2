#pragma once
/// \file
/// The orphan guard: a tiny process per supervisor that kills every running
/// worker's process tree when the supervisor dies, however it dies (SIGKILL
/// included), with no action by anyone.
///
/// Why a guard process and not PR_SET_PDEATHSIG: the death signal fires when the
/// *thread* that spawned a worker exits (a host that submits from a short-lived
/// thread would lose its workers), and it reaches only the direct child, never
/// grandchildren. The orphan guard (erlexec's approach) is started once and holds
/// one end of a socket pair whose other end only the supervisor has (the
/// lifeline of `lifeline.hpp`, the mechanism every jobwarden guard shares). The running
/// workers (pid, start time, cgroup) sit in a table of fixed-width text lines
/// in a shared mapping, which the supervisor updates without a system call
/// and without waking the guard. When the supervisor dies the kernel
/// closes its end of the socket; the guard reads EOF and sends SIGKILL to the
/// process group of every worker still proven (by pid and start time) to be
/// the one recorded, writes `cgroup.kill` of its cgroup, then that of the
/// supervisor's whole cgroup tree (which also takes a worker started but not
/// yet recorded), then exits.
///
/// Two ways to start it:
/// - Linux: `/bin/sh` running a short script, started like a worker (vfork
///   style, so the cost does not grow with the host's size), with the table
///   in a memfd as its standard output. It shares nothing with the host's
///   memory: a forked guard costs a big host a page-table copy per GiB at
///   construction, and then keeps a copy-on-write copy of every page the host
///   rewrites. It does not share the host's address space either (a
///   `CLONE_VM` guard would be killed with the host by the OOM killer, which
///   kills every process sharing a victim's memory).
/// - Otherwise (macOS, `JOBWARDEN_PORTABLE`, no `/bin/sh`): a fork of the
///   host that reads the same table from the inherited mapping, using only
///   async-signal-safe system calls after the fork.

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

#include <atomic>
#include <charconv>
#include <iterator>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/lifeline.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/spawn.hpp"

namespace jobwarden::detail {

/// Whether the supervisor may start its guard as an exec'd `/bin/sh` (Linux
/// fast path; the default) rather than as a fork of the host. A switch for
/// tests, which run both guards.
inline std::atomic<bool>& guard_by_exec() {
  static std::atomic<bool> allowed{JOBWARDEN_LINUX_FAST_PATH != 0};
  return allowed;
}

/// The guard's script. `$1` is the cgroup tree (empty: none); standard input
/// is the socket, standard output the table. A line on the socket ("q") means
/// the supervisor let it go with nothing recorded; EOF means the supervisor is
/// gone. The table's first line is `jobwarden-guard-table <lines>`, then one
/// line per slot: `<state> <pid> <start time> <cgroup serial>`. Recorded
/// groups are killed first (a process that left its worker's cgroup is
/// reached only through its group, while the leader is still provable), then
/// the whole tree (see `OrphanGuard::start`). Only builtins
/// run, so nothing is forked, and no environment is read. `/proc/<pid>/stat`
/// is read to its last line: a command name may contain a newline. No `trap`:
/// the guard's signals are ignored from exec on, and a shell cannot undo that.
inline const char* guard_script() {
  return "echo jobwarden-guard >/proc/self/comm\n"
         "cgroups=$1\n"
         "set -f\n"
         "read -r word && [ \"$word\" = q ] && exit 0\n"
         "exec <&1\n"
         "if read -r magic used && [ \"$magic\" = jobwarden-guard-table ]; then\n"
         "  i=0\n"
         "  while [ \"$i\" -lt \"$used\" ] && read -r state pid start serial; do\n"
         "    i=$((i + 1))\n"
         "    [ \"$state\" = 1 ] || continue\n"
         "    case $pid in ''|*[!0-9]*|0|1) continue ;; esac\n"
         "    stat=\n"
         "    { while IFS= read -r line; do stat=$line; done; } <\"/proc/$pid/stat\"\n"
         "    rest=${stat##*) }\n"
         "    set -- $rest\n"
         "    [ \"$start\" != 0 ] && [ \"${20}\" = \"$start\" ] && kill -s KILL -- \"-$pid\"\n"
         "    [ -n \"$cgroups\" ] && [ \"$serial\" -ge 0 ] && echo 1 >\"$cgroups/w$serial/cgroup.kill\"\n"
         "  done\n"
         "fi\n"
         "[ -n \"$cgroups\" ] && echo 1 >\"$cgroups/cgroup.kill\"\n"
         "exit 0\n";
}

/// The supervisor's handle on its orphan guard. Move-only; the destructor lets the
/// guard exit and reaps it.
///
/// Recording a worker costs no system call and never wakes the guard: the
/// table lives in a shared mapping, and the guard sleeps in one `read`
/// until the supervisor's end of the socket closes.
class OrphanGuard {
 public:
  /// How many workers one guard tracks at once; more are still supervised,
  /// but not guarded against the supervisor's death (reported by `add`).
  static constexpr std::size_t capacity = 65536;
  /// Bytes per table line (a slot, or the header), newline included.
  static constexpr std::size_t line_bytes = 64;

  /// How the running guard was started.
  enum class Kind { none, exec, fork };

  OrphanGuard() = default;
  OrphanGuard(const OrphanGuard&) = delete;
  OrphanGuard& operator=(const OrphanGuard&) = delete;
  ~OrphanGuard() { stop(); }

  /// Starts the guard. Returns false (with errno set) when it cannot; the
  /// supervisor then runs without the guard rather than not at all.
  ///
  /// `cgroup_parent` is the supervisor's own cgroup tree, where every worker
  /// is born or joins before exec (empty: none). The guard itself stays
  /// outside it (it is started into the supervisor's cgroup, the tree's
  /// parent), so when the supervisor dies it kills the whole tree too: a
  /// worker the supervisor had not recorded yet — killed between `clone` and
  /// `add` — dies with the rest. (A spawning child holds a copy of the
  /// supervisor's end of the socket until it execs, so the guard cannot see
  /// EOF before such a worker is in its cgroup.)
  bool start(const std::string& cgroup_parent) {
    // The table: only the pages of lines in use are ever touched, so only
    // they cost memory. A memfd where the guard is a separate program.
    const std::size_t bytes = mapping_bytes();
    int table_fd = -1;
#if JOBWARDEN_LINUX_FAST_PATH && defined(SYS_memfd_create)
    if (guard_by_exec().load(std::memory_order_relaxed)) {
      // MFD_CLOEXEC | MFD_NOEXEC_SEAL (Linux 6.3, which warns without it and
      // may refuse an executable memfd); older kernels reject the second flag.
      table_fd = static_cast<int>(::syscall(SYS_memfd_create, "jobwarden-guard", 0x1U | 0x8U));
      if (table_fd < 0 && errno == EINVAL) {
        table_fd = static_cast<int>(::syscall(SYS_memfd_create, "jobwarden-guard", 0x1U));
      }
      if (table_fd >= 0 && ::ftruncate(table_fd, static_cast<off_t>(bytes)) != 0) {
        ::close(table_fd);
        table_fd = -1;
      }
    }
#endif
    void* memory = table_fd >= 0 ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, table_fd, 0)
                                 : ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      int saved = errno;
      if (table_fd >= 0) ::close(table_fd);
      errno = saved;
      return false;
    }
    table_ = static_cast<char*>(memory);
    init_header();

    if (!lifeline_.open()) {
      int saved = errno;
      if (table_fd >= 0) ::close(table_fd);
      release_table();
      errno = saved;
      return false;
    }
    int error_number = 0;
    if (table_fd >= 0) {
      if (start_exec(table_fd, cgroup_parent, error_number)) kind_ = Kind::exec;
      ::close(table_fd);
      if (kind_ == Kind::none && !lifeline_.open()) {  // the failed spawn closed it
        error_number = errno;
        release_table();
        errno = error_number;
        return false;
      }
    }
    if (kind_ == Kind::none) {
      if (start_fork(cgroup_parent, error_number)) kind_ = Kind::fork;
    }
    if (kind_ == Kind::none) {
      lifeline_.finish(false);
      release_table();
      errno = error_number;
      return false;
    }
    return true;
  }

  /// Whether the guard is running.
  bool active() const { return lifeline_.active(); }

  /// How the guard was started (`none` when it is not running).
  Kind kind() const { return kind_; }

  /// The guard's pid (0 when not running).
  int pid() const { return lifeline_.pid(); }

  /// Records a started worker; returns its guard slot for `remove`, or -1 if the
  /// guard is gone or full.
  long add(int pid, unsigned long long start_time, long cgroup_serial) {
    if (!lifeline_.active()) return -1;
    std::uint32_t index;
    bool fresh = false;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else if (next_unused_ < capacity) {
      index = static_cast<std::uint32_t>(next_unused_++);
      fresh = true;
    } else {
      return -1;
    }
    char* line = slot_line(index);
    // The fields first, under state '0'; then the state, which publishes it.
    char text[line_bytes];
    std::memset(text, ' ', sizeof text);
    char* end = text + line_bytes - 1;
    char* p = std::to_chars(text + 2, end, pid).ptr;  // "<state> " comes first
    p = std::to_chars(p + 1, end, start_time).ptr;
    std::to_chars(p + 1, end, cgroup_serial);
    text[line_bytes - 1] = '\n';
    std::memcpy(line + 1, text + 1, line_bytes - 1);
    if (fresh) {
      line[0] = '0';
      write_count(next_unused_);  // the guard reads this many lines
    }
    __atomic_store_n(&line[0], '1', __ATOMIC_RELEASE);
    ++in_use_;
    return static_cast<long>(index);
  }

  /// `add` for a process proven by pid and start time.
  long add(const ProcessIdentity& process, long cgroup_serial) {
    return add(process.pid, process.start_time, cgroup_serial);
  }

  /// Forgets a reaped worker by the guard slot `add` gave it (a slot, not a pid:
  /// the pid of a reaped worker may already belong to a new one).
  bool remove(long slot) {
    if (slot < 0 || table_ == nullptr || static_cast<std::size_t>(slot) >= next_unused_) return false;
    auto index = static_cast<std::uint32_t>(slot);
    char* line = slot_line(index);
    if (__atomic_load_n(&line[0], __ATOMIC_RELAXED) != '1') return false;
    __atomic_store_n(&line[0], '0', __ATOMIC_RELEASE);
    --in_use_;
    try {
      free_.push_back(index);
    } catch (...) {
      // The slot is lost to reuse, not to safety: it is free (state 0).
    }
    return true;
  }

  /// Ends the guard and reaps it. It kills whatever is still recorded, so
  /// a supervisor calls this after reaping (and so forgetting) its workers;
  /// with nothing recorded it is told so and exits without reading the table.
  void stop() {
    // Only the supervisor itself lets the guard go (`Lifeline::finish`).
    lifeline_.finish(in_use_ == 0);
    kind_ = Kind::none;
    release_table();
    free_.clear();
    next_unused_ = 0;
    in_use_ = 0;
  }

 private:
  static constexpr std::size_t mapping_bytes() { return (capacity + 1) * line_bytes; }
  static constexpr char magic[] = "jobwarden-guard-table";
  static constexpr std::size_t count_offset = 24;  // 8-aligned, after the magic
  static constexpr std::size_t count_bytes = 8;    // up to 99,999,999 lines
  static_assert(capacity <= 99999999, "the header's count has 8 digits");
  static_assert(sizeof magic < count_offset, "the magic and a space come before the count");
  char* slot_line(std::size_t index) const { return table_ + (index + 1) * line_bytes; }

  void release_table() {
    if (table_ != nullptr) ::munmap(table_, mapping_bytes());
    table_ = nullptr;
  }

  /// The header line: the magic, then the line count right-aligned in the
  /// 8 bytes at `count_offset` (see `write_count`).
  void init_header() {
    char text[line_bytes];
    std::memset(text, ' ', sizeof text);
    std::memcpy(text, magic, sizeof magic - 1);
    text[line_bytes - 1] = '\n';
    std::memcpy(table_, text, sizeof text);
    write_count(0);
  }

  /// Stores the line count at once (aligned, atomic), so a supervisor killed
  /// mid-update never leaves a torn count.
  void write_count(std::size_t lines) {
    char digits[count_bytes];
    std::memset(digits, ' ', sizeof digits);
    char formatted[count_bytes];
    char* end = std::to_chars(formatted, formatted + count_bytes, lines).ptr;
    const auto n = static_cast<std::size_t>(end - formatted);
    std::memcpy(digits + count_bytes - n, formatted, n);
    std::uint64_t word;
    std::memcpy(&word, digits, sizeof word);
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(table_ + count_offset), word, __ATOMIC_RELEASE);
  }

  /// `/bin/sh` with the script, started through the lifeline (stdin the
  /// socket, its own process group, in `/`, the guard signals ignored from
  /// exec on): stdout the table, stderr /dev/null. False with
  /// `error_number` set (the lifeline is then closed).
  bool start_exec(int table_fd, const std::string& cgroup_parent, int& error_number) {
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
      error_number = errno;
      lifeline_.finish(false);
      return false;
    }
    SpawnPlan plan;
    plan.path = "/bin/sh";
    plan.argv = {"jobwarden-guard", "-c", guard_script(), "jobwarden-guard", cgroup_parent};
    plan.stdio[1] = table_fd;
    plan.stdio[2] = devnull;
    plan.max_fd = features().close_range ? 0 : max_descriptor_bound();
    int pid = lifeline_.spawn(std::move(plan));
    error_number = errno;
    ::close(devnull);
    return pid > 0;
  }

  /// A fork of the host that keeps the lifeline's guard end and runs `run`.
  bool start_fork(const std::string& cgroup_parent, int& error_number) {
    int max_fd = max_descriptor_bound();
    bool use_close_range = features().close_range;
    const char* table = table_;
    const int guard_end = lifeline_.guard_end();
    const int owner_end = lifeline_.owner_end();
    pid_t pid;
    {
      SignalBlock block;
      pid = ::fork();
      if (pid == 0) {
        ::close(owner_end);
        run(guard_end, table, max_fd, use_close_range, cgroup_parent.c_str());
      }
    }
    if (pid < 0) {
      error_number = errno;
      return false;
    }
    lifeline_.adopt(pid);
    return true;
  }

  /// The forked guard's whole life: what the script does. Never returns.
  [[noreturn]] static void run(int fd, const char* table, int max_fd, bool use_close_range,
                               const char* cgroup_parent) {
    ::setpgid(0, 0);
    struct sigaction ignore;
    std::memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    for (int sig : guard_ignored_signals) ::sigaction(sig, &ignore, nullptr);
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
#if defined(__linux__)
    ::prctl(PR_SET_NAME, "jobwarden-guard", 0, 0, 0);
#endif
    // Keep only the socket (it may sit anywhere: move it to 3 first).
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
    if (::chdir("/") != 0) {
      // Harmless: the guard only pins the host's directory.
    }

    // Sleep until the supervisor is gone (EOF) or lets us go (a line).
    for (;;) {
      char ignored[64];
      ssize_t n = ::read(fd, ignored, sizeof ignored);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) ::_exit(0);
      break;
    }
    const unsigned long long used = parse_header(table);
    for (unsigned long long i = 0; i < used && i < capacity; ++i) {
      const char* line = table + (i + 1) * line_bytes;
      if (__atomic_load_n(&line[0], __ATOMIC_ACQUIRE) != '1') continue;
      const char* p = line + 1;
      const char* end = line + line_bytes;
      long long pid = parse_number(p, end), start_time = parse_number(p, end), serial = parse_number(p, end);
      // Only a leader proven to be the recorded process: never a reused pid.
      // Never 0 or 1: kill(0) and kill(-1) would reach far more than a worker.
      if (pid > 1 && is_same_process(static_cast<int>(pid), static_cast<unsigned long long>(start_time))) {
        ::kill(-static_cast<pid_t>(pid), SIGKILL);
      }
      // The worker's cgroup is ours alone: kill everything in it, escapees too.
      if (serial >= 0 && cgroup_parent[0] != '\0') {
        char path[4096];
        std::size_t n = 0;
        for (const char* c = cgroup_parent; *c != '\0' && n < sizeof path - 64; ++c) path[n++] = *c;
        const char suffix[] = "/w";
        for (const char* c = suffix; *c != '\0'; ++c) path[n++] = *c;
        n = static_cast<std::size_t>(std::to_chars(path + n, path + sizeof path, serial).ptr - path);
        const char kill_file[] = "/cgroup.kill";
        for (const char* c = kill_file; *c != '\0'; ++c) path[n++] = *c;
        path[n] = '\0';
        write_control(path, "1");
      }
    }
    kill_tree(cgroup_parent);
    ::_exit(0);
  }

  /// Writes `cgroup.kill` of the supervisor's whole cgroup tree (none: no-op).
  /// Async-signal-safe.
  static void kill_tree(const char* cgroup_parent) {
    if (cgroup_parent[0] == '\0') return;
    char path[4096];
    const char kill_file[] = "/cgroup.kill";
    std::size_t n = 0;
    for (const char* c = cgroup_parent; *c != '\0' && n < sizeof path - sizeof kill_file; ++c) path[n++] = *c;
    for (const char* c = kill_file; *c != '\0'; ++c) path[n++] = *c;
    path[n] = '\0';
    write_control(path, "1");
  }

  /// The line count in the table's header (0 if it is not one).
  static unsigned long long parse_header(const char* table) {
    if (std::memcmp(table, magic, sizeof magic - 1) != 0 || table[sizeof magic - 1] != ' ') return 0;
    const char* p = table + sizeof magic;
    long long lines = parse_number(p, table + line_bytes);
    return lines > 0 ? static_cast<unsigned long long>(lines) : 0;
  }

  /// The next space-separated decimal number at `p` before `end` (`p` moves
  /// past it; 0 if there is none). Async-signal-safe.
  static long long parse_number(const char*& p, const char* end) {
    while (p < end && *p == ' ') ++p;
    long long value = 0;
    p = std::from_chars(p, end, value).ptr;
    return value;
  }

  Lifeline lifeline_;  // the socket pair and the guard's pid
  Kind kind_ = Kind::none;
  char* table_ = nullptr;  // the shared mapping: header line, then slots
  std::vector<std::uint32_t> free_;  // published-then-freed slots, for reuse
  std::size_t next_unused_ = 0;
  std::size_t in_use_ = 0;  // slots holding a running worker
};

}  // namespace jobwarden::detail
