// The same jobs on Slurm: JobSupervisor + SlurmLauncher against a real
// cluster. Every test that needs one skips — loudly — unless SLURM_CONF is
// set and `sinfo` answers; scripts/test-slurm.sh brings up a throw-away
// single-node cluster (scripts/slurm-up.sh) and runs them.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/slurm_launcher.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::OutputSpec;
using jobwarden::SlurmLauncher;
using jobwarden::SlurmOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

/// Why Slurm tests cannot run here, or empty when they can.
std::string slurm_unavailable_reason() {
  static const std::string reason = [] {
    const char* conf = std::getenv("SLURM_CONF");
    if (conf == nullptr || *conf == '\0') {
      return std::string(
          "SLURM_CONF is not set (run scripts/test-slurm.sh, or scripts/slurm-up.sh "
          "and export what it prints)");
    }
    if (std::system("sinfo --noheader >/dev/null 2>&1") != 0) {
      return std::string("sinfo fails with SLURM_CONF=") + conf + " (is the cluster up?)";
    }
    return std::string();
  }();
  return reason;
}

// Catch2 v2 has no SKIP: say so on stderr (visible under ctest -V and in the
// log of a failing run) and as a WARN, then leave the test.
#define REQUIRE_SLURM_OR_SKIP()                                               \
  do {                                                                        \
    std::string why_skipped = slurm_unavailable_reason();                     \
    if (!why_skipped.empty()) {                                               \
      std::fprintf(stderr, "SKIPPED: Slurm test: %s\n", why_skipped.c_str()); \
      WARN("SKIPPED (no Slurm): " << why_skipped);                            \
      return;                                                                 \
    }                                                                         \
  } while (false)

/// A job id no other test (or earlier run) uses, so squeue checks are exact.
std::string unique_job_id(const std::string& what) {
  static std::atomic<int> counter{0};
  return what + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

jobwarden::SupervisorOptions slurm_supervisor(const std::string& job_id, SlurmOptions slurm = {}) {
  jobwarden::SupervisorOptions options;
  options.job_id = job_id;
  options.max_concurrency = 8;
  options.launcher = std::make_shared<SlurmLauncher>(std::move(slurm));
  return options;
}

WorkerSpec quiet(std::vector<std::string> argv) {
  WorkerSpec spec;
  spec.argv = std::move(argv);
  spec.stdout_spec = OutputSpec::discard();
  spec.stderr_spec = OutputSpec::discard();
  return spec;
}

/// Runs a command, returns its stdout.
std::string capture(const std::string& command) {
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    ::pclose(pipe);
  }
  return out;
}

/// Names of this user's Slurm jobs that are not finished and belong to `job_id`.
std::vector<std::string> live_jobs_of(const std::string& job_id) {
  std::string listing = capture("squeue --noheader --user=" + std::to_string(::getuid()) +
                                " --states=PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"
                                " --format=%j 2>/dev/null");
  std::vector<std::string> names;
  std::string prefix = "jw:" + job_id + ":";
  std::size_t begin = 0;
  while (begin < listing.size()) {
    std::size_t end = listing.find('\n', begin);
    if (end == std::string::npos) end = listing.size();
    std::string name = listing.substr(begin, end - begin);
    if (name.rfind(prefix, 0) == 0) names.push_back(name);
    begin = end + 1;
  }
  return names;
}

/// Waits (bounded) until Slurm lists no live job of `job_id`. Polling is the
/// only way to watch another daemon's table.
bool wait_no_jobs(const std::string& job_id, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!live_jobs_of(job_id).empty()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

/// A shell task that records its own pid and a grandchild that escaped its
/// session (setsid), then waits.
WorkerSpec with_escaped_grandchild(const jwtest::TempDir& dir, const std::string& name) {
  return quiet({"/bin/sh", "-c",
                "setsid sleep 300 & echo $! > " + (dir / (name + ".gc")) + "; echo $$ > " +
                    (dir / (name + ".task")) + "; sleep 300"});
}


}  // namespace

