// The reader's merge rule (detail/status_merge.hpp) on hand-made records: no
// directory, no clock, no process probed. What a worker's and a job's state,
// staleness and elapsed time are, from what the files say and the facts a
// reader supplies.
#include <jobwarden/detail/status_merge.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using jobwarden::JobState;
using jobwarden::JobStatus;
using jobwarden::WallTime;
using jobwarden::WorkerInfo;
using jobwarden::WorkerState;
using jobwarden::detail::JobFacts;
using jobwarden::detail::JobRecord;
using jobwarden::detail::StatusRecord;
using jobwarden::detail::WorkerFacts;
using jobwarden::detail::WorkerRecords;

namespace {

const WallTime t0 = WallTime(std::chrono::hours(24 * 365 * 50));  // any fixed instant

WorkerInfo process(WorkerState state, int attempt = 1) {
  WorkerInfo info;
  info.id = "1";
  info.state = state;
  info.attempt = attempt;
  info.pid = 4250;
  info.process_start_time = 777;
  info.started_at = t0;
  return info;
}

StatusRecord report(std::optional<WorkerState> state, int attempt = 1) {
  StatusRecord record;
  record.state = state;
  record.attempt = attempt;
  record.pid = 4251;
  record.process_start_time = 888;
  record.seq = 3;
  record.updated_at = t0 + 10s;
  return record;
}

WorkerFacts live_at(WallTime now) {
  WorkerFacts facts;
  facts.supervisor_alive = true;
  facts.now = now;
  facts.stale_after = 30s;
  return facts;
}

JobRecord job_record(JobState state) {
  JobRecord record;
  record.job_id = "scan-42";
  record.state = state;
  record.supervisor_pid = 4242;
  record.supervisor_start_time = 1;
  record.supervisor_hostname = "here";
  record.created_at = t0;
  record.updated_at = t0 + 5s;
  return record;
}

JobStatus<> job_of(std::vector<WorkerState> states) {
  JobStatus<> status;
  status.job_id = "scan-42";
  int id = 0;
  for (WorkerState state : states) {
    jobwarden::WorkerStatus<> worker;
    worker.id = std::to_string(++id);
    worker.state = state;
    status.workers.push_back(worker);
  }
  return status;
}

}  // namespace

TEST_CASE("a worker that reported failed but exited 0 reads succeeded, its own claim kept") {
  WorkerInfo info = process(WorkerState::succeeded);
  info.exit_code = 0;
  info.ended_at = t0 + 20s;
  StatusRecord reported = report(WorkerState::failed);
  reported.error = "could not parse x";
  reported.progress = {{"done", 3}, {"total", 9}};
  const auto worker =
      jobwarden::detail::merge_worker("1", WorkerRecords{&info, t0 + 20s, &reported}, live_at(t0 + 30s));
  CHECK(worker.state == WorkerState::succeeded);
  CHECK(worker.reported_state == WorkerState::failed);
  CHECK(worker.error == "could not parse x");
  CHECK(worker.exit_code == 0);
  CHECK(worker.pid == 4250);  // the recorded process, not the reporter
  CHECK(worker.progress->at("done") == 3);
  CHECK(worker.seq == 3);
  CHECK(worker.last_update == t0 + 20s);
  CHECK_FALSE(worker.stale);
}

TEST_CASE("the supervisor's error wins over the worker's") {
  WorkerInfo info = process(WorkerState::spawn_failed);
  info.error = "No such file or directory";
  StatusRecord reported = report(WorkerState::failed);
  reported.error = "mine";
  const auto worker = jobwarden::detail::merge_worker("1", WorkerRecords{&info, {}, &reported}, live_at(t0));
  CHECK(worker.error == "No such file or directory");
}

TEST_CASE("a pending record with a running report reads running") {
  const WorkerInfo info = process(WorkerState::pending, 0);
  const StatusRecord reported = report(WorkerState::running, 0);
  const auto worker = jobwarden::detail::merge_worker("1", WorkerRecords{&info, {}, &reported}, live_at(t0 + 11s));
  CHECK(worker.state == WorkerState::running);
  CHECK(worker.reported_state == WorkerState::running);

  // A report never moves a record out of running into a terminal state, nor back.
  const WorkerInfo running = process(WorkerState::running);
  const StatusRecord done = report(WorkerState::succeeded);
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{&running, {}, &done}, live_at(t0 + 11s)).state ==
        WorkerState::running);
  const StatusRecord pending = report(WorkerState::pending);
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{&running, {}, &pending}, live_at(t0 + 11s)).state ==
        WorkerState::running);
}

