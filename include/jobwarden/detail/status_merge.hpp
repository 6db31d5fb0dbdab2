#pragma once
/// \file
/// The merge rule of a job directory's reader: what a worker's and a job's
/// state are, given the records parsed from its files. Pure functions: no
/// disk, no clock (now is a parameter), no probe of processes or locks
/// (whether the supervisor is alive and whether a recorded process still runs
/// are inputs). `StatusAggregator` reads and caches the files
/// (detail/status_reader.hpp, detail/status_cache.hpp) and calls these;
/// The Python reader (`python/jobwarden_reader`) follows the same rules.
///
/// One writer per file, so no file is ever "wrong" for its writer:
/// - The worker's latest journal line (the supervisor's record, detail/journal.hpp;
///   `process` in the code) is authoritative for `state`, `pid`,
///   `attempt`, `exit_code`, `signal`, `core_dumped`, `started_at`, `ended_at`,
///   and alone gives `argv`, `label` and `paused` (read only for a worker
///   that reads `running`: paused is a flag, not a state).
///   Only the exit status proves how a worker ended, so a worker that
///   reported `failed` but exited 0 reads `succeeded` (what it reported is kept
///   as `reported_state`, and its `error` is shown).
/// - `workers/<id>.status.json` (the worker's report) supplies `progress`, `message`, `result`,
///   `error` (when the supervisor recorded none) and the heartbeat. Its state
///   only refines a non-terminal record: `pending` + reported `running` reads
///   `running` (the worker started before the supervisor rewrote its record).
///   A status from an older attempt than the record's is ignored.
/// - With no journal line, the worker's own report is all there is and is
///   taken as it stands.
/// - Stale: a `running` worker whose last sign of life (the newer of its
///   status heartbeat and its start) is older than `stale_after`. A timestamp
///   in the future (clock skew between writer and reader) counts as now, never
///   as stale. Pending workers are never stale: waiting for a slot is normal.
/// - Lost: with the supervisor dead, a non-terminal worker reads `lost` once
///   neither its recorded process nor its reporting process runs (pid and
///   start time, only on the host that recorded them; a zombie does not run:
///   under a parent that reaps late or never, it would otherwise read
///   `running` forever), and the job reads `lost`. How the reader decides
///   that the supervisor is alive is in detail/status_reader.hpp.
/// - Job state: the journal's job line gives the state when it is terminal (the supervisor wrote
///   its verdict). Otherwise, with a live supervisor: `idle` when its job line
///   says so and every worker is terminal (or there is none), else `pending`
///   until a worker starts, then `running` (also while a starting supervisor holds the lock
///   but has not written the job line yet: `pending`). With a dead one: `lost`
///   if any worker was not terminal, or if there is no job line at all (a
///   start that was interrupted: `errors` says so, `jobwarden stop` has
///   nothing to stop and a clean-up removes it once old enough), else what the
///   workers imply (`job_state_from_workers`).
/// - Elapsed: from `created_at` (a resumed job: `resumed_at`, its latest
///   run's start) to `ended_at` for a finished job, to now for
///   a live one, and for a `lost` job to its last sign of life: the newest of
///   the job line's `updated_at` (a live supervisor appends one at least every
///   `job_refresh_interval`, sooner while the job is young) and its workers'
///   records and reports.

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/job_status.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// What a reader could use of one worker's two files.
struct WorkerRecords {
  const WorkerInfo* process = nullptr;         ///< the worker's journal line, parsed; null when missing or unusable
  std::optional<WallTime> process_updated_at;  ///< its `updated_at`
  const StatusRecord* status = nullptr;        ///< the status file, parsed; null when missing or unusable
};

/// The worker's report that counts: none when there is none, or when it is
/// left over from an earlier attempt than the supervisor's record (it says
/// nothing about this one).
inline const StatusRecord* current_report(const WorkerRecords& records) noexcept {
  const StatusRecord* report = records.status;
  if (records.process != nullptr && report != nullptr && report->attempt > 0 && records.process->attempt > 0 &&
      report->attempt < records.process->attempt) {
    return nullptr;
  }
  return report;
}

/// The worker's state by its files alone, before liveness is taken into account.
inline WorkerState recorded_state(const WorkerRecords& records) noexcept {
  const StatusRecord* report = current_report(records);
  if (records.process == nullptr) {
    // Nothing but the worker's word: it wrote, so it ran.
    return report != nullptr ? report->state.value_or(WorkerState::running) : WorkerState::pending;
  }
  const WorkerState state = records.process->state;
  if (state == WorkerState::pending && report != nullptr && report->state == WorkerState::running) {
    return WorkerState::running;
  }
  return state;
}

