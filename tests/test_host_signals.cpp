// What the host does with signals and children must not cost it its workers:
// SIGCHLD ignored, signals blocked or ignored, a SIGCHLD handler of its own, a
// waitpid(-1) that takes a worker, and cancels that race a worker's exit.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jobwarden/job_supervisor.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

// Every kill() made by this test program comes here first (a definition in
// the executable comes before libc's). While `checking_kills` is set, each
// signal must go to a child of ours that is not reaped yet — a pid (or group)
// that cannot have been reused — and any other target is counted.
std::atomic<bool> checking_kills{false};
std::atomic<int> kills_checked{0};
std::atomic<int> stray_kills{0};
std::atomic<int> last_stray_target{0};

}  // namespace

extern "C" int kill(pid_t pid, int sig) noexcept {
  if (checking_kills.load() && sig != 0) {
    int saved_errno = errno;
    pid_t target = pid < 0 ? -pid : pid;
    siginfo_t info;
    info.si_pid = 0;
    // Looks without reaping; ECHILD: not our child, or reaped already.
    bool ours = target > 1 && ::waitid(P_PID, static_cast<id_t>(target), &info,
                                       WEXITED | WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT) == 0;
    if (ours) {
      ++kills_checked;
    } else {
      ++stray_kills;
      last_stray_target = pid;
    }
    errno = saved_errno;
  }
  return static_cast<int>(::syscall(SYS_kill, pid, sig));
}

namespace {

using jwtest::quiet;

/// Puts back the host's disposition of `sig` at scope exit.
class SavedDisposition {
 public:
  explicit SavedDisposition(int sig) : sig_(sig) { ::sigaction(sig_, nullptr, &saved_); }
  ~SavedDisposition() { ::sigaction(sig_, &saved_, nullptr); }
  SavedDisposition(const SavedDisposition&) = delete;
  SavedDisposition& operator=(const SavedDisposition&) = delete;

 private:
  int sig_;
  struct sigaction saved_;
};

/// Blocks `signals` in the calling thread until scope exit.
class BlockedSignals {
 public:
  explicit BlockedSignals(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : signals) sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, &saved_);
  }
  ~BlockedSignals() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

 private:
  sigset_t saved_;
};

/// A thread that does nothing but run signal handlers, as in a host whose
/// other threads block signals; stops at scope exit. Start it before
/// blocking: it keeps the mask of the thread that made it.
class SignalThread {
 public:
  SignalThread() {
    if (::pipe2(stop_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    thread_ = std::thread([fd = stop_[0]] {
      pollfd pfd{fd, POLLIN, 0};
      while (::poll(&pfd, 1, -1) <= 0) {
      }
    });
  }
  ~SignalThread() {
    ssize_t ignored = ::write(stop_[1], "x", 1);
    (void)ignored;
    thread_.join();
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

 private:
  int stop_[2] = {-1, -1};
  std::thread thread_;
};

/// What a daemon does that does not care about its children: either
/// `signal(SIGCHLD, SIG_IGN)` or `SA_NOCLDWAIT`; both make the kernel reap.
void ignore_children(bool with_nocldwait) {
  if (!with_nocldwait) {
    ::signal(SIGCHLD, SIG_IGN);
    return;
  }
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  action.sa_flags = SA_NOCLDWAIT;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGCHLD, &action, nullptr);
}

/// A child of the host's own that exits at once; returns its status as the
/// host reaps it (-1: it could not, the kernel had reaped it).
int run_own_child(int code) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(code);
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  return got == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// A signal mask as /proc/self/status shows it ("SigBlk:\t0000000000000000").
unsigned long long status_mask(const std::string& status, const std::string& name) {
  auto at = status.find(name + ":");
  if (at == std::string::npos) throw std::runtime_error("no " + name + " in /proc status");
  return std::stoull(status.substr(at + name.size() + 1), nullptr, 16);
}

// The host's SIGCHLD handler: writes each pid it is told of to a pipe.
std::atomic<int> host_handler_pipe{-1};
void host_sigchld_handler(int, siginfo_t* info, void*) {
  int saved_errno = errno;
  int fd = host_handler_pipe.load();
  if (fd >= 0) {
    pid_t pid = info->si_pid;
    ssize_t ignored = ::write(fd, &pid, sizeof pid);
    (void)ignored;
  }
  errno = saved_errno;
}

void install_host_handler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = &host_sigchld_handler;
  action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGCHLD, &action, nullptr);
}

