// A warning signal before the deadline (`WorkerSpec::warning`), the order
// queued workers start in (`WorkerSpec::priority`), and the CPU time of a
// worker's whole tree from its cgroup (`ResourceUsage::tree_*_cpu`).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
using jwtest::quiet;

/// A shell worker that writes "warned" to `file` when SIGUSR1 comes, then
/// runs on until something stops it.
WorkerSpec traps_usr1(const std::string& file) {
  return quiet({"/bin/sh", "-c", "trap 'echo warned >> " + file + "' USR1; while :; do sleep 0.05; done"});
}

std::size_t count_of(const std::vector<EventKind>& kinds, EventKind kind) {
  return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), kind));
}

/// The lines of a file.
std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(jwtest::read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// A worker that appends `name` to `file`, for the order the queue started them in.
WorkerSpec appends(const std::string& file, const std::string& name, int priority) {
  WorkerSpec spec = quiet({"/bin/sh", "-c", "echo " + name + " >> " + file});
  spec.id = name;
  spec.priority = priority;
  return spec;
}

double seconds(std::chrono::microseconds cpu) { return std::chrono::duration<double>(cpu).count(); }
}  // namespace

TEST_CASE("the warning reaches the worker before its deadline, once, and the worker then times out") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = traps_usr1(dir / "warned");
  spec.timeout = 3s;
  spec.warning = jobwarden::DeadlineWarning{SIGUSR1, 1500ms};
  spec.grace_period = 5s;
  std::vector<EventKind> kinds;
  std::string file_at_deadline = "<no timed_out event>";
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    kinds.push_back(e.kind);
    if (e.kind == EventKind::timed_out) file_at_deadline = jwtest::read_file(dir / "warned");
  });
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  CHECK(count_of(kinds, EventKind::warned) == 1);
  auto warned = std::find(kinds.begin(), kinds.end(), EventKind::warned);
  auto timed_out = std::find(kinds.begin(), kinds.end(), EventKind::timed_out);
  CHECK(warned < timed_out);
  // The worker's trap ran, once, before the deadline's stop began.
  CHECK(file_at_deadline == "warned\n");
  CHECK(jwtest::read_file(dir / "warned") == "warned\n");
  CHECK(jwtest::process_gone(info.pid));
}

TEST_CASE("each attempt of a restarted worker is warned once") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = traps_usr1(dir / "warned");
  spec.timeout = 1200ms;
  spec.warning = jobwarden::DeadlineWarning{SIGUSR1, 700ms};
  spec.grace_period = 5s;
  spec.restart.policy = jobwarden::RestartPolicy::on_failure;
  spec.restart.max_restarts = 1;
  spec.restart.initial_backoff = 10ms;
  std::vector<std::pair<EventKind, int>> events;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { events.emplace_back(e.kind, e.worker.attempt); });
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  CHECK(info.attempt == 2);
  std::vector<int> warned_attempts;
  for (const auto& [kind, attempt] : events) {
    if (kind == EventKind::warned) warned_attempts.push_back(attempt);
  }
  CHECK(warned_attempts == std::vector<int>{1, 2});
  CHECK(jwtest::read_file(dir / "warned") == "warned\nwarned\n");
}

TEST_CASE("a worker that ends before its warning time is never warned") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = traps_usr1(dir / "warned");
  spec.argv = {"/bin/sh", "-c", "trap 'echo warned >> " + (dir / "warned") + "' USR1; sleep 0.2"};
  spec.timeout = 20s;
  spec.warning = jobwarden::DeadlineWarning{SIGUSR1, 5s};
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(count_of(kinds, EventKind::warned) == 0);
  // Nothing is left to wake the supervisor for: no deadline, no warning.
  supervisor.poll();
  CHECK_FALSE(supervisor.next_timeout());
  CHECK_FALSE(std::ifstream(dir / "warned").good());
}

