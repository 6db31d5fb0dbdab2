// Fail fast (`SupervisorOptions::halt`): the policy's text form and
// arithmetic, then the supervisor halting a job — `soon` lets running
// workers finish, `now` stops them with their trees — by count and by
// percentage, with restarts, and never when every worker succeeds.
#include <poll.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::HaltMode;
using jobwarden::HaltPolicy;
using jobwarden::JobSupervisor;
using jobwarden::RestartPolicy;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
using jwtest::quiet;

HaltPolicy halt(const std::string& text) {
  std::string error;
  auto policy = jobwarden::parse_halt(text, error);
  if (!policy) throw std::runtime_error("bad halt policy in the test: " + error);
  return *policy;
}

SupervisorOptions options_with(const std::string& policy, std::size_t concurrency) {
  SupervisorOptions options;
  options.halt = halt(policy);
  options.max_concurrency = concurrency;
  options.orphan_guard = false;
  return options;
}

WorkerSpec named(std::string id, WorkerSpec spec) {
  spec.id = std::move(id);
  return spec;
}

/// A shell worker: `script` through /bin/sh -c, output discarded.
WorkerSpec sh(std::string id, const std::string& script) { return named(std::move(id), quiet({"/bin/sh", "-c", script})); }

/// A worker that waits for `gate` to exist, then exits `code`.
WorkerSpec gated(std::string id, const std::string& gate, int code) {
  return sh(std::move(id), "while [ ! -e " + gate + " ]; do sleep 0.02; done; exit " + std::to_string(code));
}

void touch(const std::string& path) { std::ofstream{path}; }

/// Polls (bounded in real time) until `done()`.
template <class Supervisor, class Predicate>
bool drive_until(Supervisor& supervisor, Predicate done) {
  auto give_up = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    supervisor.poll();
    if (done()) return true;
    if (std::chrono::steady_clock::now() > give_up) return false;
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 20);
  }
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("parse_halt reads counts, percentages and never, and to_string writes them back") {
  for (const char* text : {"soon,fail=1", "now,fail=3", "soon,fail=10%", "now,fail=2.5%", "now,fail=0.01%",
                           "soon,fail=100%", "never"}) {
    std::string error;
    auto policy = jobwarden::parse_halt(text, error);
    REQUIRE(policy);
    CHECK(error.empty());
    CHECK(jobwarden::to_string(*policy) == text);
  }
  CHECK(halt("soon,fail=3").mode == HaltMode::soon);
  CHECK(halt("soon,fail=3").fail_count == 3);
  CHECK(halt("now,fail=3").mode == HaltMode::now);
  CHECK(halt("now,fail=12.5%").fail_percent_hundredths == 1250);
  CHECK(halt("now,fail=007").fail_count == 7);
  CHECK(jobwarden::to_string(halt("now,fail=12.50%")) == "now,fail=12.5%");
  CHECK_FALSE(halt("never").enabled());
  CHECK_FALSE(HaltPolicy{}.enabled());
}

TEST_CASE("parse_halt refuses bad text with one line naming what is wrong") {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : {Case{"soon", "soon needs a threshold"}, Case{"now", "now needs a threshold"},
                        Case{"later,fail=1", "not \"later\""}, Case{"", "expected soon,fail=N"},
                        Case{"now,fail=0", "\"fail=0\": the count must be at least 1"},
                        Case{"now,fail=0%", "must be above 0%"},
                        Case{"now,fail=150%", "\"fail=150%\": the percentage must be at most 100%"},
                        Case{"now,fail=100.01%", "at most 100%"},
                        Case{"now,fail=x", "\"fail=x\": expected a count"},
                        Case{"now,fail=", "expected a count"}, Case{"now,fail=-1", "expected a count"},
                        Case{"now,fail=1.5", "expected a count"}, Case{"now,fail=1.234%", "at most two decimals"},
                        Case{"now,fail=%", "expected a count"}, Case{"now,success=1", "expected fail=N"},
                        Case{"now,fail=99999999999", "too large"}}) {
    INFO(c.text);
    std::string error;
    CHECK_FALSE(jobwarden::parse_halt(c.text, error));
    CHECK(contains(error, c.says));
    CHECK(error.find('\n') == std::string::npos);
  }
}

