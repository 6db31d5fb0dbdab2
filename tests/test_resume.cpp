// Resuming a finished job (SupervisorOptions::resume_finished_job): the
// workers that succeeded keep their records and are not run again, every
// other worker submitted runs again as a new attempt, and the journal, the
// summary and the readers agree on the result.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/status_aggregator.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobState;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

jobwarden::detail::JobLayout layout_of(const jwtest::TempDir& dir, const std::string& job = "job") {
  return {dir.path(), job};
}

jobwarden::SupervisorOptions in(const jwtest::TempDir& dir, const std::string& job = "job") {
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = job;
  return options;
}

jobwarden::SupervisorOptions resuming(const jwtest::TempDir& dir, const std::string& job = "job") {
  auto options = in(dir, job);
  options.resume_finished_job = true;
  return options;
}

/// A worker running `script` under /bin/sh; each run appends a line to
/// `<dir>/<id>.runs`, so a test can count how often it ran.
WorkerSpec shell(const jwtest::TempDir& dir, const std::string& id, const std::string& script) {
  WorkerSpec spec;
  spec.id = id;
  spec.argv = {"/bin/sh", "-c", "echo \"attempt $JOBWARDEN_ATTEMPT\" >> '" + dir / (id + ".runs") + "'; " + script};
  return spec;
}

int runs_of(const jwtest::TempDir& dir, const std::string& id) {
  std::ifstream in(dir / (id + ".runs"));
  int count = 0;
  for (std::string line; std::getline(in, line);) ++count;
  return count;
}

/// Lets every submitted worker end, then writes the job's final state.
void finish(JobSupervisor<>& supervisor) {
  REQUIRE(supervisor.wait_all(60s));
  supervisor.finish();
  supervisor.poll();
}

std::map<std::string, jobwarden::WorkerInfo> by_id(const std::vector<jobwarden::WorkerInfo>& workers) {
  std::map<std::string, jobwarden::WorkerInfo> out;
  for (const auto& worker : workers) out[worker.id] = worker;
  return out;
}

/// The four workers of the first run: one succeeds, and until `<dir>/fixed`
/// exists one fails, one crashes and one sleeps (to be cancelled).
std::vector<WorkerSpec> four_workers(const jwtest::TempDir& dir) {
  const std::string fixed = "[ -e '" + dir / "fixed" + "' ]";
  return {shell(dir, "ok", "echo out-ok"),
          shell(dir, "fails", "echo out-fails; " + fixed + " || exit 3"),
          shell(dir, "crashes", fixed + " || kill -SEGV $$"),
          shell(dir, "cancelled", fixed + " || exec sleep 100")};
}

/// Runs `four_workers` once: ok succeeded, fails failed, crashes crashed,
/// cancelled cancelled; the job failed.
void first_run(const jwtest::TempDir& dir) {
  auto options = in(dir);
  options.max_concurrency = 4;
  JobSupervisor<> supervisor(options);
  for (auto& spec : four_workers(dir)) supervisor.submit(spec);
  for (const char* id : {"ok", "fails", "crashes"}) REQUIRE(supervisor.wait(id, 60s));
  // Cancelled once it has run (its line written), not before it started.
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (runs_of(dir, "cancelled") == 0 && std::chrono::steady_clock::now() < give_up) {
    supervisor.poll();
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(runs_of(dir, "cancelled") == 1);
  supervisor.cancel("cancelled");
  finish(supervisor);
  auto workers = by_id(supervisor.workers());
  REQUIRE(workers["ok"].state == WorkerState::succeeded);
  REQUIRE(workers["fails"].state == WorkerState::failed);
  REQUIRE(workers["crashes"].state == WorkerState::crashed);
  REQUIRE(workers["cancelled"].state == WorkerState::cancelled);
  REQUIRE(jwjournal::job_record(layout_of(dir)).state == JobState::cancelled);
}

}  // namespace

