#pragma once
/// \file
/// `SupervisorOptions`: how a `JobSupervisor` runs its job. The engine
/// (detail/supervisor/) reads every field but `status_options`, which only
/// `JobSupervisor::status()` uses.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "jobwarden/halt_policy.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/shared_slots.hpp"
#include "jobwarden/status_aggregator_options.hpp"

namespace jobwarden {

/// How a `JobSupervisor` runs its job.
struct SupervisorOptions {
  /// The job's id (docs/contract.md's id rules); names the job directory under `root`.
  std::string job_id = "job";
  /// Directory holding job directories; empty means no status files at all.
  /// With a root, the supervisor keeps `<root>/<job_id>/` (see
  /// docs/job-directory.md): its records, each worker's status file and logs.
  std::string root;
  /// Make the journal durable: one `fdatasync` per batch of records the
  /// supervisor appends (not one per record), and `fsync` of the journal and
  /// its directory at a compaction (crash durability; slower).
  bool durable = false;
  /// Reuse the id of a finished job under `root`, replacing its records
  /// (otherwise `errc::job_exists`). A job with a live supervisor is never touched.
  bool replace_finished_job = false;
  /// Resume a finished job under `root` instead (exclusive with
  /// `replace_finished_job`: `errc::invalid_argument`): its journal and
  /// worker records are kept, and a worker submitted again whose record says
  /// `succeeded` with the same argv is not run again — it is at once
  /// `succeeded` with its earlier record, `WorkerInfo::kept` set, and no
  /// event. Every other worker submitted runs as a new attempt (the earlier
  /// attempt + 1). Records of the earlier run's workers that are not
  /// submitted stay as they are (`kept`) and count toward the job's summary
  /// and final state. A job whose supervisor died is recovered first; one
  /// that is not on disk starts anew; one with a live supervisor is
  /// `errc::job_locked`. Only argv is compared (cwd and env are not recorded).
  bool resume_finished_job = false;
  /// How often a job line is appended even without changes, as a heartbeat
  /// that readers on other machines can see (zero: only on changes). While
  /// the job is young the heartbeat comes sooner — after half the job's age,
  /// but not before `job_summary_interval` — so a job whose supervisor dies
  /// early still shows how long it ran to within half its age.
  std::chrono::milliseconds job_refresh_interval{5000};
  /// The job line's counts are appended at most this often; a change of the
  /// job's state (pending, running, its end) is written at once. The counts
  /// readers show come from the workers' own lines, so this only bounds how
  /// stale the job line's copy may be (zero: a line on every change).
  std::chrono::milliseconds job_summary_interval{250};
  /// The journal (`journal.jsonl`) is compacted — rewritten as its fold, one
  /// line per worker and the job's, and renamed over the old one — once it is
  /// larger than this and more than twice its fold, so a long-lived pool
  /// that restarts its workers keeps a bounded journal (0: never).
  std::uint64_t journal_compact_bytes = std::uint64_t{8} << 20;
  /// Before taking over an existing job whose supervisor died, its leftover
  /// workers are stopped (SIGTERM, this grace period, SIGKILL) — only
  /// processes proven to be the recorded ones — and marked `lost`.
  std::chrono::milliseconds recovery_grace{10'000};
  /// Recover a dead predecessor's job without blocking the constructor: it
  /// takes the job's lock, refuses what it must (`errc::job_locked`;
  /// `errc::job_exists` without `replace_finished_job` or
  /// `resume_finished_job`, and then nothing is stopped), sends what is left
  /// of the workers the stop signal, and returns. `poll()` does the rest —
  /// SIGKILL after `recovery_grace`, waiting for the processes to go, the
  /// verdict, then opening the job — while `JobSupervisor::recovering()` is
  /// true; workers submitted meanwhile wait in the queue and start once the
  /// job is open. `event_fd()`/`next_timeout()` wake the host for it.
  /// Off: the constructor blocks until recovery is done (up to the grace).
  bool recover_in_background = false;
  /// How `status()` reads the job (e.g. `stale_after`).
  StatusAggregatorOptions status_options{};
  /// Most workers running at once; 0 means the number of CPUs.
  std::size_t max_concurrency = 0;
  /// A limit shared with other supervisors (shared_slots.hpp): a worker
  /// starts only holding one of these slots too, and gives it back when its
  /// process exits. Null: only `max_concurrency`.
  std::shared_ptr<SharedSlots> shared_slots;
  /// Run the orphan guard: a small process that kills every running
  /// worker's tree if this supervisor dies, even by SIGKILL.
  bool orphan_guard = true;
  /// Give each worker its own cgroup v2 where one can be made (root or a
  /// delegated subtree, Linux 5.14+), so stopping reaches escapees too.
  bool use_cgroups = true;
  /// Longest line an `on_output_line` handler receives whole; a longer one
  /// arrives in pieces of this size, each marked `partial`. Bounds what the
  /// supervisor buffers per stream.
  std::size_t max_line_bytes = 64 * 1024;
  /// How workers are started and signalled; null means on this machine
  /// (`LocalLauncher`). See launcher.hpp, and slurm_launcher.hpp for a cluster.
  std::shared_ptr<Launcher> launcher;
  /// Fail fast: after this many workers did not succeed, start nothing new
  /// (`soon`) or also stop the running ones (`now`); queued workers end
  /// `cancelled`. Applied inside `poll()`, never blocking. Default: never.
  /// See halt_policy.hpp for what counts and `JobSupervisor::halted()`.
  HaltPolicy halt;
  /// Forget each worker once its `exited` event (its end for good) has been
  /// delivered to the handlers, as `JobSupervisor::forget` would: it leaves
  /// `workers()` and `info(id)` and the supervisor's memory, so a
  /// long-lived supervisor that runs workers without end stays flat. Its
  /// records stay in the job directory, and the job's counts and final state
  /// still count it. Default: kept until `forget` or `forget_finished`.
  bool forget_finished_workers = false;
};

}  // namespace jobwarden
