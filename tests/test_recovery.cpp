// Recovery of a job whose supervisor died: what is proven to be left of its
// workers is stopped, nothing else is touched, and the lines recovery appends
// to the job's journal say lost.
// These are raw JobRecorder tests: the "supervisor" is a forked child that
// records workers it spawned itself, with no orphan guard, then is SIGKILLed.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <initializer_list>
#include <string>
#include <vector>

#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/detail/recovery.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
namespace jd = jobwarden::detail;
using jobwarden::JobState;
using jobwarden::WorkerInfo;
using jobwarden::WorkerState;

namespace {

/// A child of this test process, SIGKILLed and reaped at scope exit even when
/// the test fails half-way.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_and_reap(); }

  pid_t pid() const { return pid_; }

  /// Whether it has not exited (it is ours, so it cannot be a reused pid).
  bool running() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
  }

  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

/// SIGKILLs a worker's whole process group at scope exit if its leader is
/// still the recorded process (a failed test must not leave sleeps behind).
class GroupKillOnExit {
 public:
  void watch(int pid, unsigned long long start_time) {
    pid_ = pid;
    start_ = start_time;
  }
  ~GroupKillOnExit() {
    if (jd::is_same_process(pid_, start_)) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
    }
  }

 private:
  int pid_ = -1;
  unsigned long long start_ = 0;
};

/// Starts `argv` (absolute program path, no shell) as a child of the calling
/// process, in its own process group, with stdio on /dev/null. Returns once
/// it has exec'd (a close-on-exec pipe says so), so it no longer shares any
/// descriptor of its parent — the job's lock included. -1 on failure.
pid_t start_process(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(args[0], args.data());
    const int error = errno;
    (void)!::write(exec_pipe[1], &error, sizeof error);
    ::_exit(127);
  }
  ::close(exec_pipe[1]);
  if (pid < 0) {
    ::close(exec_pipe[0]);
    return -1;
  }
  ::setpgid(pid, pid);  // either side may win the race; both ask for the same
  int error = 0;
  ssize_t got;
  do {
    got = ::read(exec_pipe[0], &error, sizeof error);
  } while (got < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (got > 0) {
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

/// What the forked supervisor runs: one worker per entry, `{id, argv}`.
using WorkerCommands = std::vector<std::pair<std::string, std::vector<std::string>>>;

/// Forks a "supervisor": it opens the job with a JobRecorder, spawns each
/// worker itself (its own process group, as JobSupervisor does), records it
/// running with its pid and start time, writes `recorded` under `flag_dir`
/// and waits to be killed. No orphan guard: when it dies, its workers stay.
pid_t start_recording_supervisor(const jd::JobLayout& layout, const WorkerCommands& workers,
                                 const std::string& flag_dir) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  try {
    jd::JobRecorder recorder(layout);
    recorder.open();
    jobwarden::JobSummary summary;
    for (const auto& [id, argv] : workers) {
      WorkerInfo info;
      info.id = id;
      info.argv = argv;
      recorder.write_worker(info);  // pending, before it can run
      const pid_t worker = start_process(argv);
      if (worker < 0) ::_exit(4);
      info.state = WorkerState::running;
      info.attempt = 1;
      info.pid = worker;
      info.process_start_time = jd::process_start_time(worker).value_or(0);
      info.started_at = std::chrono::system_clock::now();
      recorder.write_worker(info);
      summary.add(WorkerState::running);
    }
    recorder.write_job(JobState::running, summary);
    std::ofstream(flag_dir + "/recorded") << "yes\n";
    for (;;) ::pause();
  } catch (...) {
  }
  ::_exit(3);
}

WorkerInfo read_process_record(const jd::JobLayout& layout, const std::string& id) {
  return jwjournal::worker_record(layout, id);
}

jd::JobRecord read_job_record(const jd::JobLayout& layout) { return jwjournal::job_record(layout); }

/// Writes a running record for `id` naming `pid` with `start_time`.
void record_running(jd::JobRecorder& recorder, const std::string& id, int pid, unsigned long long start_time) {
  WorkerInfo info;
  info.id = id;
  info.state = WorkerState::running;
  info.attempt = 1;
  info.pid = pid;
  info.process_start_time = start_time;
  info.started_at = std::chrono::system_clock::now();
  recorder.write_worker(info);
}

/// Writes a pending record for `id` (a worker that never started).
void record_pending(jd::JobRecorder& recorder, const std::string& id) {
  WorkerInfo info;
  info.id = id;
  recorder.write_worker(info);
}

/// The journal a supervisor leaves when it dies right after queueing the
/// workers `ids` (each recorded pending; the lock is released on return).
void record_abandoned_job(const jd::JobLayout& layout, std::initializer_list<const char*> ids) {
  jd::JobRecorder recorder(layout);
  recorder.open();
  for (const char* id : ids) record_pending(recorder, id);
}

}  // namespace

