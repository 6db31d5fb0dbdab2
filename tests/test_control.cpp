// Controls of running workers: a signal to a worker's whole tree or to its
// leader alone, only while the supervisor holds it unreaped; pause and
// resume (cgroup.freeze where the worker has a cgroup, else SIGSTOP and
// SIGCONT), with the timeout and stall clocks standing still while paused;
// a stop of a paused worker resumes it first.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/worker_control.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::SignalScope;
using jobwarden::WorkerEvent;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
using jwtest::quiet;

/// One process of a test tree: records each SIGUSR1 and SIGTERM it gets (one
/// line with its name in `<dir>/usr1`, `<dir>/term`; TERM then ends it),
/// writes its pid to `<dir>/<name>.pid`, then loops: busy (burning CPU) or
/// idle (short sleeps, so that a trap runs at once).
/// The leader waits for its children before it ends (they end on TERM too),
/// so that each has recorded it before the supervisor kills what is left.
std::string process_body(const std::string& dir, const std::string& name, bool busy, char quote) {
  const std::string q(1, quote);
  const std::string wait = name == "leader" ? "wait; " : "";
  std::string body = "trap " + q + "echo " + name + " >> " + dir + "/usr1" + q + " USR1; trap " + q + "echo " +
                     name + " >> " + dir + "/term; " + wait + "exit 0" + q + " TERM; echo $$ > " + dir + "/" + name +
                     ".pid; ";
  body += busy ? "while :; do :; done" : "while :; do sleep 0.05; done";
  return body;
}

/// The worker's tree: the leader (a shell), a child in its process group,
/// and with `escapee` a process that left the group (setsid), which only its
/// cgroup still holds.
WorkerSpec tree_spec(const std::string& dir, bool escapee, bool busy) {
  std::string script = "sh -c '" + process_body(dir, "child", busy, '"') + "' & ";
  if (escapee) script += "setsid sh -c '" + process_body(dir, "escapee", busy, '"') + "' & ";
  script += process_body(dir, "leader", busy, '\'');
  return quiet({"/bin/sh", "-c", script});
}

/// The processes of a running tree, by name, once each wrote its pid; each
/// killed (proven by its start time) if the test fails half-way.
struct Tree {
  std::map<std::string, int> pids;
  std::vector<std::unique_ptr<jwtest::KillOnExit>> guards;

  bool wait_started(const std::string& dir, const std::vector<std::string>& names) {
    for (const auto& name : names) {
      int pid = jwtest::read_pid_file(dir + "/" + name + ".pid", 20s);
      if (pid <= 0) return false;
      pids[name] = pid;
      guards.push_back(std::make_unique<jwtest::KillOnExit>());
      guards.back()->watch(pid);
    }
    return true;
  }

  bool all_gone() const {
    bool gone = true;
    for (const auto& entry : pids) gone = jwtest::wait_gone(entry.second, 10s) && gone;
    return gone;
  }
};

std::vector<std::string> names_of(bool escapee) {
  std::vector<std::string> names = {"leader", "child"};
  if (escapee) names.push_back("escapee");
  return names;
}

/// The lines of `path`, sorted.
std::vector<std::string> lines_of(const std::string& path) {
  std::istringstream in(jwtest::read_file(path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// Waits (bounded) until `path` holds `count` lines, then a little longer
/// (a second, unwanted delivery would show), and returns them sorted.
std::vector<std::string> settled_lines(const std::string& path, std::size_t count) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (lines_of(path).size() < count && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(300ms);
  return lines_of(path);
}

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

/// User plus system CPU time of `pid` so far, in clock ticks (/proc/PID/stat).
long long cpu_ticks(int pid) {
  std::string text = jwtest::read_file("/proc/" + std::to_string(pid) + "/stat");
  auto paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int index = 3; fields >> field; ++index) {  // field 3 is the state
    if (index == 14) utime = std::stoll(field);
    if (index == 15) {
      stime = std::stoll(field);
      break;
    }
  }
  return utime + stime;
}

std::map<std::string, long long> cpu_of(const Tree& tree) {
  std::map<std::string, long long> ticks;
  for (const auto& entry : tree.pids) ticks[entry.first] = cpu_ticks(entry.second);
  return ticks;
}

/// Polls (a host's loop) for about `how_long`.
/// Waits (bounded: the machine may be busy) until every process of `tree`
/// used more CPU than in `base`; returns the last sample.
std::map<std::string, long long> wait_all_grow(const Tree& tree, const std::map<std::string, long long>& base) {
  auto until = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto now = cpu_of(tree);
    bool all_grew = true;
    for (const auto& entry : now) all_grew = all_grew && entry.second > base.at(entry.first);
    if (all_grew || std::chrono::steady_clock::now() > until) return now;
    std::this_thread::sleep_for(50ms);
  }
}

template <class Supervisor>
void poll_for(Supervisor& supervisor, std::chrono::milliseconds how_long) {
  auto until = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < until) {
    supervisor.poll();
    std::this_thread::sleep_for(20ms);
  }
}

