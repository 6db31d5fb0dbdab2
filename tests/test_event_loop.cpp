// Driving the supervisor from a host's own event loop: poll() never blocks,
// event_fd() says when to call it.
#include <poll.h>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

TEST_CASE("poll returns at once while workers run and the event fd wakes the host on exit") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"sleep", "0.3"};
  auto id = supervisor.submit(spec);
  std::vector<EventKind> kinds;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    CHECK(e.worker.id == id);
    kinds.push_back(e.kind);
  });
  supervisor.poll();  // delivers "started"; must not wait for the exit
  CHECK(supervisor.info(id).state == WorkerState::running);
  // The host's own loop: sleep on the descriptor only.
  for (int round = 0; round < 100 && supervisor.info(id).state == WorkerState::running; ++round) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    int timeout = supervisor.next_timeout() ? static_cast<int>(supervisor.next_timeout()->count()) : 10000;
    ::poll(&pfd, 1, timeout);
    supervisor.poll();
  }
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  REQUIRE(kinds.size() == 2);
  CHECK(kinds[0] == EventKind::started);
  CHECK(kinds[1] == EventKind::exited);
}

TEST_CASE("a deadline wakes the event fd by itself") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"sleep", "100"};
  spec.timeout = 100ms;
  spec.grace_period = 5s;
  auto id = supervisor.submit(spec);
  supervisor.poll();
  auto next = supervisor.next_timeout();
  REQUIRE(next);
  CHECK(next->count() <= 100);
  bool timed_out = false;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) { timed_out |= e.kind == EventKind::timed_out; });
  for (int round = 0; round < 200 && !jobwarden::is_terminal(supervisor.info(id).state); ++round) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    auto wait = supervisor.next_timeout();
    ::poll(&pfd, 1, wait ? static_cast<int>(wait->count()) : 10000);
    supervisor.poll();
  }
  CHECK(timed_out);
  CHECK(supervisor.info(id).state == WorkerState::timed_out);
}

TEST_CASE("wait with a deadline gives up without stopping the worker") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"sleep", "100"};
  spec.grace_period = 5s;
  auto id = supervisor.submit(spec);
  CHECK_FALSE(supervisor.wait(id, 50ms));
  CHECK(supervisor.info(id).state == WorkerState::running);
  supervisor.cancel(id);
  CHECK(supervisor.wait(id, 30s));
}

TEST_CASE("an event handler may submit more work") {
  JobSupervisor<> supervisor;
  int chained = 0;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    if (e.kind == EventKind::exited && chained < 3) {
      ++chained;
      WorkerSpec next;
      next.argv = {"/bin/true"};
      supervisor.submit(next);
    }
  });
  WorkerSpec first;
  first.argv = {"/bin/true"};
  supervisor.submit(first);
  REQUIRE(supervisor.wait_all(30s));
  CHECK(chained == 3);
  CHECK(supervisor.workers().size() == 4);
}

TEST_CASE("an idle supervisor with 100 sleeping workers does not wake its host") {
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 100;
  JobSupervisor<> supervisor(options);
  for (int i = 0; i < 100; ++i) {
    WorkerSpec spec;
    spec.argv = {"sleep", "100"};
    spec.grace_period = 5s;
    supervisor.submit(spec);
  }
  supervisor.poll();  // deliver the "started" events
  REQUIRE(supervisor.running_count() == 100);
  // No deadlines and no exits: nothing may make the descriptor readable.
  CHECK_FALSE(supervisor.next_timeout());
  pollfd pfd{supervisor.event_fd(), POLLIN, 0};
  CHECK(::poll(&pfd, 1, 300) == 0);
  supervisor.shutdown();
  CHECK(supervisor.running_count() == 0);
}

TEST_CASE("a handler that throws loses nothing: the host is woken for the rest of the work") {
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  WorkerSpec first;
  first.id = "a";
  first.argv = {"sleep", "0.1"};
  WorkerSpec second;
  second.id = "b";
  second.argv = {"true"};
  supervisor.submit(first);
  supervisor.submit(second);  // queued behind "a"
  bool thrown = false;
  supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
    if (e.kind == EventKind::exited && e.worker.id == "a" && !thrown) {
      thrown = true;
      throw std::runtime_error("handler failure");
    }
  });
  int exceptions = 0;
  int quiet = 0;
  // The host's loop, sleeping on the descriptor only: "b" must still start
  // and finish although the handler threw in the poll() that ended "a".
  for (int round = 0; round < 200 && supervisor.info("b").state != WorkerState::succeeded; ++round) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 3000) == 0) ++quiet;  // nothing woke the host for 3 s
    try {
      supervisor.poll();
    } catch (const std::runtime_error&) {
      ++exceptions;
    }
  }
  CHECK(exceptions == 1);
  CHECK(quiet == 0);
  CHECK(supervisor.info("a").state == WorkerState::succeeded);
  CHECK(supervisor.info("b").state == WorkerState::succeeded);
}