TEST_CASE("srun's error lines are read into an exit code, a signal or a spawn failure") {
  // No cluster needed: these are the lines slurm 22.05 prints (captured from
  // scripts/slurm-up.sh's cluster).
  auto exited = SlurmLauncher::parse_srun_output(
      "srun: error: localhost: task 0: Exited with exit code 139\n");
  CHECK(exited.task_ended);
  CHECK_FALSE(exited.task_signalled);

  auto crashed = SlurmLauncher::parse_srun_output(
      "srun: error: node7: task 0: Segmentation fault (core dumped)\n");
  CHECK(crashed.task_ended);
  CHECK(crashed.task_signalled);
  CHECK(crashed.core_dumped);
  CHECK(crashed.node == "node7");

  auto missing = SlurmLauncher::parse_srun_output(
      "slurmstepd-localhost: error: execve(): nosuch: No such file or directory\n"
      "srun: error: localhost: task 0: Exited with exit code 2\n");
  CHECK(missing.task_ended);
  CHECK(missing.execve_error == "No such file or directory");
  CHECK(missing.node == "localhost");

  auto partition = SlurmLauncher::parse_srun_output(
      "srun: error: invalid partition specified: nope\n"
      "srun: error: Unable to allocate resources: Invalid partition name specified\n");
  CHECK_FALSE(partition.task_ended);
  CHECK(partition.srun_error == "Slurm refused the job: Invalid partition name specified");

  auto down = SlurmLauncher::parse_srun_output(
      "srun: error: Unable to allocate resources: Unable to contact slurm controller (connect "
      "failure)\n");
  CHECK(down.srun_error.rfind("cannot reach the Slurm controller", 0) == 0);

  auto no_config = SlurmLauncher::parse_srun_output(
      "srun: error: fetch_config: DNS SRV lookup failed\n"
      "srun: fatal: Could not establish a configuration source\n");
  CHECK(no_config.srun_error == "srun failed: Could not establish a configuration source");

  auto task_text = SlurmLauncher::parse_srun_output("error: my own message\nsrun-ish noise\n");
  CHECK_FALSE(task_text.task_ended);
  CHECK(task_text.srun_error.empty());
}

TEST_CASE("the srun command line carries the site's options and a time limit from the timeout") {
  // No cluster needed: prepare() only builds the command line.
  jwtest::TempDir dir;
  SlurmOptions slurm;
  slurm.srun_program = "/opt/slurm/bin/srun";  // a path is used as given
  slurm.partition = "batch";
  slurm.account = "proj7";
  slurm.memory = "2G";
  slurm.cpus_per_task = 4;
  slurm.extra_args = {"--qos=short"};
  slurm.orphan_guard = false;
  slurm.scratch_dir = dir / "scratch";
  SlurmLauncher launcher(slurm);
  WorkerSpec spec;
  spec.argv = {"scan", "--fast"};
  spec.timeout = 61s;
  spec.cwd = "/srv/data";
  spec.stderr_spec = OutputSpec::to_file(dir / "err.log");
  jobwarden::LaunchPlan plan;
  plan.argv = spec.argv;
  plan.env = {"PATH=/usr/bin", "SLURM_JOB_ID=99", "SLURM_JOBID=99", "KEEP=1"};
  jobwarden::LaunchContext context;
  context.job_id = "scan-42";
  context.worker_id = "3";
  context.attempt = 2;
  context.stderr_spec = spec.stderr_spec;
  std::string error;
  REQUIRE_FALSE(launcher.prepare(plan, spec, context, error));
  CHECK(error.empty());
  CHECK(plan.path == "/opt/slurm/bin/srun");
  std::vector<std::string> expected{"/opt/slurm/bin/srun",
                                    "--job-name=jw:scan-42:3:2:" + launcher.token(),
                                    "--ntasks=1",
                                    "--nodes=1",
                                    "--input=none",
                                    "--export=ALL",
                                    "--chdir=/srv/data",
                                    "--partition=batch",
                                    "--account=proj7",
                                    "--mem=2G",
                                    "--cpus-per-task=4",
                                    "--time=3",  // ceil(61 s) = 2 min, + 1
                                    "--qos=short",
                                    "--",
                                    "scan",
                                    "--fast"};
  CHECK(plan.argv == expected);
  // An inherited allocation would make the worker a step of the host's job.
  CHECK(plan.env == std::vector<std::string>{"PATH=/usr/bin", "KEEP=1"});
}

namespace {
/// Makes an executable shell script at `path`.
void write_script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
}

/// Options whose Slurm clients are stand-ins in `dir`: srun and scancel
/// record their arguments (scancel in `scancel.log`), squeue lists one job
/// named for whatever launcher token is in `token` (empty: none).
SlurmOptions fake_slurm(const jwtest::TempDir& dir) {
  write_script(dir / "srun", "exit 0\n");
  write_script(dir / "scancel", "echo \"$*\" >> " + (dir / "scancel.log") + "\n");
  write_script(dir / "squeue", "read -r token < " + (dir / "token") +
                                   " 2>/dev/null && echo \"4242 jw:job:w:1:$token\"\nexit 0\n");
  SlurmOptions slurm;
  slurm.srun_program = dir / "srun";
  slurm.scancel_program = dir / "scancel";
  slurm.squeue_program = dir / "squeue";
  slurm.scratch_dir = dir / "scratch";
  return slurm;
}

/// Has `launcher` prepare one worker, which starts its orphan guard.
bool prepare_one(SlurmLauncher& launcher) {
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.stderr_spec = OutputSpec::discard();
  jobwarden::LaunchPlan plan;
  plan.argv = spec.argv;
  jobwarden::LaunchContext context;
  context.job_id = "job";
  context.worker_id = "w";
  context.stderr_spec = spec.stderr_spec;
  std::string error;
  return !launcher.prepare(plan, spec, context, error);
}
}  // namespace