TEST_CASE("recovery stops the workers and grandchildren a SIGKILLed supervisor left and marks them and the job lost") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "scan"};
  WorkerCommands commands;
  for (std::string id : {"a", "b"}) {
    const std::string script = "/bin/sleep 100 & echo $! > " + (dir / (id + ".gc")) + "; /bin/sleep 100";
    commands.push_back({id, {"/bin/sh", "-c", script}});
  }
  Child supervisor(start_recording_supervisor(layout, commands, dir.path()));
  REQUIRE(supervisor.pid() > 0);
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));

  std::vector<int> pids;
  GroupKillOnExit group_guards[2];
  jwtest::KillOnExit grandchild_guards[2];
  for (int i = 0; i < 2; ++i) {
    const WorkerInfo info = read_process_record(layout, commands[i].first);
    REQUIRE(jd::is_same_process(info.pid, info.process_start_time));
    group_guards[i].watch(info.pid, info.process_start_time);
    const int grandchild = jwtest::read_pid_file(dir / (commands[i].first + ".gc"));
    REQUIRE(grandchild > 0);
    grandchild_guards[i].watch(grandchild);
    pids.push_back(info.pid);
    pids.push_back(grandchild);
  }
  supervisor.kill_and_reap();  // SIGKILL: no final write, no orphan guard; its workers go to init

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.stopped == std::vector<std::string>{"a", "b"});
  CHECK(report.marked_lost == std::vector<std::string>{"a", "b"});
  CHECK(report.problems.empty());
  CHECK(report.job_was_abandoned);
  for (int pid : pids) CHECK(jwtest::wait_gone(pid));
  for (std::string id : {"a", "b"}) {
    const WorkerInfo info = read_process_record(layout, id);
    CHECK(info.state == WorkerState::lost);
    CHECK(info.error == jd::recovery_stopped_error);
    CHECK(info.ended_at.has_value());
    CHECK(info.attempt == 1);
  }
  const jd::JobRecord job = read_job_record(layout);
  CHECK(job.state == JobState::lost);
  CHECK(job.ended_at.has_value());
  REQUIRE(job.summary.has_value());
  CHECK(job.summary->total == 2);
  CHECK(job.summary->lost == 2);
}

TEST_CASE("a worker whose leader ignores SIGTERM is SIGKILLed after the grace period") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "stubborn"};
  const WorkerCommands commands = {{"w", {"/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 100"}}};
  Child supervisor(start_recording_supervisor(layout, commands, dir.path()));
  REQUIRE(supervisor.pid() > 0);
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  const WorkerInfo before = read_process_record(layout, "w");
  GroupKillOnExit guard;
  guard.watch(before.pid, before.process_start_time);
  supervisor.kill_and_reap();

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 200ms, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.stopped == std::vector<std::string>{"w"});
  CHECK(jwtest::wait_gone(before.pid));
  CHECK(read_process_record(layout, "w").state == WorkerState::lost);
}