TEST_CASE("a cancelled worker whose stop began before its warning time is not warned") {
  jwtest::TempDir dir;
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  JobSupervisor<> supervisor;
  // Traps SIGTERM and lingers 6 s: its warning time (4 s after the start) passes during the stop.
  auto spec = quiet({jwtest::test_worker(), "trap-term", "6000"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(ready.path());
  spec.timeout = 30s;
  spec.warning = jobwarden::DeadlineWarning{SIGUSR1, 26s};
  spec.grace_period = 20s;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(spec);
  REQUIRE(ready.wait_ready());
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 20s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);  // it caught SIGTERM; a SIGUSR1 would have killed it
  CHECK(count_of(kinds, EventKind::warned) == 0);
}

TEST_CASE("a warning that cannot be sent in time is refused at submit") {
  JobSupervisor<> supervisor;
  auto base = quiet({"/bin/true"});
  base.timeout = 10s;
  struct Case {
    const char* what;
    int signal;
    std::chrono::milliseconds before;
    std::chrono::milliseconds timeout;
    jobwarden::errc expected;
    const char* says;
  };
  const Case cases[] = {
      {"no timeout", SIGUSR1, 1s, 0ms, jobwarden::errc::invalid_argument, "needs a timeout"},
      {"before is zero", SIGUSR1, 0ms, 10s, jobwarden::errc::invalid_duration, "more than zero"},
      {"before is negative", SIGUSR1, -5ms, 10s, jobwarden::errc::invalid_duration, "more than zero"},
      {"before is the timeout", SIGUSR1, 10s, 10s, jobwarden::errc::invalid_duration, "less than the timeout"},
      {"before is past the timeout", SIGUSR1, 11s, 10s, jobwarden::errc::invalid_duration, "less than the timeout"},
      {"signal 0", 0, 1s, 10s, jobwarden::errc::invalid_signal, "warning signal 0"},
      {"a number past the last signal", NSIG + 3, 1s, 10s, jobwarden::errc::invalid_signal, "warning signal"},
      {"SIGKILL cannot be caught", SIGKILL, 1s, 10s, jobwarden::errc::invalid_signal, "can catch"},
      {"SIGSTOP cannot be caught", SIGSTOP, 1s, 10s, jobwarden::errc::invalid_signal, "can catch"},
      {"the stop signal", SIGTERM, 1s, 10s, jobwarden::errc::invalid_signal, "stop signal"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    auto spec = base;
    spec.timeout = c.timeout;
    spec.warning = jobwarden::DeadlineWarning{c.signal, c.before};
    std::error_code ec;
    CHECK(supervisor.submit(spec, ec).empty());
    CHECK(ec == jobwarden::make_error_code(c.expected));
    try {
      supervisor.submit(spec);
      FAIL("submit accepted it");
    } catch (const std::system_error& e) {
      CHECK(e.code() == jobwarden::make_error_code(c.expected));
      CHECK(std::string(e.what()).find(c.says) != std::string::npos);
    }
  }
  CHECK(supervisor.workers().empty());
  // The edges that are fine: a lead of 1 ms, and one 1 ms short of the timeout.
  for (auto before : {1ms, 9999ms}) {
    auto spec = base;
    spec.warning = jobwarden::DeadlineWarning{SIGUSR2, before};
    std::error_code ec;
    CHECK_FALSE(supervisor.submit(spec, ec).empty());
    CHECK_FALSE(ec);
  }
  REQUIRE(supervisor.wait_all(30s));
}

TEST_CASE("queued workers start by priority, first come first served within one") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  // The blocker holds the one slot until told to go, so everything else queues.
  auto blocker = quiet({"/bin/sh", "-c", "while [ ! -e " + (dir / "go") + " ]; do sleep 0.02; done"});
  blocker.id = "blocker";
  supervisor.submit(blocker);
  const std::string order = dir / "order";
  for (const auto& [name, priority] : std::vector<std::pair<std::string, int>>{
           {"low1", -5}, {"high1", 7}, {"mid1", 0}, {"low2", -5}, {"high2", 7}, {"mid2", 0}, {"high3", 7}}) {
    supervisor.submit(appends(order, name, priority));
  }
  CHECK(supervisor.info("low1").state == WorkerState::pending);
  std::ofstream(dir / "go") << "go\n";
  REQUIRE(supervisor.wait_all(60s));
  for (const auto& info : supervisor.workers()) CHECK(info.state == WorkerState::succeeded);
  CHECK(lines_of(order) == std::vector<std::string>{"high1", "high2", "high3", "mid1", "mid2", "low1", "low2"});
}

TEST_CASE("a restart goes back to its place in the queue: its priority, its submission order") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  auto blocker = quiet({"/bin/sh", "-c", "while [ ! -e " + (dir / "go") + " ]; do sleep 0.02; done"});
  supervisor.submit(blocker);
  const std::string order = dir / "order";
  // "again" fails its first attempt and restarts at once: it comes back ahead
  // of "b" and "c", submitted after it with its priority, but behind "urgent".
  auto again = quiet({"/bin/sh", "-c",
                      "echo again >> " + order + "; [ -e " + (dir / "marker") + " ] || { touch " +
                          (dir / "marker") + "; exit 1; }"});
  again.id = "again";
  again.restart.policy = jobwarden::RestartPolicy::on_failure;
  again.restart.initial_backoff = 0ms;
  supervisor.submit(again);
  supervisor.submit(appends(order, "b", 0));
  supervisor.submit(appends(order, "c", 0));
  supervisor.submit(appends(order, "urgent", 1));
  std::ofstream(dir / "go") << "go\n";
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info("again").attempt == 2);
  CHECK(supervisor.info("again").state == WorkerState::succeeded);
  CHECK(lines_of(order) == std::vector<std::string>{"urgent", "again", "again", "b", "c"});
}

