// Supervisor death leaves nothing behind; workers do not depend on the thread
// that spawned them.
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <filesystem>
#include <iterator>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include <jobwarden/job_control.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
/// A process's state letter and parent from /proc/<pid>/stat (the name may
/// hold anything, so the fields start after its last ") ").
struct ProcStat {
  char state = '?';
  int ppid = 0;
};
std::optional<ProcStat> read_proc_stat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(") ");
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 2));
  ProcStat out;
  fields >> out.state >> out.ppid;
  if (!fields) return std::nullopt;
  return out;
}

/// Whether `pid` exists and is not a zombie.
bool running(int pid) {
  auto stat = read_proc_stat(pid);
  return stat && stat->state != 'Z' && stat->state != 'X';
}

/// The executable of this process's orphan guard, written to `file`:
/// `/bin/sh`'s for the exec'd guard, our own for the forked one. Called right
/// after the supervisor is made, when the guard is the host's only child.
void write_guard_exe(const std::string& file) {
  std::string found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = read_proc_stat(std::stoi(pid));
    if (!stat || stat->ppid != ::getpid()) continue;
    char exe[4096] = {};
    if (::readlink(("/proc/" + pid + "/exe").c_str(), exe, sizeof exe - 1) > 0) found = exe;
  }
  std::ofstream(file) << found << "\n";
}

/// This test program's own executable.
std::string own_exe() {
  char exe[4096] = {};
  return ::readlink("/proc/self/exe", exe, sizeof exe - 1) > 0 ? exe : "";
}

/// Whether `supervisor` gives its workers cgroups; if not, says that the
/// calling test is skipped, and why.
bool has_cgroups(const JobSupervisor<>& supervisor) {
  if (supervisor.cgroups_active()) return true;
  WARN("SKIPPED: cgroup v2 is not writable here (" << supervisor.cgroups_unavailable_reason() << ")");
  return false;
}
}  // namespace

TEST_CASE("SIGKILL to the supervisor kills every worker and grandchild within about a second") {
  // Both guards: the exec'd script (Linux) and the fork (macOS, portable).
  const bool exec_guard = GENERATE(true, false);
  CAPTURE(exec_guard);
  jwtest::TempDir dir;
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    // The host: a supervisor with two workers, each with a grandchild.
    jobwarden::detail::guard_by_exec().store(exec_guard);
    try {
      jobwarden::SupervisorOptions options;
      options.max_concurrency = 4;
      JobSupervisor<> supervisor(options);
      write_guard_exe(dir / "guard.exe");
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
    } catch (const std::exception& e) {
      std::ofstream(dir / "host.error") << e.what() << "\n";
    } catch (...) {
    }
    ::_exit(3);
  }
  std::vector<int> pids;
  jwtest::KillOnExit guards[4];
  int slot = 0;
  for (std::string name : {"a", "b"}) {
    for (std::string kind : {".gc", ".leader"}) {
      // Generous: a loaded machine under a sanitizer once took over 10 s here.
      int pid = jwtest::read_pid_file(dir / (name + kind), std::chrono::seconds(30));
      if (pid <= 0) {  // say whether the host is still there, and what it met
        int status = 0;
        bool host_ended = ::waitpid(host, &status, WNOHANG) == host;
        INFO("host " << (host_ended ? "ended, wait status " + std::to_string(status) : "still running")
                     << "; its error: " << jwtest::read_file(dir / "host.error"));
        CHECK(pid > 0);
      }
      REQUIRE(pid > 0);
      guards[slot++].watch(pid);
      pids.push_back(pid);
    }
  }
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  // The guard under test is the one asked for.
  std::string guard_exe = jwtest::read_file(dir / "guard.exe");
  CAPTURE(guard_exe);
  if (exec_guard && JOBWARDEN_LINUX_FAST_PATH) {
    CHECK(guard_exe.find("sh") != std::string::npos);
    CHECK(guard_exe != own_exe() + "\n");
  } else {
    CHECK(guard_exe == own_exe() + "\n");
  }
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