/// Whether the worker's files leave it unfinished (non-terminal).
inline bool worker_unfinished(const WorkerRecords& records) noexcept {
  return !is_terminal(recorded_state(records));
}

/// A process a record names, proven by its kernel start time.
struct RecordedProcess {
  int pid = 0;                          ///< 0: nothing to ask
  unsigned long long start_time = 0;
};

/// The processes whose running keeps an unfinished worker from reading
/// `lost`: none while the supervisor is alive, for a terminal worker, away
/// from the host that recorded them, or without a start time to prove them.
struct ProcessesToAsk {
  RecordedProcess recorded;  ///< the one the worker's journal line names
  RecordedProcess reporter;  ///< the one that wrote the status file (a child of it, under `sh -c`)
};

/// Which processes the reader must ask about (see `ProcessesToAsk`).
inline ProcessesToAsk processes_to_ask(const WorkerRecords& records, bool supervisor_alive,
                                       bool on_recording_host) noexcept {
  ProcessesToAsk ask;
  if (supervisor_alive || !on_recording_host || !worker_unfinished(records)) return ask;
  auto provable = [](int pid, unsigned long long start_time) {
    return pid > 0 && start_time != 0 ? RecordedProcess{pid, start_time} : RecordedProcess{};
  };
  if (records.process != nullptr) ask.recorded = provable(records.process->pid, records.process->process_start_time);
  if (const StatusRecord* report = current_report(records)) {
    ask.reporter = provable(report->pid, report->process_start_time);
  }
  return ask;
}

/// The worker's last sign of life, by which it is `stale`: the newer of its
/// recorded start and its report's heartbeat (none: it is never stale).
inline std::optional<WallTime> last_sign_of_life(const WorkerRecords& records) {
  std::optional<WallTime> last;
  if (records.process != nullptr) last = records.process->started_at;
  if (const StatusRecord* reported = current_report(records)) {
    if (reported->updated_at && (!last || *reported->updated_at > *last)) last = reported->updated_at;
  }
  return last;
}

/// Whether a worker in `state` whose last sign of life was `last` is stale
/// at `now` (a time in the future, clock skew, counts as now).
inline bool is_stale(WorkerState state, const std::optional<WallTime>& last, WallTime now,
                     std::chrono::milliseconds stale_after) {
  return state == WorkerState::running && last && now - *last > stale_after;
}

/// What the files cannot say about a worker.
struct WorkerFacts {
  bool supervisor_alive = true;
  bool still_runs = false;  ///< one of `processes_to_ask`'s processes still runs
  WallTime now{};
  std::chrono::milliseconds stale_after{std::chrono::seconds(30)};
};

/// One worker merged from its records (the rules of the file comment). The
/// progress stays JSON: the reader turns it into the user's type. `argv`:
/// `records.process->argv`, shared (the journal's fold keeps one per line);
/// null: a copy is made.
inline WorkerStatus<> merge_worker(std::string id, const WorkerRecords& records, const WorkerFacts& facts,
                                   std::shared_ptr<const std::vector<std::string>> argv = nullptr) {
  const WorkerInfo* info = records.process;
  const StatusRecord* reported = current_report(records);

  WorkerStatus<> worker;
  worker.id = std::move(id);
  std::optional<WallTime> last_sign_of_life;
  auto newest = [](std::optional<WallTime>& into, const std::optional<WallTime>& time) {
    if (time && (!into || *time > *into)) into = time;
  };
  if (info != nullptr) {
    worker.state = info->state;
    if (info->pid > 0) worker.pid = info->pid;
    worker.attempt = info->attempt;
    worker.exit_code = info->exit_code;
    if (info->signal) worker.signal = signal_name(*info->signal);
    worker.core_dumped = info->core_dumped;
    if (!info->error.empty()) worker.error = info->error;
    worker.started_at = info->started_at;
    worker.ended_at = info->ended_at;
    if (info->ended_at) worker.usage = info->usage;
    worker.argv = argv ? std::move(argv) : std::make_shared<const std::vector<std::string>>(info->argv);
    if (!info->label.empty()) worker.label = info->label;
    worker.paused = info->paused;
    newest(worker.last_update, records.process_updated_at);
    newest(worker.last_update, info->started_at);
    newest(worker.last_update, info->ended_at);
    last_sign_of_life = info->started_at;
  }
  if (reported != nullptr) {
    worker.reported_state = reported->state;
    if (!reported->progress.is_null()) worker.progress = reported->progress;
    worker.message = reported->message;
    worker.result = reported->result;
    if (!worker.error) worker.error = reported->error;
    worker.seq = reported->seq;
    newest(worker.last_update, reported->updated_at);
    newest(last_sign_of_life, reported->updated_at);
    if (info == nullptr) {
      if (reported->pid > 0) worker.pid = reported->pid;
      worker.attempt = reported->attempt;
    }
  }
  worker.state = recorded_state(records);

  if (!is_terminal(worker.state) && !facts.supervisor_alive) {
    // Lost once nothing of it runs.
    worker.state = facts.still_runs ? WorkerState::running : WorkerState::lost;
  }
  if (worker.state != WorkerState::running) worker.paused = false;  // a flag of running workers only
  worker.stale = is_stale(worker.state, last_sign_of_life, facts.now, facts.stale_after);
  return worker;
}