TEST_CASE("a Slurm guard killed from outside does not take the host down at stop (SIGPIPE)") {
  // No cluster needed: the guard starts with the first worker prepared, and
  // the stand-in clients are never run (the guard dies before it could).
  jwtest::TempDir dir;
  SlurmOptions slurm = fake_slurm(dir);
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    // SIGPIPE as a host gets it by default: letting a dead guard go must not raise it.
    ::signal(SIGPIPE, SIG_DFL);
    int code = 0;
    {
      SlurmLauncher launcher(slurm);
      if (!prepare_one(launcher)) ::_exit(10);
      const int guard = launcher.guard_pid();
      if (guard <= 0) ::_exit(11);
      if (::kill(guard, SIGKILL) != 0) ::_exit(12);
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(guard), &info, WEXITED | WNOWAIT) != 0) ::_exit(13);
      code = info.si_code == CLD_KILLED ? 0 : 14;
    }  // the destructor lets the (dead) guard go
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  CAPTURE(status);
  CHECK_FALSE(WIFSIGNALED(status));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the Slurm guard cancels its launcher's jobs when the host is SIGKILLed, and never when it is let go") {
  // No cluster needed: stand-in clients record what the guard asks of them.
  jwtest::TempDir dir;
  SlurmOptions slurm = fake_slurm(dir);
  {
    // Let go: a launcher destroyed normally cancels nothing.
    SlurmLauncher launcher(slurm);
    std::ofstream(dir / "token") << launcher.token() << "\n";
    REQUIRE(prepare_one(launcher));
    const int guard = launcher.guard_pid();
    REQUIRE(guard > 0);
    // Started like the orphan guard: its own group, in "/", deaf to what a
    // Ctrl-C or a kill aimed at the host's group or session sends.
    CHECK(::getpgid(guard) == guard);
    std::error_code ec;
    CHECK(std::filesystem::read_symlink("/proc/" + std::to_string(guard) + "/cwd", ec) == "/");
    std::ifstream status_file("/proc/" + std::to_string(guard) + "/status");
    unsigned long long ignored = 0;
    for (std::string line; std::getline(status_file, line);) {
      if (line.rfind("SigIgn:", 0) == 0) ignored = std::stoull(line.substr(7), nullptr, 16);
    }
    for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1}) {
      CAPTURE(sig);
      CHECK((ignored >> (sig - 1) & 1ULL) == 1ULL);
    }
  }  // reaps the guard: whatever it would have done is done
  CHECK_FALSE(std::filesystem::exists(dir / "scancel.log"));

  int guard = 0;
  {
    pid_t host = ::fork();
    REQUIRE(host >= 0);
    if (host == 0) {
      SlurmLauncher launcher(slurm);
      std::ofstream(dir / "token") << launcher.token() << "\n";
      if (!prepare_one(launcher)) ::_exit(10);
      std::ofstream(dir / "guard.pid") << launcher.guard_pid() << "\n";
      for (;;) ::pause();
    }
    guard = jwtest::read_pid_file(dir / "guard.pid");
    jwtest::KillOnExit cleanup;
    cleanup.watch(guard);
    ::kill(host, SIGKILL);
    REQUIRE(::waitpid(host, nullptr, 0) == host);
    REQUIRE(guard > 0);
    // Two sweeps, two seconds apart, each a SIGKILL to the running job and a
    // cancel; then the guard exits by itself.
    CHECK(jwtest::wait_gone(guard, 10s));
  }
  CHECK(jwtest::read_file(dir / "scancel.log") ==
        "--signal=KILL --state=RUNNING 4242\n4242\n--signal=KILL --state=RUNNING 4242\n4242\n");
}