TEST_CASE("a report from an older attempt than the record's is ignored") {
  const WorkerInfo info = process(WorkerState::running, 2);
  StatusRecord old = report(WorkerState::failed, 1);
  old.message = "attempt one";
  old.progress = {{"done", 1}};
  const WorkerRecords records{&info, {}, &old};
  CHECK(jobwarden::detail::current_report(records) == nullptr);
  const auto worker = jobwarden::detail::merge_worker("1", records, live_at(t0 + 1s));
  CHECK(worker.state == WorkerState::running);
  CHECK_FALSE(worker.reported_state);
  CHECK_FALSE(worker.message);
  CHECK_FALSE(worker.progress);
  CHECK(worker.seq == 0);
  CHECK(worker.attempt == 2);

  // The same attempt, or a report without an attempt, counts.
  const StatusRecord current = report(WorkerState::running, 2);
  CHECK(jobwarden::detail::current_report(WorkerRecords{&info, {}, &current}) == &current);
  const StatusRecord unnumbered = report(WorkerState::running, 0);
  CHECK(jobwarden::detail::current_report(WorkerRecords{&info, {}, &unnumbered}) == &unnumbered);
}

TEST_CASE("without a journal line the report stands as it is, with neither file a worker is pending") {
  const StatusRecord reported = report(std::nullopt, 1);
  const auto worker = jobwarden::detail::merge_worker("1", WorkerRecords{nullptr, {}, &reported}, live_at(t0 + 11s));
  CHECK(worker.state == WorkerState::running);  // it wrote, so it ran
  CHECK(worker.pid == 4251);
  CHECK(worker.attempt == 1);

  const StatusRecord failed = report(WorkerState::failed, 1);
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{nullptr, {}, &failed}, live_at(t0)).state ==
        WorkerState::failed);

  const auto nothing = jobwarden::detail::merge_worker("1", WorkerRecords{}, live_at(t0));
  CHECK(nothing.state == WorkerState::pending);
  CHECK_FALSE(nothing.pid);
  CHECK_FALSE(nothing.last_update);
}

TEST_CASE("only a running worker is stale, and a heartbeat in the future never is") {
  const WorkerInfo running = process(WorkerState::running);
  StatusRecord heartbeat = report(WorkerState::running);
  heartbeat.updated_at = t0 + 10s;
  const WorkerRecords records{&running, {}, &heartbeat};
  CHECK_FALSE(jobwarden::detail::merge_worker("1", records, live_at(t0 + 40s)).stale);  // 30 s: not yet
  CHECK(jobwarden::detail::merge_worker("1", records, live_at(t0 + 41s)).stale);

  // The newer of its start and its heartbeat counts; without a report, its start.
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{&running, {}, nullptr}, live_at(t0 + 31s)).stale);
  CHECK_FALSE(jobwarden::detail::merge_worker("1", WorkerRecords{&running, {}, nullptr}, live_at(t0 + 30s)).stale);

  // A clock ahead of the reader's: the heartbeat counts as now.
  heartbeat.updated_at = t0 + 1h;
  CHECK_FALSE(jobwarden::detail::merge_worker("1", records, live_at(t0 + 5min)).stale);

  // Pending and finished workers are never stale, however old.
  const WorkerInfo pending = process(WorkerState::pending, 0);
  CHECK_FALSE(jobwarden::detail::merge_worker("1", WorkerRecords{&pending, {}, nullptr}, live_at(t0 + 10h)).stale);
  WorkerInfo failed = process(WorkerState::failed);
  failed.ended_at = t0 + 1s;
  CHECK_FALSE(jobwarden::detail::merge_worker("1", WorkerRecords{&failed, {}, nullptr}, live_at(t0 + 10h)).stale);
}