TEST_CASE("a grandchild that ignores SIGTERM is SIGKILLed even when its leader exits at once") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "split"};
  // The grandchild writes its pid only once it ignores SIGTERM; the leader
  // (an exec'd sleep) dies of the first SIGTERM, so the group id is free
  // before the grace period ends: only the members held from the start remain.
  const std::string grandchild_script =
      "trap \"\" TERM; echo $$ > " + (dir / "gc.pid") + "; exec /bin/sleep 100";
  const WorkerCommands commands = {
      {"w", {"/bin/sh", "-c", "/bin/sh -c '" + grandchild_script + "' & exec /bin/sleep 100"}}};
  Child supervisor(start_recording_supervisor(layout, commands, dir.path()));
  REQUIRE(supervisor.pid() > 0);
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));
  const WorkerInfo before = read_process_record(layout, "w");
  GroupKillOnExit group_guard;
  group_guard.watch(before.pid, before.process_start_time);
  const int grandchild = jwtest::read_pid_file(dir / "gc.pid");
  REQUIRE(grandchild > 0);
  jwtest::KillOnExit grandchild_guard;
  grandchild_guard.watch(grandchild);
  supervisor.kill_and_reap();

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 300ms, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.stopped == std::vector<std::string>{"w"});
  CHECK(jwtest::wait_gone(before.pid));
  CHECK(jwtest::wait_gone(grandchild));
  if (!jd::features().pidfd) WARN("no pidfds here: the grandchild was held by pid and start time");
}

TEST_CASE("a recorded pid that now names another process is not killed and its worker reads lost") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "reused"};
  Child unrelated(start_process({"/bin/sleep", "100"}));
  REQUIRE(unrelated.pid() > 0);
  const unsigned long long real_start = jd::process_start_time(unrelated.pid()).value_or(0);
  REQUIRE(real_start > 0);
  {
    jd::JobRecorder recorder(layout);
    recorder.open();
    // The pid is alive, but the recorded process started at another time: a reuse.
    record_running(recorder, "w", unrelated.pid(), real_start + 1);
    recorder.close();  // the supervisor is gone as far as the lock can tell
  }

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost == std::vector<std::string>{"w"});
  CHECK(unrelated.running());
  const WorkerInfo info = read_process_record(layout, "w");
  CHECK(info.state == WorkerState::lost);
  CHECK(info.error == jd::recovery_not_running_error);
  CHECK(info.pid == unrelated.pid());  // the record keeps what was recorded
  CHECK(read_job_record(layout).state == JobState::lost);
}

TEST_CASE("a job with a live supervisor is refused with job_locked and nothing changes") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "alive"};
  Child worker(start_process({"/bin/sleep", "100"}));
  REQUIRE(worker.pid() > 0);
  jd::JobRecorder recorder(layout);
  recorder.open();  // this process is the live supervisor: it holds the lock
  record_running(recorder, "w", worker.pid(), jd::process_start_time(worker.pid()).value_or(0));
  const std::string journal_before = jwtest::read_file(layout.journal_file());

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK(ec == jobwarden::errc::job_locked);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost.empty());
  CHECK_FALSE(report.job_was_abandoned);
  CHECK(worker.running());
  CHECK(jwtest::read_file(layout.journal_file()) == journal_before);
  CHECK_THROWS_AS(jd::recover_abandoned_job(layout, 10s), std::system_error);
}

TEST_CASE("a finished job is left as it is") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "done"};
  {
    jd::JobRecorder recorder(layout);
    recorder.open();
    WorkerInfo info;
    info.id = "w";
    recorder.write_worker(info);
    info.state = WorkerState::succeeded;
    info.attempt = 1;
    info.exit_code = 0;
    info.ended_at = std::chrono::system_clock::now();
    recorder.write_worker(info);
    jobwarden::JobSummary summary;
    summary.add(WorkerState::succeeded);
    recorder.write_job(JobState::succeeded, summary);
  }
  const std::string journal_before = jwtest::read_file(layout.journal_file());

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK_FALSE(ec);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost.empty());
  CHECK(report.problems.empty());
  CHECK_FALSE(report.job_was_abandoned);
  CHECK(jwtest::read_file(layout.journal_file()) == journal_before);
}