TEST_CASE("a resumed job runs again only the workers that did not succeed, each as a new attempt") {
  jwtest::TempDir dir;
  first_run(dir);
  const auto before = jwjournal::job_record(layout_of(dir));
  const auto ok_before = jwjournal::worker_record(layout_of(dir), "ok");
  std::ofstream(dir / "fixed") << "yes\n";

  JobSupervisor<> supervisor(resuming(dir));
  // The earlier run's records are there before anything is submitted.
  REQUIRE(supervisor.workers().size() == 4);
  for (auto& spec : four_workers(dir)) supervisor.submit(spec);
  finish(supervisor);

  auto workers = by_id(supervisor.workers());
  REQUIRE(workers.size() == 4);
  // The success is kept as it was: not run again, its record the earlier one.
  const auto& ok = workers["ok"];
  CHECK(ok.kept);
  CHECK(ok.state == WorkerState::succeeded);
  CHECK(ok.attempt == 1);
  CHECK(ok.exit_code == 0);
  CHECK(ok.pid == ok_before.pid);
  CHECK(ok.started_at == ok_before.started_at);
  CHECK(ok.ended_at == ok_before.ended_at);
  CHECK(runs_of(dir, "ok") == 1);
  CHECK(jwjournal::worker_record(layout_of(dir), "ok").started_at == ok_before.started_at);
  // The others ran again, as their second attempt.
  for (const char* id : {"fails", "crashes", "cancelled"}) {
    INFO(id);
    CHECK_FALSE(workers[id].kept);
    CHECK(workers[id].state == WorkerState::succeeded);
    CHECK(workers[id].attempt == 2);
    CHECK(runs_of(dir, id) == 2);
    CHECK(jwjournal::worker_record(layout_of(dir), id).attempt == 2);
  }
  CHECK(jwtest::read_file(dir / "fails.runs") == "attempt 1\nattempt 2\n");
  // Each attempt's output went to the same log, the new one appended.
  CHECK(jwtest::read_file(dir / "job/workers/fails.stdout.log") == "out-fails\nout-fails\n");
  CHECK(jwtest::read_file(dir / "job/workers/ok.stdout.log") == "out-ok\n");

  // The journal: the same job, resumed, its final state from all four.
  const auto after = jwjournal::job_record(layout_of(dir));
  CHECK(after.state == JobState::succeeded);
  CHECK(after.created_at == before.created_at);
  REQUIRE(after.resumed_at);
  REQUIRE(before.ended_at);
  CHECK(*after.resumed_at >= *before.ended_at);
  REQUIRE(after.summary);
  CHECK(after.summary->total == 4);
  CHECK(after.summary->succeeded == 4);
  CHECK(after.supervisor_pid == static_cast<int>(::getpid()));

  // Any reader sees the resumed job as the supervisor does.
  jobwarden::StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("job");
  CHECK(status.state == JobState::succeeded);
  CHECK(status.summary.total == 4);
  CHECK(status.summary.succeeded == 4);
  CHECK(status.errors.empty());
  CHECK(status.created_at == before.created_at);
  // Elapsed is the resumed run's: far less than the time since the job was created.
  REQUIRE(status.ended_at);
  CHECK(status.elapsed_seconds <=
        std::chrono::duration<double>(*status.ended_at - *after.resumed_at).count() + 0.001);
  for (const auto& worker : status.workers) {
    INFO(worker.id);
    CHECK(worker.state == WorkerState::succeeded);
    CHECK(worker.attempt == (worker.id == "ok" ? 1 : 2));
  }
}

TEST_CASE("a worker that succeeded with other arguments runs again, the same arguments do not") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(shell(dir, "same", "true"));
    supervisor.submit(shell(dir, "changed", "true"));
    finish(supervisor);
  }
  JobSupervisor<> supervisor(resuming(dir));
  supervisor.submit(shell(dir, "same", "true"));
  supervisor.submit(shell(dir, "changed", "true # edited"));
  finish(supervisor);
  CHECK(supervisor.info("same").kept);
  CHECK(supervisor.info("same").attempt == 1);
  CHECK_FALSE(supervisor.info("changed").kept);
  CHECK(supervisor.info("changed").attempt == 2);
  CHECK(jwjournal::worker_record(layout_of(dir), "changed").argv[2].find("# edited") != std::string::npos);
  CHECK(runs_of(dir, "same") == 1);
  CHECK(runs_of(dir, "changed") == 2);
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::succeeded);
}

