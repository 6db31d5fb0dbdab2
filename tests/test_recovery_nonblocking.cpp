// Recovery driven by poll() (SupervisorOptions::recover_in_background): a
// supervisor reopening a job whose supervisor was SIGKILLed returns from its
// constructor at once, stops the workers left behind from poll(), and starts
// the workers submitted meanwhile only once the job is recovered and open.
// The dead supervisor is a forked child running a real JobSupervisor with the
// orphan guard off, so its worker outlives it.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include <jobwarden/job_control.hpp>
#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/supervisor_set.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobState;
using jobwarden::JobSupervisor;
using jobwarden::WorkerEvent;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

jobwarden::SupervisorOptions in(const jwtest::TempDir& dir, const std::string& job = "fixed") {
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = job;
  return options;
}

/// Forks a host that runs a supervisor of job "fixed" with one worker,
/// `left`, running `script` under /bin/sh (which writes its pid to
/// `left.pid` first), waits until the worker is recorded running, then
/// SIGKILLs and reaps the host. No orphan guard: the worker stays. Returns
/// the worker's pid (-1 on failure); `guard` kills it at scope exit.
int leave_abandoned_worker(const jwtest::TempDir& dir, const std::string& script, jwtest::KillOnExit& guard) {
  const pid_t host = ::fork();
  if (host < 0) return -1;
  if (host == 0) {
    try {
      auto options = in(dir);
      options.orphan_guard = false;  // as if the guard had been killed too
      // Without a cgroup tree: a tree whose supervisor died is reclaimed (SIGKILL,
      // no grace) by any supervisor that opens its cgroups next to it. The
      // process groups are what recovery stops by its grace.
      options.use_cgroups = false;
      JobSupervisor<> supervisor(options);
      WorkerSpec spec = jwtest::quiet({"/bin/sh", "-c", "echo $$ > " + (dir / "left.pid") + "; " + script});
      spec.id = "left";
      supervisor.on_event([&](const WorkerEvent& e) {
        if (e.kind == EventKind::started) std::ofstream(dir / "recorded") << "yes\n";
      });
      supervisor.submit(spec);
      supervisor.wait_all();
    } catch (...) {
    }
    ::_exit(3);
  }
  const bool recorded = jwtest::wait_for_line(dir / "recorded");  // its journal line names the pid
  const int left = recorded ? jwtest::read_pid_file(dir / "left.pid") : -1;
  if (left > 0) guard.watch(left);
  ::kill(host, SIGKILL);
  while (::waitpid(host, nullptr, 0) < 0 && errno == EINTR) {
  }
  return left;
}

/// A restarted host's options: it recovers job "fixed" in the background,
/// with `grace`, and reuses the id.
jobwarden::SupervisorOptions background_successor(const jwtest::TempDir& dir, std::chrono::milliseconds grace) {
  auto options = in(dir);
  options.replace_finished_job = true;
  options.recover_in_background = true;
  options.recovery_grace = grace;
  return options;
}

/// Submits the worker "next", which succeeds.
void submit_next(JobSupervisor<>& successor) {
  WorkerSpec next = jwtest::quiet({"/bin/sh", "-c", "exit 0"});
  next.id = "next";
  successor.submit(next);
}

/// The host's loop: poll(), then sleep on event_fd() for at most
/// next_timeout(), until `done` or `limit` passes. Nothing but the
/// supervisor's own wake-ups brings it back before the limit.
template <class Done>
bool run_loop(JobSupervisor<>& supervisor, Done done, std::chrono::milliseconds limit = 60s) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  for (;;) {
    supervisor.poll();
    if (done()) return true;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (auto next = supervisor.next_timeout()) left = std::min(left, *next + 1ms);
    pollfd ready{supervisor.event_fd(), POLLIN, 0};
    ::poll(&ready, 1, static_cast<int>(left.count()));
  }
}

/// What the host saw when a worker started.
struct StartSeen {
  std::atomic<bool> started{false};
  std::atomic<bool> recovering_then{true};
  std::atomic<bool> left_gone_then{false};
};

void watch_start(JobSupervisor<>& supervisor, const std::string& id, int left, StartSeen& seen) {
  supervisor.on_event([&supervisor, id, left, &seen](const WorkerEvent& e) {
    if (e.kind != EventKind::started || e.worker.id != id) return;
    seen.recovering_then = supervisor.recovering();
    seen.left_gone_then = jwtest::process_gone(left);
    seen.started = true;
  });
}

}  // namespace

