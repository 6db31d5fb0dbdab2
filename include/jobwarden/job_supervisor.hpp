#pragma once
/// \file
/// `JobSupervisor`: runs workers with a concurrency limit, enforces deadlines,
/// stops whole process trees, reaps them and says how each one ended — without
/// ever blocking its host.
///
/// This header is the public face: the options, the class and its documented
/// calls, and `status()` (the one use of the workers' payload type, which
/// reads the job back with `StatusAggregator`). The work is done by
/// `detail::SupervisorEngine<Clock>` (detail/supervisor/engine.hpp and the
/// files beside it), which knows nothing of the reader. Events are in
/// worker_event.hpp, the restart rule in restart_policy.hpp.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/detail/supervisor/engine.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/recovery_report.hpp"
#include "jobwarden/status_aggregator.hpp"
#include "jobwarden/supervisor_options.hpp"
#include "jobwarden/worker_control.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// Supervises the workers of one job.
///
/// - `Progress`: the payload workers report (any type with nlohmann
///   `to_json`/`from_json`); used only by `status()`, which reads the job
///   back. The engine behind this class does not depend on it.
/// - `Clock`: the clock deadlines are measured on (a fake clock in tests).
///
/// Thread-safe: `submit`, `cancel`, the queries and `poll` may be called from
/// any thread. Event and output handlers run only inside `poll()` (and the
/// blocking `wait` calls built on it), on the calling thread, never inside
/// `submit`.
/// Move-only; destroying it stops and reaps every worker it started.
///
/// SIGCHLD: a host that ignores SIGCHLD (`signal(SIGCHLD, SIG_IGN)`) or set
/// `SA_NOCLDWAIT` would have the kernel reap every worker the moment it exits,
/// and its exit status would be lost. So at construction and again before
/// every spawn (the host may change it at any time) the supervisor puts
/// `SIG_DFL` in place of `SIG_IGN` and clears `SA_NOCLDWAIT`, leaving a host's
/// handler as it is. `SIG_DFL` also does nothing when a child exits; the one
/// difference the host sees is that its *own* children now stay zombies until
/// it reaps them. A worker that exits while the host has SIGCHLD ignored
/// again (set after the worker's spawn) is still reaped by the kernel and ends
/// `lost`. The portable path (no pidfds) runs a SIGCHLD handler of its own and
/// puts it back the same way, calling the host's handler in turn.
template <class Progress = nlohmann::json, class Clock = std::chrono::steady_clock>
class JobSupervisor {
 public:
  using progress_type = Progress;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using event_handler = std::function<void(const WorkerEvent&)>;

  /// Starts supervising. Throws `std::system_error` for an invalid job id or
  /// when the kernel refuses the supervisor's descriptors.
  explicit JobSupervisor(SupervisorOptions options = {})
      : reader_(std::make_unique<Reader>(options.status_options)),
        engine_(std::move(options), nullptr) {}

  /// Non-throwing form: on failure `ec` is set and the supervisor is unusable.
  JobSupervisor(SupervisorOptions options, std::error_code& ec)
      : reader_(std::make_unique<Reader>(options.status_options)),
        engine_(std::move(options), &(ec = std::error_code())) {}

  JobSupervisor(JobSupervisor&&) noexcept = default;
  JobSupervisor& operator=(JobSupervisor&& other) noexcept {
    if (this != &other) {
      engine_ = std::move(other.engine_);  // stops and reaps this one's workers first
      reader_ = std::move(other.reader_);
    }
    return *this;
  }
  JobSupervisor(const JobSupervisor&) = delete;
  JobSupervisor& operator=(const JobSupervisor&) = delete;

  /// Stops every running worker with the stop sequence and reaps it; nothing
  /// it started outlives it. May block for up to the longest grace period.
  ~JobSupervisor() = default;

  /// The job's id.
  const std::string& job_id() const { return engine_.job_id(); }

  /// The concurrency limit in force.
  std::size_t max_concurrency() const { return engine_.max_concurrency(); }

