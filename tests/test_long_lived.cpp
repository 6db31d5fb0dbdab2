// Long-lived supervisors: forgetting finished workers (by the host, all at
// once, or automatically once their end is delivered) while the job
// directory, the counts and the final state keep them; a forgotten id
// submitted again; the `idle` job state; the worker's own message and error
// in `WorkerInfo`; and a supervisor running thousands of workers whose heap
// stays flat when it forgets them (runs alone: tests/CMakeLists.txt).
#include <malloc.h>
#include <poll.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobState;
using jobwarden::JobSupervisor;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

using jwtest::quiet;

SupervisorOptions in(const jwtest::TempDir& dir, const std::string& job_id = "live") {
  SupervisorOptions options;
  options.root = dir.path();
  options.job_id = job_id;
  options.max_concurrency = 4;
  return options;
}

jobwarden::detail::JobLayout layout_of(const jwtest::TempDir& dir, const std::string& job_id = "live") {
  return jobwarden::detail::JobLayout{dir.path(), job_id};
}

WorkerSpec named(const std::string& id, std::vector<std::string> argv) {
  WorkerSpec spec = quiet(std::move(argv));
  spec.id = id;
  return spec;
}

/// Polls (waiting on the event fd) until `done` or `limit` passes.
template <class Supervisor>
bool drive_until(Supervisor& supervisor, const std::function<bool()>& done, std::chrono::milliseconds limit = 30s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    supervisor.poll();
    if (done()) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 20);
  }
}

std::size_t heap_in_use() { return mallinfo2().uordblks; }

}  // namespace

TEST_CASE("forget drops a finished worker from the supervisor but not from the job") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  supervisor.submit(named("ok", {"/bin/true"}));
  supervisor.submit(named("bad", {"/bin/sh", "-c", "exit 2"}));
  supervisor.submit(named("slow", {"sleep", "30"}));
  REQUIRE(supervisor.wait("ok", 30s));
  REQUIRE(supervisor.wait("bad", 30s));

  std::error_code ec;
  supervisor.forget("nobody", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  CHECK_THROWS_WITH(supervisor.forget("nobody"), Catch::Contains("cannot forget unknown worker \"nobody\""));
  supervisor.forget("slow", ec);
  CHECK(ec == jobwarden::errc::worker_not_finished);
  CHECK_THROWS_WITH(supervisor.forget("slow"), Catch::Contains("it has not finished (running)"));

  supervisor.forget("bad", ec);
  REQUIRE_FALSE(ec);
  CHECK(supervisor.forgotten_count() == 1);
  supervisor.info("bad", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  std::vector<std::string> ids;
  for (const auto& worker : supervisor.workers()) ids.push_back(worker.id);
  CHECK(ids == std::vector<std::string>{"ok", "slow"});
  CHECK(supervisor.wait("ok", 1s));

  // Twice is an unknown worker.
  supervisor.forget("bad", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);

  // The job directory keeps it: the journal and the reader.
  CHECK(jwjournal::worker_record(layout_of(dir), "bad").state == WorkerState::failed);
  auto status = supervisor.status();
  REQUIRE(status.find_worker("bad") != nullptr);
  CHECK(status.find_worker("bad")->state == WorkerState::failed);
  CHECK(status.summary.total == 3);

  supervisor.cancel("slow");
  REQUIRE(supervisor.wait("slow", 30s));
  CHECK(supervisor.forget_finished() == 2);
  CHECK(supervisor.workers().empty());
  CHECK(supervisor.forgotten_count() == 3);
  supervisor.finish();
  supervisor.poll();

  // The final job line still counts all three: one succeeded, two did not.
  const auto job = jwjournal::job_record(layout_of(dir));
  CHECK(job.state == JobState::cancelled);
  REQUIRE(job.summary);
  CHECK(job.summary->total == 3);
  CHECK(job.summary->succeeded == 1);
  CHECK(job.summary->failed == 2);
  CHECK(job.summary->cancelled == 1);
}

TEST_CASE("a job of forgotten workers ends in the state they imply") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(named("1", {"/bin/true"}));
    supervisor.submit(named("2", {"/bin/sh", "-c", "exit 4"}));
    REQUIRE(supervisor.wait_all(30s));
    CHECK(supervisor.forget_finished() == 2);
    supervisor.finish();
    supervisor.poll();
  }
  const auto job = jwjournal::job_record(layout_of(dir));
  CHECK(job.state == JobState::failed);
  REQUIRE(job.summary);
  CHECK(job.summary->succeeded == 1);
  CHECK(job.summary->failed == 1);
  jobwarden::StatusAggregator<> reader(dir.path());
  const auto status = reader.read("live");
  CHECK(status.state == JobState::failed);
  CHECK(status.workers.size() == 2);
}