TEST_CASE("every worker is born in its own cgroup, reused only once it is empty") {
  // Both ways in: clone3(CLONE_INTO_CGROUP), and joining from the child
  // (other architectures, kernels before 5.7, seccomp filters that refuse clone3).
  const bool use_clone3 = GENERATE(true, false);
#if JOBWARDEN_LINUX_FAST_PATH && JOBWARDEN_HAVE_CLONE3_VFORK
  jobwarden::detail::clone3_into_cgroup_usable().store(use_clone3);
  struct Restore {
    ~Restore() { jobwarden::detail::clone3_into_cgroup_usable().store(true); }
  } restore;
#else
  if (use_clone3) return;
#endif
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 2;
  JobSupervisor<> supervisor(options);
  if (!has_cgroups(supervisor)) return;
  // The worker reads its own cgroup before doing anything else: the first
  // instruction of the program already runs inside it. Every third worker
  // leaves an escapee, so its cgroup is killed and never handed out again;
  // the workers after it must not die of that kill.
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    WorkerSpec spec;
    std::string script = "cat /proc/self/cgroup > " + (dir / ("cg" + std::to_string(i))) + "; sleep 0.05";
    if (i % 3 == 0) script += "; setsid sleep 100 & echo $! > " + (dir / ("esc" + std::to_string(i)));
    spec.argv = {"/bin/sh", "-c", script};
    spec.stdout_spec = jobwarden::OutputSpec::discard();
    ids.push_back(supervisor.submit(spec));
  }
  REQUIRE(supervisor.wait_all(60s));
  jwtest::KillOnExit guard;
  std::vector<std::string> lines;
  for (int i = 0; i < 24; ++i) {
    INFO("worker " << i);
    CHECK(supervisor.info(ids[static_cast<std::size_t>(i)]).state == WorkerState::succeeded);
    std::string line = jwtest::read_file(dir / ("cg" + std::to_string(i)));
    lines.push_back(line);
    // "0::/<our cgroup>/jobwarden-<pid>-<start>-<n>/w<serial>"
    CHECK(line.find("/jobwarden-") != std::string::npos);
    CHECK(line.find("/w") != std::string::npos);
    if (i % 3 == 0) {
      int escapee = jwtest::read_pid_file(dir / ("esc" + std::to_string(i)));
      guard.watch(escapee);
      CHECK(jwtest::wait_gone(escapee));
    }
  }
  // Workers that ran at the same time never shared a cgroup.
  for (std::size_t a = 0; a < ids.size(); ++a) {
    for (std::size_t b = a + 1; b < ids.size(); ++b) {
      auto x = supervisor.info(ids[a]), y = supervisor.info(ids[b]);
      bool overlapped = x.started_at && y.started_at && x.ended_at && y.ended_at &&
                        *x.started_at < *y.ended_at && *y.started_at < *x.ended_at;
      if (overlapped) CHECK(lines[a] != lines[b]);
    }
  }
}

TEST_CASE("a leftover that left its worker's cgroup still dies with the worker's process group") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  if (!has_cgroups(supervisor)) return;
  // The worker moves its background child into the cgroup this test runs
  // in (outside the worker's own), then exits: only the process-group kill
  // made while the worker is still a zombie can catch it.
  const std::string own_cgroup = jobwarden::detail::CgroupTree::own_cgroup();
  const std::string mount = jobwarden::detail::CgroupTree::cgroup2_mount();
  REQUIRE(!mount.empty());
  std::string procs = mount + (own_cgroup == "/" ? "" : own_cgroup) + "/cgroup.procs";
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "sleep 37 & echo $! > " + (dir / "left.pid") + "; echo $! > " + procs + "; exit 0"};
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  int left = jwtest::read_pid_file(dir / "left.pid");
  jwtest::KillOnExit guard;
  guard.watch(left);
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(jwtest::wait_gone(left));
}

TEST_CASE("a setsid escapee dies when the supervisor is SIGKILLed where cgroups are writable") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> probe;
    if (!has_cgroups(probe)) return;
  }
  const bool exec_guard = GENERATE(true, false);
  CAPTURE(exec_guard);
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    jobwarden::detail::guard_by_exec().store(exec_guard);
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

namespace {
/// A process leading its own group, with a grandchild in that group; both
/// pids come back. The test reaps the leader.
struct GroupOfTwo {
  int leader = -1;
  int grandchild = -1;
};
GroupOfTwo start_group(const jwtest::TempDir& dir, const std::string& name) {
  const std::string pid_file = dir / (name + ".gc");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    std::string script = "sleep 100 & echo $! > " + pid_file + "; exec sleep 100";
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // either side may win the race; both ask for the same group
  GroupOfTwo group;
  group.leader = pid;
  group.grandchild = jwtest::read_pid_file(pid_file);
  return group;
}

/// Reaps our child `pid` if it ends within `limit`; its status goes to `status`.
bool reaped_within(int pid, int& status, std::chrono::milliseconds limit = 3s) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(10ms);
  }
}