TEST_CASE("srun's exit and verdict become the worker's exit code, signal or spawn failure") {
  // No cluster needed: interpret_exit reads what srun wrote to the worker's
  // stderr file, here written by the test.
  jwtest::TempDir dir;
  SlurmOptions slurm;
  slurm.srun_program = "/usr/bin/srun";
  slurm.orphan_guard = false;
  SlurmLauncher launcher(slurm);
  int attempt = 0;
  auto run = [&](const std::string& srun_stderr, jobwarden::ExitStatus status,
                 jobwarden::WorkerInfo& info) {
    WorkerSpec spec;
    spec.argv = {"/opt/tool"};
    spec.stderr_spec = OutputSpec::to_file(dir / "err.log", true);
    jobwarden::LaunchPlan plan;
    plan.argv = spec.argv;
    jobwarden::LaunchContext context;
    context.job_id = "j";
    context.worker_id = "w";
    context.attempt = ++attempt;
    context.stderr_spec = spec.stderr_spec;
    std::string error;
    REQUIRE_FALSE(launcher.prepare(plan, spec, context, error));
    {
      std::ofstream out(dir / "err.log", std::ios::app);
      out << srun_stderr;
    }
    info.argv = spec.argv;
    auto state = launcher.interpret_exit(info, status, context);
    launcher.release(info, context);
    return std::make_pair(state, status);
  };
  jobwarden::ExitStatus rc139;
  rc139.exit_code = 139;
  {
    jobwarden::WorkerInfo info;
    auto [state, status] =
        run("srun: error: n1: task 0: Segmentation fault (core dumped)\n", rc139, info);
    CHECK_FALSE(state);
    CHECK_FALSE(status.exit_code);
    REQUIRE(status.signal);
    CHECK(*status.signal == SIGSEGV);
    CHECK(status.core_dumped);
  }
  {
    jobwarden::WorkerInfo info;
    auto [state, status] = run("srun: error: n1: task 0: Exited with exit code 139\n", rc139, info);
    CHECK_FALSE(state);
    REQUIRE(status.exit_code);
    CHECK(*status.exit_code == 139);
    CHECK_FALSE(status.signal);
  }
  {
    jobwarden::WorkerInfo info;
    jobwarden::ExitStatus rc2;
    rc2.exit_code = 2;
    // The file is appended to: only this attempt's lines count, not the ones above.
    auto [state, status] =
        run("slurmstepd-n1: error: execve(): /opt/tool: No such file or directory\n"
            "srun: error: n1: task 0: Exited with exit code 2\n",
            rc2, info);
    REQUIRE(state);
    CHECK(*state == WorkerState::spawn_failed);
    CHECK_FALSE(status.exit_code);
    CHECK(info.error == "cannot run \"/opt/tool\" on n1: No such file or directory");
  }
  {
    jobwarden::WorkerInfo info;
    info.error = "timed out after 2s";  // a stop the supervisor began keeps its reason
    jobwarden::ExitStatus rc1;
    rc1.exit_code = 1;
    auto [state, status] =
        run("srun: error: Unable to allocate resources: Job/step already "
            "completing or completed\n",
            rc1, info);
    REQUIRE(state);
    CHECK(*state == WorkerState::spawn_failed);
    CHECK(info.error == "timed out after 2s");
  }
}

TEST_CASE("a worker run through Slurm succeeds and its stdout reaches the worker's log") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("ok");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = quiet({"/bin/sh", "-c", "echo hello from $(hostname)"});
  spec.stdout_spec = OutputSpec::to_file(dir / "out.log");
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);
  CHECK(info.error.empty());
  CHECK(jwtest::read_file(dir / "out.log").rfind("hello from ", 0) == 0);
  CHECK(wait_no_jobs(job));  // a finished job may stay COMPLETING for a moment
}

TEST_CASE("through srun, stdin bytes reach the task and its lines reach a handler as they come") {
  REQUIRE_SLURM_OR_SKIP();
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("io")));
  std::vector<std::string> lines;
  std::string stderr_text;
  supervisor.on_output_line([&](const jobwarden::OutputLine& line) {
    if (line.stream == jobwarden::OutputStream::out) {
      lines.emplace_back(line.text);
    } else {
      stderr_text += std::string(line.text) + "\n";
    }
  });
  std::string input;
  for (int i = 0; i < 2000; ++i) input += "record " + std::to_string(i) + "\n";
  auto spec = quiet({"/bin/sh", "-c", "wc -l; echo 'on stderr' >&2; exit 4"});
  spec.stdout_spec = OutputSpec::supervised(OutputSpec::Kind::discard);
  spec.stdin_spec = jobwarden::InputSpec::from_bytes(input);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 4);
  CHECK(info.stdin_written_bytes == input.size());
  REQUIRE(lines.size() == 1);
  INFO("wc -l said: " << lines[0] << "; stderr: " << stderr_text);
  CHECK(lines[0].find("2000") != std::string::npos);
  // stderr is discarded but its tail is kept and its lines are handed over:
  // the task's line and srun's verdict.
  CHECK(info.stderr_tail.find("on stderr") != std::string::npos);
  CHECK(stderr_text.find("on stderr\n") != std::string::npos);
}

TEST_CASE("a Slurm worker's non-zero exit is its exit code") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("exit")));
  auto spec = quiet({jwtest::test_worker(), "exit", "3"});
  spec.stderr_spec = OutputSpec::to_file(dir / "err.log");
  auto three = supervisor.submit(spec);
  // 139 is what srun returns for a SIGSEGV too: srun's own line tells them apart.
  auto not_a_crash = supervisor.submit(quiet({jwtest::test_worker(), "exit", "139"}));
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(three);
  CHECK(info.state == WorkerState::failed);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 3);
  CHECK_FALSE(info.signal);
  // srun's verdict stays in the worker's stderr log, where a user looks first.
  CHECK(jwtest::read_file(dir / "err.log").find("Exited with exit code 3") != std::string::npos);
  auto other = supervisor.info(not_a_crash);
  CHECK(other.state == WorkerState::failed);
  REQUIRE(other.exit_code);
  CHECK(*other.exit_code == 139);
}