/// Whether cgroups are on for `supervisor`; warns when they were wanted and
/// are not (the test then runs only its process-group half, which still
/// counts: not "SKIPPED").
bool cgroups_for(const JobSupervisor<>& supervisor, bool wanted) {
  if (!wanted) return false;
  if (supervisor.cgroups_active()) return true;
  WARN("cgroup v2 is not writable here (" << supervisor.cgroups_unavailable_reason()
                                          << "): the escapee and cgroup.freeze are not tested, only process groups");
  return false;
}

jobwarden::SupervisorOptions with_cgroups(bool use) {
  jobwarden::SupervisorOptions options;
  options.use_cgroups = use;
  return options;
}

}  // namespace

TEST_CASE("a signal reaches every process of the worker's tree, escapees too, and is reported by an event") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_cgroups(use_cgroups));
  const bool escapee = cgroups_for(supervisor, use_cgroups);
  if (use_cgroups && !escapee) return;
  std::vector<WorkerEvent> events;
  supervisor.on_event([&](const WorkerEvent& e) { events.push_back(e); });
  auto id = supervisor.submit(tree_spec(dir.path(), escapee, false));
  Tree tree;
  REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));

  supervisor.signal(id, SIGUSR1);
  // Each process once: the group and the cgroup's escapees, none twice.
  CHECK(settled_lines(dir / "usr1", names_of(escapee).size()) == sorted(names_of(escapee)));
  supervisor.poll();
  auto signalled = std::find_if(events.begin(), events.end(),
                                [](const WorkerEvent& e) { return e.kind == EventKind::signalled; });
  REQUIRE(signalled != events.end());
  CHECK(signalled->signal == SIGUSR1);
  CHECK(signalled->scope == SignalScope::tree);
  CHECK(signalled->worker.id == id);
  CHECK(signalled->worker.state == WorkerState::running);

  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  // The stop signal reached every process too (escapees included).
  CHECK(lines_of(dir / "term") == sorted(names_of(escapee)));
  CHECK(tree.all_gone());
}

TEST_CASE("a signal to the leader reaches the leader only") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  const bool escapee = supervisor.cgroups_active();
  std::vector<WorkerEvent> events;
  supervisor.on_event([&](const WorkerEvent& e) { events.push_back(e); });
  auto id = supervisor.submit(tree_spec(dir.path(), escapee, false));
  Tree tree;
  REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));

  std::error_code ec;
  supervisor.signal(id, SIGUSR1, SignalScope::leader, ec);
  REQUIRE_FALSE(ec);
  CHECK(settled_lines(dir / "usr1", 1) == std::vector<std::string>{"leader"});
  supervisor.poll();
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().kind == EventKind::signalled);
  CHECK(events.back().scope == SignalScope::leader);

  supervisor.shutdown();
  CHECK(tree.all_gone());
}