/// Chooses the guard (exec'd or forked) for this process while it lives.
struct GuardKind {
  explicit GuardKind(bool exec) { jobwarden::detail::guard_by_exec().store(exec); }
  ~GuardKind() { jobwarden::detail::guard_by_exec().store(JOBWARDEN_LINUX_FAST_PATH != 0); }
  GuardKind(const GuardKind&) = delete;
  GuardKind& operator=(const GuardKind&) = delete;
};

/// Resident memory of `pid` in KiB (VmRSS), or -1.
long resident_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}
}  // namespace

TEST_CASE("the guard kills each recorded group, and only a process proven to be the recorded one") {
  using jobwarden::detail::OrphanGuard;
  const bool exec_guard = GENERATE(true, false);
  CAPTURE(exec_guard);
  GuardKind kind(exec_guard);
  jwtest::TempDir dir;
  GroupOfTwo recorded = start_group(dir, "recorded");
  GroupOfTwo other = start_group(dir, "other");
  GroupOfTwo freed = start_group(dir, "freed");
  jwtest::KillOnExit cleanup[7];
  int slot = 0;
  for (const GroupOfTwo* g : {&recorded, &other, &freed}) {
    cleanup[slot++].watch(g->leader);
    cleanup[slot++].watch(g->grandchild);
  }
  // A leader whose command name holds a newline and ") ": /proc/<pid>/stat
  // then spans two lines, and only the last ") " ends the name.
  pid_t odd = ::fork();
  if (odd == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_NAME, "a) b\nc) d", 0, 0, 0);
    for (;;) ::pause();
  }
  ::setpgid(odd, odd);
  cleanup[slot++].watch(odd);
  for (const GroupOfTwo* g : {&recorded, &other, &freed}) REQUIRE(g->grandchild > 0);
  {
    OrphanGuard orphan_guard;
    REQUIRE(orphan_guard.start(""));
    CHECK(orphan_guard.kind() == (exec_guard && JOBWARDEN_LINUX_FAST_PATH ? OrphanGuard::Kind::exec : OrphanGuard::Kind::fork));
    auto start_of = [](int pid) { return jobwarden::detail::process_start_time(pid).value_or(0); };
    CHECK(orphan_guard.add(recorded.leader, start_of(recorded.leader), -1) >= 0);
    CHECK(orphan_guard.add(odd, start_of(odd), -1) >= 0);
    // The same pid with another start time: a reused pid, never to be killed.
    CHECK(orphan_guard.add(other.leader, start_of(other.leader) + 1, -1) >= 0);
    // Recorded, then forgotten (reaped, as far as the guard knows).
    long freed_slot = orphan_guard.add(freed.leader, start_of(freed.leader), -1);
    CHECK(orphan_guard.remove(freed_slot));
    CHECK_FALSE(orphan_guard.remove(freed_slot));
    // Ended with a worker still recorded: the guard acts as on the host's death.
    orphan_guard.stop();
    CHECK_FALSE(orphan_guard.active());
  }
  // The recorded leaders are our children: they must end (killed) within seconds.
  int status = 0;
  REQUIRE(reaped_within(recorded.leader, status));
  CHECK(WIFSIGNALED(status));
  CHECK(reaped_within(odd, status));
  CHECK(jwtest::wait_gone(recorded.grandchild, 3s));
  // The others still run (not zombies): give a wrong kill time to land first.
  std::this_thread::sleep_for(200ms);
  CHECK(running(other.leader));
  CHECK(running(other.grandchild));
  CHECK(running(freed.leader));
  CHECK(running(freed.grandchild));
  for (const GroupOfTwo* g : {&other, &freed}) {
    ::kill(-g->leader, SIGKILL);
    ::waitpid(g->leader, nullptr, 0);
    CHECK(jwtest::wait_gone(g->grandchild, 3s));
  }
}