  /// Submits a worker; it starts now if a slot is free, else when one frees
  /// up, in submission order. Returns its id. A program that cannot be
  /// started is not an error here: the worker ends `spawn_failed`.
  /// Throws `std::system_error` for a bad spec (empty argv, negative
  /// duration, invalid or duplicate id, bad signal) or after shutdown.
  std::string submit(WorkerSpec spec) {
    return engine_.submit(std::move(spec), nullptr);
  }

  /// Non-throwing form: on a bad spec sets `ec` and returns an empty id.
  std::string submit(WorkerSpec spec, std::error_code& ec) {
    ec.clear();
    return engine_.submit(std::move(spec), &ec);
  }

  /// Stops one worker: a pending one ends `cancelled` at once, a running one
  /// gets the stop sequence and ends `cancelled`. A finished one is left as
  /// it is. Throws for an unknown id.
  void cancel(const std::string& id) { engine_.cancel(id, nullptr); }

  /// Non-throwing form (`errc::unknown_worker`).
  void cancel(const std::string& id, std::error_code& ec) {
    ec.clear();
    engine_.cancel(id, &ec);
  }

  /// Sends signal `sig` to a running worker: to its whole tree
  /// (`SignalScope::tree`: its process group and, where it has a cgroup,
  /// every process of the cgroup, `setsid` escapees included) or to its own
  /// process only (`SignalScope::leader`). Sent only while the supervisor
  /// holds the worker's process unreaped (through its pidfd on Linux), so it
  /// never reaches a process that reused the pid. The host hears of it as a
  /// `signalled` event at its next `poll()`. Throws `errc::unknown_worker`,
  /// `errc::worker_not_running` (pending, ended) or `errc::invalid_signal`;
  /// nothing is sent then. A signal to a paused worker waits until it resumes
  /// (SIGKILL excepted).
  void signal(const std::string& id, int sig, SignalScope scope = SignalScope::tree) {
    engine_.signal(id, sig, scope, nullptr);
  }

  /// Non-throwing form.
  void signal(const std::string& id, int sig, SignalScope scope, std::error_code& ec) {
    ec.clear();
    engine_.signal(id, sig, scope, &ec);
  }

  /// Non-throwing form, to the whole tree.
  void signal(const std::string& id, int sig, std::error_code& ec) { signal(id, sig, SignalScope::tree, ec); }

  /// Pauses a running worker: freezes its cgroup (`cgroup.freeze`: every
  /// process in it, escapees included, and nothing inside can undo it) where
  /// it has one, else SIGSTOP to its process group. Its timeout and stall
  /// clocks stand still until `resume`; `WorkerInfo::paused` is true and the
  /// state stays `running`. A `paused` event follows. Pausing a paused worker
  /// does nothing. Throws `errc::unknown_worker` or `errc::worker_not_running`.
  /// A stop (cancel, timeout, shutdown, `stop.request`) resumes it first.
  void pause(const std::string& id) { engine_.pause(id, nullptr); }

  /// Non-throwing form.
  void pause(const std::string& id, std::error_code& ec) {
    ec.clear();
    engine_.pause(id, &ec);
  }

  /// Resumes a paused worker (thaws its cgroup, or SIGCONT to its process
  /// group); its deadlines move later by the time it was paused. A `resumed`
  /// event follows. Resuming a worker that is not paused does nothing.
  /// Throws `errc::unknown_worker` or `errc::worker_not_running`.
  void resume(const std::string& id) { engine_.resume(id, nullptr); }

  /// Non-throwing form.
  void resume(const std::string& id, std::error_code& ec) {
    ec.clear();
    engine_.resume(id, &ec);
  }

  /// Stops accepting work, cancels pending workers and begins the stop
  /// sequence for every running one; returns at once. Drive `poll()` (or call
  /// `wait_all()`) to finish it.
  void begin_shutdown() { begin_shutdown(std::nullopt); }

  /// `begin_shutdown()` with every running worker's grace period replaced
  /// by `grace` (as `jobwarden stop --grace` asks).
  void begin_shutdown(std::optional<std::chrono::milliseconds> grace) { engine_.begin_shutdown(grace); }