TEST_CASE("a Slurm worker killed by a signal is crashed with the signal's name") {
  REQUIRE_SLURM_OR_SKIP();
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("crash")));
  auto segv = supervisor.submit(quiet({jwtest::test_worker(), "crash"}));
  auto abrt = supervisor.submit(quiet({jwtest::test_worker(), "abort"}));
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(segv);
  CHECK(info.state == WorkerState::crashed);
  CHECK(info.signal_name() == "SIGSEGV");
  CHECK_FALSE(info.exit_code);
  CHECK(supervisor.info(abrt).state == WorkerState::crashed);
  CHECK(supervisor.info(abrt).signal_name() == "SIGABRT");
}

TEST_CASE("a timed-out Slurm worker's grandchildren are killed too, escaped ones included") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("timeout");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = with_escaped_grandchild(dir, "w");
  spec.timeout = 1s;
  spec.grace_period = 5s;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(spec);
  int task = jwtest::read_pid_file(dir / "w.task", 30s);
  int grandchild = jwtest::read_pid_file(dir / "w.gc", 30s);
  jwtest::KillOnExit guard_task, guard_grandchild;
  guard_task.watch(task);
  guard_grandchild.watch(grandchild);
  REQUIRE(task > 0);
  REQUIRE(grandchild > 0);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::timed_out);
  CHECK(info.error.find("timed out") != std::string::npos);
  CHECK(jwtest::wait_gone(task, 10s));
  CHECK(jwtest::wait_gone(grandchild, 10s));
  CHECK(std::find(kinds.begin(), kinds.end(), EventKind::timed_out) != kinds.end());
  CHECK(wait_no_jobs(job));
}

TEST_CASE("cancelling a Slurm worker sends SIGTERM first and ends it cancelled") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  auto job = unique_job_id("cancel");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = quiet({jwtest::test_worker(), "trap-term", "100"});
  spec.stdout_spec = OutputSpec::to_file(ready.path());
  spec.grace_period = 30s;
  bool killed = false;
  supervisor.on_event(
      [&](const jobwarden::WorkerEvent& e) { killed |= e.kind == EventKind::killed; });
  auto id = supervisor.submit(spec);
  REQUIRE(ready.wait_ready());
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 25s));  // well inside the 30 s grace period
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);  // it caught SIGTERM and exited by itself
  CHECK_FALSE(killed);
  CHECK(wait_no_jobs(job));
}

TEST_CASE("a Slurm worker that ignores SIGTERM is killed after the grace period") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  auto job = unique_job_id("ignore");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = quiet({jwtest::test_worker(), "ignore-term"});
  spec.stdout_spec = OutputSpec::to_file(ready.path());
  spec.grace_period = 500ms;
  bool killed = false;
  supervisor.on_event(
      [&](const jobwarden::WorkerEvent& e) { killed |= e.kind == EventKind::killed; });
  auto id = supervisor.submit(spec);
  REQUIRE(ready.wait_ready());
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::cancelled);
  REQUIRE(info.signal);
  CHECK(*info.signal == SIGKILL);
  CHECK(killed);
  CHECK(wait_no_jobs(job));
}

TEST_CASE("cancelling a Slurm worker that is still queued cancels its job at once") {
  REQUIRE_SLURM_OR_SKIP();
  auto job = unique_job_id("queued");
  SlurmOptions slurm;
  // Not before an hour from now: the job can only wait in the queue.
  slurm.extra_args = {"--begin=now+3600"};
  JobSupervisor<> supervisor(slurm_supervisor(job, slurm));
  auto spec = quiet({"/bin/true"});
  spec.grace_period = 60s;
  auto id = supervisor.submit(spec);
  // Submitted once Slurm lists it (pending); polling is the only way to see it.
  auto until = std::chrono::steady_clock::now() + 20s;
  while (live_jobs_of(job).empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(live_jobs_of(job).size() == 1);
  REQUIRE(supervisor.info(id).state == WorkerState::running);
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 20s));  // not the 60 s grace period
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK(wait_no_jobs(job));
}