TEST_CASE("HaltPolicy::reached: a count, or a share of the workers submitted so far") {
  HaltPolicy three = halt("soon,fail=3");
  CHECK_FALSE(three.reached(2, 100));
  CHECK(three.reached(3, 100));
  CHECK(three.reached(3, 3));
  HaltPolicy ten_percent = halt("soon,fail=10%");
  CHECK_FALSE(ten_percent.reached(0, 0));
  CHECK(ten_percent.reached(1, 10));
  CHECK_FALSE(ten_percent.reached(2, 25));  // 8%
  CHECK(ten_percent.reached(3, 25));        // 12%: 10% of 25 is 2.5, so the third
  CHECK(ten_percent.reached(1, 1));         // early on, one failure is a large share
  CHECK(halt("now,fail=100%").reached(4, 4));
  CHECK_FALSE(halt("now,fail=100%").reached(3, 4));
  CHECK_FALSE(HaltPolicy{}.reached(1000, 1000));
}

TEST_CASE("halt soon: the threshold's failure stops new starts, running workers finish, queued ones end cancelled") {
  jwtest::TempDir dir;
  jwtest::TempDir root;
  SupervisorOptions options = options_with("soon,fail=2", 2);
  options.root = root.path();
  options.job_id = "soon";
  JobSupervisor<> supervisor(options);
  std::vector<jobwarden::WorkerEvent> events;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { events.push_back(e); });
  // Two slots: "slow" holds one until the test lets it go; the failures go
  // through the other, one at a time, so the count is exact.
  supervisor.submit(gated("slow", dir / "slow.go", 0));
  supervisor.submit(sh("bad1", "exit 3"));
  supervisor.submit(sh("bad2", "exit 4"));
  for (int i = 1; i <= 3; ++i) supervisor.submit(sh("queued" + std::to_string(i), "exit 0"));

  REQUIRE(drive_until(supervisor, [&] { return jobwarden::is_terminal(supervisor.info("bad1").state); }));
  CHECK(supervisor.info("bad1").state == WorkerState::failed);
  CHECK_FALSE(supervisor.halted());  // one failure of two
  REQUIRE(drive_until(supervisor, [&] { return supervisor.halted(); }));
  REQUIRE(drive_until(supervisor, [&] { return supervisor.active_count() == 1; }));
  // Only "slow" is left, and it runs on.
  CHECK(supervisor.info("slow").state == WorkerState::running);
  CHECK(supervisor.info("bad2").state == WorkerState::failed);
  const std::string reason = supervisor.halt_reason();
  CHECK(reason == "the job halted after 2 workers did not succeed (halt policy soon,fail=2)");
  for (int i = 1; i <= 3; ++i) {
    auto info = supervisor.info("queued" + std::to_string(i));
    CHECK(info.state == WorkerState::cancelled);
    CHECK(info.attempt == 0);  // never started
    CHECK(info.pid == 0);
    CHECK(info.error == "cancelled before it started: " + reason);
  }
  touch(dir / "slow.go");
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info("slow").state == WorkerState::succeeded);
  CHECK(std::count_if(events.begin(), events.end(), [](const auto& e) { return e.kind == EventKind::started; }) == 3);
  CHECK(std::count_if(events.begin(), events.end(), [](const auto& e) {
          return e.kind == EventKind::exited && e.worker.state == WorkerState::cancelled;
        }) == 3);

  // The journal says so; the job failed.
  supervisor.finish();
  supervisor.poll();
  jobwarden::detail::JobLayout layout{root.path(), "soon"};
  auto job = jwjournal::job_record(layout);
  CHECK(job.state == jobwarden::JobState::failed);
  CHECK(job.halted == reason);
  CHECK(jwjournal::worker_record(layout, "queued2").error == "cancelled before it started: " + reason);
  CHECK(supervisor.status().state == jobwarden::JobState::failed);
}

