// Controlling a job from outside its supervisor (job_control.hpp): the stop
// request, and stop_job against a live, a finished and a dead supervisor.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include <jobwarden/job_control.hpp>
#include <jobwarden/job_supervisor.hpp>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::StopAction;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
SupervisorOptions options_for(const std::string& root, const std::string& job_id) {
  SupervisorOptions options;
  options.root = root;
  options.job_id = job_id;
  return options;
}

WorkerSpec sleeper() {
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "exec sleep 300"};
  spec.grace_period = 5s;
  return spec;
}

bool exists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

/// Kills a process the test started but could not hand to a supervisor's care.
struct KillOnExit {
  int pid = 0;
  ~KillOnExit() {
    if (pid > 0 && !jwtest::process_gone(pid)) ::kill(pid, SIGKILL);
  }
};
}  // namespace

TEST_CASE("request_stop refuses an invalid job id before touching the disk") {
  jwtest::TempDir dir;
  const std::string root = dir / "root";
  for (const std::string& id : std::vector<std::string>{"", "..", "a/b", std::string(129, 'x')}) {
    std::error_code ec;
    jobwarden::request_stop(root, id, std::nullopt, ec);
    CHECK(ec == jobwarden::errc::invalid_id);
    jobwarden::stop_job(root, id, std::nullopt, 1s, ec);
    CHECK(ec == jobwarden::errc::invalid_id);
  }
  CHECK_FALSE(exists(root));
  CHECK_THROWS_AS(jobwarden::request_stop(root, "../x"), std::system_error);
}

TEST_CASE("stopping a job that does not exist is errc::unknown_job") {
  jwtest::TempDir dir;
  std::error_code ec;
  jobwarden::request_stop(dir / "no-root", "job", std::nullopt, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  jobwarden::request_stop(dir.path(), "job", std::nullopt, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  jobwarden::stop_job(dir.path(), "job", std::nullopt, 1s, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  CHECK_FALSE(exists(dir / "job"));
  CHECK_FALSE(exists(dir / "no-root"));
}

TEST_CASE("request_stop writes the grace period into stop.request, atomically") {
  jwtest::TempDir dir;
  REQUIRE(::mkdir((dir / "job").c_str(), 0755) == 0);
  jobwarden::request_stop(dir.path(), "job", 1500ms);
  const auto request = nlohmann::json::parse(jwtest::read_file(dir / "job/stop.request"));
  CHECK(request["grace_ms"] == 1500);
  jobwarden::request_stop(dir.path(), "job");  // again, without a grace period: replaced whole
  CHECK_FALSE(nlohmann::json::parse(jwtest::read_file(dir / "job/stop.request")).contains("grace_ms"));
  std::error_code ec;
  jobwarden::request_stop(dir.path(), "job", -1ms, ec);
  CHECK(ec == jobwarden::errc::invalid_duration);
}

TEST_CASE("request_stop does not follow a job directory that is a symlink") {
  jwtest::TempDir dir;
  REQUIRE(::mkdir((dir / "elsewhere").c_str(), 0755) == 0);
  REQUIRE(::symlink((dir / "elsewhere").c_str(), (dir / "job").c_str()) == 0);
  std::error_code ec;
  jobwarden::request_stop(dir.path(), "job", std::nullopt, ec);
  CHECK(ec == std::errc::too_many_symbolic_link_levels);
  CHECK_FALSE(exists(dir / "elsewhere/stop.request"));
}

TEST_CASE("stop_job asks a live supervisor to stop and waits until its job is cancelled") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(options_for(dir.path(), "live"));
  supervisor.submit(sleeper());
  supervisor.submit(sleeper());
  std::thread host([&] { supervisor.wait_all(60s); });  // the host's event loop

  std::error_code ec;
  const auto outcome = jobwarden::stop_job(dir.path(), "live", 200ms, 30s, ec);
  host.join();
  REQUIRE_FALSE(ec);
  CHECK(outcome.action == StopAction::requested);
  CHECK(outcome.stop_requested);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::cancelled);
  CHECK(supervisor.stop_requested());
  for (const auto& worker : supervisor.workers()) CHECK(worker.state == WorkerState::cancelled);
}

TEST_CASE("stop_job leaves a finished job alone") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(options_for(dir.path(), "done"));
    WorkerSpec spec;
    spec.argv = {"true"};
    supervisor.submit(spec);
    REQUIRE(supervisor.wait_all(30s));
    supervisor.finish();
    supervisor.poll();
  }
  std::error_code ec;
  const auto outcome = jobwarden::stop_job(dir.path(), "done", std::nullopt, 5s, ec);
  REQUIRE_FALSE(ec);
  CHECK(outcome.action == StopAction::already_finished);
  CHECK_FALSE(outcome.stop_requested);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::succeeded);
  CHECK_FALSE(exists(dir / "done/stop.request"));
}

