#pragma once
// `jobwarden logs`: a worker's output from the job directory, read by any
// process (no server, no supervisor needed). It reads `workers/<id>.stdout.log`
// (or `<id>.stderr.log`) with the rules of the library's readers: every directory
// and file opened relative to its parent with O_NOFOLLOW, non-blocking, regular
// files only, so nothing planted in a job directory makes it read elsewhere or
// hang; reads are bounded chunks.
//
// A log that does not exist is no output: the supervisor creates a worker's
// log only on its first byte (a worker that prints nothing has none). With
// --follow, each log is followed by its offset:
// the file is re-opened from 0 when it shrinks, when another file takes its
// name, or when its first bytes change (a restart truncates or recreates it,
// and may have written past the old offset by the next look). New bytes are
// noticed through one inotify watch on the job's `workers/` directory on
// Linux (its events name the file), by a size check every 100 ms elsewhere. Whether a worker has ended
// is the aggregator's verdict (a terminal state, `lost` included when the
// supervisor died); then its log is drained once more and the follow of that
// worker is over.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/inotify.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <jobwarden/detail/job_files.hpp>
#include <jobwarden/jobwarden.hpp>

#include "arguments.hpp"
#include "output.hpp"
#include "render.hpp"

namespace jobwarden_cli {

inline const char* const logs_help = R"(usage: jobwarden logs --root DIR --job ID [--worker W] [--stderr] [--follow]

Prints a job's output from its log files (DIR/ID/workers/<id>.stdout.log, or
<id>.stderr.log with --stderr). With --worker, that worker's output as it is. Without,
every worker's output (one worker after the other in id order; with --follow, as
it comes), each line prefixed with the worker's id and a TAB; only whole lines
are shown, and a last line without a newline once its worker has ended. A worker that printed nothing
may have no log file: that is no output, not an error.

options:
  --root DIR    directory holding the job directories (required)
  --job ID      the job's id (required)
  --worker W    only this worker's output, untagged
  --stderr      the stderr logs instead of the stdout logs
  --follow      keep printing output as it is written, until the job (with
                --worker: that worker) has ended, or its supervisor died, and
                everything written is printed. A log truncated or replaced by
                a restart is read again from its start

exit status: 0 printed; 1 a log could not be read; 2 usage error, no such job,
or no such worker.
)";