TEST_CASE("a Slurm worker cancelled with no grace period the moment it is submitted still ends") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("instant");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = with_escaped_grandchild(dir, "w");
  spec.grace_period = 0ms;  // straight to SIGKILL, maybe before Slurm knows the job
  auto id = supervisor.submit(spec);
  supervisor.cancel(id);
  REQUIRE(supervisor.wait(id, 40s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
  CHECK(wait_no_jobs(job, 20s));
  // If the task got to start, nothing of it survives.
  int task = jwtest::read_pid_file(dir / "w.task", 0ms);
  int grandchild = jwtest::read_pid_file(dir / "w.gc", 0ms);
  if (task > 0) CHECK(jwtest::wait_gone(task, 10s));
  if (grandchild > 0) CHECK(jwtest::wait_gone(grandchild, 10s));
}

TEST_CASE("killing the supervisor cancels its Slurm jobs and kills every task process") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("orphans");
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      JobSupervisor<> supervisor(slurm_supervisor(job));
      for (std::string name : {"a", "b"}) {
        auto spec = with_escaped_grandchild(dir, name);
        spec.id = name;
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
    for (std::string kind : {".gc", ".task"}) {
      int pid = jwtest::read_pid_file(dir / (name + kind), 30s);
      REQUIRE(pid > 0);
      guards[slot++].watch(pid);
      pids.push_back(pid);
    }
  }
  REQUIRE(live_jobs_of(job).size() == 2);
  REQUIRE(::kill(host, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  for (int pid : pids) CHECK(jwtest::wait_gone(pid, 10s));
  CHECK(wait_no_jobs(job));
}

TEST_CASE("without the launcher's guard a killed supervisor's jobs run on until cancel_leftovers") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("leftovers");
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      SlurmOptions slurm;
      slurm.orphan_guard = false;
      slurm.scratch_dir = dir / "scratch";  // nobody removes a private one after SIGKILL
      JobSupervisor<> supervisor(slurm_supervisor(job, slurm));
      auto spec = with_escaped_grandchild(dir, "a");
      supervisor.submit(spec);
      supervisor.wait_all();  // until killed
    } catch (...) {
    }
    ::_exit(3);
  }
  int task = jwtest::read_pid_file(dir / "a.task", 30s);
  int grandchild = jwtest::read_pid_file(dir / "a.gc", 30s);
  jwtest::KillOnExit guard_task, guard_grandchild;
  guard_task.watch(task);
  guard_grandchild.watch(grandchild);
  REQUIRE(task > 0);
  REQUIRE(::kill(host, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  // The orphan guard killed srun's whole process group, srun's cancel helper with
  // it: the job survives. Bounded wait, to show it is not merely slow.
  bool ended_alone = jwtest::wait_gone(task, 3s);
  if (ended_alone) {
    WARN("this site ended the job by itself (InactiveLimit?); nothing left to recover");
  } else {
    CHECK(live_jobs_of(job).size() == 1);
  }
  std::error_code ec;
  SlurmLauncher::cancel_leftovers(SlurmOptions{}, job, ec);
  CHECK_FALSE(ec);
  CHECK(jwtest::wait_gone(task, 10s));
  CHECK(jwtest::wait_gone(grandchild, 10s));
  CHECK(wait_no_jobs(job));
}

TEST_CASE("a program missing on the node ends spawn_failed, not with an exit code") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("missing")));
  auto discarded = supervisor.submit(quiet({"/nonexistent/jobwarden-program"}));
  auto logged_spec = quiet({"jobwarden-no-such-program"});
  logged_spec.stderr_spec = OutputSpec::to_file(dir / "err.log");
  auto logged = supervisor.submit(logged_spec);
  REQUIRE(supervisor.wait_all(60s));
  for (const auto& id : {discarded, logged}) {
    auto info = supervisor.info(id);
    CHECK(info.state == WorkerState::spawn_failed);
    CHECK(info.error.find("No such file or directory") != std::string::npos);
    CHECK_FALSE(info.exit_code);
  }
  CHECK(supervisor.info(discarded).error.find("/nonexistent/jobwarden-program") !=
        std::string::npos);
}

TEST_CASE("an unknown partition ends spawn_failed with Slurm's reason") {
  REQUIRE_SLURM_OR_SKIP();
  SlurmOptions slurm;
  slurm.partition = "jobwarden-no-such-partition";
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("partition"), slurm));
  auto id = supervisor.submit(quiet({"/bin/true"}));
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("Invalid partition") != std::string::npos);
  CHECK_FALSE(info.exit_code);
}

TEST_CASE("an unreachable Slurm controller ends spawn_failed") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  // The same cluster description, but a port nobody listens on and a short
  // message timeout (srun retries for about that long).
  std::string conf = jwtest::read_file(std::getenv("SLURM_CONF"));
  std::string broken;
  std::size_t begin = 0;
  while (begin < conf.size()) {
    std::size_t end = conf.find('\n', begin);
    if (end == std::string::npos) end = conf.size();
    std::string line = conf.substr(begin, end - begin);
    begin = end + 1;
    if (line.rfind("SlurmctldPort=", 0) == 0 || line.rfind("MessageTimeout=", 0) == 0) continue;
    broken += line + "\n";
  }
  broken += "SlurmctldPort=1\nMessageTimeout=2\n";
  {
    std::ofstream out(dir / "slurm.conf");
    out << broken;
  }
  std::string cgroup_conf = std::string(std::getenv("SLURM_CONF"));
  cgroup_conf = cgroup_conf.substr(0, cgroup_conf.rfind('/')) + "/cgroup.conf";
  std::filesystem::copy_file(cgroup_conf, dir / "cgroup.conf");
  JobSupervisor<> supervisor(slurm_supervisor(unique_job_id("down")));
  auto spec = quiet({"/bin/true"});
  spec.env["SLURM_CONF"] = dir / "slurm.conf";  // srun runs with the worker's environment
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("Slurm controller") != std::string::npos);
}

