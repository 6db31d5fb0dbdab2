// Controlling a job from outside its supervisor (job_control.hpp): the stop
// request, and stop_job against a live, a finished and a dead supervisor.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
