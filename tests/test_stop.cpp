// The stop sequence: stop signal to the whole tree, grace period, SIGKILL,
// reaping — on timeout, cancel, shutdown and destruction; and `stop_job`
// from outside, judging the job by its journal.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/job_control.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
using jwtest::quiet;

/// A shell worker that starts a background grandchild, writes its pid, and waits.
WorkerSpec with_grandchild(const std::string& pid_file) {
  return quiet({"/bin/sh", "-c", "sleep 100 & echo $! > " + pid_file + "; sleep 100"});
}

}  // namespace

TEST_CASE("a timed-out worker's grandchildren are killed too") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = with_grandchild(dir / "grandchild.pid");
  spec.timeout = 300ms;
  spec.grace_period = 5s;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(spec);
  int grandchild = jwtest::read_pid_file(dir / "grandchild.pid");
  jwtest::KillOnExit guard;
  guard.watch(grandchild);
  REQUIRE(grandchild > 0);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  CHECK(info.error.find("timed out") != std::string::npos);
  CHECK(jwtest::wait_gone(grandchild));
  CHECK(jwtest::process_gone(info.pid));
  CHECK(std::find(kinds.begin(), kinds.end(), EventKind::timed_out) != kinds.end());
  CHECK(kinds.back() == EventKind::exited);
}

TEST_CASE("a worker that traps SIGTERM and exits within the grace period is not SIGKILLed") {
  jwtest::TempDir dir;
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  JobSupervisor<> supervisor;
  auto spec = quiet({jwtest::test_worker(), "trap-term", "100"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(ready.path());
  spec.grace_period = 20s;
  bool killed = false;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { killed |= e.kind == EventKind::killed; });
  auto id = supervisor.submit(spec);
  REQUIRE(ready.wait_ready());
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 15s));  // well inside the 20 s grace period
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);
  CHECK_FALSE(info.signal);
  CHECK_FALSE(killed);
}

TEST_CASE("a worker that ignores SIGTERM is SIGKILLed after the grace period") {
  jwtest::TempDir dir;
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  JobSupervisor<> supervisor;
  auto spec = quiet({jwtest::test_worker(), "ignore-term"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(ready.path());
  spec.grace_period = 200ms;
  bool killed = false;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { killed |= e.kind == EventKind::killed; });
  auto id = supervisor.submit(spec);
  REQUIRE(ready.wait_ready());
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  REQUIRE(info.signal);
  CHECK(*info.signal == SIGKILL);
  CHECK(killed);
}

TEST_CASE("a custom stop signal is what the worker receives first") {
  JobSupervisor<> supervisor;
  auto spec = quiet({"/bin/sh", "-c", "trap 'exit 42' INT; sleep 100 & wait"});
  spec.stop_signal = SIGINT;
  spec.timeout = 200ms;
  spec.grace_period = 20s;
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 15s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 42);
}

TEST_CASE("cancel stops a running worker and ends it cancelled") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(with_grandchild(dir / "gc.pid"));
  int grandchild = jwtest::read_pid_file(dir / "gc.pid");
  jwtest::KillOnExit guard;
  guard.watch(grandchild);
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK(jwtest::wait_gone(grandchild));
}

TEST_CASE("cancel of a pending worker ends it cancelled without starting it") {
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  auto running = supervisor.submit(quiet({"sleep", "100"}));
  auto waiting = supervisor.submit(quiet({"/bin/true"}));
  CHECK(supervisor.info(waiting).state == WorkerState::pending);
  supervisor.cancel(waiting);
  CHECK(supervisor.info(waiting).state == WorkerState::cancelled);
  CHECK(supervisor.info(waiting).pid == 0);
  supervisor.cancel(running);
  REQUIRE(supervisor.wait_all(30s));
}

