// Restart policies: never, on-failure, always; backoff with cap and jitter; a
// rate limit; an exit code meaning "do not restart". Driven by a fake clock.
#include <poll.h>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "fake_clock.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::RestartPolicy;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;
using Supervisor = jobwarden::JobSupervisor<nlohmann::json, jwtest::FakeClock>;

namespace {
/// Drives the supervisor until an event of `kind` arrives (bounded in real time).
bool drive_until(Supervisor& supervisor, std::vector<jobwarden::WorkerEvent>& seen, EventKind kind) {
  auto give_up = std::chrono::steady_clock::now() + 20s;
  std::size_t from = seen.size();
  for (;;) {
    supervisor.poll();
    for (std::size_t i = from; i < seen.size(); ++i) {
      if (seen[i].kind == kind) return true;
    }
    if (std::chrono::steady_clock::now() > give_up) return false;
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 50);
  }
}

WorkerSpec failing_worker(const std::string& attempts_file, int code = 1) {
  WorkerSpec spec;
  spec.id = "flaky";
  spec.argv = {"/bin/sh", "-c",
               "echo $JOBWARDEN_ATTEMPT >> " + attempts_file + "; exit " + std::to_string(code)};
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  spec.restart.policy = RestartPolicy::on_failure;
  spec.restart.jitter = 0;
  return spec;
}
}  // namespace

TEST_CASE("on-failure restarts with exponential backoff until max restarts then ends failed") {
  jwtest::TempDir dir;
  Supervisor supervisor;
  std::vector<jobwarden::WorkerEvent> seen;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { seen.push_back(e); });
  auto spec = failing_worker(dir / "attempts");
  spec.restart.max_restarts = 3;
  spec.restart.initial_backoff = 10s;
  spec.restart.backoff_multiplier = 2;
  spec.restart.max_backoff = 25s;
  spec.restart.burst_limit = 100;
  auto id = supervisor.submit(spec);
  for (auto expected_delay : {10s, 20s, 25s}) {  // the third is capped
    REQUIRE(drive_until(supervisor, seen, EventKind::restarting));
    CHECK(supervisor.info(id).state == WorkerState::pending);
    auto wait = supervisor.next_timeout();
    REQUIRE(wait);
    CHECK(*wait == expected_delay);
    supervisor.poll();
    CHECK(supervisor.info(id).state == WorkerState::pending);  // fake time has not moved
    jwtest::FakeClock::advance(expected_delay);
  }
  REQUIRE(drive_until(supervisor, seen, EventKind::exited));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  CHECK(info.attempt == 4);
  CHECK(info.error.find("gave up after 3 restarts") != std::string::npos);
  CHECK(jwtest::read_file(dir / "attempts") == "1\n2\n3\n4\n");
}

TEST_CASE("never is the default and a failed worker stays failed") {
  Supervisor supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "exit 1"};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::failed);
  CHECK(supervisor.info(id).attempt == 1);
}

TEST_CASE("on-failure does not restart a worker that succeeded but always does") {
  jwtest::TempDir dir;
  Supervisor supervisor;
  std::vector<jobwarden::WorkerEvent> seen;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { seen.push_back(e); });
  auto on_failure = failing_worker(dir / "a", 0);
  on_failure.id = "once";
  auto always = failing_worker(dir / "b", 0);
  always.id = "again";
  always.restart.policy = RestartPolicy::always;
  always.restart.max_restarts = 1;
  always.restart.initial_backoff = 0ms;
  supervisor.submit(on_failure);
  supervisor.submit(always);
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info("once").attempt == 1);
  CHECK(supervisor.info("again").attempt == 2);
  CHECK(supervisor.info("again").state == WorkerState::succeeded);
  CHECK(jwtest::read_file(dir / "b") == "1\n2\n");
}

TEST_CASE("the restart rate limit ends a flapping worker failed") {
  jwtest::TempDir dir;
  Supervisor supervisor;
  auto spec = failing_worker(dir / "attempts");
  spec.restart.max_restarts = 100;
  spec.restart.initial_backoff = 0ms;
  spec.restart.burst_limit = 3;
  spec.restart.burst_window = 60s;
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  CHECK(info.attempt == 4);
  CHECK(info.error.find("restart rate limit") != std::string::npos);
}

TEST_CASE("a permanent-failure exit code is never restarted") {
  jwtest::TempDir dir;
  Supervisor supervisor;
  auto spec = failing_worker(dir / "attempts", 75);
  spec.restart.initial_backoff = 0ms;
  spec.restart.permanent_failure_exit_codes = {75};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  CHECK(info.attempt == 1);
  CHECK(info.error.find("permanent failure") != std::string::npos);
}

TEST_CASE("a cancelled worker is not restarted") {
  Supervisor supervisor;
  WorkerSpec spec;
  spec.argv = {"sleep", "100"};
  spec.restart.policy = RestartPolicy::always;
  spec.restart.initial_backoff = 0ms;
  auto id = supervisor.submit(spec);
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK(supervisor.info(id).attempt == 1);
}

TEST_CASE("backoff jitter spreads the delay within the configured fraction") {
  jwtest::TempDir dir;
  Supervisor supervisor;
  std::vector<jobwarden::WorkerEvent> seen;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { seen.push_back(e); });
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    auto spec = failing_worker(dir / ("w" + std::to_string(i)));
    spec.id = "w" + std::to_string(i);
    spec.restart.initial_backoff = 1000ms;
    spec.restart.jitter = 0.5;
    ids.push_back(supervisor.submit(spec));
  }
  auto give_up = std::chrono::steady_clock::now() + 20s;
  auto pending_restarts = [&] {
    int n = 0;
    for (const auto& e : seen) n += e.kind == EventKind::restarting ? 1 : 0;
    return n;
  };
  while (pending_restarts() < 8 && std::chrono::steady_clock::now() < give_up) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 50);
    supervisor.poll();
  }
  REQUIRE(pending_restarts() == 8);
  auto wait = supervisor.next_timeout();
  REQUIRE(wait);
  CHECK(*wait >= 500ms);
  CHECK(*wait <= 1500ms);
  supervisor.shutdown();  // cancels the waiting restarts
  for (const auto& id : ids) CHECK(supervisor.info(id).state == WorkerState::cancelled);
}