TEST_CASE("a cancelled queued worker leaves the queue and the others keep their order") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  auto blocker = quiet({"/bin/sh", "-c", "while [ ! -e " + (dir / "go") + " ]; do sleep 0.02; done"});
  supervisor.submit(blocker);
  const std::string order = dir / "order";
  supervisor.submit(appends(order, "a", 1));
  supervisor.submit(appends(order, "b", 2));
  supervisor.submit(appends(order, "c", 1));
  supervisor.cancel("b");
  CHECK(supervisor.info("b").state == WorkerState::cancelled);
  std::ofstream(dir / "go") << "go\n";
  REQUIRE(supervisor.wait_all(60s));
  CHECK(lines_of(order) == std::vector<std::string>{"a", "c"});
}

TEST_CASE("a worker's whole tree's CPU time counts a child its main process never waited for") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.root = dir / "jobs";
  options.job_id = "tree-cpu";
  JobSupervisor<> supervisor(options);
  if (!supervisor.cgroups_active()) {
    WARN("SKIPPED: cgroup v2 is not writable here (" << supervisor.cgroups_unavailable_reason() << ")");
    return;
  }
  // The burner is a grandchild whose parent exits at once: the main shell
  // never waits for it, so wait4's figures leave its 0.3 s of CPU out.
  const std::string done = dir / "burnt";
  auto spec = quiet({"/bin/sh", "-c",
                     "( (" + std::string(jwtest::test_worker()) + " burn 300; touch " + done +
                         ") & ); while [ ! -e " + done + " ]; do sleep 0.02; done"});
  // A worker run before it in the same cgroup (they are reused) must not count.
  auto warm = quiet({jwtest::test_worker(), "burn", "200"});
  REQUIRE(supervisor.wait(supervisor.submit(warm), 60s));
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  REQUIRE(info.state == WorkerState::succeeded);
  REQUIRE(info.usage.tree_user_cpu);
  REQUIRE(info.usage.tree_system_cpu);
  const double leader = seconds(info.usage.user_cpu + info.usage.system_cpu);
  const double tree = seconds(*info.usage.tree_user_cpu + *info.usage.tree_system_cpu);
  CAPTURE(leader, tree);
  CHECK(tree > leader);
  CHECK(tree >= 0.3);
  CHECK(tree - leader >= 0.25);  // the burner's 0.3 s, less what the leader itself could have used
  CHECK(tree - leader < 0.45);  // not the warm-up's 0.2 s on top (its cgroup is this one's now)
  // The journal and the aggregated status carry it, as written.
  auto status = supervisor.status();
  const auto* worker = status.find_worker(id);
  REQUIRE(worker);
  REQUIRE(worker->usage);
  CHECK(worker->usage->tree_user_cpu == info.usage.tree_user_cpu);
  CHECK(worker->usage->tree_system_cpu == info.usage.tree_system_cpu);
  auto json = worker->to_json();
  CHECK(json["usage"]["tree_user_cpu_seconds"].get<double>() == Approx(seconds(*info.usage.tree_user_cpu)));
  // The next worker in that cgroup counts from where the burner's count ended.
  auto after = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait(after, 60s));
  auto small = supervisor.info(after).usage;
  REQUIRE(small.tree_user_cpu);
  CHECK(seconds(*small.tree_user_cpu + *small.tree_system_cpu) < 0.15);
}

TEST_CASE("without a cgroup a worker's tree CPU time is unknown, and null in its records") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.root = dir / "jobs";
  options.job_id = "no-tree-cpu";
  options.use_cgroups = false;
  JobSupervisor<> supervisor(options);
  REQUIRE_FALSE(supervisor.cgroups_active());
  auto id = supervisor.submit(quiet({jwtest::test_worker(), "burn", "20"}));
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK_FALSE(info.usage.tree_user_cpu);
  CHECK_FALSE(info.usage.tree_system_cpu);
  CHECK(info.usage.user_cpu + info.usage.system_cpu >= 15ms);
  auto status = supervisor.status();
  const auto* worker = status.find_worker(id);
  REQUIRE(worker);
  REQUIRE(worker->usage);
  CHECK_FALSE(worker->usage->tree_user_cpu);
  auto json = worker->to_json();
  CHECK(json["usage"]["tree_user_cpu_seconds"].is_null());
  CHECK(json["usage"]["tree_system_cpu_seconds"].is_null());
  CHECK(json["usage"]["user_cpu_seconds"].get<double>() > 0);
}