TEST_CASE("workers of the earlier run not submitted again are kept and count toward the job's outcome") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(shell(dir, "good", "true"));
    supervisor.submit(shell(dir, "bad", "exit 4"));
    finish(supervisor);
  }
  JobSupervisor<> supervisor(resuming(dir));
  supervisor.submit(shell(dir, "good", "true"));
  supervisor.submit(shell(dir, "new", "true"));
  finish(supervisor);
  auto workers = by_id(supervisor.workers());
  REQUIRE(workers.size() == 3);
  CHECK(workers["bad"].kept);
  CHECK(workers["bad"].state == WorkerState::failed);
  CHECK(workers["bad"].exit_code == 4);
  CHECK(runs_of(dir, "bad") == 1);
  CHECK(workers["new"].attempt == 1);
  const auto job = jwjournal::job_record(layout_of(dir));
  CHECK(job.state == JobState::failed);
  REQUIRE(job.summary);
  CHECK(job.summary->total == 3);
  CHECK(job.summary->failed == 1);
  CHECK(supervisor.status().summary.total == 3);
  CHECK(supervisor.status().state == JobState::failed);
}

TEST_CASE("a worker id submitted twice in a resumed job is a duplicate, automatic ids go through resume too") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    WorkerSpec spec;
    spec.argv = {"/bin/sh", "-c", "exit 0"};
    CHECK(supervisor.submit(spec) == "1");
    spec.argv = {"/bin/sh", "-c", "exit 1"};
    CHECK(supervisor.submit(spec) == "2");
    finish(supervisor);
  }
  JobSupervisor<> supervisor(resuming(dir));
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "exit 0"};
  CHECK(supervisor.submit(spec) == "1");
  CHECK(supervisor.info("1").kept);
  CHECK(supervisor.submit(spec) == "2");  // its earlier record failed: a new attempt
  std::error_code ec;
  spec.id = "1";
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::duplicate_id);
  finish(supervisor);
  CHECK(supervisor.info("2").attempt == 2);
  CHECK(supervisor.info("2").state == WorkerState::succeeded);
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::succeeded);
}

TEST_CASE("restart limits count from the resumed run, not from the job's first attempt") {
  jwtest::TempDir dir;
  auto failing = [&] {
    WorkerSpec spec = shell(dir, "flaky", "exit 1");
    spec.restart.policy = jobwarden::RestartPolicy::on_failure;
    spec.restart.max_restarts = 1;
    spec.restart.initial_backoff = 10ms;
    spec.restart.jitter = 0;
    return spec;
  };
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(failing());
    finish(supervisor);
    CHECK(supervisor.info("flaky").attempt == 2);
  }
  JobSupervisor<> supervisor(resuming(dir));
  supervisor.submit(failing());
  finish(supervisor);
  CHECK(supervisor.info("flaky").attempt == 4);  // attempts 3 and 4: one restart again
  CHECK(supervisor.info("flaky").state == WorkerState::failed);
  CHECK(jwtest::read_file(dir / "flaky.runs") == "attempt 1\nattempt 2\nattempt 3\nattempt 4\n");
}

TEST_CASE("a resumed job's compaction keeps the earlier run's records") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(shell(dir, "kept", "true"));
    supervisor.submit(shell(dir, "other", "exit 2"));
    finish(supervisor);
  }
  auto options = resuming(dir);
  options.journal_compact_bytes = 1;  // compact at every flush that may
  JobSupervisor<> supervisor(options);
  WorkerSpec spec = shell(dir, "pool", "true");
  spec.restart.policy = jobwarden::RestartPolicy::always;
  spec.restart.max_restarts = 20;
  spec.restart.initial_backoff = 1ms;
  spec.restart.max_backoff = 1ms;
  spec.restart.burst_limit = 100;
  supervisor.submit(spec);
  finish(supervisor);
  auto fold = jwjournal::fold_of(layout_of(dir));
  CHECK(fold.generation() > 1);  // it was compacted
  const auto* kept = fold.find("kept");
  REQUIRE(kept != nullptr);
  REQUIRE(kept->ok);
  CHECK(kept->info.state == WorkerState::succeeded);
  const auto* other = fold.find("other");
  REQUIRE(other != nullptr);
  CHECK(other->info.state == WorkerState::failed);
  REQUIRE(fold.job());
  CHECK(fold.job()->resumed_at);
  CHECK(fold.job()->state == JobState::failed);
}

TEST_CASE("resuming a job that has a live supervisor is job_locked and changes nothing") {
  jwtest::TempDir dir;
  JobSupervisor<> live(in(dir));
  WorkerSpec spec;
  spec.id = "long";
  spec.argv = {"sleep", "100"};
  live.submit(spec);
  live.poll();
  const std::string journal = jwtest::read_file(dir / "job/journal.jsonl");
  std::error_code ec;
  JobSupervisor<> refused(resuming(dir), ec);
  CHECK(ec == jobwarden::errc::job_locked);
  CHECK_THROWS_WITH(JobSupervisor<>(resuming(dir)), Catch::Contains("already has a live supervisor"));
  CHECK(jwtest::read_file(dir / "job/journal.jsonl") == journal);
  live.shutdown();
}

