// The restart policy as a pure function: no process, no clock, no supervisor.
// Backoff growth and its cap, jitter bounds, permanent exit codes, the
// restart limit, the rate limit, and that a cancel never restarts.
#include <chrono>
#include <deque>
#include <vector>

#include <jobwarden/restart_policy.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using jobwarden::AttemptEnd;
using jobwarden::decide_restart;
using jobwarden::RestartDecision;
using jobwarden::RestartPolicy;
using jobwarden::RestartReason;
using jobwarden::RestartSpec;
using jobwarden::WorkerState;
using TimePoint = std::chrono::steady_clock::time_point;

namespace {
const TimePoint t0 = TimePoint{} + 1000s;

RestartSpec on_failure() {
  RestartSpec spec;
  spec.policy = RestartPolicy::on_failure;
  spec.max_restarts = 100;
  spec.initial_backoff = 100ms;
  spec.backoff_multiplier = 2.0;
  spec.max_backoff = 1000ms;
  spec.jitter = 0;
  spec.burst_limit = 1000;
  return spec;
}

AttemptEnd failed_with(int code) { return AttemptEnd{WorkerState::failed, code, false}; }

/// A jitter source that must not be called.
double no_jitter(double, double) {
  FAIL("jitter asked for with spec.jitter == 0");
  return 1.0;
}

RestartDecision decide(const RestartSpec& spec, const AttemptEnd& ended, int attempt,
                       const std::vector<TimePoint>& recent = {}, TimePoint now = t0) {
  return decide_restart(spec, ended, attempt, recent, now, no_jitter);
}
}  // namespace

TEST_CASE("backoff grows by the multiplier and stops at the cap") {
  RestartSpec spec = on_failure();
  std::vector<long long> delays;
  for (int attempt = 1; attempt <= 6; ++attempt) {
    auto decision = decide(spec, failed_with(1), attempt);
    REQUIRE(decision.restart());
    CHECK(decision.reason == RestartReason::restart);
    CHECK(decision.note.empty());
    delays.push_back(decision.delay.count());
  }
  CHECK(delays == std::vector<long long>{100, 200, 400, 800, 1000, 1000});
}

TEST_CASE("jitter stays within its bounds and scales the delay") {
  RestartSpec spec = on_failure();
  spec.jitter = 0.2;
  double asked_low = 0, asked_high = 0;
  auto lowest = decide_restart(spec, failed_with(1), 1, std::vector<TimePoint>{}, t0,
                               [&](double low, double high) {
                                 asked_low = low;
                                 asked_high = high;
                                 return low;
                               });
  CHECK(asked_low == Approx(0.8));
  CHECK(asked_high == Approx(1.2));
  CHECK(lowest.delay == 80ms);
  auto highest = decide_restart(spec, failed_with(1), 1, std::vector<TimePoint>{}, t0,
                                [](double, double high) { return high; });
  CHECK(highest.delay == 120ms);
  // The cap applies before the jitter: a capped delay may exceed it by the spread.
  auto capped = decide_restart(spec, failed_with(1), 10, std::vector<TimePoint>{}, t0,
                               [](double, double high) { return high; });
  CHECK(capped.delay == 1200ms);
}

TEST_CASE("a permanent exit code is never restarted, unless the supervisor stopped the worker") {
  RestartSpec spec = on_failure();
  spec.permanent_failure_exit_codes = {3, 7};
  auto decision = decide(spec, failed_with(7), 1);
  CHECK_FALSE(decision.restart());
  CHECK(decision.reason == RestartReason::permanent_exit_code);
  CHECK(decision.final_state == WorkerState::failed);
  CHECK(decision.note == "exit code 7 means permanent failure: not restarted");
  CHECK(decide(spec, failed_with(4), 1).restart());
  // Stopped on a timeout, its exit code answers our signal: the policy applies.
  AttemptEnd timed_out{WorkerState::timed_out, 3, true};
  CHECK(decide(spec, timed_out, 1).restart());
}

TEST_CASE("max_restarts ends the restarts, a success is not given up on") {
  RestartSpec spec = on_failure();
  spec.max_restarts = 2;
  CHECK(decide(spec, failed_with(1), 2).restart());
  auto decision = decide(spec, failed_with(1), 3);
  CHECK_FALSE(decision.restart());
  CHECK(decision.reason == RestartReason::max_restarts);
  CHECK(decision.final_state == WorkerState::failed);
  CHECK(decision.note == "gave up after 2 restarts");
  spec.policy = RestartPolicy::always;
  auto succeeded = decide(spec, AttemptEnd{WorkerState::succeeded, 0, false}, 3);
  CHECK(succeeded.reason == RestartReason::max_restarts);
  CHECK(succeeded.final_state == WorkerState::succeeded);
  CHECK(succeeded.note.empty());
}

TEST_CASE("the rate limit counts restarts within the window and ends the worker failed") {
  RestartSpec spec = on_failure();
  spec.burst_limit = 3;
  spec.burst_window = 10s;
  std::vector<TimePoint> recent = {t0 - 20s, t0 - 9s, t0 - 5s};
  CHECK(decide(spec, failed_with(1), 4, recent).restart());  // the oldest is outside the window
  recent.push_back(t0 - 1s);
  auto decision = decide(spec, AttemptEnd{WorkerState::crashed, std::nullopt, false}, 5, recent);
  CHECK_FALSE(decision.restart());
  CHECK(decision.reason == RestartReason::rate_limit);
  CHECK(decision.final_state == WorkerState::failed);
  CHECK(decision.note == "restart rate limit: 3 restarts within 10s");
  // Works with the supervisor's own container too.
  std::deque<TimePoint> as_deque(recent.begin(), recent.end());
  CHECK(decide_restart(spec, failed_with(1), 5, as_deque, t0, no_jitter).reason ==
        RestartReason::rate_limit);
}

TEST_CASE("the policy decides which ends restart, a cancel or a lost worker never does") {
  RestartSpec spec = on_failure();
  const AttemptEnd succeeded{WorkerState::succeeded, 0, false};
  const AttemptEnd cancelled{WorkerState::cancelled, std::nullopt, true};
  const AttemptEnd lost{WorkerState::lost, std::nullopt, false};
  for (RestartPolicy policy : {RestartPolicy::never, RestartPolicy::on_failure, RestartPolicy::always}) {
    spec.policy = policy;
    for (const AttemptEnd& end : {cancelled, lost}) {
      auto decision = decide(spec, end, 1);
      CHECK_FALSE(decision.restart());
      CHECK(decision.reason == RestartReason::policy);
      CHECK(decision.final_state == end.state);
      CHECK(decision.note.empty());
    }
  }
  spec.policy = RestartPolicy::never;
  CHECK(decide(spec, failed_with(1), 1).reason == RestartReason::policy);
  spec.policy = RestartPolicy::on_failure;
  CHECK(decide(spec, succeeded, 1).reason == RestartReason::policy);
  for (WorkerState state : {WorkerState::failed, WorkerState::crashed, WorkerState::timed_out,
                            WorkerState::stalled, WorkerState::spawn_failed}) {
    CHECK(decide(spec, AttemptEnd{state, std::nullopt, false}, 1).restart());
  }
  spec.policy = RestartPolicy::always;
  CHECK(decide(spec, succeeded, 1).restart());
}