TEST_CASE("the JOBWARDEN_* variables and the spec's environment reach the Slurm task") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("env");
  ::setenv("JOBWARDEN_SLURM_TEST_HOST_VAR", "from-host", 1);
  auto launcher = std::make_shared<SlurmLauncher>();
  jobwarden::SupervisorOptions options;
  options.job_id = job;
  options.launcher = launcher;
  JobSupervisor<> supervisor(options);
  const std::string script =
      "echo \"$JOBWARDEN_JOB_ID|$JOBWARDEN_WORKER_ID|$JOBWARDEN_ATTEMPT|$MY_SETTING|"
      "${JOBWARDEN_SLURM_TEST_HOST_VAR:-unset}|${SLURM_JOB_NAME}\"";
  auto inherited = quiet({"/bin/sh", "-c", script});
  inherited.id = "inherits";
  inherited.env["MY_SETTING"] = "a value with spaces";
  inherited.stdout_spec = OutputSpec::to_file(dir / "inherits.out");
  auto clean = inherited;
  clean.id = "clean";
  clean.inherit_env = false;  // srun still finds the cluster (SLURM_CONF is passed on)
  clean.stdout_spec = OutputSpec::to_file(dir / "clean.out");
  supervisor.submit(inherited);
  supervisor.submit(clean);
  bool done = supervisor.wait_all(60s);
  ::unsetenv("JOBWARDEN_SLURM_TEST_HOST_VAR");
  REQUIRE(done);
  INFO(supervisor.info("clean").error);
  CHECK(supervisor.info("inherits").state == WorkerState::succeeded);
  CHECK(supervisor.info("clean").state == WorkerState::succeeded);
  std::string name_tail = ":1:" + launcher->token();
  CHECK(jwtest::read_file(dir / "inherits.out") ==
        job + "|inherits|1|a value with spaces|from-host|jw:" + job + ":inherits" + name_tail +
            "\n");
  CHECK(jwtest::read_file(dir / "clean.out") ==
        job + "|clean|1|a value with spaces|unset|jw:" + job + ":clean" + name_tail + "\n");
}

TEST_CASE("fifty short Slurm workers under a concurrency limit of eight all end as they should") {
  REQUIRE_SLURM_OR_SKIP();
  auto job = unique_job_id("fifty");
  auto options = slurm_supervisor(job);
  options.max_concurrency = 8;
  JobSupervisor<> supervisor(options);
  std::size_t running = 0, most_running = 0;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    if (e.kind == EventKind::started) most_running = std::max(most_running, ++running);
    if (e.kind == EventKind::exited && e.worker.started_at) --running;
  });
  std::map<std::string, WorkerState> expected;
  for (int i = 0; i < 50; ++i) {
    WorkerSpec spec;
    if (i % 10 == 3) {
      spec = quiet({jwtest::test_worker(), "exit", "7"});
      expected[std::to_string(i)] = WorkerState::failed;
    } else if (i % 10 == 7) {
      spec = quiet({jwtest::test_worker(), "crash"});
      expected[std::to_string(i)] = WorkerState::crashed;
    } else {
      spec = quiet({jwtest::test_worker(), "sleep", std::to_string(50 + 10 * (i % 5))});
      expected[std::to_string(i)] = WorkerState::succeeded;
    }
    spec.id = std::to_string(i);
    supervisor.submit(spec);
  }
  REQUIRE(supervisor.wait_all(170s));
  for (const auto& info : supervisor.workers()) {
    INFO("worker " << info.id << ": " << info.error);
    CHECK(info.state == expected[info.id]);
  }
  CHECK(most_running <= 8);
  CHECK(most_running >= 2);
  CHECK(wait_no_jobs(job));
}

TEST_CASE("a Slurm worker reports progress and a result through its status file") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto options = slurm_supervisor(unique_job_id("status"));
  options.root = dir.path();
  JobSupervisor<> supervisor(options);
  WorkerSpec spec;
  spec.id = "scan";
  spec.argv = {jwtest::test_worker(), "report", "5", "1"};
  REQUIRE(supervisor.wait(supervisor.submit(spec), 60s));
  supervisor.finish();
  supervisor.poll();
  auto status = supervisor.status();
  REQUIRE(status.workers.size() == 1);
  const auto& worker = status.workers[0];
  CHECK(worker.state == WorkerState::succeeded);
  REQUIRE(worker.progress);
  CHECK((*worker.progress)["done"] == 5);
  CHECK((*worker.progress)["total"] == 5);
  CHECK(worker.message == "step 5");
  CHECK(worker.result == nlohmann::json{{"count", 5}});
  CHECK(status.state == jobwarden::JobState::succeeded);
}

