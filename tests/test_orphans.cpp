// Supervisor death leaves nothing behind; workers do not depend on the thread
// that spawned them.
#include <sys/wait.h>

#include <thread>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

TEST_CASE("SIGKILL to the supervisor kills every worker and grandchild within about a second") {
  jwtest::TempDir dir;
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    // The host: a supervisor with two workers, each with a grandchild.
    try {
      jobwarden::SupervisorOptions options;
      options.max_concurrency = 4;
      JobSupervisor<> supervisor(options);
      // The guarantee covers workers the supervisor has recorded as started.
      int started = 0;
      supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
        if (e.kind == jobwarden::EventKind::started && ++started == 2) {
          std::ofstream(dir / "recorded") << "yes\n";
        }
      });
      for (std::string name : {"a", "b"}) {
        WorkerSpec spec;
        spec.id = name;
        spec.argv = {"/bin/sh", "-c",
                     "sleep 100 & echo $! > " + (dir / (name + ".gc")) + "; echo $$ > " +
                         (dir / (name + ".leader")) + "; sleep 100"};
        // Never hold the test runner's output pipe, even if something survives.
        spec.stdout_spec = jobwarden::OutputSpec::discard();
        spec.stderr_spec = jobwarden::OutputSpec::discard();
        supervisor.submit(spec);
      }
      supervisor.wait_all();  // until killed
    } catch (...) {
    }
    ::_exit(3);
  }
  std::vector<int> pids;
  jwtest::KillOnExit guards[4];
  int slot = 0;
  for (std::string name : {"a", "b"}) {
    for (std::string kind : {".gc", ".leader"}) {
      int pid = jwtest::read_pid_file(dir / (name + kind));
      REQUIRE(pid > 0);
      guards[slot++].watch(pid);
      pids.push_back(pid);
    }
  }
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  REQUIRE(::kill(host, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  for (int pid : pids) CHECK(jwtest::wait_gone(pid, 3s));
}

TEST_CASE("a worker spawned from a thread that exits keeps running") {
  JobSupervisor<> supervisor;
  std::string id;
  std::thread spawner([&] {
    WorkerSpec spec;
    spec.argv = {"sleep", "100"};
    spec.grace_period = 5s;
    id = supervisor.submit(spec);
  });
  spawner.join();
  // A PR_SET_PDEATHSIG-based design would have killed it when the thread ended.
  CHECK_FALSE(supervisor.wait(id, 300ms));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::running);
  CHECK(jobwarden::detail::is_same_process(info.pid, info.process_start_time));
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
}

TEST_CASE("the orphan guard runs by default and can be turned off") {
  JobSupervisor<> guarded;
  CHECK(guarded.guard_active());
  jobwarden::SupervisorOptions options;
  options.orphan_guard = false;
  JobSupervisor<> unguarded(options);
  CHECK_FALSE(unguarded.guard_active());
}

TEST_CASE("a setsid escapee is killed with its worker where cgroups are writable") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  if (!supervisor.cgroups_active()) {
    WARN("SKIPPED: cgroup v2 is not writable here (" << supervisor.cgroups_unavailable_reason()
                                                     << "); escapees cannot be caught");
    return;
  }
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "setsid sleep 100 & echo $! > " + (dir / "escapee.pid") + "; sleep 100"};
  spec.timeout = 200ms;
  spec.grace_period = 5s;
  auto id = supervisor.submit(spec);
  int escapee = jwtest::read_pid_file(dir / "escapee.pid");
  jwtest::KillOnExit guard;
  guard.watch(escapee);
  REQUIRE(escapee > 0);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::timed_out);
  CHECK(jwtest::wait_gone(escapee));
}

TEST_CASE("a setsid escapee dies when the supervisor is SIGKILLed where cgroups are writable") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> probe;
    if (!probe.cgroups_active()) {
      WARN("SKIPPED: cgroup v2 is not writable here (" << probe.cgroups_unavailable_reason() << ")");
      return;
    }
  }
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      JobSupervisor<> supervisor;
      WorkerSpec spec;
      spec.argv = {"/bin/sh", "-c",
                   "setsid sleep 100 & echo $! > " + (dir / "escapee.pid") + "; sleep 100"};
      spec.stdout_spec = jobwarden::OutputSpec::discard();
      spec.stderr_spec = jobwarden::OutputSpec::discard();
      supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
        if (e.kind == jobwarden::EventKind::started) std::ofstream(dir / "recorded") << "yes\n";
      });
      supervisor.submit(spec);
      supervisor.wait_all();
    } catch (...) {
    }
    ::_exit(3);
  }
  int escapee = jwtest::read_pid_file(dir / "escapee.pid");
  jwtest::KillOnExit guard;
  guard.watch(escapee);
  REQUIRE(escapee > 0);
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  REQUIRE(::kill(host, SIGKILL) == 0);
  REQUIRE(::waitpid(host, nullptr, 0) == host);
  CHECK(jwtest::wait_gone(escapee, 3s));
}