TEST_CASE("recovering a job twice changes nothing the second time") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "twice"};
  record_abandoned_job(layout, {"w"});
  std::error_code ec;
  const jd::RecoveryReport first = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(first.marked_lost == std::vector<std::string>{"w"});
  CHECK(first.job_was_abandoned);
  const std::string journal_after_first = jwtest::read_file(layout.journal_file());

  const jd::RecoveryReport second = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK_FALSE(ec);
  CHECK(second.marked_lost.empty());
  CHECK_FALSE(second.job_was_abandoned);
  CHECK(jwtest::read_file(layout.journal_file()) == journal_after_first);
}

TEST_CASE("a corrupt worker line is reported in problems and the other workers are still recovered") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "corrupt"};
  record_abandoned_job(layout, {"bad", "good", "shape"});
  // The latest line of "bad" is not JSON, that of "shape" has an unknown state.
  const std::uint64_t bad_offset = jwtest::read_file(layout.journal_file()).size();
  jwstatus::append_text(layout.journal_file(), "{\"type\":\"worker\",\"id\":\"bad\",\"state\": \n");
  jwstatus::append_text(layout.journal_file(), R"({"type":"worker","id":"shape","state":"flying"})" "\n");
  const std::string journal_before = jwtest::read_file(layout.journal_file());

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.marked_lost == std::vector<std::string>{"good"});
  REQUIRE(report.problems.size() == 2);
  CHECK(report.problems[0].first == "journal.jsonl");
  CHECK_THAT(report.problems[0].second, Catch::StartsWith("worker \"bad\": not valid JSON"));
  CHECK_THAT(report.problems[0].second, Catch::Contains("byte " + std::to_string(bad_offset)));
  CHECK(report.problems[1].first == "journal.jsonl");
  CHECK_THAT(report.problems[1].second, Catch::Contains("flying"));
  // Evidence is kept: the verdict is appended after what was there.
  const std::string journal_after = jwtest::read_file(layout.journal_file());
  CHECK(journal_after.compare(0, journal_before.size(), journal_before) == 0);
  CHECK(read_process_record(layout, "good").state == WorkerState::lost);
  const jd::JobRecord job = read_job_record(layout);
  CHECK(job.state == JobState::lost);
  REQUIRE(job.summary.has_value());
  CHECK(job.summary->total == 3);
  CHECK(job.summary->lost == 3);
}

TEST_CASE("a symlinked journal is not followed and the process it names is not touched") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "linked"};
  Child bystander(start_process({"/bin/sleep", "100"}));
  REQUIRE(bystander.pid() > 0);
  const jd::JobLayout decoy{dir / "elsewhere", "decoy"};
  {
    // A genuine-looking journal of the bystander, outside the job directory...
    jd::JobRecorder other(decoy);
    other.open();
    record_running(other, "w", bystander.pid(), jd::process_start_time(bystander.pid()).value_or(0));
  }
  {
    jd::JobRecorder recorder(layout);
    recorder.open();
  }
  // ...planted into the job as a link.
  REQUIRE(::unlink(layout.journal_file().c_str()) == 0);
  REQUIRE(::symlink(decoy.journal_file().c_str(), layout.journal_file().c_str()) == 0);
  const std::string decoy_before = jwtest::read_file(decoy.journal_file());

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK(ec == std::errc::too_many_symbolic_link_levels);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost.empty());
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].first == "journal.jsonl");
  CHECK(report.problems[0].second == "symbolic link not followed");
  CHECK(bystander.running());
  CHECK(jwtest::read_file(decoy.journal_file()) == decoy_before);
}