TEST_CASE("a signal to a worker that is pending, ended or unknown is an error and reaches nobody") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const WorkerEvent& e) { kinds.push_back(e.kind); });
  // Ended: its process recorded what it got while it lived.
  auto ended = supervisor.submit(quiet(
      {"/bin/sh", "-c", "trap 'echo ended >> " + (dir / "usr1") + "' USR1; echo $$ > " + (dir / "ended.pid")}));
  REQUIRE(supervisor.wait(ended, 30s));
  REQUIRE(supervisor.info(ended).state == WorkerState::succeeded);
  // Pending: behind a running worker, in a queue of one slot.
  auto running = supervisor.submit(tree_spec(dir.path(), false, false));
  auto pending = supervisor.submit(quiet({"/bin/sh", "-c", "echo started > " + (dir / "pending.ran")}));
  Tree tree;
  REQUIRE(tree.wait_started(dir.path(), names_of(false)));
  REQUIRE(supervisor.info(pending).state == WorkerState::pending);
  supervisor.poll();  // the running worker's start
  kinds.clear();

  for (const auto& id : {ended, pending}) {
    CAPTURE(id);
    std::error_code ec;
    supervisor.signal(id, SIGUSR1, SignalScope::tree, ec);
    CHECK(ec == jobwarden::errc::worker_not_running);
    supervisor.signal(id, SIGUSR1, SignalScope::leader, ec);
    CHECK(ec == jobwarden::errc::worker_not_running);
    CHECK_THROWS_AS(supervisor.signal(id, SIGUSR1), std::system_error);
    supervisor.pause(id, ec);
    CHECK(ec == jobwarden::errc::worker_not_running);
    supervisor.resume(id, ec);
    CHECK(ec == jobwarden::errc::worker_not_running);
    try {
      supervisor.pause(id);
      FAIL("pause of a worker that is not running did not throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == jobwarden::errc::worker_not_running);
      CHECK(std::string(e.what()).find(id) != std::string::npos);
    }
  }
  std::error_code ec;
  supervisor.signal("nobody", SIGUSR1, SignalScope::tree, ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  supervisor.pause("nobody", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  for (int bad : {0, -1, 1000}) {
    supervisor.signal(running, bad, SignalScope::tree, ec);
    CHECK(ec == jobwarden::errc::invalid_signal);
  }
  supervisor.poll();
  CHECK(kinds.empty());  // nothing was sent, nothing is reported
  std::this_thread::sleep_for(200ms);
  CHECK(jwtest::read_file(dir / "usr1").empty());  // the running tree got none of the bad signals either
  supervisor.shutdown();
  CHECK(supervisor.info(pending).state == WorkerState::cancelled);
  CHECK(tree.all_gone());
}

TEST_CASE("pause stops the CPU use of every process of the worker, resume starts it again") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options = with_cgroups(use_cgroups);
  options.root = dir / "jobs";
  options.job_id = "pausing";
  JobSupervisor<> supervisor(options);
  const bool escapee = cgroups_for(supervisor, use_cgroups);
  if (use_cgroups && !escapee) return;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(tree_spec(dir.path(), escapee, true));
  Tree tree;
  REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));
  // Running: every process burns CPU.
  auto before = cpu_of(tree);
  auto running = wait_all_grow(tree, before);
  for (const auto& entry : running) CHECK(entry.second > before[entry.first]);

  supervisor.pause(id);
  supervisor.pause(id);  // a no-op
  CHECK(supervisor.info(id).paused);
  CHECK(supervisor.info(id).state == WorkerState::running);
  std::this_thread::sleep_for(200ms);  // a frozen task stops at its next return to user space
  auto paused_start = cpu_of(tree);
  poll_for(supervisor, 800ms);
  auto paused_end = cpu_of(tree);
  CAPTURE(paused_start, paused_end);
  for (const auto& entry : paused_end) CHECK(entry.second == paused_start[entry.first]);
  // Readers see the flag: the journal's line and the aggregated status.
  auto status = supervisor.status();
  REQUIRE(status.workers.size() == 1);
  CHECK(status.workers[0].paused);
  CHECK(status.workers[0].state == WorkerState::running);
  CHECK(status.workers[0].to_json()["paused"] == true);

  supervisor.resume(id);
  supervisor.resume(id);  // a no-op
  CHECK_FALSE(supervisor.info(id).paused);
  // Running again: each process's CPU time grows.
  auto after = wait_all_grow(tree, paused_end);
  for (const auto& entry : after) CHECK(entry.second > paused_end[entry.first]);
  CHECK_FALSE(supervisor.status().workers[0].paused);
  supervisor.poll();
  CHECK(std::count(kinds.begin(), kinds.end(), EventKind::paused) == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), EventKind::resumed) == 1);
  supervisor.shutdown();
  CHECK(tree.all_gone());
}