TEST_CASE("resume and replace together are refused before anything touches the disk") {
  jwtest::TempDir dir;
  auto options = resuming(dir, "never");
  options.replace_finished_job = true;
  std::error_code ec;
  JobSupervisor<> refused(options, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK_THROWS_WITH(JobSupervisor<>(options), Catch::Contains("exclude each other"));
  CHECK_FALSE(std::filesystem::exists(dir / "never"));
}

TEST_CASE("resuming a job that does not exist starts it anew") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(resuming(dir, "fresh"));
  CHECK(supervisor.workers().empty());
  supervisor.submit(shell(dir, "a", "true"));
  finish(supervisor);
  CHECK(supervisor.info("a").attempt == 1);
  CHECK_FALSE(supervisor.info("a").kept);
  const auto job = jwjournal::job_record(layout_of(dir, "fresh"));
  CHECK(job.state == JobState::succeeded);
  CHECK_FALSE(job.resumed_at);
}

TEST_CASE("a job whose supervisor died is recovered, then resumed: its lost worker runs again") {
  jwtest::TempDir dir;
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      JobSupervisor<> supervisor(in(dir));
      supervisor.submit(shell(dir, "quick", "true"));
      supervisor.submit(shell(dir, "slow", "[ -e '" + dir / "fixed" + "' ] || exec sleep 100"));
      supervisor.wait("quick", 30s);
      std::ofstream(dir / "ready") << "yes\n";
      supervisor.wait_all();
    } catch (...) {
    }
    ::_exit(3);
  }
  struct Reaper {
    pid_t pid;
    void reap() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
    ~Reaper() { reap(); }
  } host_process{host};
  REQUIRE(jwtest::wait_for_line(dir / "ready"));
  host_process.reap();
  std::ofstream(dir / "fixed") << "yes\n";

  auto options = resuming(dir);
  options.recovery_grace = 2s;
  JobSupervisor<> supervisor(options);
  CHECK(supervisor.recovery_report().job_was_abandoned);
  CHECK(supervisor.info("slow").state == WorkerState::lost);
  supervisor.submit(shell(dir, "quick", "true"));
  supervisor.submit(shell(dir, "slow", "[ -e '" + dir / "fixed" + "' ] || exec sleep 100"));
  finish(supervisor);
  CHECK(supervisor.info("quick").kept);
  CHECK(supervisor.info("slow").attempt == 2);
  CHECK(supervisor.info("slow").state == WorkerState::succeeded);
  CHECK(runs_of(dir, "quick") == 1);
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::succeeded);
}

TEST_CASE("a resumed job does not carry the earlier run's halt or exit status") {
  jwtest::TempDir dir;
  {
    auto options = in(dir);
    std::string error;
    options.halt = *jobwarden::parse_halt("soon,fail=1", error);
    options.max_concurrency = 1;
    JobSupervisor<> supervisor(options);
    supervisor.submit(shell(dir, "bad", "[ -e '" + dir / "fixed" + "' ]"));
    supervisor.submit(shell(dir, "later", "true"));
    finish(supervisor);
    CHECK(supervisor.halted());
    supervisor.set_exit_status(1);
    supervisor.poll();
  }
  const auto halted = jwjournal::job_record(layout_of(dir));
  REQUIRE_FALSE(halted.halted.empty());
  REQUIRE(halted.supervisor_exit_status == 1);
  CHECK(runs_of(dir, "later") == 0);

  std::ofstream(dir / "fixed").put('\n');
  JobSupervisor<> supervisor(resuming(dir));
  CHECK_FALSE(supervisor.halted());
  supervisor.submit(shell(dir, "bad", "[ -e '" + dir / "fixed" + "' ]"));
  supervisor.submit(shell(dir, "later", "true"));
  finish(supervisor);
  const auto resumed = jwjournal::job_record(layout_of(dir));
  CHECK(resumed.halted.empty());
  CHECK_FALSE(resumed.supervisor_exit_status.has_value());
  CHECK(resumed.state == JobState::succeeded);
  CHECK(runs_of(dir, "later") == 1);
}