TEST_CASE("halt now: running workers and their trees are stopped and end cancelled, not counted") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(options_with("now,fail=1", 3));
  std::vector<jobwarden::WorkerEvent> events;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { events.push_back(e); });
  for (const char* id : {"a", "b"}) {
    auto spec = sh(id, "sleep 100 & echo $! > " + (dir / (std::string(id) + ".pid")) + "; wait");
    spec.grace_period = 5s;
    supervisor.submit(spec);
  }
  // Fails only once both trees are up.
  supervisor.submit(sh("bad", "while [ ! -s " + (dir / "a.pid") + " ] || [ ! -s " + (dir / "b.pid") +
                                  " ]; do sleep 0.02; done; exit 5"));
  supervisor.submit(sh("queued", "exit 0"));
  const int grandchild_a = jwtest::read_pid_file(dir / "a.pid");
  const int grandchild_b = jwtest::read_pid_file(dir / "b.pid");
  jwtest::KillOnExit guard_a, guard_b;
  guard_a.watch(grandchild_a);
  guard_b.watch(grandchild_b);
  REQUIRE(grandchild_a > 0);
  REQUIRE(grandchild_b > 0);

  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.halted());
  const std::string reason = supervisor.halt_reason();
  CHECK(reason == "the job halted after 1 worker did not succeed (halt policy now,fail=1)");
  CHECK(supervisor.info("bad").state == WorkerState::failed);
  CHECK(supervisor.info("bad").exit_code == 5);
  for (const char* id : {"a", "b"}) {
    auto info = supervisor.info(id);
    CHECK(info.state == WorkerState::cancelled);
    CHECK(info.error == "cancelled: " + reason);
    CHECK(jwtest::process_gone(info.pid));
    CHECK(std::any_of(events.begin(), events.end(), [&](const auto& e) {
      return e.kind == EventKind::stop_requested && e.worker.id == id;
    }));
  }
  CHECK(jwtest::wait_gone(grandchild_a));
  CHECK(jwtest::wait_gone(grandchild_b));
  CHECK(supervisor.info("queued").state == WorkerState::cancelled);
  CHECK(supervisor.info("queued").attempt == 0);
  // The stopped workers did not add to the count: the reason still says 1.
  CHECK(supervisor.halt_reason() == reason);
}

TEST_CASE("halt by percentage: of the workers submitted, halting at the exact share") {
  JobSupervisor<> supervisor(options_with("soon,fail=20%", 1));
  // One at a time: 1 fails (10%), 2 succeeds, 3 fails (20%): halt.
  supervisor.submit(sh("1", "exit 1"));
  supervisor.submit(sh("2", "exit 0"));
  supervisor.submit(sh("3", "exit 1"));
  for (int i = 4; i <= 10; ++i) supervisor.submit(sh(std::to_string(i), "exit 0"));
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.halted());
  CHECK(supervisor.halt_reason() == "the job halted after 2 of 10 workers did not succeed (halt policy soon,fail=20%)");
  CHECK(supervisor.info("1").state == WorkerState::failed);
  CHECK(supervisor.info("2").state == WorkerState::succeeded);
  CHECK(supervisor.info("3").state == WorkerState::failed);
  for (int i = 4; i <= 10; ++i) {
    auto info = supervisor.info(std::to_string(i));
    CHECK(info.state == WorkerState::cancelled);
    CHECK(info.attempt == 0);
  }
}

