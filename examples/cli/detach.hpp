#pragma once
// `jobwarden run --detach`: the supervisor runs on in a process of its own,
// and `run` returns as soon as that process has the job open.
//
//   parent (run)                         child (the detached supervisor)
//   ------------                         -------------------------------
//   pipe, fork  ───────────────────────► setsid; stdin, stdout, stderr: /dev/null
//   waits on the pipe                    opens the job (the lock, journal.jsonl),
//                                        supervisor.log becomes stdout/stderr,
//                                        submits the workers
//              ◄── "ok <pid> <job dir>"  reports once, closes the pipe
//   prints the job dir, exits 0          runs the job to its end, records its
//                                        exit status in the journal, exits
//
// Until the report, a failure is the parent's to print: the child reports
// it ("usage <message>": exit 2, as without --detach; "error <message>":
// exit 1) and exits. A child that dies before it reports (killed, crashed)
// closes the pipe without a word: the parent reaps it, says how it died, and
// removes what it left of the job (a job directory whose journal names the
// dead child, or one that did not exist before the fork and has no journal),
// so no half-made job stays. After the report, the child's failures land in
// the job directory: its messages in supervisor.log, its exit status in the
// journal, and a supervisor that dies reads `lost` (its lock is released).
//
// Linux and the portable path alike: fork, setsid, pipes and waitpid only.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <fmt/format.h>
#include <jobwarden/jobwarden.hpp>

#include "arguments.hpp"
#include "output.hpp"

namespace jobwarden_cli {

/// The file of the job directory that holds a detached supervisor's own
/// messages (what `run` prints on stderr: warnings, errors, the verdict).
inline constexpr const char* supervisor_log_name = "supervisor.log";

/// The child's side of the report pipe: it reports exactly once.
class DetachReporter {
 public:
  explicit DetachReporter(int fd) : fd_(fd) {}
  DetachReporter(const DetachReporter&) = delete;
  DetachReporter& operator=(const DetachReporter&) = delete;
  ~DetachReporter() { close(); }

  /// The job is open, its workers submitted: the parent may return.
  void opened(const std::string& job_dir) { send(fmt::format("ok {} {}", ::getpid(), job_dir)); }

  /// The job could not be started; `usage` for the errors `run` exits 2 for.
  void failed(bool usage, const std::string& message) { send((usage ? "usage " : "error ") + message); }

  bool reported() const { return reported_; }

 private:
  void send(std::string text) {
    if (reported_) return;
    reported_ = true;
    for (char& c : text) {
      if (c == '\n') c = ' ';  // one line, whatever the message holds
    }
    text += '\n';
    // A parent that is gone (killed while it waited) changes nothing here:
    // SIGPIPE is ignored and the job runs on.
    std::size_t written = 0;
    while (written < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
    close();
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_;
  bool reported_ = false;
};

/// What the parent learned: the detached supervisor's pid and job directory.
struct DetachedJob {
  int pid = 0;
  std::string job_dir;
};

namespace detach_detail {

/// `path`, absolute (the detached supervisor keeps the working directory it
/// was started in, so a relative path means the same to both).
inline std::string absolute(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

/// How a reaped child ended, in words.
inline std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by {}{}", jobwarden::signal_name(WTERMSIG(status)),
                       WCOREDUMP(status) ? " (core dumped)" : "");
  }
  return "ended";
}

inline int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 0;
  }
  return status;
}

/// Removes what a child that died before its report left of job `job`: the
/// directory, when its journal names that child as the supervisor and was
/// created after `forked_at` (an old job of a supervisor whose pid the child
/// reuses is not it), or when the directory did not exist before the fork
/// and has no journal (the child died between creating it and starting the
/// journal). Anything else — another supervisor's job, a live one — is left
/// alone. Returns what it did, for the error message.
inline std::string remove_half_made_job(const std::string& root, const std::string& job, pid_t child,
                                        bool existed_before, std::chrono::system_clock::time_point forked_at) {
  namespace fs = std::filesystem;
  const fs::path job_dir = fs::path(root) / job;
  std::error_code ec;
  const auto kind = fs::symlink_status(job_dir, ec).type();
  if (ec || kind != fs::file_type::directory) return "";
  bool ours = false;
  if (fs::exists(job_dir / "journal.jsonl", ec)) {
    jobwarden::StatusAggregator<> aggregator(root);
    std::error_code read_error;
    const auto status = aggregator.read(job, read_error);
    ours = !read_error && status.supervisor.pid == static_cast<int>(child) && !status.supervisor.alive &&
           status.created_at && *status.created_at + std::chrono::milliseconds(1) >= forked_at;  // ms precision
  } else {
    ours = !existed_before;
  }
  if (!ours) return "";
  fs::remove_all(job_dir, ec);  // never follows a symlink inside it
  if (ec) return fmt::format("; cannot remove what it left in {}: {}", job_dir.string(), ec.message());
  return fmt::format("; removed what it left in {}", job_dir.string());
}

}  // namespace detach_detail