TEST_CASE("the timeout does not fire while a worker is paused, and does once it resumes") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  JobSupervisor<> supervisor(with_cgroups(use_cgroups));
  auto spec = quiet({"/bin/sh", "-c", "while :; do sleep 0.05; done"});
  spec.timeout = 1s;
  spec.grace_period = 5s;
  const auto submitted = std::chrono::steady_clock::now();
  auto id = supervisor.submit(spec);
  jwtest::KillOnExit guard;
  guard.watch(supervisor.info(id).pid);
  supervisor.pause(id);
  const auto paused = std::chrono::steady_clock::now();
  // Twice the timeout: it would have fired by now.
  CHECK_FALSE(supervisor.wait(id, 2s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::running);
  CHECK(info.paused);
  const auto resumed = std::chrono::steady_clock::now();
  supervisor.resume(id);
  REQUIRE(supervisor.wait(id, 30s));
  const auto ended = std::chrono::steady_clock::now();
  info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  CHECK_FALSE(info.paused);
  // The clock stood still: what was left of the timeout ran after the resume.
  CHECK(ended - resumed >= 1s - (paused - submitted));
  CHECK(jwtest::wait_gone(info.pid));
}

TEST_CASE("the stall clock stands still while a worker is paused") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.root = dir / "jobs";
  options.job_id = "stalling";
  JobSupervisor<> supervisor(options);
  // One heartbeat a while after its start, then silence: it stalls a second after that heartbeat, not counting the pause.
  auto spec = quiet({"/bin/sh", "-c",
                     "sleep 0.4; echo '{\"schema_version\":1}' > \"$JOBWARDEN_STATUS_FILE\"; "
                     "while :; do sleep 0.05; done"});
  spec.stall_timeout = 1s;
  spec.grace_period = 5s;
  auto id = supervisor.submit(spec);
  jwtest::KillOnExit guard;
  guard.watch(supervisor.info(id).pid);
  const std::string status_file = supervisor.job_dir() + "/workers/" + id + ".status.json";
  auto until = std::chrono::steady_clock::now() + 20s;
  while (jwtest::read_file(status_file).empty() && std::chrono::steady_clock::now() < until) {
    supervisor.poll();
    std::this_thread::sleep_for(5ms);
  }
  struct stat st;
  REQUIRE(::stat(status_file.c_str(), &st) == 0);
  const auto heartbeat = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  supervisor.pause(id);
  const auto paused = std::chrono::system_clock::now();
  CHECK_FALSE(supervisor.wait(id, 2s));
  CHECK(supervisor.info(id).state == WorkerState::running);
  const auto resumed = std::chrono::steady_clock::now();
  supervisor.resume(id);
  REQUIRE(supervisor.wait(id, 30s));
  const auto ended = std::chrono::steady_clock::now();
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::stalled);
  // Its heartbeat aged only while it ran: what was left of the second after
  // it ran after the resume (a file time's granularity: a little slack).
  CHECK(ended - resumed >= 1s - (paused - heartbeat) - 20ms);
  CHECK(jwtest::wait_gone(info.pid));
}

TEST_CASE("cancelling a paused worker resumes it first: it sees SIGTERM and ends cancelled within its grace period") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_cgroups(use_cgroups));
  const bool escapee = cgroups_for(supervisor, use_cgroups);
  if (use_cgroups && !escapee) return;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const WorkerEvent& e) { kinds.push_back(e.kind); });
  auto spec = tree_spec(dir.path(), escapee, false);
  spec.grace_period = 20s;
  auto id = supervisor.submit(spec);
  Tree tree;
  REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));
  supervisor.pause(id);
  supervisor.poll();
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 15s));  // well inside the 20 s grace period: no SIGKILL was needed
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  CHECK_FALSE(info.paused);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);  // its TERM trap ran
  CHECK(std::find(kinds.begin(), kinds.end(), EventKind::killed) == kinds.end());
  // resumed comes before the stop's own event.
  auto resumed = std::find(kinds.begin(), kinds.end(), EventKind::resumed);
  auto stop = std::find(kinds.begin(), kinds.end(), EventKind::stop_requested);
  CHECK(resumed < stop);
  CHECK(stop != kinds.end());
  auto term = lines_of(dir / "term");
  CHECK(std::find(term.begin(), term.end(), "leader") != term.end());
  CHECK(tree.all_gone());
}

TEST_CASE("shutdown with a paused worker does not hang") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  jwtest::TempDir dir;
  Tree tree;
  bool escapee = false;
  {
    JobSupervisor<> supervisor(with_cgroups(use_cgroups));
    escapee = cgroups_for(supervisor, use_cgroups);
    if (use_cgroups && !escapee) return;
    auto spec = tree_spec(dir.path(), escapee, false);
    spec.grace_period = 20s;
    auto id = supervisor.submit(spec);
    REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));
    supervisor.pause(id);
    const auto began = std::chrono::steady_clock::now();
    supervisor.shutdown();
    CHECK(std::chrono::steady_clock::now() - began < 15s);  // not the 20 s grace period: TERM was seen
    CHECK(supervisor.info(id).state == WorkerState::cancelled);
    CHECK_FALSE(supervisor.info(id).paused);
  }
  CHECK(tree.all_gone());
  auto term = lines_of(dir / "term");
  CHECK(std::find(term.begin(), term.end(), "leader") != term.end());
}