TEST_CASE("halt by percentage: a worker that cannot start counts against every worker submitted before the next poll") {
  // As `jobwarden run` submits a job: all at once, then polls. The first
  // worker fails inside submit(); 1 of 10 is not 50%, so nothing halts.
  JobSupervisor<> supervisor(options_with("soon,fail=50%", 2));
  supervisor.submit(named("1", quiet({"/nonexistent/jobwarden-halt-test"})));
  for (int i = 2; i <= 10; ++i) supervisor.submit(sh(std::to_string(i), "exit 0"));
  REQUIRE(supervisor.wait_all(60s));
  CHECK_FALSE(supervisor.halted());
  CHECK(supervisor.halt_reason().empty());
  CHECK(supervisor.info("1").state == WorkerState::spawn_failed);
  for (int i = 2; i <= 10; ++i) CHECK(supervisor.info(std::to_string(i)).state == WorkerState::succeeded);

  // Six of eleven is: the share is decided at the poll after the submits.
  JobSupervisor<> second(options_with("soon,fail=50%", 1));
  for (int i = 1; i <= 6; ++i) second.submit(named(std::to_string(i), quiet({"/nonexistent/jobwarden-halt-test"})));
  for (int i = 7; i <= 11; ++i) second.submit(sh(std::to_string(i), "exit 0"));
  REQUIRE(second.wait_all(60s));
  CHECK(second.halted());
  CHECK(second.halt_reason() == "the job halted after 6 of 11 workers did not succeed (halt policy soon,fail=50%)");
  CHECK(second.info("7").state == WorkerState::succeeded);  // started by its submit(), before the halt
  for (int i = 8; i <= 11; ++i) CHECK(second.info(std::to_string(i)).state == WorkerState::cancelled);
}

TEST_CASE("halt and restarts: a worker counts once it gives up, and after a halt nothing restarts") {
  SECTION("restarted attempts do not count; giving up does") {
    jwtest::TempDir dir;
    JobSupervisor<> supervisor(options_with("soon,fail=1", 1));
    auto flaky = sh("flaky", "echo $JOBWARDEN_ATTEMPT >> " + (dir / "attempts") + "; exit 1");
    flaky.restart.policy = RestartPolicy::on_failure;
    flaky.restart.max_restarts = 2;
    flaky.restart.initial_backoff = 0ms;
    flaky.restart.jitter = 0;
    supervisor.submit(flaky);
    supervisor.submit(sh("after", "exit 0"));
    REQUIRE(supervisor.wait_all(60s));
    CHECK(supervisor.halted());
    CHECK(supervisor.info("flaky").state == WorkerState::failed);
    CHECK(supervisor.info("flaky").attempt == 3);
    CHECK(jwtest::read_file(dir / "attempts") == "1\n2\n3\n");
    CHECK(supervisor.info("after").state == WorkerState::cancelled);
  }
  SECTION("a backoff is cut short (cancelled) and a running worker is not restarted") {
    jwtest::TempDir dir;
    JobSupervisor<> supervisor(options_with("soon,fail=1", 3));
    std::vector<jobwarden::WorkerEvent> events;
    supervisor.on_event([&](const jobwarden::WorkerEvent& e) { events.push_back(e); });
    auto flaky = sh("flaky", "echo $JOBWARDEN_ATTEMPT >> " + (dir / "attempts") + "; exit 1");
    flaky.restart.policy = RestartPolicy::on_failure;
    flaky.restart.max_restarts = 5;
    flaky.restart.initial_backoff = 1h;
    auto service = gated("service", dir / "service.go", 0);
    service.restart.policy = RestartPolicy::always;
    service.restart.max_restarts = 5;
    service.restart.initial_backoff = 0ms;
    supervisor.submit(flaky);
    supervisor.submit(service);
    supervisor.submit(gated("bad", dir / "bad.go", 1));
    REQUIRE(drive_until(supervisor, [&] {
      return std::any_of(events.begin(), events.end(), [](const auto& e) { return e.kind == EventKind::restarting; });
    }));
    CHECK_FALSE(supervisor.halted());  // a failure that will be retried is no failure yet
    touch(dir / "bad.go");
    REQUIRE(drive_until(supervisor, [&] { return supervisor.halted(); }));
    supervisor.poll();
    auto info = supervisor.info("flaky");
    CHECK(info.state == WorkerState::cancelled);
    CHECK(contains(info.error, "the job halted after 1 worker did not succeed"));
    CHECK(supervisor.info("service").state == WorkerState::running);
    touch(dir / "service.go");
    REQUIRE(supervisor.wait_all(60s));
    CHECK(supervisor.info("service").state == WorkerState::succeeded);
    CHECK(supervisor.info("service").attempt == 1);  // `always` would have started it again
    CHECK(jwtest::read_file(dir / "attempts") == "1\n");
  }
}