TEST_CASE("the exec'd guard holds none of a big host's memory") {
  using jobwarden::detail::OrphanGuard;
  if (!JOBWARDEN_LINUX_FAST_PATH) {
    WARN("SKIPPED: the guard is a fork of the host on the portable path");
    return;
  }
  // 64 MiB touched: a forked guard would map (and count) every page.
  std::vector<char> memory(64u << 20);
  for (std::size_t i = 0; i < memory.size(); i += 4096) memory[i] = 1;
  OrphanGuard orphan_guard;
  REQUIRE(orphan_guard.start(""));
  REQUIRE(orphan_guard.kind() == OrphanGuard::Kind::exec);
  long host = resident_kib(static_cast<int>(::getpid()));
  long guard = resident_kib(orphan_guard.pid());
  CAPTURE(host, guard);
  CHECK(host > 64 * 1024);
  CHECK(guard > 0);
  CHECK(guard < 16 * 1024);
  // It runs our script in its own process group, in "/".
  CHECK(::getpgid(orphan_guard.pid()) == orphan_guard.pid());
  char cwd[64] = {};
  CHECK(::readlink(("/proc/" + std::to_string(orphan_guard.pid()) + "/cwd").c_str(), cwd, sizeof cwd - 1) == 1);
  CHECK(std::string(cwd) == "/");
  // It ignores what a Ctrl-C or a kill aimed at the host's session sends.
  std::ifstream status_file("/proc/" + std::to_string(orphan_guard.pid()) + "/status");
  unsigned long long ignored = 0;
  for (std::string line; std::getline(status_file, line);) {
    if (line.rfind("SigIgn:", 0) == 0) ignored = std::stoull(line.substr(7), nullptr, 16);
  }
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE}) {
    CAPTURE(sig);
    CHECK((ignored >> (sig - 1) & 1ULL) == 1ULL);
  }
  orphan_guard.stop();
}

TEST_CASE("a guard killed from outside costs the supervisor its protection, not its life") {
  using jobwarden::detail::OrphanGuard;
  const bool exec_guard = GENERATE(true, false);
  CAPTURE(exec_guard);
  GuardKind kind(exec_guard);
  // SIGPIPE as a host gets it by default: telling a dead guard to go must not raise it.
  struct sigaction default_pipe, previous;
  std::memset(&default_pipe, 0, sizeof default_pipe);
  default_pipe.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &default_pipe, &previous);
  OrphanGuard orphan_guard;
  REQUIRE(orphan_guard.start(""));
  REQUIRE(::kill(orphan_guard.pid(), SIGKILL) == 0);
  siginfo_t info{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(orphan_guard.pid()), &info, WEXITED | WNOWAIT) == 0);
  orphan_guard.stop();  // with nothing recorded: the "let go" line to a dead guard
  CHECK_FALSE(orphan_guard.active());
  ::sigaction(SIGPIPE, &previous, nullptr);
}

TEST_CASE("only the process that started a guard lets it go, a fork of it never does") {
  // The lifeline both guards (the supervisor's orphan guard and the Slurm launcher's) use.
  using jobwarden::detail::Lifeline;
  jwtest::TempDir dir;
  const std::string verdict = dir / "verdict";
  Lifeline lifeline;
  REQUIRE(lifeline.open());
  jobwarden::detail::SpawnPlan plan;
  plan.path = "/bin/sh";
  plan.argv = {"sh", "-c",
                       "if read -r word && [ \"$word\" = q ]; then echo released > " + verdict + "; else echo eof > " + verdict + "; fi"};
  REQUIRE(lifeline.spawn(plan) > 0);
  jwtest::KillOnExit cleanup;
  cleanup.watch(lifeline.pid());
  CHECK(lifeline.active());
  pid_t fork_of_owner = ::fork();
  REQUIRE(fork_of_owner >= 0);
  if (fork_of_owner == 0) {
    lifeline.finish(true);  // a fork destroying its copy: closes it, says nothing
    ::_exit(0);
  }
  REQUIRE(::waitpid(fork_of_owner, nullptr, 0) == fork_of_owner);
  // Bounded wait for something that must not happen: the guard acting.
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(std::filesystem::exists(verdict));
  lifeline.finish(true);  // reaps the guard
  CHECK_FALSE(lifeline.active());
  CHECK(jwtest::read_file(verdict) == "released\n");
}

