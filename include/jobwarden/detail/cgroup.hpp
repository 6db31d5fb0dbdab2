#pragma once
/// \file
/// Escapee-proof stopping with cgroup v2: the one owner of cgroup paths.
///
/// A grandchild that calls `setsid` leaves its worker's process group, so a
/// group kill misses it. Where a writable cgroup v2 hierarchy exists (root, or
/// a delegated subtree) and the kernel has `cgroup.kill` (Linux 5.14), each
/// worker runs in its own cgroup — it joins before exec, so every descendant
/// is born inside — and stopping writes `1` to `cgroup.kill`, which kills every
/// process in it, escapees included. Detected at run time; when unavailable
/// (no cgroup2 mount, no permission, old kernel, `JOBWARDEN_PORTABLE`, macOS)
/// jobwarden falls back to process groups and says so (`cgroups_active()`).
///
/// The same cgroup serves the controls of a running worker: a signal to its
/// tree reaches the escapees listed in `cgroup.procs` too
/// (`cgroup_signal_outside_group`), and a pause freezes it (`cgroup_freeze`).
///
/// Layout: `<our cgroup>/jobwarden-<pid>-<start time>/w<serial>`. The pid and
/// start time let a later supervisor prove the owner is dead before it kills
/// and removes what was left (`reclaim_abandoned`, and recovery, which finds
/// the tree by the path the journal's job line records: `is_abandoned_tree`).

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/vfs.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "jobwarden/detail/platform.hpp"
#include "jobwarden/detail/process_identity.hpp"