TEST_CASE("recovery cuts a torn last line before it appends its verdict") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "torn"};
  record_abandoned_job(layout, {"w"});
  const std::string whole = jwtest::read_file(layout.journal_file());
  // The dead supervisor was half-way through a line (a crash, a full disk).
  jwstatus::append_text(layout.journal_file(), "{\"type\":\"worker\",\"id\":\"w\",\"attempt\":1,\"error\":\"torn-tail");

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.marked_lost == std::vector<std::string>{"w"});
  CHECK(report.problems.empty());
  const std::string after = jwtest::read_file(layout.journal_file());
  CHECK(after.compare(0, whole.size(), whole) == 0);
  CHECK(after.find("torn-tail") == std::string::npos);
  CHECK(after.back() == '\n');
  jd::JournalFold fold = jwjournal::fold_of(layout);
  CHECK(fold.problems().empty());
  CHECK(read_process_record(layout, "w").state == WorkerState::lost);
  CHECK(read_job_record(layout).state == JobState::lost);
  // The verdict is the last line: the job's.
  const std::string last_line = after.substr(after.rfind('\n', after.size() - 2) + 1);
  CHECK_THAT(last_line, Catch::Contains("\"type\":\"job\""));
}

TEST_CASE("a schema 1 job directory is refused as unsupported_layout and nothing is touched") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "old"};
  Child bystander(start_process({"/bin/sleep", "100"}));
  REQUIRE(bystander.pid() > 0);
  std::filesystem::create_directories(layout.job_dir() + "/workers/w");
  const std::string job_text = jwstatus::job_document("old", "running", 1, 1).dump();
  jwstatus::write_text(layout.job_dir() + "/job.json", job_text);
  nlohmann::json process = jwstatus::process_document("w", "running", bystander.pid(),
                                                      jd::process_start_time(bystander.pid()).value_or(0));
  process["schema_version"] = 1;
  jwstatus::write_text(layout.job_dir() + "/workers/w/process.json", process.dump());
  jwstatus::write_text(layout.lock_file(), "");

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost.empty());
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].first == "job.json");
  CHECK_THAT(report.problems[0].second, Catch::Contains("schema 1"));
  CHECK(bystander.running());
  CHECK(jwtest::read_file(layout.job_dir() + "/job.json") == job_text);
  CHECK_FALSE(std::filesystem::exists(layout.journal_file()));
  try {
    jd::recover_abandoned_job(layout, 10s);
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == jobwarden::errc::unsupported_layout);
    CHECK_THAT(e.what(), Catch::Contains("job.json"));
  }
}

TEST_CASE("a journal naming another schema version is unsupported_layout and nothing is stopped") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "future"};
  Child bystander(start_process({"/bin/sleep", "100"}));
  REQUIRE(bystander.pid() > 0);
  std::filesystem::create_directories(layout.workers_dir());
  const std::string text =
      "{\"type\":\"journal\",\"schema_version\":3,\"job_id\":\"future\",\"generation\":1}\n" +
      jwstatus::journal_line("job", jwstatus::job_document("future", "running", 1, 1)) +
      jwstatus::journal_line("worker", jwstatus::process_document("w", "running", bystander.pid(),
                                                                 jd::process_start_time(bystander.pid()).value_or(0)));
  jwstatus::write_text(layout.journal_file(), text);
  jwstatus::write_text(layout.lock_file(), "");

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  CHECK(report.stopped.empty());
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].first == "journal.jsonl");
  CHECK_THAT(report.problems[0].second, Catch::Contains("schema_version 3"));
  CHECK(bystander.running());
  CHECK(jwtest::read_file(layout.journal_file()) == text);
}

TEST_CASE("a journal without a usable job line is bad_status_file and nothing is stopped") {
  jwtest::TempDir dir;
  Child bystander(start_process({"/bin/sleep", "100"}));
  REQUIRE(bystander.pid() > 0);
  const auto start = jd::process_start_time(bystander.pid()).value_or(0);
  for (const bool with_bad_job_line : {false, true}) {
    const std::string id = with_bad_job_line ? "bad-job" : "no-job";
    jwstatus::make_dir(dir / "jobs");
    jwstatus::CraftedJob job(dir / "jobs", id);
    jwstatus::write_text(job.layout.lock_file(), "");
    job.write_process("w", jwstatus::process_document("w", "running", bystander.pid(), start));
    if (with_bad_job_line) job.write_journal_text("{\"type\":\"job\",\"state\":\"flying\"}\n");
    const std::string before = jwtest::read_file(job.layout.journal_file());

    std::error_code ec;
    const jd::RecoveryReport report = jd::recover_abandoned_job(job.layout, 10s, ec);
    CHECK(ec == jobwarden::errc::bad_status_file);
    CHECK(report.stopped.empty());
    REQUIRE_FALSE(report.problems.empty());
    CHECK(report.problems[0].first == "journal.jsonl");
    if (!with_bad_job_line) CHECK(report.problems[0].second == "no job line");
    CHECK(bystander.running());
    CHECK(jwtest::read_file(job.layout.journal_file()) == before);
  }
}