TEST_CASE("stop_job stops the workers of a supervisor that died, and marks them lost") {
  jwtest::TempDir dir;
  // A supervisor without orphan guard dies abruptly in a child process,
  // leaving its worker running.
  const pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    SupervisorOptions options = options_for(dir.path(), "orphaned");
    options.orphan_guard = false;
    // Without a cgroup: a supervisor that another test starts meanwhile
    // reclaims a dead supervisor's cgroup tree (as it should), which would
    // kill the leftover before this test looks at it.
    options.use_cgroups = false;
    JobSupervisor<> supervisor(options);
    supervisor.submit(sleeper());
    ::_exit(supervisor.running_count() == 1 ? 0 : 1);  // no destructor: the worker is left behind
  }
  int wait_status = 0;
  REQUIRE(::waitpid(host, &wait_status, 0) == host);
  REQUIRE(WIFEXITED(wait_status));
  REQUIRE(WEXITSTATUS(wait_status) == 0);
  jobwarden::StatusAggregator<> aggregator(dir.path());
  const auto before = aggregator.read("orphaned");
  REQUIRE(before.workers.size() == 1);
  REQUIRE(before.workers[0].pid);
  KillOnExit leftover{*before.workers[0].pid};
  REQUIRE_FALSE(jwtest::process_gone(leftover.pid));

  std::error_code ec;
  const auto outcome = jobwarden::stop_job(dir.path(), "orphaned", 1s, 5s, ec);
  REQUIRE_FALSE(ec);
  CHECK(outcome.action == StopAction::recovered);
  CHECK_FALSE(outcome.stop_requested);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::lost);
  CHECK(outcome.recovery.stopped == std::vector<std::string>{"1"});
  CHECK(outcome.recovery.marked_lost == std::vector<std::string>{"1"});
  CHECK(jwtest::wait_gone(leftover.pid));
  CHECK(aggregator.read("orphaned").workers[0].state == WorkerState::lost);
}

// ---- the stop request as the supervisor reads it ------------------------------------

namespace {
/// Runs `supervisor`'s event loop until `done()` or `limit`; returns the
/// longest single poll() call (a poll() must never block).
template <class Done>
std::chrono::steady_clock::duration drive(JobSupervisor<>& supervisor, Done done, std::chrono::seconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  std::chrono::steady_clock::duration longest{};
  while (!done() && std::chrono::steady_clock::now() < give_up) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 20);
    const auto before = std::chrono::steady_clock::now();
    supervisor.poll();
    longest = std::max(longest, std::chrono::steady_clock::now() - before);
  }
  return longest;
}
}  // namespace