TEST_CASE("with a job directory a Slurm worker's output and srun's verdict land in its logs") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("logs");
  auto options = slurm_supervisor(job);
  options.root = dir.path();
  JobSupervisor<> supervisor(options);
  WorkerSpec failing;
  failing.id = "failing";
  failing.argv = {"/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"};
  WorkerSpec crashing;
  crashing.id = "crashing";
  crashing.argv = {jwtest::test_worker(), "crash"};
  supervisor.submit(failing);
  supervisor.submit(crashing);
  REQUIRE(supervisor.wait_all(60s));
  auto failed = supervisor.info("failing");
  CHECK(failed.state == WorkerState::failed);
  REQUIRE(failed.exit_code);
  CHECK(*failed.exit_code == 3);
  const jobwarden::detail::JobLayout layout{dir.path(), job};
  CHECK(jwtest::read_file(layout.stdout_file("failing")) == "to-out\n");
  std::string err = jwtest::read_file(layout.stderr_file("failing"));
  CHECK(err.find("to-err\n") != std::string::npos);  // srun may say "queued" first
  CHECK(err.find("task 0: Exited with exit code 3") != std::string::npos);
  auto crashed = supervisor.info("crashing");
  CHECK(crashed.state == WorkerState::crashed);
  CHECK(crashed.signal_name() == "SIGSEGV");
}

TEST_CASE("with a job directory a program missing on the node ends spawn_failed") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto options = slurm_supervisor(unique_job_id("logmissing"));
  options.root = dir.path();
  JobSupervisor<> supervisor(options);
  WorkerSpec spec;
  spec.argv = {"/nonexistent/jobwarden-program"};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("No such file or directory") != std::string::npos);
  CHECK_FALSE(info.exit_code);
}

TEST_CASE("a warning reaches a Slurm task with scancel --signal and never cancels a queued job") {
  // No cluster needed: the stand-in scancel records its arguments. Only the
  // worker's stop signal (or SIGKILL) also cancels a job still queued.
  jwtest::TempDir dir;
  SlurmOptions slurm = fake_slurm(dir);
  slurm.orphan_guard = false;
  auto scancel_calls = [&](int sig) {
    std::string name;
    {
      SlurmLauncher launcher(slurm);
      WorkerSpec spec;
      spec.argv = {"/bin/true"};
      spec.stderr_spec = OutputSpec::discard();
      spec.stop_signal = SIGINT;
      jobwarden::LaunchPlan plan;
      plan.argv = spec.argv;
      jobwarden::LaunchContext context;
      context.job_id = "job";
      context.worker_id = "w";
      context.stderr_spec = spec.stderr_spec;
      std::string error;
      REQUIRE_FALSE(launcher.prepare(plan, spec, context, error));
      name = "--name=" + launcher.job_name(context);
      jobwarden::WorkerInfo worker;
      worker.id = "w";
      worker.pid = 999'999;  // never signalled: scancel is there
      launcher.signal_tree(worker, sig, context);
    }  // the destructor waits for the scancel calls in flight
    std::vector<std::string> lines;
    std::istringstream log(jwtest::read_file(dir / "scancel.log"));
    for (std::string line; std::getline(log, line);) {
      auto at = line.find(name);
      lines.push_back(at == std::string::npos ? line : line.replace(at, name.size(), "NAME"));
    }
    std::sort(lines.begin(), lines.end());
    std::filesystem::remove(dir / "scancel.log");
    return lines;
  };
  CHECK(scancel_calls(SIGUSR1) == std::vector<std::string>{"--signal=" + std::to_string(SIGUSR1) + " --state=RUNNING NAME"});
  CHECK(scancel_calls(SIGTERM) == std::vector<std::string>{"--signal=" + std::to_string(SIGTERM) + " --state=RUNNING NAME"});
  CHECK(scancel_calls(SIGINT) == std::vector<std::string>{"--signal=" + std::to_string(SIGINT) + " --state=RUNNING NAME",
                                                          "--state=PENDING NAME"});
}

TEST_CASE("a Slurm worker gets its warning before its deadline and then times out") {
  REQUIRE_SLURM_OR_SKIP();
  jwtest::TempDir dir;
  auto job = unique_job_id("warn");
  JobSupervisor<> supervisor(slurm_supervisor(job));
  auto spec = quiet({"/bin/sh", "-c",
                     "trap 'echo warned >> " + (dir / "warned") + "' USR1; echo $$ > " + (dir / "w.task") +
                         "; while :; do sleep 0.05; done"});
  spec.timeout = 8s;
  spec.warning = jobwarden::DeadlineWarning{SIGUSR1, 4s};
  spec.grace_period = 5s;
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { kinds.push_back(e.kind); });
  auto id = supervisor.submit(spec);
  int task = jwtest::read_pid_file(dir / "w.task", 30s);
  jwtest::KillOnExit guard_task;
  guard_task.watch(task);
  REQUIRE(supervisor.wait(id, 60s));
  CHECK(supervisor.info(id).state == WorkerState::timed_out);
  CHECK(std::count(kinds.begin(), kinds.end(), EventKind::warned) == 1);
  CHECK(jwtest::read_file(dir / "warned") == "warned\n");
  CHECK(jwtest::wait_gone(task, 10s));
  CHECK(wait_no_jobs(job));
}