TEST_CASE("with the supervisor dead, an unfinished worker reads lost once nothing of it runs") {
  const WorkerInfo running = process(WorkerState::running);
  const StatusRecord reported = report(WorkerState::running);
  const WorkerRecords records{&running, {}, &reported};

  // Which processes the reader must ask about.
  const auto ask = jobwarden::detail::processes_to_ask(records, /*supervisor_alive=*/false, /*on_recording_host=*/true);
  CHECK(ask.recorded.pid == 4250);
  CHECK(ask.recorded.start_time == 777);
  CHECK(ask.reporter.pid == 4251);
  CHECK(ask.reporter.start_time == 888);
  // Nothing to ask while the supervisor lives, away from the recording host,
  // for a terminal worker, or for a pid without a start time to prove it.
  CHECK(jobwarden::detail::processes_to_ask(records, true, true).recorded.pid == 0);
  CHECK(jobwarden::detail::processes_to_ask(records, false, false).recorded.pid == 0);
  CHECK(jobwarden::detail::processes_to_ask(records, false, false).reporter.pid == 0);
  WorkerInfo ended = process(WorkerState::failed);
  CHECK(jobwarden::detail::processes_to_ask(WorkerRecords{&ended, {}, nullptr}, false, true).recorded.pid == 0);
  WorkerInfo unproven = process(WorkerState::running);
  unproven.process_start_time = 0;
  CHECK(jobwarden::detail::processes_to_ask(WorkerRecords{&unproven, {}, nullptr}, false, true).recorded.pid == 0);

  WorkerFacts dead = live_at(t0 + 11s);
  dead.supervisor_alive = false;
  dead.still_runs = false;
  CHECK(jobwarden::detail::merge_worker("1", records, dead).state == WorkerState::lost);
  dead.still_runs = true;
  CHECK(jobwarden::detail::merge_worker("1", records, dead).state == WorkerState::running);

  // A pending worker whose supervisor died is lost too; a finished one keeps its state.
  const WorkerInfo pending = process(WorkerState::pending, 0);
  dead.still_runs = false;
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{&pending, {}, nullptr}, dead).state == WorkerState::lost);
  CHECK(jobwarden::detail::merge_worker("1", WorkerRecords{&ended, {}, nullptr}, dead).state == WorkerState::failed);
  CHECK(jobwarden::detail::worker_unfinished(records));
  CHECK_FALSE(jobwarden::detail::worker_unfinished(WorkerRecords{&ended, {}, nullptr}));
}

TEST_CASE("job state: the job line's verdict, then a live supervisor's progress, then a dead one's leftovers") {
  // A terminal job line decides, whatever the workers say.
  const JobRecord cancelled = job_record(JobState::cancelled);
  JobStatus<> status = job_of({WorkerState::running});
  JobFacts facts;
  facts.record = &cancelled;
  facts.supervisor_alive = true;
  facts.now = t0 + 1min;
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::cancelled);

  // Live: pending until a worker starts, then running.
  const JobRecord running = job_record(JobState::running);
  facts.record = &running;
  status = job_of({WorkerState::pending, WorkerState::pending});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::pending);
  status = job_of({WorkerState::pending, WorkerState::running});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::running);
  CHECK(status.summary.running == 1);
  CHECK(status.pending == std::vector<std::string>{"1"});
  CHECK(status.running == std::vector<std::string>{"2"});
  // A live supervisor that has not written job line yet.
  facts.record = nullptr;
  facts.record_missing = true;
  status = job_of({});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::pending);

  // Dead: lost if a worker was unfinished, if there were no workers, or if
  // no job line was ever written...
  facts.supervisor_alive = false;
  facts.record = &running;
  facts.record_missing = false;
  facts.any_worker_unfinished = true;
  status = job_of({WorkerState::succeeded, WorkerState::lost});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::lost);
  facts.any_worker_unfinished = false;
  status = job_of({});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::lost);
  facts.record = nullptr;
  facts.record_missing = true;
  status = job_of({WorkerState::succeeded});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::lost);

  // ...else what the finished workers imply.
  facts.record = &running;
  facts.record_missing = false;
  status = job_of({WorkerState::succeeded, WorkerState::failed});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::failed);
  CHECK(status.completed == std::vector<std::string>{"1"});
  CHECK(status.failed == std::vector<std::string>{"2"});
  CHECK(status.summary.done == 2);
  status = job_of({WorkerState::succeeded, WorkerState::succeeded});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::succeeded);
  status = job_of({WorkerState::succeeded, WorkerState::cancelled});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::cancelled);
  // An unusable job line (not a missing one) lets the workers decide.
  facts.record = nullptr;
  status = job_of({WorkerState::succeeded});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::succeeded);
}