namespace {
/// The cgroup v2 directory of `pid` (empty: unknown).
std::string worker_cgroup(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) {
      const std::string own = line.substr(3);
      return jobwarden::detail::CgroupTree::cgroup2_mount() + (own == "/" ? "" : own);
    }
  }
  return {};
}

/// The spawn-window test's host (run under strace by the test below, never
/// on its own): a supervisor with one worker whose escapee leaves its
/// session. `JWTEST_WINDOW_DIR` is where the pids go.
void run_window_host() {
  const char* where = std::getenv("JWTEST_WINDOW_DIR");
  if (where == nullptr) return;
  const std::string dir = where;
  const char* guard = std::getenv("JWTEST_WINDOW_EXEC_GUARD");
  jobwarden::detail::guard_by_exec().store(guard != nullptr && std::string(guard) == "1");
#if JOBWARDEN_LINUX_FAST_PATH && JOBWARDEN_HAVE_CLONE3_VFORK
  const char* clone3 = std::getenv("JWTEST_WINDOW_CLONE3");
  jobwarden::detail::clone3_into_cgroup_usable().store(clone3 != nullptr && std::string(clone3) == "1");
#endif
  std::ofstream(dir + "/host.pid") << ::getpid() << "\n";
  JobSupervisor<> supervisor;
  std::ofstream(dir + "/tree") << supervisor.cgroups_active() << "\n";
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    if (e.kind == jobwarden::EventKind::started) std::ofstream(dir + "/recorded") << "yes\n";
  });
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "setsid sleep 100 & echo $! > " + dir + "/escapee.pid; echo $$ > " + dir + "/worker.pid; exec sleep 100"};
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  supervisor.submit(spec);  // held inside the spawn by strace until killed
  supervisor.wait_all();
}
}  // namespace

TEST_CASE("(helper) the host of the spawn-window test", "[.spawn-window-host]") { run_window_host(); }

TEST_CASE("a supervisor killed between spawning a worker and recording it still takes the worker down where cgroups are writable") {
  {
    JobSupervisor<> probe;
    if (!has_cgroups(probe)) return;
  }
  int strace_error = 0;
  const char* path_env = std::getenv("PATH");
  const std::string strace =
      jobwarden::detail::resolve_program("strace", path_env ? path_env : "", strace_error);
  if (strace.empty()) {
    WARN("SKIPPED: strace is not installed (scripts/install-deps.sh installs it)");
    return;
  }
  if (std::system((strace + " -qq -o /dev/null /bin/true 2>/dev/null").c_str()) != 0) {
    WARN("SKIPPED: strace cannot trace here (ptrace refused?)");
    return;
  }
  // Both ways into a cgroup: born there (clone3) and joined before exec; both guards.
  const bool clone3 = GENERATE(true, false);
  const bool exec_guard = GENERATE(true, false);
  CAPTURE(clone3, exec_guard);
#if !(JOBWARDEN_LINUX_FAST_PATH && JOBWARDEN_HAVE_CLONE3_VFORK)
  if (clone3) return;
#else
  // Sanitized builds spawn with fork (see detail/platform.hpp): no clone3 to hold.
  if (clone3 && !jobwarden::detail::features().vfork_spawn) return;
#endif
  jwtest::TempDir dir;
  // The host's spawn returns to it only after 30 s (strace holds it at the
  // exit of the system call that made the worker, which by then has exec'd):
  // the worker runs, and the supervisor has not recorded it anywhere yet.
  // Its first clone(2) starts the guard; with clone3 the worker is the only
  // clone3, without it the second clone.
  const std::string hold = "delay_exit=30000000";
  const std::vector<std::string> argv = {
      strace, "-qq", "-o", "/dev/null", "-e", "trace=clone,clone3",
      "-e", clone3 ? "inject=clone3:" + hold : "inject=clone:" + hold + ":when=2",
      "--", own_exe(), "(helper) the host of the spawn-window test"};
  pid_t tracer = ::fork();
  REQUIRE(tracer >= 0);
  if (tracer == 0) {
    ::setenv("JWTEST_WINDOW_DIR", dir.path().c_str(), 1);
    ::setenv("JWTEST_WINDOW_EXEC_GUARD", exec_guard ? "1" : "0", 1);
    ::setenv("JWTEST_WINDOW_CLONE3", clone3 ? "1" : "0", 1);
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 1);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    void now() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
    ~Reap() { now(); }
  } reap{tracer};
  const int host = jwtest::read_pid_file(dir / "host.pid", 30s);
  const int worker = jwtest::read_pid_file(dir / "worker.pid", 30s);
  const int escapee = jwtest::read_pid_file(dir / "escapee.pid", 30s);
  jwtest::KillOnExit cleanup[3];
  cleanup[0].watch(host);
  cleanup[1].watch(worker);
  cleanup[2].watch(escapee);
  REQUIRE(host > 0);
  REQUIRE(worker > 0);
  REQUIRE(escapee > 0);
  REQUIRE(jwtest::read_file(dir / "tree") == "1\n");
  // The worker's cgroup is <the host's tree>/w<serial>.
  std::string tree = worker_cgroup(worker);
  tree = tree.substr(0, tree.rfind('/'));
  REQUIRE(tree.find("/jobwarden-" + std::to_string(host) + "-") != std::string::npos);
  // The dead host's tree stays (its next supervisor there, or its job's
  // recovery, would reclaim it); the test removes it, killing what a
  // failure left in it.
  struct RemoveTree {
    std::string path;
    ~RemoveTree() { jobwarden::detail::kill_cgroup_tree(path, 5s); }
  } remove_tree{tree};
  // Inside the window: the worker runs, unrecorded.
  REQUIRE_FALSE(std::filesystem::exists(dir / "recorded"));
  // A tracee held in a ptrace stop dies of SIGKILL only once released: the
  // SIGKILL is pending, and strace's death releases it (strace also asks
  // for PTRACE_O_EXITKILL).
  REQUIRE(::kill(host, SIGKILL) == 0);
  reap.now();
  CHECK(jwtest::wait_gone(host));
  CHECK(jwtest::wait_gone(worker, 3s));
  CHECK(jwtest::wait_gone(escapee, 3s));
}

