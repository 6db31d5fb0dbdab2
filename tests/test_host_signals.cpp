// What the host does with signals and children must not cost it its workers:
// SIGCHLD ignored, or a SIGCHLD handler of its own.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jobwarden/job_supervisor.hpp>

#include <atomic>
#include <cerrno>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

WorkerSpec quiet(std::vector<std::string> argv) {
  WorkerSpec spec;
  spec.argv = std::move(argv);
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  return spec;
}

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
  if (before_start) install_host_handler();
  JobSupervisor<> supervisor;
  if (!before_start) install_host_handler();
  // The supervisor still learns of its workers' exits...
  auto first = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait(first, 30s));
  CHECK(supervisor.info(first).state == WorkerState::succeeded);
  // ...and the host's handler hears of the host's own child, which the host reaps.
  pid_t own = ::fork();
  if (own == 0) ::_exit(0);
  REQUIRE(own > 0);
  CHECK(handler_saw(fds[0], own));
  int status = 0;
  CHECK(::waitpid(own, &status, 0) == own);
  auto second = supervisor.submit(quiet({"/bin/sh", "-c", "exit 4"}));
  REQUIRE(supervisor.wait(second, 30s));
  CHECK(supervisor.info(second).state == WorkerState::failed);
}