namespace logs_detail {

/// A directory or regular file opened like the library's readers open them.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline Fd open_dir_at(int parent, const char* name) {
  return Fd(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

/// The phrase for a log that cannot be read.
inline std::string open_error(int error) {
  if (error == ELOOP || error == EMLINK) return "symbolic link not followed";
  return std::strerror(error);
}

/// One worker's log as followed: where it was read up to, and the part of a
/// line not yet shown (tagged output shows whole lines only).
struct FollowedLog {
  std::string id;
  Fd file;
  dev_t device = 0;
  ino_t inode = 0;
  off_t offset = 0;
  /// The first bytes read of the file: when they change, the file was
  /// rewritten in place (truncated and written past the offset between
  /// two looks), and is read again from its start.
  std::string head;
  std::string partial;
  bool done = false;
  bool woken = true;  ///< its file changed since it was last read (or `workers/` is not watched)
};

class LogPrinter {
 public:
  LogPrinter(std::string root, std::string job, bool stderr_log, bool tagged)
      : root_(std::move(root)), job_(std::move(job)),
        suffix_(stderr_log ? jobwarden::detail::stderr_file_suffix : jobwarden::detail::stdout_file_suffix),
        tagged_(tagged) {}

  /// Opens the job's `workers/` directory; false (and a message) when it cannot.
  bool open_workers(std::string& problem) {
    Fd root(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root) job_fd_ = open_dir_at(root.get(), job_.c_str());
    if (!job_fd_) {
      problem = fmt::format("cannot open job \"{}\" under {}: {}", job_, root_, open_error(errno));
      return false;
    }
    workers_fd_ = open_dir_at(job_fd_.get(), jobwarden::detail::workers_dir_name);
    if (!workers_fd_ && errno != ENOENT) {
      problem = fmt::format("cannot open {}/{}/workers: {}", root_, job_, open_error(errno));
      return false;
    }
    return true;
  }

  /// Prints what `log` gained since it was last read. `ended`: its worker
  /// has ended, so a last line without a newline is shown too. False when
  /// the log exists but cannot be read (a message on stderr, once).
  bool pump(FollowedLog& log, bool ended) {
    bool ok = true;
    if (!workers_fd_) workers_fd_ = open_dir_at(job_fd_.get(), jobwarden::detail::workers_dir_name);
    const std::string name = log.id + suffix_;
    struct stat info {};
    bool exists = false;
    if (workers_fd_ && ::fstatat(workers_fd_.get(), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0) {
      exists = true;
      if (!S_ISREG(info.st_mode)) {
        ok = complain(log, S_ISLNK(info.st_mode) ? "symbolic link not followed" : "not a regular file");
        exists = false;
      }
    }
    if (exists && (!log.file || info.st_ino != log.inode || info.st_dev != log.device || info.st_size < log.offset ||
                   !same_head(log))) {
      // A new log, or a restart truncated or replaced it: from its start.
      end_line(log);
      log.file = Fd(::openat(workers_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
      struct stat opened {};
      if (!log.file) {
        if (errno != ENOENT) ok = complain(log, open_error(errno));
      } else if (::fstat(log.file.get(), &opened) != 0 || !S_ISREG(opened.st_mode)) {
        log.file.reset();
        ok = complain(log, "not a regular file");
      } else {
        log.device = opened.st_dev;
        log.inode = opened.st_ino;
        log.offset = 0;
        log.head.clear();
      }
    }
    if (log.file) {
      char buffer[65536];
      for (;;) {
        const ssize_t got = ::pread(log.file.get(), buffer, sizeof buffer, log.offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
          ok = complain(log, std::strerror(errno));
          break;
        }
        if (got == 0) break;
        if (log.head.size() < head_bytes && log.offset == static_cast<off_t>(log.head.size())) {
          log.head.append(buffer, std::min(static_cast<std::size_t>(got), head_bytes - log.head.size()));
        }
        log.offset += got;
        emit(log, buffer, static_cast<std::size_t>(got));
      }
    }
    if (ended) end_line(log);
    std::fflush(stdout);
    return ok;
  }

 private:
  static constexpr std::size_t head_bytes = 256;

  /// Whether the file still begins with the bytes it began with.
  static bool same_head(const FollowedLog& log) {
    if (!log.file || log.head.empty()) return true;
    char buffer[head_bytes];
    ssize_t got;
    do {
      got = ::pread(log.file.get(), buffer, log.head.size(), 0);
    } while (got < 0 && errno == EINTR);
    return got == static_cast<ssize_t>(log.head.size()) && log.head.compare(0, log.head.size(), buffer, log.head.size()) == 0;
  }

  /// Writes `size` bytes of `log`: as they are, or as whole tagged lines.
  void emit(FollowedLog& log, const char* data, std::size_t size) {
    if (!tagged_) {
      std::fwrite(data, 1, size, stdout);
      return;
    }
    std::string text;
    std::size_t start = 0;
    for (std::size_t i = 0; i < size; ++i) {
      if (data[i] != '\n') continue;
      text += log.id;
      text += '\t';
      text += log.partial;
      log.partial.clear();
      text.append(data + start, i + 1 - start);
      start = i + 1;
    }
    log.partial.append(data + start, size - start);
    // A line longer than this is shown in pieces, each tagged.
    constexpr std::size_t longest_line = std::size_t{1} << 20;
    if (log.partial.size() > longest_line) end_line(log, text);
    write_text(stdout, text);
  }

  /// Shows a held partial line, ended with a newline (tagged output).
  void end_line(FollowedLog& log) {
    std::string text;
    end_line(log, text);
    write_text(stdout, text);
  }
  void end_line(FollowedLog& log, std::string& text) {
    if (log.partial.empty()) return;
    text += log.id + "\t" + log.partial + "\n";
    log.partial.clear();
  }

  bool complain(FollowedLog& log, const std::string& why) {
    if (complained_.insert({log.id, why}).second) {
      print(stderr, "jobwarden logs: {}/{}/{}/{}{}: {}\n", root_, job_, jobwarden::detail::workers_dir_name, log.id,
            suffix_, why);
    }
    return false;
  }

  std::string root_, job_;
  const char* suffix_;  ///< `.stdout.log` or `.stderr.log`, after the worker's id
  bool tagged_;
  Fd job_fd_, workers_fd_;
  std::map<std::string, std::string> complained_;
};

/// What wakes a follower: one inotify watch on the job's `workers/`
/// directory where there is one (every worker's logs are in it, and each
/// event names its file), else a short sleep.
class LogWaiter {
 public:
  explicit LogWaiter(const std::string& workers_dir) : workers_dir_(workers_dir) {
#if defined(__linux__) && !defined(JOBWARDEN_PORTABLE)
    fd_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
#endif
  }

  /// Watches `workers/` (it may not exist yet: a job being created); harmless twice.
  void watch() {
#if defined(__linux__)
    if (!fd_ || wd_ >= 0) return;
    wd_ = ::inotify_add_watch(fd_.get(), workers_dir_.c_str(),
                              IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR |
                                  IN_DONT_FOLLOW);
#endif
  }

  /// Waits until a file in `workers/` changes or `longest` has passed (the
  /// job's state and a dead supervisor show no event), and marks `woken` the
  /// logs of the workers whose files changed. Without inotify, or before
  /// `workers/` is watched, waits 100 ms and marks every log.
  void wait(std::chrono::milliseconds longest, std::vector<FollowedLog>& logs) {
#if defined(__linux__)
    if (fd_ && wd_ >= 0) {
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(longest.count())) > 0) {
        // Let a burst of writes land together, then see whose they were.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        alignas(inotify_event) char buffer[16384];
        ssize_t got;
        std::string id;
        while ((got = ::read(fd_.get(), buffer, sizeof buffer)) > 0) {
          for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= got;) {
            inotify_event event;
            std::memcpy(&event, buffer + at, sizeof event);
            if (event.mask & (IN_Q_OVERFLOW | IN_IGNORED)) {
              // Events lost, or the directory went away: look at everything.
              for (auto& log : logs) log.woken = true;
              if (event.mask & IN_IGNORED) wd_ = -1;
            } else if (event.len > 0) {
              const char* name = buffer + at + sizeof(inotify_event);
              const auto kind = jobwarden::detail::classify_worker_file(std::string(name, ::strnlen(name, event.len)), id);
              if (kind == jobwarden::detail::WorkerFileKind::stdout_log ||
                  kind == jobwarden::detail::WorkerFileKind::stderr_log) {
                for (auto& log : logs) {
                  if (log.id == id) log.woken = true;
                }
              }
            }
            at += static_cast<ssize_t>(sizeof(inotify_event) + event.len);
          }
        }
      }
      return;
    }
#endif
    std::this_thread::sleep_for(std::min(longest, std::chrono::milliseconds(100)));
    for (auto& log : logs) log.woken = true;
  }

 private:
  std::string workers_dir_;
  Fd fd_;
#if defined(__linux__)
  int wd_ = -1;
#endif
};

}  // namespace logs_detail

/// `jobwarden logs`.
inline int command_logs(const Arguments& args, const std::string& root, const std::string& job) {
  using namespace logs_detail;
  const std::optional<std::string> only = args.value("worker");
  if (only && !jobwarden::is_valid_id(*only)) {
    throw UsageError(fmt::format("--worker: invalid worker id {}: it must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}",
                                 printable("\"" + only->substr(0, 160) + "\"")));
  }
  const bool follow = args.has("follow");
  jobwarden::StatusAggregatorOptions options;
  options.watch_for_changes = follow;
  jobwarden::StatusAggregator<> aggregator(root, options);
  auto read = [&] {
    std::error_code ec;
    auto status = aggregator.read(job, ec);
    if (ec == jobwarden::errc::unknown_job) throw UsageError(fmt::format("no job \"{}\" under {}", job, root));
    if (ec) throw UsageError(fmt::format("cannot read job \"{}\" under {}: {}", job, root, ec.message()));
    return status;
  };

  auto status = read();
  if (only && status.find_worker(*only) == nullptr) {
    throw UsageError(fmt::format("no worker \"{}\" in job \"{}\" under {}", *only, job, root));
  }
  LogPrinter printer(root, job, args.has("stderr"), !only);
  std::string problem;
  if (!printer.open_workers(problem)) throw std::runtime_error(problem);

  std::vector<FollowedLog> logs;
  auto take_in = [&](const jobwarden::JobStatus<>& current) {
    for (const auto& worker : current.workers) {
      if (only && worker.id != *only) continue;
      bool known = false;
      for (const auto& log : logs) known = known || log.id == worker.id;
      if (!known) {
        FollowedLog log;
        log.id = worker.id;
        logs.push_back(std::move(log));
      }
    }
  };
  auto ended = [&](const jobwarden::JobStatus<>& current, const std::string& id) {
    if (jobwarden::is_terminal(current.state)) return true;
    const auto* worker = current.find_worker(id);
    return worker != nullptr && jobwarden::is_terminal(worker->state);
  };
  take_in(status);

  bool ok = true;
  if (!follow) {
    for (auto& log : logs) ok = printer.pump(log, ended(status, log.id)) && ok;
    return ok ? 0 : 1;
  }

  // Follow: every worker's log as it grows, each drained once more after the
  // status read that showed it ended.
  // Only the logs whose files changed are read, and every log once a
  // second in any case.
  LogWaiter waiter(jobwarden::detail::JobLayout{root, job}.workers_dir());
  auto next_sweep = std::chrono::steady_clock::now();
  for (;;) {
    waiter.watch();
    bool all_done = true;
    const bool sweep = std::chrono::steady_clock::now() >= next_sweep;
    if (sweep) next_sweep = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    for (auto& log : logs) {
      if (log.done) continue;
      const bool worker_ended = ended(status, log.id);
      if (log.woken || worker_ended || sweep) ok = printer.pump(log, worker_ended) && ok;
      log.woken = false;
      log.done = worker_ended;
      all_done = all_done && log.done;
    }
    if (all_done && (only || jobwarden::is_terminal(status.state))) return ok ? 0 : 1;
    waiter.wait(std::chrono::milliseconds(500), logs);
    status = read();
    take_in(status);
  }
}

}  // namespace jobwarden_cli