  /// Whether the job halted (fail fast, `SupervisorOptions::halt`): enough
  /// workers did not succeed, so nothing new starts or restarts. Set inside
  /// `poll()` (or `submit()`, for a worker that could not be started, when
  /// the threshold is a count; a share waits for the next `poll()`) when the
  /// threshold is reached; the same poll cancels the queued workers (and
  /// with `HaltMode::now` begins stopping the running ones). A worker
  /// submitted after that ends `cancelled` at once, with the reason as its
  /// error. The job's final state is `failed`.
  bool halted() const { return engine_.halted(); }

  /// Why the job halted, empty when it did not: "the job halted after 3
  /// workers did not succeed (halt policy soon,fail=3)". Every worker the
  /// halt cancels carries it in its error, and the journal's job line in
  /// `halted`.
  std::string halt_reason() const { return engine_.halt_reason(); }

  /// Whether a stop was requested through the job directory
  /// (`jobwarden stop`); the supervisor then shut down by itself.
  bool stop_requested() const { return engine_.stop_requested(); }

  /// Declares that no more work will be submitted: once every worker is
  /// terminal, the job's final state is written (`succeeded`, `failed`,
  /// `cancelled`...). Running and pending workers carry on. Returns at once.
  void finish() { engine_.finish(); }

  /// Records the exit status the host will end with for this job, as
  /// `supervisor.exit_status` of the job's line in the journal (readers:
  /// `JobStatus::supervisor.exit_status`), so that whoever did not start the
  /// host (a detached `jobwarden run`) can still learn it. Call it before
  /// `finish()`: the final job line then carries it. Called after the final
  /// line was written, the next `poll()` appends that line once more with it
  /// (the state stays). Does nothing without a root. Any thread.
  void set_exit_status(int code) { engine_.set_exit_status(code); }

  /// What the supervisor found of an earlier supervisor of this job that had
  /// died: the workers it stopped and marked lost (empty for a new job).
  /// With `SupervisorOptions::recover_in_background`, filled once
  /// `recovering()` is false; read it then (not while `poll()` may fill it).
  const RecoveryReport& recovery_report() const { return engine_.recovery_report(); }

  /// Whether a background recovery (`SupervisorOptions::recover_in_background`)
  /// is still under way: the dead predecessor's workers are being stopped,
  /// the job is not open yet, and submitted workers wait. `poll()` carries it
  /// on and ends it; `wait_all()` and `shutdown()` wait for it too. Any thread.
  bool recovering() const { return engine_.recovering(); }

  /// The job's directory (`<root>/<job_id>`), empty without a root.
  std::string job_dir() const { return engine_.job_dir(); }

  /// The job as any reader sees it (the aggregated status of docs/contract.md, typed with
  /// `Progress`), read from the job directory. Throws without a root.
  JobStatus<Progress> status() {
    std::error_code ec;
    auto result = status(ec);
    if (ec) detail::throw_error(ec, "cannot read the status of job \"" + job_id() + "\"");
    return result;
  }

  /// Non-throwing form (`errc::invalid_argument` without a root).
  JobStatus<Progress> status(std::error_code& ec) {
    Reader& r = *reader_;
    std::lock_guard<std::mutex> lock(r.mutex);  // reading never holds up poll()
    if (!engine_.has_job_directory()) {
      ec = make_error_code(errc::invalid_argument);
      return {};
    }
    if (!r.aggregator) r.aggregator.emplace(engine_.options().root, r.options);
    return r.aggregator->read(engine_.job_id(), ec);
  }

  /// How many writes of the job directory failed (ENOSPC, EIO...), and the
  /// last such error and file. Failed writes never stop the supervisor; the
  /// next write of the same file repairs it.
  std::uint64_t status_write_failures() const { return engine_.status_write_failures(); }

  /// The last failed write of the job directory: its error and path.
  std::pair<std::error_code, std::string> last_status_error() const { return engine_.last_status_error(); }

  /// `begin_shutdown()`, then waits until every worker is reaped.
  void shutdown() { engine_.shutdown(); }