TEST_CASE("a paused worker whose destructor runs, or that is killed while frozen, leaves nothing behind") {
  jwtest::TempDir dir;
  Tree tree;
  {
    JobSupervisor<> supervisor;
    const bool escapee = supervisor.cgroups_active();
    auto first = supervisor.submit(tree_spec(dir.path(), escapee, false));
    REQUIRE(tree.wait_started(dir.path(), names_of(escapee)));
    supervisor.pause(first);
    // SIGKILL works on a frozen (or stopped) worker: it ends crashed, and no longer reads paused.
    supervisor.signal(first, SIGKILL);
    REQUIRE(supervisor.wait(first, 30s));
    auto info = supervisor.info(first);
    CHECK(info.state == WorkerState::crashed);
    CHECK_FALSE(info.paused);
    CHECK(tree.all_gone());
    // Its cgroup, back in the pool, is not frozen for the next worker.
    jwtest::TempDir second_dir;
    auto second = supervisor.submit(quiet({"/bin/sh", "-c", "echo ran > " + (second_dir / "ran")}));
    REQUIRE(supervisor.wait(second, 30s));
    CAPTURE(supervisor.info(second).signal_name(), supervisor.info(second).error);
    CHECK(supervisor.info(second).state == WorkerState::succeeded);
    // A paused worker when the supervisor goes: the destructor's shutdown resumes and stops it.
    auto third = supervisor.submit(quiet({"/bin/sh", "-c", "echo $$ > " + (second_dir / "third.pid") + "; sleep 100"}));
    tree.pids["third"] = jwtest::read_pid_file(second_dir / "third.pid");
    REQUIRE(tree.pids["third"] > 0);
    supervisor.pause(third);
  }
  CHECK(tree.all_gone());
}

TEST_CASE("a worker whose stop has begun cannot be paused, so its SIGKILL still comes") {
  const bool use_cgroups = GENERATE(true, false);
  CAPTURE(use_cgroups);
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_cgroups(use_cgroups));
  if (use_cgroups && !cgroups_for(supervisor, use_cgroups)) return;
  // Ignores SIGTERM: only the SIGKILL at the end of its grace period ends it.
  WorkerSpec spec = jwtest::quiet({"/bin/sh", "-c", "trap '' TERM; echo up > " + (dir / "up") +
                                                        "; while :; do sleep 0.05; done"});
  spec.grace_period = 500ms;
  auto id = supervisor.submit(spec);
  REQUIRE(jwtest::wait_for_line(dir / "up"));
  supervisor.cancel(id);
  std::error_code ec;
  supervisor.pause(id, ec);
  CHECK(ec == jobwarden::errc::worker_not_running);
  CHECK_FALSE(supervisor.info(id).paused);
  REQUIRE(supervisor.wait(id, 20s));  // the SIGKILL came: nothing held it off
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
}

TEST_CASE("SIGCONT from the host to a worker paused by SIGSTOP resumes it, clocks included") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_cgroups(false));  // the SIGSTOP path
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const WorkerEvent& e) { kinds.push_back(e.kind); });
  WorkerSpec spec = jwtest::quiet({"/bin/sh", "-c", "echo up > " + (dir / "up") + "; while :; do sleep 0.05; done"});
  spec.timeout = 1s;
  spec.grace_period = 500ms;
  auto id = supervisor.submit(spec);
  REQUIRE(jwtest::wait_for_line(dir / "up"));
  supervisor.pause(id);
  supervisor.poll();
  REQUIRE(supervisor.info(id).paused);
  supervisor.signal(id, SIGCONT);
  CHECK_FALSE(supervisor.info(id).paused);  // it runs: it no longer reads paused
  // Its timeout runs again: it ends timed_out instead of running on unwatched.
  REQUIRE(supervisor.wait(id, 20s));
  CHECK(supervisor.info(id).state == WorkerState::timed_out);
  CHECK(std::find(kinds.begin(), kinds.end(), EventKind::resumed) != kinds.end());
}