TEST_CASE("cancel of an unknown worker is an error naming the id") {
  JobSupervisor<> supervisor;
  std::error_code ec;
  supervisor.cancel("nope", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  CHECK_THROWS_WITH(supervisor.cancel("nope"), Catch::Contains("nope"));
}

TEST_CASE("shutdown stops every running worker and cancels the pending ones") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 2;
  JobSupervisor<> supervisor(options);
  auto a = supervisor.submit(with_grandchild(dir / "a.pid"));
  auto b = supervisor.submit(with_grandchild(dir / "b.pid"));
  auto c = supervisor.submit(quiet({"sleep", "100"}));
  int ga = jwtest::read_pid_file(dir / "a.pid");
  int gb = jwtest::read_pid_file(dir / "b.pid");
  jwtest::KillOnExit guard_a, guard_b;
  guard_a.watch(ga);
  guard_b.watch(gb);
  supervisor.shutdown();
  for (const auto& id : {a, b, c}) CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK(supervisor.info(c).pid == 0);
  CHECK(jwtest::wait_gone(ga));
  CHECK(jwtest::wait_gone(gb));
  std::error_code ec;
  supervisor.submit(quiet({"/bin/true"}), ec);
  CHECK(ec == jobwarden::errc::supervisor_shut_down);
}

TEST_CASE("destroying a supervisor leaves nothing running") {
  jwtest::TempDir dir;
  int leader = 0, grandchild = 0;
  jwtest::KillOnExit guard;
  {
    JobSupervisor<> supervisor;
    auto spec = with_grandchild(dir / "gc.pid");
    spec.grace_period = 2s;
    auto id = supervisor.submit(spec);
    grandchild = jwtest::read_pid_file(dir / "gc.pid");
    guard.watch(grandchild);
    leader = supervisor.info(id).pid;
  }
  CHECK(jwtest::process_gone(leader));
  CHECK(jwtest::wait_gone(grandchild));
}

TEST_CASE("background processes left by a worker that exited are killed with it") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(quiet({"/bin/sh", "-c", "sleep 100 & echo $! > " + (dir / "bg.pid")}));
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  int background = jwtest::read_pid_file(dir / "bg.pid");
  jwtest::KillOnExit guard;
  guard.watch(background);
  CHECK(jwtest::wait_gone(background));
}

TEST_CASE("a terminal state is final: cancelling a finished worker changes nothing") {
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait(id, 30s));
  auto before = supervisor.info(id);
  supervisor.cancel(id);
  supervisor.poll();
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(supervisor.info(id).ended_at == before.ended_at);
  // The one rule every state change goes through.
  for (auto terminal : jobwarden::all_worker_states) {
    if (!jobwarden::is_terminal(terminal)) continue;
    for (auto next : jobwarden::all_worker_states) {
      CHECK_FALSE(jobwarden::is_allowed_transition(terminal, next));
    }
  }
  CHECK(jobwarden::is_allowed_transition(WorkerState::running, WorkerState::pending));  // a restart
  CHECK(jobwarden::is_allowed_transition(WorkerState::pending, WorkerState::running));
}

namespace {
/// A `sleep 100` child in its own process group, SIGKILLed and reaped at
/// scope exit; `reap()` says how it ended.
class SleepingChild {
 public:
  SleepingChild() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::execl("/bin/sleep", "sleep", "100", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ > 0) ::setpgid(pid_, pid_);
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;
  ~SleepingChild() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap();
  }
  int pid() const { return pid_; }
  /// Waits for it (bounded by whoever kills it) and returns the signal that ended it, or 0.
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  /// Whether it has exited (without reaping it).
  bool exited() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
  }

 private:
  int pid_ = -1;
};
}  // namespace