/// Whether worker `id` ends and the supervisor's `event_fd()` wakes the host
/// for it, as a host's event loop waits (no deadlines here: a wait that
/// times out means the wake-up never came).
bool ends_with_wakeup(JobSupervisor<>& supervisor, const std::string& id) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    supervisor.poll();
    if (jobwarden::is_terminal(supervisor.info(id).state)) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) == 0) return false;
  }
}

/// Waits (bounded) until the host's handler reported `pid`.
bool handler_saw(int read_fd, pid_t pid) {
  auto until = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{read_fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    pid_t seen = 0;
    if (::read(read_fd, &seen, sizeof seen) == static_cast<ssize_t>(sizeof seen) && seen == pid) {
      return true;
    }
  }
}

}  // namespace

TEST_CASE(
    "a host that ignores SIGCHLD, before or after starting the supervisor, keeps exit codes") {
  const bool with_nocldwait = GENERATE(false, true);
  const bool before_start = GENERATE(true, false);
  CAPTURE(with_nocldwait, before_start);
  SavedDisposition saved(SIGCHLD);
  if (before_start) ignore_children(with_nocldwait);
  JobSupervisor<> supervisor;
  if (!before_start) ignore_children(with_nocldwait);
  auto failing = supervisor.submit(quiet({"/bin/sh", "-c", "exit 3"}));
  auto passing = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait_all(30s));
  auto failed = supervisor.info(failing);
  CHECK(failed.state == WorkerState::failed);
  CHECK(failed.error == "");
  REQUIRE(failed.exit_code);
  CHECK(*failed.exit_code == 3);
  auto succeeded = supervisor.info(passing);
  CHECK(succeeded.state == WorkerState::succeeded);
  REQUIRE(succeeded.exit_code);
  CHECK(*succeeded.exit_code == 0);
  // The price, as documented: the host's own children now wait to be reaped.
  CHECK(run_own_child(7) == 7);
}

TEST_CASE("workers start with no blocked and no ignored signals whatever the host set") {
  jwtest::TempDir dir;
  const auto host_signals = {SIGTERM, SIGINT, SIGPIPE, SIGHUP};
  SavedDisposition term(SIGTERM), interrupt(SIGINT), broken_pipe(SIGPIPE), hangup(SIGHUP);
  for (int sig : host_signals) ::signal(sig, SIG_IGN);
  // The worker is spawned on this thread (submit starts it when a slot is free).
  BlockedSignals blocked_here(host_signals);
  JobSupervisor<> supervisor;
  auto spec = quiet({"/bin/cat", "/proc/self/status"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "status");
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  REQUIRE(supervisor.info(id).state == WorkerState::succeeded);
  std::string status = jwtest::read_file(dir / "status");
  CHECK(status_mask(status, "SigBlk") == 0);
  CHECK(status_mask(status, "SigIgn") == 0);
}

TEST_CASE("the host's own SIGCHLD handler keeps being called for its own children") {
  const bool before_start = GENERATE(true, false);
  CAPTURE(before_start);
  SavedDisposition saved(SIGCHLD);
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  host_handler_pipe = fds[1];
  struct ClosePipe {
    int fds[2];
    ~ClosePipe() {
      host_handler_pipe = -1;
      ::close(fds[0]);
      ::close(fds[1]);
    }
  } close_pipe{{fds[0], fds[1]}};
  // SIGCHLD runs its handlers on another thread: nothing but jobwarden's
  // own handler can wake the thread that waits for the supervisor.
  SignalThread signal_thread;
  BlockedSignals blocked_here({SIGCHLD});
  if (before_start) install_host_handler();
  JobSupervisor<> supervisor;
  if (!before_start) install_host_handler();
  // The supervisor still learns of its workers' exits...
  auto first = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(ends_with_wakeup(supervisor, first));
  CHECK(supervisor.info(first).state == WorkerState::succeeded);
  // The host's handler hears of it too. Then no SIGCHLD is pending: the
  // next one cannot merge with it (standard signals do not queue).
  CHECK(handler_saw(fds[0], supervisor.info(first).pid));
  // ...and of the host's own child, which the host reaps.
  pid_t own = ::fork();
  if (own == 0) ::_exit(0);
  REQUIRE(own > 0);
  CHECK(handler_saw(fds[0], own));
  int status = 0;
  CHECK(::waitpid(own, &status, 0) == own);
  auto second = supervisor.submit(quiet({"/bin/sh", "-c", "exit 4"}));
  REQUIRE(ends_with_wakeup(supervisor, second));
  CHECK(supervisor.info(second).state == WorkerState::failed);
}

TEST_CASE("a worker the host reaps with waitpid(-1) is lost with the reason and the others go on") {
  jwtest::TempDir dir;
  const std::string fifo = dir / "go.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Read-write: opening does not wait for the worker, and the worker's open
  // for reading does not wait for us (Linux).
  int go = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(go >= 0);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_go{go};
  JobSupervisor<> supervisor;
  auto taken = supervisor.submit(quiet({"/bin/sh", "-c", "exit 5"}));
  auto waiting = supervisor.submit(quiet({"/bin/sh", "-c", "read line < " + fifo}));
  const int taken_pid = supervisor.info(taken).pid;
  REQUIRE(taken_pid > 0);
  // The only child that can end now is `taken` (the other waits for us, the
  // orphan guard for the supervisor), and nothing polled the supervisor yet.
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(-1, &status, 0);
  } while (got < 0 && errno == EINTR);
  REQUIRE(got == taken_pid);
  CHECK(WEXITSTATUS(status) == 5);
  REQUIRE(::write(go, "go\n", 3) == 3);
  auto after = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait_all(30s));
  auto lost = supervisor.info(taken);
  CHECK(lost.state == WorkerState::lost);
  CHECK(lost.error.find("reaped by someone else") != std::string::npos);
  CHECK(supervisor.info(waiting).state == WorkerState::succeeded);
  CHECK(supervisor.info(after).state == WorkerState::succeeded);
}

