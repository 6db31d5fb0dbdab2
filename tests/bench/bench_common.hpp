#pragma once
// Shared plumbing for jobwarden's benchmarks: argument parsing, clocks,
// medians, temporary directories, process accounting (so every benchmark can
// prove it left nothing behind) and the FIGURE lines scripts/bench.sh collects.
//
// Every benchmark runs jobwarden and its baselines in the same process,
// alternating within each round (and rotating which goes first), and reports
// the median over rounds of the per-round ratio: on a shared, noisy machine a
// ratio taken within one round is far steadier than two separate averages.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace jwbench {

// ---- arguments ------------------------------------------------------------

/// `--key value` pairs and bare `--flag`s.
class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument: " + arg);
      arg = arg.substr(2);
      auto eq = arg.find('=');
      if (eq != std::string::npos) {
        values_[arg.substr(0, eq)] = arg.substr(eq + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        values_[arg] = argv[++i];
      } else {
        values_[arg] = "";
      }
    }
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::string str(const std::string& key, const std::string& fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  long long num(const std::string& key, long long fallback) const {
    auto it = values_.find(key);
    return it == values_.end() || it->second.empty() ? fallback : std::atoll(it->second.c_str());
  }
  double real(const std::string& key, double fallback) const {
    auto it = values_.find(key);
    return it == values_.end() || it->second.empty() ? fallback : std::atof(it->second.c_str());
  }
  /// "1,2" -> {1, 2}
  std::vector<int> list(const std::string& key, const std::string& fallback) const {
    std::vector<int> out;
    std::stringstream in(str(key, fallback));
    std::string item;
    while (std::getline(in, item, ',')) {
      if (!item.empty()) out.push_back(std::atoi(item.c_str()));
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

// ---- time and statistics ---------------------------------------------------

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on one machine,
/// so a worker can stamp a moment the host later compares with its own.
inline long long now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

inline double seconds_since(long long start_ns) { return (now_ns() - start_ns) / 1e9; }

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/// Nearest-rank percentile, p in [0, 100].
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

inline double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

/// The order of `count` variants in round `round`: rotated, so no variant
/// always runs first (caches warm, CPU frequency settles, neighbours come and go).
inline std::vector<int> round_order(int count, int round) {
  std::vector<int> order;
  for (int i = 0; i < count; ++i) order.push_back((i + round) % count);
  return order;
}

// ---- reporting ------------------------------------------------------------

/// One reported figure: `FIGURE <name> <value> <unit> [target ...]`, the line
/// scripts/bench.sh collects into its summary.
inline void figure(const std::string& name, double value, const std::string& unit,
                   const std::string& target = "", bool met = true) {
  if (target.empty()) {
    std::printf("FIGURE %-44s %12.3f %-10s\n", name.c_str(), value, unit.c_str());
  } else {
    std::printf("FIGURE %-44s %12.3f %-10s target %s: %s\n", name.c_str(), value, unit.c_str(),
                target.c_str(), met ? "met" : "MISSED");
  }
  std::fflush(stdout);
}

inline void note(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline void note(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
  std::fflush(stdout);
}

// ---- files and directories ------------------------------------------------

/// A fresh directory under `base` (e.g. /tmp for disk, /dev/shm for tmpfs),
/// removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& base, const std::string& tag = "jwbench") {
    std::string pattern = base + "/" + tag + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp under " + base + ": " + std::strerror(errno));
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// /dev/shm when it is there and writable (tmpfs), else $TMPDIR or /tmp.
inline std::string tmpfs_or_tmp() {
  if (::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

/// $TMPDIR or /tmp (usually a disk file system).
inline std::string disk_tmp() {
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// The CLOCK_MONOTONIC nanoseconds a worker wrote into `path` (0: none).
inline long long stamp_peek(const std::string& path) { return std::atoll(read_text(path).c_str()); }

/// The file system type of `path` as `stat -f` names it ("tmpfs", "ext2/ext3"...).
inline std::string filesystem_name(const std::string& path) {
  std::string cmd = "stat -f -c %T '" + path + "' 2>/dev/null";
  std::string out;
  if (FILE* pipe = ::popen(cmd.c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
    ::pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "?" : out;
}

// ---- processes --------------------------------------------------------------

struct ProcInfo {
  int pid = 0;
  int ppid = 0;
  int pgid = 0;
  char state = '?';
  std::string comm;
  unsigned long long cpu_ticks = 0;  ///< utime + stime
};

/// Every process on the machine (those readable in /proc).
inline std::vector<ProcInfo> list_processes() {
  std::vector<ProcInfo> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::string path = std::string("/proc/") + entry->d_name + "/stat";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    const char* open_paren = std::strchr(buf, '(');
    const char* close_paren = std::strrchr(buf, ')');
    if (open_paren == nullptr || close_paren == nullptr) continue;
    ProcInfo info;
    info.pid = std::atoi(buf);
    info.comm.assign(open_paren + 1, close_paren);
    // After ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    char state;
    int ppid, pgid;
    unsigned long long skip, utime, stime;
    if (std::sscanf(close_paren + 2, "%c %d %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                    &state, &ppid, &pgid, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip,
                    &utime, &stime) == 13) {
      info.state = state;
      info.ppid = ppid;
      info.pgid = pgid;
      info.cpu_ticks = utime + stime;
      out.push_back(info);
    }
  }
  ::closedir(dir);
  return out;
}

/// Our direct children other than jobwarden's orphan guards (which a live
/// supervisor owns), zombies included.
inline std::vector<ProcInfo> our_children(bool include_guards = false) {
  std::vector<ProcInfo> out;
  int self = static_cast<int>(::getpid());
  for (const ProcInfo& p : list_processes()) {
    if (p.ppid != self) continue;
    if (!include_guards && p.comm == "jobwarden-guard") continue;
    out.push_back(p);
  }
  return out;
}

/// Processes (not yet reaped zombies included) whose process group is one of `groups`.
inline std::vector<ProcInfo> processes_in_groups(const std::set<int>& groups) {
  std::vector<ProcInfo> out;
  for (const ProcInfo& p : list_processes()) {
    if (groups.count(p.pgid) != 0) out.push_back(p);
  }
  return out;
}

/// Processes whose command name is `comm` (the kernel's 15-character name).
inline std::vector<ProcInfo> processes_named(const std::string& comm) {
  std::vector<ProcInfo> out;
  for (const ProcInfo& p : list_processes()) {
    if (p.comm == comm) out.push_back(p);
  }
  return out;
}

/// Baseline children a benchmark started itself: killed (their whole group,
/// when they lead one) and reaped when the guard goes, so a failing benchmark
/// leaves nothing behind either.
class ChildGuard {
 public:
  ChildGuard() = default;
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() { kill_all(); }

  void add(pid_t pid, bool group_leader = false) { children_[pid] = group_leader; }
  /// Forget a child the caller reaped itself.
  void reaped(pid_t pid) { children_.erase(pid); }
  std::size_t size() const { return children_.size(); }

  void kill_all() {
    for (auto& [pid, leader] : children_) {
      if (leader) ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
    for (auto& [pid, leader] : children_) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    children_.clear();
  }

 private:
  std::map<pid_t, bool> children_;
};

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
inline rlim_t raise_nofile_limit() {
  rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

/// Resident set size of a process in KiB (VmRSS), -1 when unreadable.
inline long long rss_kib(int pid = 0) {
  std::string path = pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

/// CPU time (user + system) this process used so far, in seconds.
inline double self_cpu_seconds() {
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

/// Anonymous memory the benchmark process holds and has touched (a "big host"),
/// unmapped when it goes.
class TouchedMemory {
 public:
  TouchedMemory() = default;
  explicit TouchedMemory(std::size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
    data_ = static_cast<unsigned char*>(p);
    touch(1);
  }
  ~TouchedMemory() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  TouchedMemory(const TouchedMemory&) = delete;
  TouchedMemory& operator=(const TouchedMemory&) = delete;
  TouchedMemory(TouchedMemory&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  TouchedMemory& operator=(TouchedMemory&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  /// Writes one byte per page (faulting in, or copying shared pages).
  void touch(unsigned char value) {
    long page = ::sysconf(_SC_PAGESIZE);
    for (std::size_t off = 0; off < size_; off += static_cast<std::size_t>(page)) data_[off] = value;
  }
  std::size_t size() const { return size_; }

 private:
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Reports (and returns false) if anything this benchmark started is still
/// around: direct children (zombies included) other than a live supervisor's
/// guard, or live members of the given process groups. Waits briefly first: killed grandchildren are
/// reparented and reaped by init asynchronously, and there is no event for that.
inline bool check_no_process_left(const std::set<int>& groups = {}, bool guards_allowed = false) {
  std::vector<ProcInfo> left;
  for (int attempt = 0; attempt < 100; ++attempt) {  // bounded: at most ~1 s
    left = our_children(/*include_guards=*/!guards_allowed);
    for (const ProcInfo& p : processes_in_groups(groups)) {
      // A dead grandchild reparented to init waits for init to reap it: not ours.
      if (p.state == 'Z' && p.ppid != static_cast<int>(::getpid())) continue;
      left.push_back(p);
    }
    if (left.empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (const ProcInfo& p : left) {
    std::printf("LEFTOVER pid %d ppid %d pgid %d state %c comm %s\n", p.pid, p.ppid, p.pgid,
                p.state, p.comm.c_str());
  }
  std::fflush(stdout);
  return false;
}

/// Cgroup v2 directories a supervisor of this process left behind
/// (`jobwarden-<our pid>-...` under the cgroup2 mount), one per line.
inline std::vector<std::string> leftover_cgroups() {
  std::vector<std::string> out;
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line, mount;
  while (std::getline(mounts, line)) {
    if (line.find(" - cgroup2 ") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i < 5 && fields >> field; ++i) mount = field;
    break;
  }
  if (mount.empty()) return out;
  std::string prefix = "jobwarden-" + std::to_string(::getpid()) + "-";
  // Other processes (tests running in parallel) create and remove cgroups while
  // this walks the tree, so descending into one can fail with ENOENT: walk with
  // error codes, and walk again when a walk was cut short.
  for (int attempt = 0; attempt < 5; ++attempt) {
    out.clear();
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(
        mount, std::filesystem::directory_options::skip_permission_denied, ec);
    for (const std::filesystem::recursive_directory_iterator end; !ec && it != end;
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.rfind(prefix, 0) == 0) out.push_back(it->path().string());
      if (out.size() > 20) return out;
    }
    if (!ec) break;
  }
  return out;
}

/// Both checks: no process (see `check_no_process_left`) and no cgroup left.
inline bool check_nothing_left(const std::set<int>& groups = {}, bool guards_allowed = false) {
  bool ok = check_no_process_left(groups, guards_allowed);
  for (const std::string& dir : leftover_cgroups()) {
    std::printf("LEFTOVER cgroup %s\n", dir.c_str());
    ok = false;
  }
  std::fflush(stdout);
  return ok;
}

}  // namespace jwbench