TEST_CASE("halt never triggers when every worker succeeds, and cancels do not count") {
  JobSupervisor<> supervisor(options_with("now,fail=1", 2));
  for (int i = 1; i <= 6; ++i) supervisor.submit(sh(std::to_string(i), "exit 0"));
  supervisor.submit(sh("held", "sleep 100"));
  supervisor.cancel("held");  // pending or running: either way cancelled, not failed
  REQUIRE(supervisor.wait_all(60s));
  CHECK_FALSE(supervisor.halted());
  CHECK(supervisor.halt_reason().empty());
  for (int i = 1; i <= 6; ++i) CHECK(supervisor.info(std::to_string(i)).state == WorkerState::succeeded);
  CHECK(supervisor.info("held").state == WorkerState::cancelled);
}

TEST_CASE("a worker that cannot start counts, and one submitted after the halt ends cancelled at once") {
  JobSupervisor<> supervisor(options_with("soon,fail=1", 1));
  std::vector<jobwarden::WorkerEvent> events;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { events.push_back(e); });
  supervisor.submit(named("missing", quiet({"/nonexistent/jobwarden-halt-test"})));
  supervisor.submit(sh("next", "exit 0"));
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info("missing").state == WorkerState::spawn_failed);
  CHECK(supervisor.halted());
  CHECK(supervisor.info("next").state == WorkerState::cancelled);

  const auto id = supervisor.submit(sh("late", "exit 0"));
  CHECK(id == "late");
  auto info = supervisor.info("late");
  CHECK(info.state == WorkerState::cancelled);  // at once, before any poll
  CHECK(info.error == "cancelled before it started: " + supervisor.halt_reason());
  REQUIRE(drive_until(supervisor, [&] {
    return std::any_of(events.begin(), events.end(), [](const auto& e) {
      return e.kind == EventKind::exited && e.worker.id == "late";
    });
  }));
  CHECK(supervisor.active_count() == 0);
}

TEST_CASE("the halt's reason survives a compaction of the journal") {
  jwtest::TempDir dir;
  jwtest::TempDir root;
  SupervisorOptions options = options_with("soon,fail=1", 2);
  options.root = root.path();
  options.job_id = "compacted";
  options.journal_compact_bytes = 1;                 // compact whenever the journal is twice its fold
  options.job_refresh_interval = 1ms;                // and grow it with a job line at every poll
  options.job_summary_interval = 1ms;
  JobSupervisor<> supervisor(options);
  jobwarden::detail::JobLayout layout{root.path(), "compacted"};
  auto generation = [&] {
    const std::string journal = jwtest::read_file(layout.journal_file());
    const std::string key = "\"generation\":";
    const std::size_t at = journal.find(key);
    return at == std::string::npos ? 0 : std::stoi(journal.substr(at + key.size()));
  };
  supervisor.submit(gated("running", dir / "go", 0));
  supervisor.submit(sh("bad", "exit 1"));
  for (int i = 1; i <= 5; ++i) supervisor.submit(sh("queued" + std::to_string(i), "exit 0"));
  REQUIRE(drive_until(supervisor, [&] { return supervisor.halted(); }));
  const int at_halt = generation();
  REQUIRE(at_halt > 0);
  REQUIRE(drive_until(supervisor, [&] { return generation() > at_halt; }));  // compacted since
  CHECK(jwjournal::job_record(layout).halted == supervisor.halt_reason());
  touch(dir / "go");
  REQUIRE(supervisor.wait_all(30s));
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout).halted == supervisor.halt_reason());
  CHECK(jwjournal::job_record(layout).state == jobwarden::JobState::failed);
}