namespace jobwarden::detail {

/// Writes `text` to a control file. Async-signal-safe (used after fork).
inline bool write_control(const char* path, const char* text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::size_t length = std::strlen(text);
  ssize_t n;
  do {
    n = ::write(fd, text, length);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  return n == static_cast<ssize_t>(length);
}

/// Kills every process in the cgroup at `dir` (no-op for an empty path).
inline bool cgroup_kill(const std::string& dir) {
  if (dir.empty()) return false;
  return write_control((dir + "/cgroup.kill").c_str(), "1");
}

/// The pids listed in the cgroup at `dir`'s `cgroup.procs` (empty when it
/// cannot be read).
inline std::vector<int> cgroup_pids(const std::string& dir) {
  std::vector<int> pids;
  if (dir.empty()) return pids;
  std::ifstream procs(dir + "/cgroup.procs");
  int pid = 0;
  while (procs >> pid) pids.push_back(pid);
  return pids;
}

/// Whether process `pid` is in the cgroup at `dir`.
inline bool cgroup_holds(const std::string& dir, int pid) {
  for (int member : cgroup_pids(dir)) {
    if (member == pid) return true;
  }
  return false;
}

/// Freezes (`frozen`) or thaws the cgroup at `dir` through `cgroup.freeze`
/// (Linux 5.2): every process in it, escapees included, stops being
/// scheduled, and nothing inside can undo it. SIGKILL still works on a frozen
/// process. False when it cannot be written (no such file, no permission).
inline bool cgroup_freeze(const std::string& dir, bool frozen) {
  if (dir.empty()) return false;
  return write_control((dir + "/cgroup.freeze").c_str(), frozen ? "1" : "0");
}

/// Sends `sig` to every process in the cgroup at `dir` that is not in
/// process group `pgid` (which the caller signals as a group): the worker's
/// `setsid` escapees. Each process is pinned by a pidfd before its
/// membership is checked, so a pid that was reused meanwhile is never
/// signalled; the listing is read again until it shows nobody new (a process
/// forked meanwhile), a bounded number of times. Returns how many were
/// signalled. Linux only (no-op elsewhere).
inline int cgroup_signal_outside_group(const std::string& dir, int pgid, int sig) {
  int sent = 0;
#if JOBWARDEN_LINUX_FAST_PATH
  if (dir.empty() || !features().pidfd) return 0;
  std::vector<int> done;
  for (int round = 0; round < 8; ++round) {
    bool fresh = false;
    for (int pid : cgroup_pids(dir)) {
      if (pid <= 1 || std::find(done.begin(), done.end(), pid) != done.end()) continue;
      done.push_back(pid);
      fresh = true;
      int pidfd = sys_pidfd_open(pid);
      if (pidfd < 0) continue;  // gone already
      // While the pidfd's process lives (or is a zombie), `pid` is its pid:
      // what is read about `pid` now is about it, and if it is gone by the
      // time of the signal, the signal fails harmlessly.
      const pid_t group = ::getpgid(pid);
      if (group != pgid && cgroup_holds(dir, pid)) {
        if (sys_pidfd_send_signal(pidfd, sig) == 0) ++sent;
      }
      ::close(pidfd);
    }
    if (!fresh) break;
  }
#else
  (void)dir;
  (void)pgid;
  (void)sig;
#endif
  return sent;
}

/// Whether the space-separated list in the file at `path` (a cgroup's
/// `cgroup.controllers` or `cgroup.subtree_control`) names `controller`.
inline bool cgroup_lists_controller(const std::string& path, const std::string& controller) {
  std::ifstream file(path);
  std::string name;
  while (file >> name) {
    if (name == controller) return true;
  }
  return false;
}

/// Writes `weight` to the cgroup at `dir`'s `cpu.weight`; false (with
/// `error_number`) when it cannot (no such file: no cpu controller there).
inline bool cgroup_set_cpu_weight(const std::string& dir, int weight, int& error_number) {
  error_number = 0;
  errno = 0;
  if (write_control((dir + "/cpu.weight").c_str(), std::to_string(weight).c_str())) return true;
  error_number = errno != 0 ? errno : EIO;
  return false;
}

/// Enables the `cpu` controller in `tree`'s `cgroup.subtree_control`, so
/// the cgroups below it have `cpu.weight`; `base` is the cgroup `tree` is in,
/// whose `cgroup.subtree_control` gets it first when it does not hand it down
/// yet. False, with `why_not`, when the controller cannot be had.
inline bool enable_cpu_controller(const std::string& base, const std::string& tree, std::string& why_not) {
  const std::string handed_down = tree + "/cgroup.controllers";
  if (!cgroup_lists_controller(handed_down, "cpu")) {
    if (!cgroup_lists_controller(base + "/cgroup.controllers", "cpu")) {
      why_not = "the cpu controller is not available in " + base +
                " (not in its cgroup.controllers: not delegated, or bound to a cgroup v1 hierarchy)";
      return false;
    }
    errno = 0;
    const bool written = write_control((base + "/cgroup.subtree_control").c_str(), "+cpu");
    const int error_number = errno != 0 ? errno : EIO;
    if (!written && !cgroup_lists_controller(handed_down, "cpu")) {
      why_not = "cannot enable the cpu controller in " + base + "/cgroup.subtree_control: " +
                std::strerror(error_number) +
                (error_number == EBUSY ? " (processes live in that cgroup: run the supervisor in a cgroup of its "
                                         "own, or enable cpu there beforehand)"
                                       : "");
      return false;
    }
  }
  errno = 0;
  if (!write_control((tree + "/cgroup.subtree_control").c_str(), "+cpu")) {
    why_not = "cannot enable the cpu controller in " + tree + "/cgroup.subtree_control: " +
              std::strerror(errno != 0 ? errno : EIO);
    return false;
  }
  return true;
}

/// Whether the cgroup at `dir` still holds a process (true when unsure).
inline bool cgroup_populated(const std::string& dir) {
  int fd = ::open((dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  char buffer[256];
  ssize_t n = ::read(fd, buffer, sizeof buffer - 1);
  ::close(fd);
  if (n <= 0) return true;
  buffer[n] = '\0';
  return std::strstr(buffer, "populated 0") == nullptr;
}

/// The CPU time every process of a cgroup has used, living or gone
/// (`cpu.stat`, there with or without the cpu controller).
struct CgroupCpu {
  std::chrono::microseconds user{0};
  std::chrono::microseconds system{0};
};

/// Reads `user_usec` and `system_usec` from the cgroup at `dir`'s `cpu.stat`;
/// nothing for an empty path, or a file that is missing or lacks either.
inline std::optional<CgroupCpu> read_cgroup_cpu(const std::string& dir) {
  if (dir.empty()) return std::nullopt;
  int fd = ::open((dir + "/cpu.stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buffer[1024];  // six lines of "name number" (more with the cpu controller: the first ones suffice)
  ssize_t n;
  do {
    n = ::read(fd, buffer, sizeof buffer - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buffer[n] = '\0';
  auto field = [&buffer](const char* name) -> std::optional<long long> {
    const std::size_t length = std::strlen(name);
    for (const char* line = buffer; *line != '\0';) {
      if (std::strncmp(line, name, length) == 0 && line[length] == ' ') {
        char* end = nullptr;
        errno = 0;
        long long value = std::strtoll(line + length + 1, &end, 10);
        if (end == line + length + 1 || errno != 0 || value < 0) return std::nullopt;
        return value;
      }
      const char* next = std::strchr(line, '\n');
      if (next == nullptr) break;
      line = next + 1;
    }
    return std::nullopt;
  };
  auto user = field("user_usec");
  auto system = field("system_usec");
  if (!user || !system) return std::nullopt;
  return CgroupCpu{std::chrono::microseconds(*user), std::chrono::microseconds(*system)};
}

/// Waits until the cgroup at `dir` holds no process, for at most `limit`;
/// returns whether it is empty (true when it does not exist). Woken by the
/// kernel's change notification on `cgroup.events`, checked again at least
/// every 50 ms in case one is missed.
inline bool wait_cgroup_empty(const std::string& dir, std::chrono::milliseconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  int fd = ::open((dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  bool empty = false;
  for (;;) {
    char buffer[256];
    ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
    if (n > 0) {
      buffer[n] = '\0';
      empty = std::strstr(buffer, "populated 0") != nullptr;
    }
    if (empty) break;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd change{fd, POLLPRI, 0};
    ::poll(&change, 1, static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), 50)));
  }
  ::close(fd);
  return empty;
}

/// Removes the cgroup at `dir` and every cgroup below it, deepest first (a
/// cgroup goes only once it has neither processes nor children). Returns
/// whether `dir` is gone.
inline bool remove_cgroup_dirs(const std::string& dir) {
  if (DIR* listing = ::opendir(dir.c_str())) {
    std::vector<std::string> children;
    while (dirent* entry = ::readdir(listing)) {
      if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;  // files are the kernel's
      children.push_back(dir + "/" + entry->d_name);
    }
    ::closedir(listing);
    for (const auto& child : children) remove_cgroup_dirs(child);
  }
  return ::rmdir(dir.c_str()) == 0 || errno == ENOENT;
}

/// Kills every process in the cgroup tree at `tree` — `cgroup.kill` reaches
/// every cgroup below it — waits (up to `limit`) for them to go, and removes
/// the tree. Returns whether it is gone.
inline bool kill_cgroup_tree(const std::string& tree, std::chrono::milliseconds limit) {
  cgroup_kill(tree);
  wait_cgroup_empty(tree, limit);
  return remove_cgroup_dirs(tree);
}

/// The supervisor a per-supervisor cgroup's name (`jobwarden-<pid>-<start
/// time>-<n>`) says made it. False when `name` is no such name.
inline bool cgroup_tree_owner(const char* name, int& pid, unsigned long long& start_time) {
  return std::sscanf(name, "jobwarden-%d-%llu", &pid, &start_time) == 2;
}

/// The per-supervisor cgroup and its workers' cgroups.
class CgroupTree {
 public:
  CgroupTree() = default;
  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;
  ~CgroupTree() { close(); }

  /// Tries to set up the tree; on failure `why_not` says why and every
  /// method is a harmless no-op.
  bool open(std::string& why_not) {
#if !JOBWARDEN_LINUX_FAST_PATH
    why_not = "cgroups are Linux-only (portable build)";
    return false;
#else
    std::string mount = cgroup2_mount();
    if (mount.empty()) {
      why_not = "no cgroup v2 hierarchy is mounted";
      return false;
    }
    std::string own = own_cgroup();
    if (own.empty()) {
      why_not = "this process's cgroup v2 path is unknown";
      return false;
    }
    base_ = mount + (own == "/" ? "" : own);
    reclaim_abandoned();
    auto start = process_start_time(static_cast<int>(::getpid())).value_or(0);
    static std::atomic<unsigned> instances{0};
    parent_ = base_ + "/jobwarden-" + std::to_string(::getpid()) + "-" + std::to_string(start) +
              "-" + std::to_string(instances.fetch_add(1));
    if (::mkdir(parent_.c_str(), 0755) != 0 && errno != EEXIST) {
      why_not = "cannot create " + parent_ + ": " + std::strerror(errno);
      parent_.clear();
      return false;
    }
    struct stat st;
    if (::stat((parent_ + "/cgroup.kill").c_str(), &st) != 0) {
      why_not = "the kernel has no cgroup.kill (Linux 5.14 or later needed)";
      ::rmdir(parent_.c_str());
      parent_.clear();
      return false;
    }
    return true;
#endif
  }

  /// Where the cgroup v2 hierarchy is mounted (empty: nowhere).
  static std::string cgroup2_mount() {
    std::ifstream mounts("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mounts, line)) {
      auto dash = line.find(" - cgroup2 ");
      if (dash == std::string::npos) continue;
      // Field 5 is the mount point.
      std::size_t pos = 0;
      for (int field = 0; field < 4; ++field) pos = line.find(' ', pos) + 1;
      return line.substr(pos, line.find(' ', pos) - pos);
    }
    return {};
  }

  /// This process's cgroup v2 path below the mount ("/..."; empty: unknown).
  static std::string own_cgroup() {
    std::ifstream cgroups("/proc/self/cgroup");
    std::string line;
    while (std::getline(cgroups, line)) {
      if (line.rfind("0::", 0) == 0) return line.substr(3);
    }
    return {};
  }

  /// Whether workers get cgroups.
  bool active() const { return !parent_.empty(); }

  /// Makes the workers' cgroups have `cpu.weight`: the `cpu` controller
  /// enabled in the per-supervisor cgroup's `cgroup.subtree_control`, and
  /// first, when the supervisor's own cgroup does not hand it down, in that
  /// one's (which the kernel refuses while processes live in it, unless it is
  /// the root). Tried once, at the first worker that asks for a weight, so a
  /// supervisor whose workers ask for none changes no controller. False, with
  /// `why_not`, when the controller cannot be had.
  bool enable_cpu(std::string& why_not) {
    if (!active()) {
      why_not = "cgroups are not in use";
      return false;
    }
    if (!cpu_tried_) {
      cpu_tried_ = true;
      cpu_enabled_ = try_enable_cpu(cpu_why_not_);
    }
    why_not = cpu_why_not_;
    return cpu_enabled_;
  }

  /// Whether the workers' cgroups have `cpu.weight` (`enable_cpu` succeeded):
  /// then every worker's weight is written, its spec's or the default.
  bool cpu_enabled() const { return cpu_enabled_; }

  /// The per-supervisor directory (empty when inactive).
  const std::string& parent() const { return parent_; }

  /// A cgroup for a worker, and `serial` naming it (`w<serial>`); empty when
  /// inactive or refused (the worker then runs without one: it is never a
  /// reason not to run). Cgroups of finished workers are reused: joining a
  /// fresh cgroup costs the kernel far more than joining a used one.
  /// `counted` is what its `cpu.stat` had counted when handed out: zero for
  /// a fresh cgroup, the last worker's final figure (given to `retire`) for a
  /// reused one, unset when unknown — a read of `cpu.stat` costs tens of
  /// microseconds, so a worker's CPU is read once, at its end.
  std::string create(long& serial, std::optional<CgroupCpu>& counted) {
    serial = -1;
    counted.reset();
    if (!active()) return {};
    settle();
    if (!idle_.empty()) {
      serial = static_cast<long>(idle_.back().serial);
      counted = idle_.back().counted;
      idle_.pop_back();
      return dir_of(static_cast<unsigned long>(serial));
    }
    unsigned long fresh = next_serial_++;
    std::string dir = dir_of(fresh);
    if (::mkdir(dir.c_str(), 0755) == 0) {
      counted = CgroupCpu{};  // a new cgroup has counted nothing
    } else if (errno != EEXIST) {
      return {};
    }
    serial = static_cast<long>(fresh);
    return dir;
  }

  std::string create(long& serial) {
    std::optional<CgroupCpu> ignored;
    return create(serial, ignored);
  }

  /// A worker ended: an empty cgroup goes back to the pool (with `counted`,
  /// its `cpu.stat` at the worker's end, if read); one with processes left
  /// (escapees) is killed and removed (retried by `collect_garbage` while
  /// they die), never reused. Nor is one that was `killed` (its `cgroup.kill`
  /// written): some kernels (seen on 6.18) kill every process later started
  /// into such a cgroup by clone3(CLONE_INTO_CGROUP), as if the kill were
  /// still under way.
  void retire(long serial, bool killed = false, std::optional<CgroupCpu> counted = std::nullopt) {
    if (serial < 0 || !active()) return;
    std::string dir = dir_of(static_cast<unsigned long>(serial));
    if (!killed && !cgroup_populated(dir)) {
      idle_.push_back({static_cast<unsigned long>(serial), counted});
      return;
    }
    if (::rmdir(dir.c_str()) == 0 || errno != EBUSY) return;
    cgroup_kill(dir);
    if (::rmdir(dir.c_str()) != 0 && errno == EBUSY) dying_.push_back(dir);
  }

  /// `retire`, deferred to the next `settle` (or `create`, or `close`): the
  /// check costs a read of cgroup.events, which can wait until the host has
  /// heard of the exit.
  void retire_later(long serial, bool killed = false, std::optional<CgroupCpu> counted = std::nullopt) {
    if (serial < 0 || !active()) return;
    retiring_.push_back({static_cast<unsigned long>(serial), counted, killed});
  }

  /// Retires what `retire_later` deferred.
  void settle() {
    if (retiring_.empty()) return;
    std::vector<Pooled> due;
    due.swap(retiring_);
    for (const Pooled& cgroup : due) retire(static_cast<long>(cgroup.serial), cgroup.killed, cgroup.counted);
  }

  /// Retries removing cgroups whose processes were still dying.
  void collect_garbage() {
    std::vector<std::string> still;
    for (const auto& dir : dying_) {
      if (::rmdir(dir.c_str()) != 0 && errno == EBUSY) still.push_back(dir);
    }
    dying_.swap(still);
  }

  /// Removes the tree, waiting (bounded) for dying processes to go.
  void close() {
    if (!active()) return;
    settle();
    for (const Pooled& cgroup : idle_) ::rmdir(dir_of(cgroup.serial).c_str());
    idle_.clear();
    for (int round = 0; round < 200 && !dying_.empty(); ++round) {
      collect_garbage();
      if (!dying_.empty()) ::usleep(5000);
    }
    ::rmdir(parent_.c_str());
    parent_.clear();
  }

  /// Kills and removes trees left by supervisors proven dead (pid and start
  /// time in the directory name no longer name a live process).
  void reclaim_abandoned() {
    DIR* dir = ::opendir(base_.c_str());
    if (dir == nullptr) return;
    std::vector<std::string> abandoned;
    while (dirent* entry = ::readdir(dir)) {
      int pid = 0;
      unsigned long long start = 0;
      if (!cgroup_tree_owner(entry->d_name, pid, start)) continue;
      if (is_running_process(pid, start)) continue;  // a zombie supervisor is dead: its tree is abandoned
      abandoned.push_back(base_ + "/" + entry->d_name);
    }
    ::closedir(dir);
    for (const auto& tree : abandoned) kill_cgroup_tree(tree, std::chrono::milliseconds(500));
  }

  /// Whether `tree`, which a job's record names as the cgroup tree of its
  /// supervisor `pid` started at `start_time`, is proven to be that
  /// supervisor's and abandoned, so it may be killed and removed: an
  /// absolute path below the cgroup v2 mount, without `.` or `..`, on a
  /// cgroup2 file system, whose name is `jobwarden-<pid>-<start time>-...`
  /// with those very values, of a supervisor that no longer runs, and that
  /// does not hold the calling process. Otherwise `why_not` says why (left
  /// empty when there is simply nothing there any more, or the supervisor
  /// still runs: then it is not abandoned, and nothing is wrong).
  static bool is_abandoned_tree(const std::string& tree, int pid, unsigned long long start_time,
                                std::string& why_not) {
    why_not.clear();
#if !JOBWARDEN_LINUX_FAST_PATH
    (void)tree;
    (void)pid;
    (void)start_time;
    return false;
#else
    const std::string mount = cgroup2_mount();
    const std::size_t slash = tree.rfind('/');
    int named_pid = 0;
    unsigned long long named_start = 0;
    if (slash == std::string::npos || !cgroup_tree_owner(tree.c_str() + slash + 1, named_pid, named_start) ||
        named_pid != pid || named_start != start_time || pid <= 0 || start_time == 0) {
      why_not = "not named for the job's supervisor; left alone";
      return false;
    }
    if (mount.empty() || tree.compare(0, mount.size() + 1, mount + "/") != 0 ||
        tree.find("/./") != std::string::npos || tree.find("/../") != std::string::npos) {
      why_not = "not a cgroup below the cgroup v2 mount; left alone";
      return false;
    }
    struct stat st;
    if (::lstat(tree.c_str(), &st) != 0) return false;  // gone already
    struct statfs fs;
    constexpr long cgroup2_magic = 0x63677270;  // CGROUP2_SUPER_MAGIC
    if (!S_ISDIR(st.st_mode) || ::statfs(tree.c_str(), &fs) != 0 || static_cast<long>(fs.f_type) != cgroup2_magic) {
      why_not = "not a cgroup v2 directory; left alone";
      return false;
    }
    if (is_running_process(pid, start_time)) return false;  // not abandoned: it cleans up itself
    const std::string own = own_cgroup();
    const std::string own_path = mount + (own == "/" ? "" : own);
    if (own_path == tree || own_path.compare(0, tree.size() + 1, tree + "/") == 0) {
      why_not = "this process runs inside it; not killed";
      return false;
    }
    return true;
#endif
  }

 private:
  std::string dir_of(unsigned long serial) const { return parent_ + "/w" + std::to_string(serial); }

  bool try_enable_cpu(std::string& why_not) { return enable_cpu_controller(base_, parent_, why_not); }

  std::string base_;
  std::string parent_;
  std::vector<std::string> dying_;
  struct Pooled {
    unsigned long serial;
    std::optional<CgroupCpu> counted;  // its cpu.stat at its last worker's end
    bool killed = false;               // retiring_ only: its cgroup.kill was written (never reused)
  };
  std::vector<Pooled> idle_;      // empty cgroups of finished workers, for reuse
  std::vector<Pooled> retiring_;  // cgroups of reaped workers, not yet checked
  unsigned long next_serial_ = 0;
  bool cpu_tried_ = false;    // enable_cpu ran
  bool cpu_enabled_ = false;  // the workers' cgroups have cpu.weight
  std::string cpu_why_not_;   // why they do not
};

}  // namespace jobwarden::detail