TEST_CASE("forget_finished_workers forgets each worker once its end is delivered") {
  jwtest::TempDir dir;
  SupervisorOptions options = in(dir);
  options.forget_finished_workers = true;
  JobSupervisor<> supervisor(options);
  std::vector<std::string> ended;
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    if (event.kind != EventKind::exited) return;
    ended.push_back(event.worker.id);
    // Still there while its handlers run.
    std::error_code ec;
    CHECK(supervisor.info(event.worker.id, ec).state == event.worker.state);
    CHECK_FALSE(ec);
  });
  for (int i = 0; i < 6; ++i) supervisor.submit(named("w" + std::to_string(i), {"/bin/true"}));
  supervisor.submit(named("fails", {"/bin/sh", "-c", "exit 1"}));
  CHECK(supervisor.wait("fails", 30s));  // forgotten by then: still true
  REQUIRE(supervisor.wait_all(30s));
  supervisor.poll();
  CHECK(ended.size() == 7);
  CHECK(supervisor.workers().empty());
  CHECK(supervisor.forgotten_count() == 7);
  auto status = supervisor.status();
  CHECK(status.workers.size() == 7);
  CHECK(status.state == JobState::idle);
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::failed);
  CHECK(jwjournal::job_record(layout_of(dir)).summary->total == 7);
}

TEST_CASE("forget_finished_workers forgets the workers of a poll whose handler threw, at the next poll") {
  jwtest::TempDir dir;
  SupervisorOptions options = in(dir);
  options.forget_finished_workers = true;
  JobSupervisor<> supervisor(options);
  // Two workers that end before the same poll: the handler throws at the
  // first exit, so the second is never delivered.
  std::vector<std::string> delivered;
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    if (event.kind != EventKind::exited) return;
    delivered.push_back(event.worker.id);
    if (delivered.size() == 1) throw std::runtime_error("the host's handler failed");
  });
  const std::string go = dir / "go";
  const std::string wait_for_go = "while [ ! -e " + go + " ]; do sleep 0.01; done";
  supervisor.submit(named("a", {"/bin/sh", "-c", wait_for_go}));
  supervisor.submit(named("b", {"/bin/sh", "-c", wait_for_go}));
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while ((supervisor.info("a").pid == 0 || supervisor.info("b").pid == 0) &&
         std::chrono::steady_clock::now() < give_up) {
    supervisor.poll();
    std::this_thread::sleep_for(1ms);
  }
  const int pids[] = {supervisor.info("a").pid, supervisor.info("b").pid};
  { std::ofstream(go) << ""; }
  for (int pid : pids) {  // both ended (zombies, left for the supervisor to reap): one poll sees both
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
  }
  CHECK_THROWS_AS(supervisor.poll(), std::runtime_error);
  REQUIRE(delivered.size() == 1);
  const std::string first = delivered.front();
  const std::string second = first == "a" ? "b" : "a";
  CHECK(supervisor.workers().size() == 2);  // not yet: the poll was cut short
  supervisor.poll();
  std::error_code ec;
  supervisor.info(first, ec);
  CHECK(ec == jobwarden::errc::unknown_worker);  // forgotten: its end was delivered
  CHECK(supervisor.info(second).state == WorkerState::succeeded);  // held: its end never was
  CHECK(supervisor.forgotten_count() == 1);
  CHECK(supervisor.forget_finished() == 1);
  CHECK(supervisor.workers().empty());
  CHECK(supervisor.status().workers.size() == 2);  // both still on record
}