TEST_CASE("stopping a job whose supervisor died unguarded kills a setsid escapee through the recorded cgroup and removes the tree, also from a background recovery's poll()") {
  {
    JobSupervisor<> probe;
    if (!has_cgroups(probe)) return;
  }
  jwtest::TempDir dir;
  const std::string root = dir / "jobs";
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      jobwarden::SupervisorOptions options;
      options.root = root;
      options.job_id = "escape";
      options.orphan_guard = false;  // nothing acts at the supervisor's death: recovery must
      JobSupervisor<> supervisor(options);
      supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
        if (e.kind == jobwarden::EventKind::started) std::ofstream(dir / "recorded") << "yes\n";
      });
      WorkerSpec spec;
      spec.id = "w";
      spec.argv = {"/bin/sh", "-c",
                   "setsid sleep 100 & echo $! > " + (dir / "escapee.pid") + "; echo $$ > " + (dir / "worker.pid") +
                       "; exec sleep 100"};
      spec.stdout_spec = jobwarden::OutputSpec::discard();
      spec.stderr_spec = jobwarden::OutputSpec::discard();
      supervisor.submit(spec);
      supervisor.wait_all();  // until killed
    } catch (...) {
    }
    ::_exit(3);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{host};
  const int worker = jwtest::read_pid_file(dir / "worker.pid");
  const int escapee = jwtest::read_pid_file(dir / "escapee.pid");
  jwtest::KillOnExit cleanup[2];
  cleanup[0].watch(worker);
  cleanup[1].watch(escapee);
  REQUIRE(worker > 0);
  REQUIRE(escapee > 0);
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  // The job line names the supervisor's tree, which holds the escapee.
  const std::string tree = jwjournal::job_record({root, "escape"}).supervisor_cgroup;
  CAPTURE(tree);
  REQUIRE(tree.find("/jobwarden-" + std::to_string(host) + "-") != std::string::npos);
  REQUIRE(worker_cgroup(escapee).rfind(tree + "/", 0) == 0);
  struct RemoveTree {
    std::string path;
    ~RemoveTree() { jobwarden::detail::kill_cgroup_tree(path, 5s); }
  } remove_tree{tree};

  // Reaped at once, or left a zombie (as under a parent that never reaps
  // adopted orphans): a zombie supervisor is as dead as a reaped one.
  const bool left_a_zombie = GENERATE(false, true);
  CAPTURE(left_a_zombie);
  REQUIRE(::kill(host, SIGKILL) == 0);
  if (left_a_zombie) {
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(host), &info, WEXITED | WNOWAIT) == 0);
  } else {
    REQUIRE(::waitpid(host, nullptr, 0) == host);
    reap.pid = -1;
  }
  CHECK(running(escapee));  // nothing saved it

  // Recovered by `stop_job`, or by a successor that recovers in the
  // background: its poll() kills the tree and removes it in a later poll.
  const bool in_background = GENERATE(false, true);
  CAPTURE(in_background);
  jobwarden::RecoveryReport report;
  if (!in_background) {
    std::error_code ec;
    const jobwarden::StopOutcome outcome = jobwarden::stop_job(root, "escape", 200ms, 0ms, ec);
    REQUIRE_FALSE(ec);
    CHECK(outcome.action == jobwarden::StopAction::recovered);
    report = outcome.recovery;
  } else {
    jobwarden::SupervisorOptions options;
    options.root = root;
    options.job_id = "escape";
    options.use_cgroups = false;  // its own tree, made next to the dead one's, would reclaim it at once
    options.recover_in_background = true;
    options.replace_finished_job = true;
    options.recovery_grace = 200ms;
    JobSupervisor<> successor(options);
    CHECK(successor.recovering());
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (successor.recovering() && std::chrono::steady_clock::now() < give_up) {
      successor.poll();
      std::this_thread::sleep_for(1ms);
    }
    REQUIRE_FALSE(successor.recovering());
    report = successor.recovery_report();
  }
  CHECK(report.stopped == std::vector<std::string>{"w"});
  CHECK(report.reclaimed_cgroup == tree);
  CHECK(report.problems.empty());
  CHECK(jwtest::wait_gone(worker));
  CHECK(jwtest::wait_gone(escapee));
  CHECK_FALSE(std::filesystem::exists(tree));
}