TEST_CASE("stop_job recovers a job whose supervisor is gone: its worker is stopped, the journal says lost") {
  jwtest::TempDir dir;
  const jobwarden::detail::JobLayout layout{dir.path(), "abandoned"};
  SleepingChild worker;  // started before the lock exists, so it holds no descriptor of it
  REQUIRE(worker.pid() > 0);
  {
    jobwarden::detail::JobRecorder recorder(layout);
    recorder.open();
    jobwarden::WorkerInfo info;
    info.id = "w";
    info.state = WorkerState::running;
    info.attempt = 1;
    info.pid = worker.pid();
    info.process_start_time = jobwarden::detail::process_start_time(worker.pid()).value_or(0);
    REQUIRE(info.process_start_time > 0);
    recorder.write_worker(info);
  }  // the lock is released with no final job line: a dead supervisor
  const std::string before = jwtest::read_file(layout.journal_file());

  std::error_code ec;
  const jobwarden::StopOutcome outcome = jobwarden::stop_job(dir.path(), "abandoned", 500ms, 0ms, ec);
  REQUIRE_FALSE(ec);
  CHECK(outcome.action == jobwarden::StopAction::recovered);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::lost);
  CHECK(outcome.recovery.stopped == std::vector<std::string>{"w"});
  CHECK(outcome.recovery.marked_lost == std::vector<std::string>{"w"});
  CHECK(worker.reap() == SIGTERM);
  const std::string after = jwtest::read_file(layout.journal_file());
  CHECK(after.compare(0, before.size(), before) == 0);  // appended, not rewritten
  CHECK(jwjournal::worker_record(layout, "w").state == WorkerState::lost);
  CHECK(jwjournal::job_record(layout).state == jobwarden::JobState::lost);

  // Again: finished, nothing to do, nothing written.
  const jobwarden::StopOutcome again = jobwarden::stop_job(dir.path(), "abandoned", 500ms, 0ms, ec);
  CHECK_FALSE(ec);
  CHECK(again.action == jobwarden::StopAction::already_finished);
  CHECK(again.finished);
  CHECK(jwtest::read_file(layout.journal_file()) == after);
}

TEST_CASE("stop_job of a job directory without a journal signals nothing and says why") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "unrecorded");
  jwstatus::make_dir(dir / "unrecorded/workers");
  std::error_code ec;
  const jobwarden::StopOutcome outcome = jobwarden::stop_job(dir.path(), "unrecorded", 100ms, 0ms, ec);
  REQUIRE_FALSE(ec);
  CHECK(outcome.action == jobwarden::StopAction::already_finished);
  CHECK_FALSE(outcome.stop_requested);
  REQUIRE(outcome.recovery.problems.size() == 1);
  CHECK(outcome.recovery.problems[0].first == "journal.jsonl");
  CHECK_THAT(outcome.recovery.problems[0].second, Catch::StartsWith("missing"));
  CHECK_FALSE(std::filesystem::exists(dir / "unrecorded/journal.jsonl"));
}

TEST_CASE("stop_job of a schema 1 job directory is unsupported_layout and touches nothing") {
  jwtest::TempDir dir;
  SleepingChild worker;
  REQUIRE(worker.pid() > 0);
  jwstatus::make_dir(dir / "old");
  jwstatus::make_dir(dir / "old/workers");
  jwstatus::make_dir(dir / "old/workers/w");
  nlohmann::json process = jwstatus::process_document(
      "w", "running", worker.pid(), jobwarden::detail::process_start_time(worker.pid()).value_or(0));
  process["schema_version"] = 1;
  jwstatus::write_text(dir / "old/workers/w/process.json", process.dump());
  nlohmann::json job = jwstatus::job_document("old", "running", 999999, 1);
  job["schema_version"] = 1;
  jwstatus::write_text(dir / "old/job.json", job.dump());
  jwstatus::write_text(dir / "old/supervisor.lock", "");

  std::error_code ec;
  const jobwarden::StopOutcome outcome = jobwarden::stop_job(dir.path(), "old", 100ms, 0ms, ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  CHECK_FALSE(outcome.stop_requested);
  CHECK(outcome.action == jobwarden::StopAction::already_finished);
  REQUIRE_FALSE(outcome.recovery.problems.empty());
  CHECK(outcome.recovery.problems[0].first == "job.json");
  CHECK_FALSE(worker.exited());
  CHECK_FALSE(std::filesystem::exists(dir / "old/journal.jsonl"));
  CHECK_FALSE(std::filesystem::exists(dir / "old/stop.request"));
  CHECK(jwtest::read_file(dir / "old/job.json") == job.dump());
  CHECK_THROWS_WITH(jobwarden::stop_job(dir.path(), "old", 100ms, 0ms), Catch::Contains("job.json"));
}