TEST_CASE("a cancel that races a worker's exit never signals a reaped process") {
  // JOBWARDEN_SOAK_JOBS lowers the count where every spawn is slow (TSan).
  // The portable path's spawn (a fork, then a close loop up to the descriptor
  // limit) costs ten times the vfork's: fewer workers keep it within seconds.
  const int most = JOBWARDEN_LINUX_FAST_PATH ? 1000 : 300;
  const char* configured = std::getenv("JOBWARDEN_SOAK_JOBS");
  const int jobs = std::min(most, configured != nullptr ? std::atoi(configured) : most);
  REQUIRE(jobs > 0);
  struct Checking {
    Checking() {
      kills_checked = 0;
      stray_kills = 0;
      checking_kills = true;
    }
    ~Checking() { checking_kills = false; }
  } checking;
  std::size_t cancelled = 0;
  std::size_t cancelled_after_exit = 0;
  std::size_t succeeded = 0;
  std::size_t other = 0;
  {
    // Starts are events (delivered by the polling thread below): the
    // canceller waits for them rather than spinning on info().
    std::mutex mutex;
    std::condition_variable started_changed;
    std::set<std::string> started;
    jobwarden::SupervisorOptions options;
    options.max_concurrency = 8;
    JobSupervisor<> supervisor(options);
    supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
      if (event.kind != jobwarden::EventKind::started) return;
      std::lock_guard<std::mutex> lock(mutex);
      started.insert(event.worker.id);
      started_changed.notify_all();
    });
    std::vector<std::string> ids;
    for (int i = 0; i < jobs; ++i) ids.push_back(supervisor.submit(quiet({"/bin/true"})));
    // Cancels land at random moments of each worker's short life: before it
    // starts, while it runs, after it exited but before the supervisor saw
    // it, and after it was reaped.
    std::thread canceller([&] {
      std::mt19937 random(std::random_device{}());
      const auto give_up = std::chrono::steady_clock::now() + 120s;
      for (const auto& id : ids) {
        if (random() % 4 != 0) {
          std::unique_lock<std::mutex> lock(mutex);
          started_changed.wait_until(lock, give_up, [&] { return started.count(id) != 0; });
          lock.unlock();
          std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
        }
        supervisor.cancel(id);
      }
    });
    bool all_done = supervisor.wait_all(180s);
    canceller.join();
    REQUIRE(all_done);
    for (const auto& worker : supervisor.workers()) {
      if (worker.state == WorkerState::cancelled) {
        ++cancelled;
        // Exited by itself, but the cancel came before the supervisor saw it.
        if (worker.exit_code == 0) ++cancelled_after_exit;
      } else if (worker.state == WorkerState::succeeded) {
        ++succeeded;
      } else {
        ++other;
        UNSCOPED_INFO("worker " << worker.id << ": " << jobwarden::to_string(worker.state) << " "
                                << worker.error);
      }
    }
  }
  CAPTURE(jobs, cancelled, cancelled_after_exit, succeeded, kills_checked.load(),
          last_stray_target.load());
  CHECK(stray_kills == 0);
  CHECK(other == 0);
  // The race was run: some cancels came first, some exits, some signals went out.
  CHECK(cancelled > 0);
  CHECK(succeeded > 0);
  CHECK(kills_checked > 0);
}