TEST_CASE("recovery leaves alone a recorded cgroup tree it cannot prove is its dead supervisor's") {
  JobSupervisor<> live;
  if (!has_cgroups(live)) return;
  WorkerSpec spec;
  spec.argv = {"sleep", "100"};
  const std::string id = live.submit(spec);
  const int worker = live.info(id).pid;
  REQUIRE(worker > 0);
  std::string tree = worker_cgroup(worker);
  tree = tree.substr(0, tree.rfind('/'));  // <live's tree>/w<serial>
  REQUIRE(tree.find("/jobwarden-" + std::to_string(::getpid()) + "-") != std::string::npos);

  jwtest::TempDir dir;
  const jobwarden::detail::JobLayout layout{dir / "jobs", "j"};
  auto recover = [&] {
    std::error_code ec;
    jobwarden::detail::RecoveryReport report = jobwarden::detail::recover_abandoned_job(layout, 100ms, ec);
    CHECK_FALSE(ec);
    return report;
  };
  {
    // The tree's supervisor (this process) still runs: not abandoned.
    jobwarden::detail::JobRecorderOptions options;
    options.supervisor_cgroup = tree;
    jobwarden::detail::JobRecorder recorder(layout, options);
    recorder.open();
  }  // closed: the lock is free, the job unfinished
  jobwarden::detail::RecoveryReport report = recover();
  CHECK(report.job_was_abandoned);
  CHECK(report.reclaimed_cgroup.empty());
  CHECK(report.problems.empty());

  // Named for another supervisor than the one the job line records: never touched.
  {
    jobwarden::detail::JobRecorderOptions options;
    options.supervisor_cgroup = tree;
    options.replace_finished = true;
    jobwarden::detail::JobRecorder recorder(layout, options);
    recorder.open();
  }
  jobwarden::detail::JobRecord record = jwjournal::job_record(layout);
  record.supervisor_pid = 999999999;
  jwstatus::append_text(layout.journal_file(), jobwarden::detail::job_line_text(record));  // the latest job line wins
  report = recover();
  CHECK(report.reclaimed_cgroup.empty());
  REQUIRE(report.problems.size() == 1);
  CHECK_THAT(report.problems[0].second, Catch::Contains("not named for the job's supervisor"));

  // The worker in it runs on.
  std::this_thread::sleep_for(100ms);
  CHECK(running(worker));
  CHECK(std::filesystem::exists(tree));
  live.cancel(id);
  CHECK(live.wait(id, 30s));
}