TEST_CASE("a FIFO planted as stop.request neither blocks the supervisor nor stops the job") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(options_for(dir.path(), "fifo"));
  REQUIRE(::mkfifo((dir / "fifo/stop.request").c_str(), 0600) == 0);
  WorkerSpec spec = sleeper();
  spec.timeout = 1s;
  spec.grace_period = 100ms;
  const std::string id = supervisor.submit(spec);
  // Opens the FIFO's other end after a while, so a supervisor that blocked in
  // open() comes back (and the test fails on its timings instead of hanging).
  std::atomic<bool> finished{false};
  std::thread unblocker([&] {
    const auto at = std::chrono::steady_clock::now() + 6s;
    while (!finished && std::chrono::steady_clock::now() < at) std::this_thread::sleep_for(10ms);
    for (int i = 0; i < 500 && !finished; ++i) {
      const int fd = ::open((dir / "fifo/stop.request").c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  const auto longest = drive(supervisor, [&] { return supervisor.info(id).state != WorkerState::running &&
                                                      supervisor.info(id).state != WorkerState::pending; }, 20s);
  finished = true;
  unblocker.join();
  CHECK(supervisor.info(id).state == WorkerState::timed_out);  // its deadline was kept, on time
  CHECK(longest < 2s);
  CHECK_FALSE(supervisor.stop_requested());  // a FIFO is not a request
}

TEST_CASE("a symlink planted as stop.request is not followed and stops nothing") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(options_for(dir.path(), "link"));
  {
    std::ofstream request(dir / "elsewhere.request");
    request << "{\"grace_ms\": 0}\n";
  }
  REQUIRE(::symlink((dir / "elsewhere.request").c_str(), (dir / "link/stop.request").c_str()) == 0);
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "sleep 0.3"};
  const std::string id = supervisor.submit(spec);
  drive(supervisor, [&] { return supervisor.info(id).state == WorkerState::succeeded; }, 20s);
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK_FALSE(supervisor.stop_requested());
  CHECK(exists(dir / "elsewhere.request"));
}

TEST_CASE("a stop request written before the supervisor's first poll is honoured and then removed") {
  jwtest::TempDir dir;
  // What `jobwarden stop` does as soon as the journal names a live supervisor:
  // here before the supervisor ever polled, so no inotify event can tell it.
  JobSupervisor<> supervisor(options_for(dir.path(), "early"));
  jobwarden::request_stop(dir.path(), "early", 100ms);
  const std::string id = supervisor.submit(sleeper());
  drive(supervisor, [&] { return jobwarden::is_terminal(supervisor.info(id).state); }, 20s);
  CHECK(supervisor.stop_requested());
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK_FALSE(exists(dir / "early/stop.request"));  // honoured: not left for a later run
}

TEST_CASE("a job that ends by itself before the stop takes effect is reported as such") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(options_for(dir.path(), "quick"));
  WorkerSpec spec;
  spec.argv = {"true"};
  const std::string id = supervisor.submit(spec);
  drive(supervisor, [&] { return supervisor.info(id).state == WorkerState::succeeded; }, 20s);
  REQUIRE(supervisor.info(id).state == WorkerState::succeeded);
  // The job is still open (the host may submit more): stop_job finds it live.
  std::atomic<bool> done{false};
  jobwarden::StopOutcome outcome;
  std::error_code ec;
  std::thread stopper([&] {
    outcome = jobwarden::stop_job(dir.path(), "quick", std::nullopt, 30s, ec);
    done = true;
  });
  drive(supervisor, [&] { return done.load(); }, 40s);
  stopper.join();
  REQUIRE_FALSE(ec);
  CHECK(outcome.stop_requested);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::succeeded);
  CHECK(outcome.action == StopAction::finished_on_its_own);
}