TEST_CASE("a worker's reporting process still running is named, from workers/<id>.status.json, and not signalled") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir / "jobs", "reporter"};
  Child reporter(start_process({"/bin/sleep", "100"}));
  REQUIRE(reporter.pid() > 0);
  const unsigned long long reporter_start = jd::process_start_time(reporter.pid()).value_or(0);
  REQUIRE(reporter_start > 0);
  {
    jd::JobRecorder recorder(layout);
    recorder.open();
    // The recorded leader is gone: a process that ran and was reaped.
    Child leader(start_process({"/bin/sleep", "100"}));
    REQUIRE(leader.pid() > 0);
    const unsigned long long leader_start = jd::process_start_time(leader.pid()).value_or(0);
    const int leader_pid = leader.pid();
    leader.kill_and_reap();
    record_running(recorder, "w", leader_pid, leader_start);
  }
  nlohmann::json status = jwstatus::status_document("running");
  status["pid"] = reporter.pid();
  status["process_start_time"] = reporter_start;
  jwstatus::write_text(layout.status_file("w"), status.dump());

  std::error_code ec;
  const jd::RecoveryReport report = jd::recover_abandoned_job(layout, 10s, ec);
  REQUIRE_FALSE(ec);
  CHECK(report.stopped.empty());
  CHECK(report.marked_lost == std::vector<std::string>{"w"});
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].first == "workers/w.status.json");
  CHECK_THAT(report.problems[0].second, Catch::Contains("still runs; not stopped"));
  CHECK(reporter.running());
}

TEST_CASE("a symlinked job directory is not followed") {
  jwtest::TempDir dir;
  {
    jd::JobRecorder recorder({dir / "real", "j"});
    recorder.open();
    record_pending(recorder, "w");
  }
  std::filesystem::create_directories(dir / "linked");
  REQUIRE(::symlink((dir / "real/j").c_str(), (dir / "linked/j").c_str()) == 0);
  const std::string journal_before = jwtest::read_file(dir / "real/j/journal.jsonl");

  std::error_code ec;
  jd::recover_abandoned_job({dir / "linked", "j"}, 10s, ec);
  CHECK(ec == std::errc::too_many_symbolic_link_levels);
  CHECK(jwtest::read_file(dir / "real/j/journal.jsonl") == journal_before);
}

TEST_CASE("an unknown job is reported as unknown_job") {
  jwtest::TempDir dir;
  std::error_code ec;
  jd::recover_abandoned_job({dir / "no-root", "j"}, 10s, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  jd::recover_abandoned_job({dir.path(), "no-job"}, 10s, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  std::filesystem::create_directories(dir / "empty-job");
  jd::recover_abandoned_job({dir.path(), "empty-job"}, 10s, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
}

TEST_CASE("an invalid job id is refused before anything touches the disk") {
  jwtest::TempDir dir;
  const std::string root = dir / "never-created";
  const std::vector<std::string> invalid_ids = {"", "..", "../escape", "a/b", std::string(129, 'x'),
                                                std::string("a\0b", 3)};
  for (const std::string& id : invalid_ids) {
    std::error_code ec;
    const jd::RecoveryReport report = jd::recover_abandoned_job({root, id}, 10s, ec);
    CHECK(ec == jobwarden::errc::invalid_id);
    CHECK(report.problems.empty());
  }
  CHECK_FALSE(std::filesystem::exists(root));
  try {
    jd::recover_abandoned_job({root, "../escape"}, 10s);
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == jobwarden::errc::invalid_id);
    CHECK_THAT(e.what(), Catch::Contains("\"../escape\""));
  }
}