TEST_CASE("background recovery returns before the grace, SIGKILLs a worker that ignores SIGTERM from poll(), "
          "then starts what was submitted meanwhile") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);
  REQUIRE_FALSE(jwtest::process_gone(left));  // nothing stopped it yet

  const auto grace = 5s;
  auto options = background_successor(dir, grace);
  options.max_concurrency = 1;
  const auto begun = std::chrono::steady_clock::now();
  JobSupervisor<> successor(options);
  const auto constructed = std::chrono::steady_clock::now() - begun;
  CHECK(constructed < grace / 2);  // it did not wait out the grace
  CHECK(successor.recovering());
  CHECK_FALSE(jwtest::process_gone(left));  // SIGTERM sent, ignored; the SIGKILL is poll()'s
  CHECK(successor.recovery_report().stopped.empty());  // filled when recovery is done

  // A second restarted host finds the job taken: the lock is held throughout.
  std::error_code second_error;
  auto second_options = options;
  JobSupervisor<> second(second_options, second_error);
  CHECK(second_error == jobwarden::errc::job_locked);

  StartSeen seen;
  watch_start(successor, "next", left, seen);
  const std::string id = successor.submit(jwtest::quiet({"/bin/sh", "-c", "exit 0"}));
  submit_next(successor);
  CHECK(successor.info("next").state == WorkerState::pending);  // queued until the job is open

  REQUIRE(run_loop(successor, [&] { return !successor.recovering() && successor.active_count() == 0; }));
  const auto recovered = std::chrono::steady_clock::now() - begun;
  CHECK(recovered >= grace - 100ms);  // SIGTERM was ignored: it took the SIGKILL after the grace
  CHECK(jwtest::process_gone(left));
  const auto& report = successor.recovery_report();
  CHECK(report.job_was_abandoned);
  CHECK(report.stopped == std::vector<std::string>{"left"});
  CHECK(report.marked_lost == std::vector<std::string>{"left"});
  CHECK(report.problems.empty());
  CHECK(seen.started);
  CHECK_FALSE(seen.recovering_then);
  CHECK(seen.left_gone_then);
  CHECK(successor.info("next").state == WorkerState::succeeded);
  CHECK(successor.info(id).state == WorkerState::succeeded);

  // The job was opened anew under its id: the journal is the new run's.
  successor.finish();
  REQUIRE(run_loop(successor, [&] { return jwjournal::job_record({dir.path(), "fixed"}).state == JobState::succeeded; }));
  CHECK(jwjournal::worker_record({dir.path(), "fixed"}, "next").state == WorkerState::succeeded);
}

TEST_CASE("background recovery of a worker that ends on SIGTERM is done without waiting out the grace") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "exec sleep 100", guard);
  REQUIRE(left > 0);

  const auto grace = 30s;
  auto options = background_successor(dir, grace);
  const auto begun = std::chrono::steady_clock::now();
  JobSupervisor<> successor(options);
  StartSeen seen;
  watch_start(successor, "next", left, seen);
  submit_next(successor);
  // The SIGTERM may already have ended it by now; either way the job opens
  // only from poll() (or at once when nothing was left to wait for).
  REQUIRE(run_loop(successor, [&] { return !successor.recovering() && successor.active_count() == 0; }));
  CHECK(std::chrono::steady_clock::now() - begun < grace / 2);  // no SIGKILL was needed
  CHECK(jwtest::process_gone(left));
  CHECK(successor.recovery_report().stopped == std::vector<std::string>{"left"});
  CHECK(successor.recovery_report().marked_lost == std::vector<std::string>{"left"});
  CHECK(seen.started);
  CHECK_FALSE(seen.recovering_then);
  CHECK(successor.info("next").state == WorkerState::succeeded);
}