/// Starts job `job` under `root` detached: forks, and in the child (its own
/// session, stdin/stdout/stderr /dev/null) calls `child(reporter)`, which
/// opens the job, reports through `reporter` and returns the child's exit
/// status (the child then exits with it; it never returns from here). In the
/// parent, waits for the report: returns the detached supervisor once it has
/// the job open; throws `UsageError` (exit 2) or `std::runtime_error` (exit 1)
/// with the child's message when it could not, or with how it died when it
/// died first.
///
/// `child` may throw: a `UsageError` before the report is reported as a usage
/// error, any other exception as an error; after the report, it is printed on
/// the child's stderr (supervisor.log by then) and the child exits 1.
template <class Child>
DetachedJob detach_supervisor(const std::string& root, const std::string& job, Child&& child) {
  struct stat info {};
  const bool existed_before = ::lstat((root + "/" + job).c_str(), &info) == 0;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::system_category(), "cannot create the pipe to the detached supervisor");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const auto forked_at = std::chrono::system_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::system_error(error, std::system_category(), "cannot fork the detached supervisor");
  }
  if (pid == 0) {
    ::close(fds[0]);
    DetachReporter reporter(fds[1]);
    int code = 1;
    try {
      if (::setsid() < 0) throw std::system_error(errno, std::system_category(), "setsid");
      const int null_fd = ::open("/dev/null", O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (null_fd < 0) throw std::system_error(errno, std::system_category(), "cannot open /dev/null");
      for (int target : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
        if (::dup2(null_fd, target) < 0) throw std::system_error(errno, std::system_category(), "dup2");
      }
      ::close(null_fd);
      code = child(reporter);
    } catch (const UsageError& error) {
      if (reporter.reported()) print(stderr, "jobwarden run: {}\n", error.what());
      reporter.failed(true, error.what());
      code = 2;
    } catch (const std::exception& error) {
      if (reporter.reported()) print(stderr, "jobwarden run: {}\n", error.what());
      reporter.failed(false, error.what());
      code = 1;
    } catch (...) {
      if (reporter.reported()) print(stderr, "jobwarden run: unknown error\n");
      reporter.failed(false, "unknown error");
      code = 1;
    }
    if (!reporter.reported()) reporter.failed(false, "the detached supervisor ended without opening the job");
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(code);
  }

  ::close(fds[1]);
  std::string report;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buffer, static_cast<std::size_t>(n));
    if (report.find('\n') != std::string::npos) break;  // the whole report
  }
  ::close(fds[0]);
  const std::size_t end = report.find('\n');
  if (end == std::string::npos) {
    // Died before it reported: nothing else will ever say so.
    const int status = detach_detail::reap(pid);
    const std::string removed = detach_detail::remove_half_made_job(root, job, pid, existed_before, forked_at);
    throw std::runtime_error(fmt::format("the detached supervisor (pid {}) {} before it had job \"{}\" open{}", pid,
                                         detach_detail::describe_wait_status(status), job, removed));
  }
  report.resize(end);
  const std::size_t space = report.find(' ');
  const std::string kind = report.substr(0, space);
  const std::string rest = space == std::string::npos ? "" : report.substr(space + 1);
  if (kind == "ok") {
    const std::size_t gap = rest.find(' ');
    DetachedJob started;
    started.pid = static_cast<int>(pid);
    started.job_dir = detach_detail::absolute(gap == std::string::npos ? rest : rest.substr(gap + 1));
    return started;  // not reaped: it runs on (and is reparented when this process exits)
  }
  detach_detail::reap(pid);  // it exits right after a failed report
  if (kind == "usage") throw UsageError(rest);
  throw std::runtime_error(rest);
}

}  // namespace jobwarden_cli