  /// Does whatever is ready — reaps exited workers, enforces deadlines, starts
  /// queued workers, runs event handlers — and returns at once. Returns the
  /// number of events delivered. Handlers run in two batches: first exits,
  /// stops, kills and restarts (as soon as they are known: before the
  /// zombies are reaped, their cgroups checked or any new worker started),
  /// then the starts this call made. A worker's record in the job directory
  /// is written before its event is delivered. A handler that throws: the
  /// exception leaves `poll()`, and the events after it in its batch are not
  /// delivered (`info()`, `workers()` and the job directory still show what
  /// they said); the next `poll()` does the rest of the work.
  std::size_t poll() { return engine_.poll(); }

  /// A descriptor that becomes readable when `poll()` has work. On Linux it
  /// also covers deadlines; elsewhere wait at most `next_timeout()` too.
  int event_fd() const { return engine_.event_fd(); }

  /// How long the host may sleep before `poll()` has deadline work to do;
  /// `std::nullopt` when no deadline is pending (zero: call `poll()` now).
  std::optional<std::chrono::milliseconds> next_timeout() const { return engine_.next_timeout(); }

  /// Queues `bytes` for worker `id`'s stdin and returns at once; `poll()`
  /// writes them as the worker's pipe takes them, after everything queued
  /// before (the spec's `data` first). For a worker whose stdin is kept open
  /// (`InputSpec::kept_open`) that is running, or pending (waiting to start,
  /// or to restart: the bytes go to the next attempt). Any thread.
  ///
  /// The queue is the host's to bound: `WorkerInfo::stdin_pending_bytes`
  /// says how much is still unwritten, so a host that produces faster than
  /// the worker reads can wait before writing more. Bytes an attempt did not
  /// take when it ended are dropped, never written to a restarted attempt
  /// (which gets the spec's `data` again, then what the host writes from
  /// then on).
  ///
  /// Throws `std::system_error`: `errc::unknown_worker` for an unknown id;
  /// `errc::input_closed` when the worker's stdin is not kept open for the
  /// host, was closed (`close_input`, or the worker closed it: see
  /// `WorkerInfo::input_error`), or the worker has ended. The message names
  /// the worker.
  void write_input(const std::string& id, std::string_view bytes) {
    engine_.write_input(id, bytes, nullptr);
  }

  /// Non-throwing form: sets `ec` instead (the same error codes).
  void write_input(const std::string& id, std::string_view bytes, std::error_code& ec) {
    ec.clear();
    engine_.write_input(id, bytes, &ec);
  }

  /// Closes worker `id`'s stdin once what is queued is written: the worker
  /// reads EOF. Returns at once; later `write_input` calls fail with
  /// `errc::input_closed`, and a restarted attempt gets the spec's `data`,
  /// then EOF. Throws as `write_input` does.
  void close_input(const std::string& id) { engine_.close_input(id, nullptr); }

  /// Non-throwing form: sets `ec` instead.
  void close_input(const std::string& id, std::error_code& ec) {
    ec.clear();
    engine_.close_input(id, &ec);
  }

  /// Registers a handler for worker events; handlers run inside `poll()`.
  void on_event(event_handler handler) { engine_.on_event(std::move(handler)); }

  /// Registers a handler for workers' output, line by line: each line of a
  /// stream, in order, without its '\n' (`OutputLine`). A line longer than
  /// `SupervisorOptions::max_line_bytes` arrives in pieces marked `partial`;
  /// so do the last bytes of a stream that ends without a newline, at the
  /// worker's exit and before its `exited` or `restarting` event. With
  /// `WorkerSpec::stderr_to_stdout` both streams arrive as `OutputStream::out`,
  /// in the order written.
  ///
  /// Only streams the supervisor reads reach handlers: one registered before
  /// a worker starts makes its `automatic` streams supervised
  /// (`OutputSpec::Route`); a stream that goes `direct` is never seen.
  ///
  /// Like event handlers, output handlers run inside `poll()` (and the
  /// blocking `wait` calls built on it) on the polling thread, outside the
  /// supervisor's lock (they may call back in), and `text` is valid only
  /// during the call. What a poll reads is bounded (a few MiB); the rest
  /// waits in the pipe. A host that stops calling `poll()` makes its workers
  /// block on their next write once their pipe is full, as in a shell
  /// pipeline: nothing is lost, and output resumes when polling does.
  void on_output_line(output_line_handler handler) { engine_.on_output_line(std::move(handler)); }