TEST_CASE("background recovery of a job it may not reuse is job_exists at once, naming the options, and stops nothing") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "exec sleep 100", guard);
  REQUIRE(left > 0);
  // What the dead supervisor left (its job line may say idle or running:
  // it was killed as soon as its worker was recorded).
  const std::string journal = jwtest::read_file(dir / "fixed/journal.jsonl");
  REQUIRE_FALSE(journal.empty());

  auto options = in(dir);
  options.recover_in_background = true;
  options.recovery_grace = 30s;
  try {
    JobSupervisor<> successor(options);
    FAIL("the job was reused without replace_finished_job or resume_finished_job");
  } catch (const std::system_error& e) {
    CHECK(e.code() == jobwarden::errc::job_exists);
    const std::string what = e.what();
    CHECK(what.find("replace_finished_job") != std::string::npos);
    CHECK(what.find("resume_finished_job") != std::string::npos);
  }
  CHECK_FALSE(jwtest::process_gone(left));  // nothing was stopped
  CHECK(jwtest::read_file(dir / "fixed/journal.jsonl") == journal);  // nothing was written

  // Blocking recovery (the default) stops it first and then says the same.
  options.recover_in_background = false;
  options.recovery_grace = 2s;
  std::error_code ec;
  JobSupervisor<> blocking(options, ec);
  CHECK(ec == jobwarden::errc::job_exists);
  CHECK(jwtest::wait_gone(left));
  try {
    JobSupervisor<> again(options);
    FAIL("the job was reused without replace_finished_job or resume_finished_job");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("replace_finished_job") != std::string::npos);
  }
}

TEST_CASE("a shutdown during background recovery waits for it, cancels what was queued and leaves the verdict") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);

  auto options = background_successor(dir, 1s);
  JobSupervisor<> successor(options);
  REQUIRE(successor.recovering());
  submit_next(successor);
  successor.shutdown();  // blocks until recovery is over
  CHECK_FALSE(successor.recovering());
  CHECK(jwtest::process_gone(left));
  CHECK(successor.info("next").state == WorkerState::cancelled);
  CHECK(successor.recovery_report().stopped == std::vector<std::string>{"left"});
  // The job was not opened again: its journal ends with recovery's verdict.
  CHECK(jwjournal::job_record({dir.path(), "fixed"}).state == JobState::lost);
  CHECK(jwjournal::worker_record({dir.path(), "fixed"}, "left").state == WorkerState::lost);
}

TEST_CASE("a stop requested during background recovery is honoured when it ends: the job is not opened") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);

  auto options = background_successor(dir, 1s);
  JobSupervisor<> successor(options);
  REQUIRE(successor.recovering());
  submit_next(successor);
  jobwarden::request_stop(dir.path(), "fixed");  // the lock is held: it takes us for the job's supervisor
  REQUIRE(run_loop(successor, [&] { return !successor.recovering() && successor.active_count() == 0; }));
  CHECK(successor.stop_requested());
  CHECK(successor.info("next").state == WorkerState::cancelled);
  CHECK(jwtest::process_gone(left));
  CHECK_FALSE(std::ifstream(dir / "fixed/stop.request").good());  // honoured, so removed
  CHECK(jwjournal::job_record({dir.path(), "fixed"}).state == JobState::lost);
}

TEST_CASE("a stop request left for the dead supervisor does not stop its successor, a control request written "
          "during background recovery is answered once the job opens") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);
  // Written while no supervisor held the lock: it was for the dead one (a
  // check that it stays so; recovery removed such a request before too).
  { std::ofstream(dir / "fixed/stop.request") << "{}\n"; }

  JobSupervisor<> successor(background_successor(dir, 1s));
  REQUIRE(successor.recovering());
  CHECK_FALSE(std::ifstream(dir / "fixed/stop.request").good());  // removed when the lock was taken
  WorkerSpec next = jwtest::quiet({"/bin/sh", "-c", "exec sleep 100"});
  next.id = "next";
  successor.submit(next);
  // The lock is held: a control request now is this run's, and must survive
  // the job's opening (which removes a reused job's stale requests).
  jobwarden::ControlRequest request;
  request.action = jobwarden::ControlAction::signal;
  request.signal = SIGUSR1;
  request.worker = "next";
  auto answer = std::async(std::launch::async, [&] {
    std::error_code ec;
    jobwarden::ControlReply reply = jobwarden::control_job(dir.path(), "fixed", request, 30s, ec);
    return std::make_pair(reply, ec);
  });
  // Written while recovery is still under way (nothing polled yet: the
  // SIGKILL after the grace is poll()'s).
  auto request_written = [&] {
    for (const auto& entry : std::filesystem::directory_iterator(dir / "fixed")) {
      if (jobwarden::detail::has_suffix(entry.path().filename().string(), ".control")) return true;
    }
    return false;
  };
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!request_written() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
  CHECK(successor.recovering());
  REQUIRE(run_loop(successor, [&] { return answer.wait_for(0s) == std::future_status::ready; }));
  const auto [reply, ec] = answer.get();
  CHECK_FALSE(ec);  // answered, not timed out
  CHECK(reply.done.size() + reply.failed.size() == 1);
  CHECK_FALSE(successor.recovering());
  CHECK_FALSE(successor.stop_requested());  // the stale request stopped nothing
  CHECK(successor.info("next").state == WorkerState::running);
  successor.cancel("next");
  REQUIRE(run_loop(successor, [&] { return successor.active_count() == 0; }));
  CHECK(jwtest::process_gone(left));
}