TEST_CASE("a forgotten id submitted again continues its record as the next attempt") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  supervisor.submit(named("step2", {"/bin/sh", "-c", "exit 2"}));
  supervisor.submit(named("other", {"/bin/true"}));
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info("step2").attempt == 1);
  CHECK(supervisor.forget_finished() == 2);

  // Not forgotten: a duplicate. Forgotten: taken again.
  supervisor.submit(named("step2", {"/bin/true"}));
  std::error_code ec;
  supervisor.submit(named("step2", {"/bin/true"}), ec);
  CHECK(ec == jobwarden::errc::duplicate_id);
  REQUIRE(supervisor.wait("step2", 30s));
  const auto again = supervisor.info("step2");
  CHECK(again.state == WorkerState::succeeded);
  CHECK(again.attempt == 2);
  supervisor.poll();

  // The journal's fold: one worker of that id, its latest attempt; the reader agrees.
  const auto record = jwjournal::worker_record(layout_of(dir), "step2");
  CHECK(record.attempt == 2);
  CHECK(record.state == WorkerState::succeeded);
  auto status = supervisor.status();
  CHECK(status.workers.size() == 2);
  CHECK(status.summary.total == 2);
  CHECK(status.summary.succeeded == 2);
  supervisor.finish();
  supervisor.poll();
  const auto job = jwjournal::job_record(layout_of(dir));
  CHECK(job.state == JobState::succeeded);  // the failed attempt is replaced, as readers fold it
  CHECK(job.summary->total == 2);
  CHECK(job.summary->failed == 0);
}

TEST_CASE("a compaction keeps forgotten workers' records, in their order") {
  jwtest::TempDir dir;
  SupervisorOptions options = in(dir);
  options.journal_compact_bytes = 1;  // as soon as the journal is twice its fold and past 8 KiB
  JobSupervisor<> supervisor(options);
  supervisor.submit(named("held", {"/bin/true"}));  // never forgotten: its line comes from memory
  for (int i = 0; i < 60; ++i) supervisor.submit(named("c" + std::to_string(i), {"/bin/true"}));
  REQUIRE(supervisor.wait_all(60s));
  for (int i = 0; i < 60; ++i) supervisor.forget("c" + std::to_string(i));
  for (int i = 0; i < 60; ++i) {  // again: the journal grows past twice its fold
    supervisor.submit(named("c" + std::to_string(i), {"/bin/sh", "-c", "exit 0"}));
  }
  REQUIRE(supervisor.wait_all(60s));
  for (int i = 0; i < 60; i += 2) supervisor.forget("c" + std::to_string(i));  // half of them again
  for (int i = 0; i < 5; ++i) supervisor.submit(named("d" + std::to_string(i), {"/bin/true"}));
  REQUIRE(supervisor.wait_all(60s));
  supervisor.poll();
  CHECK(supervisor.workers().size() == 1 + 30 + 5);
  auto fold = jwjournal::fold_of(layout_of(dir));
  CHECK(fold.generation() > 1);  // compacted at least once
  REQUIRE(fold.worker_count() == 1 + 60 + 5);
  CHECK(fold.worker(0).id == "held");
  CHECK(fold.worker(0).info.state == WorkerState::succeeded);
  for (std::size_t i = 1; i <= 60; ++i) {
    const auto& worker = fold.worker(i);
    REQUIRE(worker.ok);
    CHECK(worker.id == "c" + std::to_string(i - 1));  // first-recorded order kept
    CHECK(worker.info.state == WorkerState::succeeded);
    CHECK(worker.info.attempt == 2);
  }
  CHECK(fold.worker(61).id == "d0");
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).summary->total == 66);
}