/// What the workers' records cannot say about a job.
struct JobFacts {
  const JobRecord* record = nullptr;   ///< the job line, parsed; null when missing or unusable
  bool record_missing = false;         ///< there is no job line at all (not merely an unusable one)
  bool supervisor_alive = false;
  bool any_worker_unfinished = false;  ///< `worker_unfinished` for any worker
  WallTime now{};
};

/// The first part of `merge_job`: the supervisor and the job line's times.
inline void merge_job_record(const JobFacts& facts, JobStatus<>& status) {
  const JobRecord* record = facts.record;
  status.supervisor.alive = facts.supervisor_alive;
  if (record != nullptr) {
    if (record->supervisor_pid > 0) status.supervisor.pid = record->supervisor_pid;
    status.supervisor.hostname = record->supervisor_hostname;
    status.supervisor.exit_status = record->supervisor_exit_status;
    status.created_at = record->created_at;
    status.ended_at = record->ended_at;
    status.last_update = record->updated_at;
  }
}

/// Counts one merged worker into the job: its summary, id list and `last_update`.
inline void merge_job_worker(WorkerState state, const std::string& id, const std::optional<WallTime>& last_update,
                             JobStatus<>& status) {
  status.summary.add(state);
  switch (state) {
    case WorkerState::pending: status.pending.push_back(id); break;
    case WorkerState::running: status.running.push_back(id); break;
    case WorkerState::succeeded: status.completed.push_back(id); break;
    default: status.failed.push_back(id); break;
  }
  if (last_update && (!status.last_update || *last_update > *status.last_update)) status.last_update = last_update;
}

/// The last part of `merge_job`, once every worker is counted: the job's
/// state and elapsed time.
inline void merge_job_state(const JobFacts& facts, JobStatus<>& status) {
  const JobRecord* record = facts.record;
  if (record != nullptr && is_terminal(record->state)) {
    status.state = record->state;
  } else if (facts.supervisor_alive) {
    const bool none_started = status.summary.pending == status.summary.total;
    // Idle as its supervisor last wrote, while no worker says otherwise (one
    // submitted since: pending or running, from the workers' lines).
    const bool idle = record != nullptr && record->state == JobState::idle && status.summary.all_terminal();
    status.state = idle ? JobState::idle : none_started ? JobState::pending : JobState::running;
  } else if (facts.any_worker_unfinished || status.summary.total == 0 || facts.record_missing) {
    // A supervisor that died with nothing terminal (or nothing at all, or
    // before it wrote the job line) never finished.
    status.state = JobState::lost;
  } else {
    status.state = job_state_from_workers(status.summary);
  }

  // A resumed job's elapsed time is its latest run's.
  const std::optional<WallTime> start = record != nullptr && record->resumed_at ? record->resumed_at : status.created_at;
  if (start) {
    WallTime until = facts.now;
    if (status.state == JobState::lost) {
      // How long it ran: to its last sign of life, not to when someone
      // noticed (recovery's ended_at) or to when the job line was first written.
      until = status.last_update.value_or(*start);
      if (!status.running.empty()) until = facts.now;  // a worker of it still runs
      if (status.ended_at && *status.ended_at < until) until = *status.ended_at;
    } else if (status.ended_at && is_terminal(status.state)) {
      until = *status.ended_at;
    }
    status.elapsed_seconds = std::max(0.0, seconds_between(*start, until));
  }
}

/// Completes a job whose `workers` are merged (in their order): the
/// supervisor, times, summary, id lists, state and elapsed time (the rules of
/// the file comment). `job_id`, `workers` and `errors` are the caller's.
inline void merge_job(const JobFacts& facts, JobStatus<>& status) {
  merge_job_record(facts, status);
  for (const auto& worker : status.workers) merge_job_worker(worker.state, worker.id, worker.last_update, status);
  merge_job_state(facts, status);
}

}  // namespace jobwarden::detail