TEST_CASE("background recovery, then resume: the lost worker submitted meanwhile runs again as its next attempt") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);

  auto options = in(dir);
  options.resume_finished_job = true;
  options.recover_in_background = true;
  options.recovery_grace = 1s;
  JobSupervisor<> successor(options);
  CHECK(successor.recovering());
  WorkerSpec again = jwtest::quiet({"/bin/sh", "-c", "exit 0"});
  again.id = "left";
  successor.submit(again);
  REQUIRE(run_loop(successor, [&] { return !successor.recovering() && successor.active_count() == 0; }));
  CHECK(jwtest::process_gone(left));
  const auto info = successor.info("left");
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.attempt == 2);
  CHECK(successor.recovery_report().marked_lost == std::vector<std::string>{"left"});
}

TEST_CASE("background recovery of a job with a live supervisor is job_locked at once") {
  jwtest::TempDir dir;
  JobSupervisor<> live(in(dir));
  auto options = in(dir);
  options.replace_finished_job = true;
  options.recover_in_background = true;
  std::error_code ec;
  JobSupervisor<> second(options, ec);
  CHECK(ec == jobwarden::errc::job_locked);
}

TEST_CASE("background recovery of a job directory without its lock file stops nothing: no supervisor is shown dead") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "exec sleep 100", guard);
  REQUIRE(left > 0);
  // A live supervisor may hold the lock of a lock file someone unlinked:
  // without the file, nothing proves this job's supervisor dead.
  REQUIRE(::unlink((dir / "fixed/supervisor.lock").c_str()) == 0);

  auto options = background_successor(dir, 200ms);
  std::error_code ec;
  JobSupervisor<> successor(options, ec);
  if (!ec) {
    CHECK_FALSE(successor.recovering());  // judged at once, by the synchronous path
    const auto& problems = successor.recovery_report().problems;
    CHECK(std::any_of(problems.begin(), problems.end(),
                      [](const auto& p) { return p.first == "supervisor.lock"; }));
    CHECK(successor.recovery_report().stopped.empty());
    for (int i = 0; i < 10; ++i) {  // well past the grace: nothing stops it from poll() either
      successor.poll();
      std::this_thread::sleep_for(50ms);
    }
  }
  CHECK_FALSE(jwtest::process_gone(left));
}

TEST_CASE("a set's loop never blocks on a retired supervisor that is still recovering in the background") {
  jwtest::TempDir dir;
  jwtest::KillOnExit guard;
  const int left = leave_abandoned_worker(dir, "trap '' TERM; exec sleep 100", guard);
  REQUIRE(left > 0);

  const auto grace = 3s;
  auto options = background_successor(dir, grace);
  jobwarden::SupervisorSet<> set;
  set.emplace("restarted", options);
  bool retired = false;
  set.retire("restarted", [&retired] { retired = true; });
  // Until the worker left behind is SIGKILLed after the grace, the
  // supervisor is recovering: the set must keep polling it, not destroy it
  // (its destructor would wait out the recovery on the loop thread).
  std::chrono::steady_clock::duration longest{};
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!retired && std::chrono::steady_clock::now() < give_up) {
    const auto begun = std::chrono::steady_clock::now();
    set.run_once(50ms);
    longest = std::max(longest, std::chrono::steady_clock::now() - begun);
  }
  CHECK(retired);
  CHECK(set.empty());
  CHECK(longest < grace / 2);
  CHECK(jwtest::process_gone(left));
}