TEST_CASE("job state idle: a live supervisor with nothing to do") {
  CHECK(jobwarden::to_string(JobState::idle) == "idle");
  CHECK(jobwarden::job_state_from_string("idle") == JobState::idle);
  CHECK_FALSE(jobwarden::is_terminal(JobState::idle));

  jwtest::TempDir dir;
  SupervisorOptions options = in(dir);
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  // No worker at all: idle at once, in the journal and for readers.
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::idle);
  CHECK(supervisor.status().state == JobState::idle);

  jwtest::TempDir flags;
  const std::string go = flags / "go";
  supervisor.submit(named("a", {"/bin/sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.02; done"}));
  supervisor.submit(named("b", {"/bin/true"}));
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::running);
  CHECK(supervisor.status().state == JobState::running);
  std::ofstream(go).put('x');
  REQUIRE(supervisor.wait_all(30s));
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::idle);
  CHECK(supervisor.status().state == JobState::idle);
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::succeeded);
  CHECK(supervisor.status().state == JobState::succeeded);
}

TEST_CASE("an idle job that never had a worker ends cancelled") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.poll();
    CHECK(supervisor.status().state == JobState::idle);
  }
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::cancelled);
}

TEST_CASE("a halted job is not idle: it cancels what it is given, and ends failed") {
  jwtest::TempDir dir;
  SupervisorOptions options = in(dir);
  std::string error;
  options.halt = *jobwarden::parse_halt("soon,fail=1", error);
  JobSupervisor<> supervisor(options);
  supervisor.submit(named("bad", {"/bin/sh", "-c", "exit 3"}));
  REQUIRE(supervisor.wait_all(30s));
  supervisor.poll();
  REQUIRE(supervisor.halted());
  CHECK(supervisor.active_count() == 0);
  CHECK(jwjournal::job_record(layout_of(dir)).state != JobState::idle);
  CHECK(supervisor.status().state != JobState::idle);
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::failed);
}

TEST_CASE("WorkerInfo carries the worker's own message and error from its status file") {
  jwtest::TempDir dir;
  jwtest::TempDir flags;
  const std::string go = flags / "go";
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec spec = named("talker", {jwtest::test_worker(), "say", "working on step 2", go, "step 2 failed: disk full"});
  spec.stall_timeout = 300ms;  // the supervisor looks at its status file for the stall check
  supervisor.submit(spec);
  // While it runs: its message, no error yet.
  REQUIRE(drive_until(supervisor, [&] { return supervisor.info("talker").message == "working on step 2"; }));
  CHECK(supervisor.info("talker").state == WorkerState::running);
  CHECK(supervisor.info("talker").worker_error.empty());
  std::ofstream(go).put('x');
  REQUIRE(supervisor.wait("talker", 30s));
  const auto info = supervisor.info("talker");
  CHECK(info.state == WorkerState::failed);
  CHECK(info.exit_code == 3);
  CHECK(info.message == "working on step 2");
  CHECK(info.worker_error == "step 2 failed: disk full");
  CHECK(info.error.empty());  // the supervisor's own word: nothing stopped it
}

TEST_CASE("WorkerInfo's message is read at the end without a stall check, and never from a FIFO") {
  jwtest::TempDir dir;
  jwtest::TempDir flags;
  const std::string go = flags / "go";
  std::ofstream(go).put('x');
  JobSupervisor<> supervisor(in(dir));
  supervisor.submit(named("once", {jwtest::test_worker(), "say", "hello", go, "bye"}));
  REQUIRE(supervisor.wait("once", 30s));
  CHECK(supervisor.info("once").message == "hello");
  CHECK(supervisor.info("once").worker_error == "bye");

  // A FIFO under the status file's name: opened without blocking, never read.
  const std::string fifo = dir / "live/workers/fifo.status.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  supervisor.submit(named("fifo", {"/bin/true"}));
  REQUIRE(supervisor.wait("fifo", 30s));
  CHECK(supervisor.info("fifo").state == WorkerState::succeeded);
  CHECK(supervisor.info("fifo").message.empty());
}