TEST_CASE("elapsed: to the end for a finished job, to now for a live one, to the last sign of life for a lost one") {
  JobFacts facts;
  facts.now = t0 + 1h;

  JobRecord finished = job_record(JobState::succeeded);
  finished.ended_at = t0 + 90s;
  facts.record = &finished;
  JobStatus<> status = job_of({WorkerState::succeeded});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.elapsed_seconds == Approx(90.0));
  CHECK(status.ended_at == t0 + 90s);
  CHECK(status.supervisor.pid == 4242);
  CHECK(status.supervisor.hostname == "here");

  const JobRecord running = job_record(JobState::running);
  facts.record = &running;
  facts.supervisor_alive = true;
  status = job_of({WorkerState::running});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.elapsed_seconds == Approx(3600.0));
  CHECK(status.supervisor.alive);

  // Lost: to the newest time any record mentions (the job line's update, 5 s,
  // or a worker's, 20 s), not to when the reader noticed.
  facts.supervisor_alive = false;
  facts.any_worker_unfinished = true;
  status = job_of({WorkerState::lost, WorkerState::succeeded});
  status.workers[1].last_update = t0 + 20s;
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.state == JobState::lost);
  CHECK(status.last_update == t0 + 20s);
  CHECK(status.elapsed_seconds == Approx(20.0));
  // ...but to now while a worker of it still runs...
  status = job_of({WorkerState::running});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.elapsed_seconds == Approx(3600.0));
  // ...and never past an end recovery recorded.
  JobRecord recovered = job_record(JobState::running);
  recovered.ended_at = t0 + 2s;
  facts.record = &recovered;
  status = job_of({WorkerState::lost});
  status.workers[0].last_update = t0 + 20s;
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.elapsed_seconds == Approx(2.0));

  // No created_at: no elapsed time.
  facts.record = nullptr;
  status = job_of({WorkerState::succeeded});
  jobwarden::detail::merge_job(facts, status);
  CHECK(status.elapsed_seconds == 0.0);
}

TEST_CASE("a job's summary is the same JSON in the aggregated status and in a job listing") {
  JobStatus<> status = job_of({WorkerState::pending, WorkerState::running, WorkerState::succeeded,
                               WorkerState::cancelled, WorkerState::lost});
  JobFacts facts;
  facts.supervisor_alive = true;
  jobwarden::detail::merge_job(facts, status);
  const nlohmann::json expected = {{"total", 5},     {"pending", 1}, {"running", 1},
                                   {"succeeded", 1}, {"failed", 2},  {"done", 3}};
  CHECK(status.to_json()["summary"] == expected);
  jobwarden::JobListing listing;
  listing.summary = status.summary;
  CHECK(listing.to_json()["summary"] == expected);
  listing.summary.reset();
  CHECK(listing.to_json()["summary"].is_null());
}

TEST_CASE("paused is read from the worker's line for a running worker only: a flag, not a state") {
  WorkerInfo running = process(WorkerState::running);
  running.paused = true;
  auto worker = jobwarden::detail::merge_worker("1", WorkerRecords{&running, t0, nullptr}, live_at(t0 + 1s));
  CHECK(worker.state == WorkerState::running);
  CHECK(worker.paused);
  CHECK(worker.to_json()["paused"] == true);
  running.paused = false;
  CHECK_FALSE(jobwarden::detail::merge_worker("1", WorkerRecords{&running, t0, nullptr}, live_at(t0 + 1s)).paused);
  // A line that says paused and a state that is not running (a crafted or
  // torn history): not paused. Nor is a worker that reads lost.
  WorkerInfo ended = process(WorkerState::failed);
  ended.paused = true;
  ended.exit_code = 1;
  ended.ended_at = t0 + 1s;
  CHECK_FALSE(jobwarden::detail::merge_worker("1", WorkerRecords{&ended, t0, nullptr}, live_at(t0 + 2s)).paused);
  WorkerFacts dead = live_at(t0 + 2s);
  dead.supervisor_alive = false;
  dead.still_runs = false;
  running.paused = true;
  auto lost = jobwarden::detail::merge_worker("1", WorkerRecords{&running, t0, nullptr}, dead);
  CHECK(lost.state == WorkerState::lost);
  CHECK_FALSE(lost.paused);
}
