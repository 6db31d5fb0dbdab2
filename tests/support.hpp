#pragma once
// Shared helpers for the tests: temporary directories, reading files, and
// checking that processes are really gone.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <jobwarden/detail/process_identity.hpp>
#include <jobwarden/worker_spec.hpp>

namespace jwtest {

/// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "jobwarden-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// Whether `pid` no longer runs (absent, or a zombie waiting for its reaper).
inline bool process_gone(int pid) {
  if (pid <= 0) return true;
  if (::kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] == 'Z';
}

/// Waits (bounded) for `pid` to be gone: a killed process's teardown is
/// asynchronous, and there is no event to wait on for a process that is not
/// our child. Returns whether it went.
inline bool wait_gone(int pid, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!process_gone(pid)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Waits (bounded) until `path` holds a complete line.
inline bool wait_for_line(const std::string& path,
                          std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::string text = read_file(path);
    if (!text.empty() && text.back() == '\n') return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// Reads a pid a shell worker wrote (`echo $! > file`), waiting (bounded) for it.
inline int read_pid_file(const std::string& path,
                         std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::string text = read_file(path);
    if (!text.empty() && text.back() == '\n') return std::stoi(text);
    if (std::chrono::steady_clock::now() > until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// Kills a stray pid at scope exit if a test failed half-way (belt and braces:
/// the supervisor's destructor already stops what it started).
/// Only a process proven by its start time is killed, never a reused pid.
class KillOnExit {
 public:
  void watch(int pid) {
    pid_ = pid;
    start_ = jobwarden::detail::process_start_time(pid).value_or(0);
  }
  ~KillOnExit() {
    if (jobwarden::detail::is_same_process(pid_, start_)) ::kill(pid_, SIGKILL);
  }

 private:
  int pid_ = -1;
  unsigned long long start_ = 0;
};

inline const char* test_worker() { return JOBWARDEN_TEST_WORKER; }

/// A worker spec running `argv` with its output discarded: a test's workers
/// never hold the test runner's output pipe, even if something survives.
inline jobwarden::WorkerSpec quiet(std::vector<std::string> argv) {
  jobwarden::WorkerSpec spec;
  spec.argv = std::move(argv);
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  return spec;
}

/// A FIFO a worker's stdout goes to, so a test can wait for the worker's
/// "ready" line as an event rather than sleeping. Open for reading before the
/// supervisor opens it for writing (so that open does not block).
class ReadyPipe {
 public:
  explicit ReadyPipe(const std::string& path) : path_(path) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path);
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("open " + path);
  }
  ~ReadyPipe() { ::close(fd_); }
  ReadyPipe(const ReadyPipe&) = delete;
  ReadyPipe& operator=(const ReadyPipe&) = delete;
  const std::string& path() const { return path_; }
  /// Waits (bounded) until the worker wrote "ready".
  bool wait_ready(int timeout_ms = 20000) {
    std::string seen;
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (seen.find("ready") == std::string::npos) {
      pollfd pfd{fd_, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      ::poll(&pfd, 1, static_cast<int>(left.count()));
      char buffer[64];
      ssize_t n = ::read(fd_, buffer, sizeof buffer);
      if (n > 0) seen.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace jwtest