namespace {

/// Runs `count` `/bin/true` workers, at most `in_flight` submitted and not
/// ended at once, and returns the heap in use after `checkpoint` of them
/// ended and after all.
std::pair<std::size_t, std::size_t> run_many(JobSupervisor<>& supervisor, int count, int checkpoint, int in_flight,
                                             std::chrono::steady_clock::time_point until) {
  int submitted = 0;
  int ended = 0;
  std::size_t at_checkpoint = 0;
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    if (event.kind == EventKind::exited) ++ended;
  });
  while (ended < count) {
    while (submitted < count && submitted - ended < in_flight) {
      supervisor.submit(quiet({"/bin/true"}));
      ++submitted;
    }
    supervisor.poll();
    if (at_checkpoint == 0 && ended >= checkpoint) {
      supervisor.poll();
      at_checkpoint = heap_in_use();
    }
    if (std::chrono::steady_clock::now() > until) throw std::runtime_error("the workers took too long");
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 10);
  }
  supervisor.poll();
  return {at_checkpoint, heap_in_use()};
}

}  // namespace

TEST_CASE("a supervisor that forgets finished workers keeps a flat heap") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // ASan and TSan bring their own allocators: mallinfo2 reads 0 under both.
  std::printf("SKIPPED: mallinfo2 does not see a sanitizer's heap\n");
  return;
#endif
  // 10,000 by default (about 16 s alone on an idle 2-core machine: the
  // test runs alone), 3,000 on the portable path, which spawns and notices
  // exits more slowly. JOBWARDEN_LONG_LIVED_WORKERS sets another count (at
  // least 3,000).
#if JOBWARDEN_LINUX_FAST_PATH
  int total = 10'000;
#else
  int total = 3'000;
#endif
  if (const char* wanted = std::getenv("JOBWARDEN_LONG_LIVED_WORKERS")) total = std::max(3'000, std::atoi(wanted));
  constexpr int checkpoint = 1'000;
  constexpr double bound = 64.0;  // bytes per worker
  // Both runs together give up before ctest's 300 s limit: this says why.
  const auto until = std::chrono::steady_clock::now() + 240s;
  std::size_t before;
  std::size_t after;
  {
    jwtest::TempDir dir;
    SupervisorOptions options = in(dir, "flat");
    options.max_concurrency = 8;
    options.forget_finished_workers = true;
    JobSupervisor<> supervisor(options);
    std::tie(before, after) = run_many(supervisor, total, checkpoint, 16, until);
    CHECK(supervisor.workers().empty());
    CHECK(supervisor.forgotten_count() == static_cast<std::uint64_t>(total));
    supervisor.finish();
    supervisor.poll();
    const auto job = jwjournal::job_record(layout_of(dir, "flat"));
    CHECK(job.state == JobState::succeeded);
    CHECK(job.summary->succeeded == static_cast<std::size_t>(total));
  }
  const double per_worker = (static_cast<double>(after) - static_cast<double>(before)) / (total - checkpoint);
  std::printf("forgetting: heap %zu bytes after %d workers, %zu after %d: %.1f bytes/worker\n", before, checkpoint,
              after, total, per_worker);
  CHECK(per_worker < bound);

  // The same without forgetting grows: the measure can tell.
  constexpr int kept_total = 1'600;
  {
    jwtest::TempDir dir;
    SupervisorOptions options = in(dir, "grows");
    options.max_concurrency = 8;
    JobSupervisor<> supervisor(options);
    std::tie(before, after) = run_many(supervisor, kept_total, checkpoint, 16, until);
    CHECK(supervisor.workers().size() == static_cast<std::size_t>(kept_total));
  }
  const double kept_per_worker =
      (static_cast<double>(after) - static_cast<double>(before)) / (kept_total - checkpoint);
  std::printf("keeping: %.1f bytes/worker\n", kept_per_worker);
  CHECK(kept_per_worker > bound);
}