TEST_CASE("a job directory without journal.jsonl reads lost, has nothing to stop, and clean removes it") {
  jwtest::TempDir dir;
  REQUIRE(::mkdir((dir / "half").c_str(), 0755) == 0);
  {
    std::ofstream lock(dir / "half/supervisor.lock");  // a start interrupted after taking the lock
  }
  jobwarden::StatusAggregator<> aggregator(dir.path());
  {
    // While a supervisor holds the lock, it is a job being started.
    const int lock = ::open((dir / "half/supervisor.lock").c_str(), O_RDONLY);
    REQUIRE(lock >= 0);
    REQUIRE(::flock(lock, LOCK_EX) == 0);
    const auto starting = aggregator.read("half");
    ::close(lock);
    CHECK(starting.state == jobwarden::JobState::pending);
    CHECK(starting.supervisor.alive);
  }
  const auto status = aggregator.read("half");
  CHECK(status.state == jobwarden::JobState::lost);
  REQUIRE_FALSE(status.errors.empty());
  CHECK(status.errors[0].path == "journal.jsonl");
  CHECK(status.errors[0].error == "missing");

  std::error_code ec;
  const auto outcome = jobwarden::stop_job(dir.path(), "half", std::nullopt, 5s, ec);
  CHECK_FALSE(ec);
  CHECK(outcome.action == StopAction::already_finished);
  CHECK(outcome.finished);
  CHECK(outcome.state == jobwarden::JobState::lost);
  CHECK_FALSE(outcome.recovery.problems.empty());

  const auto kept = aggregator.clean(1h, false);
  CHECK(kept.removed.empty());  // too recent
  const auto report = aggregator.clean(0ms, false);
  CHECK(report.removed == std::vector<std::string>{"half"});
  CHECK_FALSE(exists(dir / "half"));
}

TEST_CASE("a job directory of the old layout is refused by stop and by the reader, and left as it was") {
  jwtest::TempDir dir;
  REQUIRE(::mkdir((dir / "old").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir / "old/workers").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir / "old/workers/1").c_str(), 0755) == 0);
  const std::string record = R"({"schema_version":1,"job_id":"old","state":"running","supervisor":{"pid":1}})";
  {
    std::ofstream(dir / "old/job.json") << record;
    std::ofstream(dir / "old/workers/1/process.json") << R"({"schema_version":1,"id":"1","state":"running"})";
    std::ofstream(dir / "old/supervisor.lock");
  }
  std::error_code ec;
  jobwarden::StatusAggregator<> aggregator(dir.path());
  (void)aggregator.read("old", ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  const auto outcome = jobwarden::stop_job(dir.path(), "old", std::nullopt, 5s, ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  CHECK(outcome.action != StopAction::recovered);
  CHECK(jwtest::read_file(dir / "old/job.json") == record);
  CHECK_FALSE(exists(dir / "old/journal.jsonl"));
}

TEST_CASE("a lost job's elapsed time is how long it ran, not until its record was first written or recovered") {
  jwtest::TempDir dir;
  // A supervisor (with its orphan guard) in a child process, killed 1.5 s
  // after it wrote its record.
  const auto started = std::chrono::steady_clock::now();
  const pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    JobSupervisor<> supervisor(options_for(dir.path(), "killed"));
    supervisor.submit(sleeper());
    for (;;) {
      pollfd pfd{supervisor.event_fd(), POLLIN, 0};
      ::poll(&pfd, 1, 50);
      supervisor.poll();
    }
  }
  KillOnExit killer{host};
  // The job's age counts from its record: wait for it (a slow machine, a
  // sanitizer, may take a while to start the child's supervisor).
  for (int i = 0; i < 3000 && !exists(dir / "killed/journal.jsonl"); ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(exists(dir / "killed/journal.jsonl"));
  std::this_thread::sleep_for(1500ms);
  ::kill(host, SIGKILL);
  REQUIRE(::waitpid(host, nullptr, 0) == host);
  killer.pid = 0;
  const double ran = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  jobwarden::StatusAggregator<> aggregator(dir.path());
  auto status = aggregator.read("killed");
  REQUIRE(status.state == jobwarden::JobState::lost);
  // A young job's heartbeat comes after half its age: the last one is at
  // least 0.75 s in (or later), and nothing of it is after its death.
  CHECK(status.elapsed_seconds >= 0.7);
  CHECK(status.elapsed_seconds <= ran + 0.2);

  std::this_thread::sleep_for(1s);  // recovery comes later than the death
  std::error_code ec;
  const auto outcome = jobwarden::stop_job(dir.path(), "killed", 1s, 5s, ec);
  REQUIRE_FALSE(ec);
  status = aggregator.read("killed");
  CHECK(status.state == jobwarden::JobState::lost);
  CHECK(status.elapsed_seconds >= 0.7);
  CHECK(status.elapsed_seconds <= ran + 0.2);
  (void)outcome;
}