  /// Registers a handler for workers' raw output, in chunks as read from the
  /// pipe (`OutputChunk`): every byte of every supervised stream, in order,
  /// with no regard for lines. Runs like `on_output_line` handlers; when
  /// both are registered a chunk comes before the lines it ends.
  void on_output_chunk(output_chunk_handler handler) { engine_.on_output_chunk(std::move(handler)); }

  /// Blocks until worker `id` is terminal or `timeout` passes (none: no
  /// limit). Returns whether it is terminal (true too once it was forgotten
  /// meanwhile, e.g. by `forget_finished_workers`). Throws for an unknown id.
  bool wait(const std::string& id,
            std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    return engine_.wait(id, timeout);
  }

  /// Blocks until every worker is terminal or `timeout` passes. Returns
  /// whether every worker is terminal.
  bool wait_all(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    return engine_.wait_all(timeout);
  }

  /// A snapshot of worker `id`. Throws `std::system_error` for an unknown id.
  WorkerInfo info(const std::string& id) const { return engine_.info(id); }

  /// Non-throwing form (`errc::unknown_worker`, empty info).
  WorkerInfo info(const std::string& id, std::error_code& ec) const { return engine_.info(id, ec); }

  /// Snapshots of every worker, in submission order (forgotten ones left out).
  std::vector<WorkerInfo> workers() const { return engine_.workers(); }

  /// Forgets finished worker `id`: it leaves `workers()` and `info()` and
  /// this supervisor's memory (its record, output tails, buffers). Its
  /// records stay in the job directory (the journal, its status file and
  /// logs; `status()` and `jobwarden status` still show it), and the job's
  /// counts and final state still count it. The id may be submitted again:
  /// with a job directory, the new worker continues the forgotten one's
  /// record as its next attempt (as a resumed job's worker does), replacing
  /// it in the counts; without one it is counted as another worker.
  /// Throws `errc::unknown_worker` for an id it does not hold, and
  /// `errc::worker_not_finished` for a worker not in a terminal state (or
  /// whose last record could not be written to the journal yet: a full disk).
  void forget(const std::string& id) { engine_.forget(id, nullptr); }

  /// Non-throwing form of `forget`.
  void forget(const std::string& id, std::error_code& ec) {
    ec.clear();
    engine_.forget(id, &ec);
  }

  /// Forgets every finished worker (see `forget`); returns how many. One
  /// whose last record is not yet in the journal is kept for now.
  std::size_t forget_finished() { return engine_.forget_finished(); }

  /// Workers forgotten so far (by `forget`, `forget_finished` or
  /// `SupervisorOptions::forget_finished_workers`).
  std::uint64_t forgotten_count() const { return engine_.forgotten_count(); }

  /// Whether workers run in their own cgroups (escapee-proof stopping).
  bool cgroups_active() const { return engine_.cgroups_active(); }

  /// Why workers run without cgroups (empty when they have them).
  const std::string& cgroups_unavailable_reason() const { return engine_.cgroups_unavailable_reason(); }

  /// Whether the orphan guard runs (see `SupervisorOptions::orphan_guard`).
  bool guard_active() const { return engine_.guard_active(); }

  /// Workers running now (started, not yet reaped).
  std::size_t running_count() const { return engine_.running_count(); }

  /// Workers not yet terminal (pending or running).
  std::size_t active_count() const { return engine_.active_count(); }


 private:
  /// What `status()` keeps: the reader, made on first use, behind its own
  /// lock so that reading never holds up `poll()`.
  struct Reader {
    explicit Reader(StatusAggregatorOptions o) : options(std::move(o)) {}
    StatusAggregatorOptions options;
    std::mutex mutex;
    std::optional<StatusAggregator<Progress>> aggregator;
  };

  // Declared first, destroyed last: the engine stops its workers before the
  // reader goes.
  std::unique_ptr<Reader> reader_;
  detail::SupervisorEngine<Clock> engine_;
};

}  // namespace jobwarden

#include "jobwarden/compiled/job_supervisor.hpp"  // the separately compiled mode
