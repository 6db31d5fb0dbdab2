#pragma once
/// \file
/// `JobSupervisor`: runs workers with a concurrency limit, enforces deadlines,
/// stops whole process trees, reaps them and says how each one ended — without
/// ever blocking its host.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/exit_watcher.hpp"
#include "jobwarden/detail/job_records.hpp"
#include "jobwarden/detail/output_pump.hpp"
#include "jobwarden/detail/process_control.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/detail/sentinel.hpp"
#include "jobwarden/detail/spawn.hpp"
#include "jobwarden/duration.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/status_aggregator.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// How a `JobSupervisor` runs its job.
struct SupervisorOptions {
  /// The job's id (docs/contract.md's id rules); names the job directory under `root`.
  std::string job_id = "job";
  /// Directory holding job directories; empty means no status files at all.
  /// With a root, the supervisor keeps `<root>/<job_id>/` (see
  /// docs/job-directory.md): its records, each worker's status file and logs.
  std::string root;
  /// `fsync` every record and its directory (crash durability; slower).
  bool durable = false;
  /// Reuse the id of a finished job under `root`, replacing its records
  /// (otherwise `errc::job_exists`). A job with a live supervisor is never touched.
  bool replace_finished_job = false;
  /// How often job.json is rewritten even without changes, as a heartbeat
  /// that readers on other machines can see (zero: only on changes). While
  /// the job is young the heartbeat comes sooner — after half the job's age,
  /// but not before `job_summary_interval` — so a job whose supervisor dies
  /// early still shows how long it ran to within half its age.
  std::chrono::milliseconds job_refresh_interval{5000};
  /// job.json's counts are rewritten at most this often; a change of the
  /// job's state (pending, running, its end) is written at once. The counts
  /// readers show come from the workers' own records, so this only bounds how
  /// stale job.json's copy may be (zero: rewrite on every change).
  std::chrono::milliseconds job_summary_interval{250};
  /// Before taking over an existing job whose supervisor died, its leftover
  /// workers are stopped (SIGTERM, this grace period, SIGKILL) — only
  /// processes proven to be the recorded ones — and marked `lost`.
  std::chrono::milliseconds recovery_grace{10'000};
  /// How `status()` reads the job (e.g. `stale_after`).
  StatusAggregatorOptions status_options{};
  /// Most workers running at once; 0 means the number of CPUs.
  std::size_t max_concurrency = 0;
  /// Run the orphan guard: a sentinel process that kills every running
  /// worker's tree if this supervisor dies, even by SIGKILL.
  bool orphan_guard = true;
  /// Give each worker its own cgroup v2 where one can be made (root or a
  /// delegated subtree, Linux 5.14+), so stopping reaches escapees too.
  bool use_cgroups = true;
  /// How workers are started and signalled; null means on this machine
  /// (`LocalLauncher`). See launcher.hpp, and slurm_launcher.hpp for a cluster.
  std::shared_ptr<Launcher> launcher;
};

/// What a supervisor found of a dead predecessor on the same job.
using RecoveryReport = detail::RecoveryReport;

/// What a `WorkerEvent` reports.
enum class EventKind {
  started,         ///< the worker's program is running
  timed_out,       ///< its deadline passed; the stop sequence began
  stop_requested,  ///< cancel or shutdown began the stop sequence
  killed,          ///< the grace period ran out; SIGKILL went to its tree
  restarting,      ///< it ended and will start again after a backoff (`WorkerInfo::state` is pending)
  exited,          ///< it reached a terminal state (including spawn_failed)
};

/// The name of an event kind (`"timed_out"`).
constexpr std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::started: return "started";
    case EventKind::timed_out: return "timed_out";
    case EventKind::stop_requested: return "stop_requested";
    case EventKind::killed: return "killed";
    case EventKind::restarting: return "restarting";
    case EventKind::exited: return "exited";
  }
  return "unknown";
}

/// Something that happened to a worker, with a snapshot of it at that moment.
struct WorkerEvent {
  EventKind kind;
  WorkerInfo worker;
};

/// Supervises the workers of one job.
///
/// - `Progress`: the payload workers report (any type with nlohmann
///   `to_json`/`from_json`); used by the status side of the job.
/// - `Clock`: the clock deadlines are measured on (a fake clock in tests).
///
/// Thread-safe: `submit`, `cancel`, the queries and `poll` may be called from
/// any thread. Event handlers run only inside `poll()` (and the blocking
/// `wait` calls built on it), on the calling thread, never inside `submit`.
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
  explicit JobSupervisor(SupervisorOptions options = {}) {
    std::error_code ec;
    init(std::move(options), &ec, true);
  }

  /// Non-throwing form: on failure `ec` is set and the supervisor is unusable.
  JobSupervisor(SupervisorOptions options, std::error_code& ec) {
    ec.clear();
    init(std::move(options), &ec, false);
  }

  JobSupervisor(JobSupervisor&&) noexcept = default;
  JobSupervisor& operator=(JobSupervisor&& other) noexcept {
    if (this != &other) {
      destroy();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  JobSupervisor(const JobSupervisor&) = delete;
  JobSupervisor& operator=(const JobSupervisor&) = delete;

  /// Stops every running worker with the stop sequence and reaps it; nothing
  /// it started outlives it. May block for up to the longest grace period.
  ~JobSupervisor() { destroy(); }

  /// The job's id.
  const std::string& job_id() const { return state().options.job_id; }

  /// The concurrency limit in force.
  std::size_t max_concurrency() const { return state().options.max_concurrency; }

  /// Submits a worker; it starts now if a slot is free, else when one frees
  /// up, in submission order. Returns its id. A program that cannot be
  /// started is not an error here: the worker ends `spawn_failed`.
  /// Throws `std::system_error` for a bad spec (empty argv, negative
  /// duration, invalid or duplicate id, bad signal) or after shutdown.
  std::string submit(WorkerSpec spec) {
    return submit_impl(std::move(spec), nullptr);
  }

  /// Non-throwing form: on a bad spec sets `ec` and returns an empty id.
  std::string submit(WorkerSpec spec, std::error_code& ec) {
    ec.clear();
    return submit_impl(std::move(spec), &ec);
  }

  /// Stops one worker: a pending one ends `cancelled` at once, a running one
  /// gets the stop sequence and ends `cancelled`. A finished one is left as
  /// it is. Throws for an unknown id.
  void cancel(const std::string& id) { cancel_impl(id, nullptr); }

  /// Non-throwing form (`errc::unknown_worker`).
  void cancel(const std::string& id, std::error_code& ec) {
    ec.clear();
    cancel_impl(id, &ec);
  }

  /// Stops accepting work, cancels pending workers and begins the stop
  /// sequence for every running one; returns at once. Drive `poll()` (or call
  /// `wait_all()`) to finish it.
  void begin_shutdown() { begin_shutdown(std::nullopt); }

  /// `begin_shutdown()` with every running worker's grace period replaced
  /// by `grace` (as `jobwarden stop --grace` asks).
  void begin_shutdown(std::optional<std::chrono::milliseconds> grace) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      begin_shutdown_locked(s, grace);
    }
    s.watcher.wake();
  }

  /// Whether a stop was requested through the job directory
  /// (`jobwarden stop`); the supervisor then shut down by itself.
  bool stop_requested() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.stop_requested;
  }

  /// Declares that no more work will be submitted: once every worker is
  /// terminal, the job's final state is written (`succeeded`, `failed`,
  /// `cancelled`...). Running and pending workers carry on. Returns at once.
  void finish() {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.accepting = false;
      s.job_dirty = true;
    }
    s.watcher.wake();
  }

  /// What the supervisor found of an earlier supervisor of this job that had
  /// died: the workers it stopped and marked lost (empty for a new job).
  const RecoveryReport& recovery_report() const { return state().recovery; }

  /// The job's directory (`<root>/<job_id>`), empty without a root.
  std::string job_dir() const {
    const State& s = state();
    return s.recorder ? s.recorder->layout().job_dir() : std::string{};
  }

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
    State& s = state();
    std::lock_guard<std::mutex> lock(s.aggregator_mutex);
    if (!s.recorder) {
      ec = make_error_code(errc::invalid_argument);
      return {};
    }
    if (!s.aggregator) s.aggregator.emplace(s.options.root, s.options.status_options);
    return s.aggregator->read(s.options.job_id, ec);
  }

  /// How many writes of the job directory failed (ENOSPC, EIO...), and the
  /// last such error and file. Failed writes never stop the supervisor; the
  /// next write of the same file repairs it.
  std::uint64_t status_write_failures() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.status_write_failures;
  }

  /// The last failed write of the job directory: its error and path.
  std::pair<std::error_code, std::string> last_status_error() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return {s.last_status_error, s.last_status_error_path};
  }

  /// `begin_shutdown()`, then waits until every worker is reaped.
  void shutdown() {
    begin_shutdown();
    wait_all();
  }

  /// Does whatever is ready — reaps exited workers, enforces deadlines, starts
  /// queued workers, runs event handlers — and returns at once. Returns the
  /// number of events delivered. Handlers run in two batches: first exits,
  /// stops, kills and restarts (as soon as they are known: before the
  /// zombies are reaped, their cgroups checked or any new worker started),
  /// then the starts this call made. A worker's record in the job directory
  /// is written before its event is delivered.
  std::size_t poll() {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    std::vector<WorkerEvent> events;
    std::vector<Record*> to_launch;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      auto ready = s.watcher.collect();
      if (ready.check_all || !s.watcher.uses_pidfd()) {
        for (Record* record : running_records(s)) check_exit(s, *record);
      } else {
        for (void* token : ready.exited) check_exit(s, *static_cast<Record*>(token));
      }
      pump_outputs(s, ready.readable);
      if (ready.directory_changed || s.stop_request_unchecked ||
          (!s.watches_stop_request && s.next_job_refresh && *s.next_job_refresh <= s.now())) {
        check_stop_request(s);
      }
      enforce_deadlines(s);
      events.swap(s.events);
    }
    // Exits first: the host learns of them before any cleanup or new start.
    std::size_t delivered;
    try {
      delivered = deliver(s, events);
    } catch (...) {
      // The rest of this poll (starts, records, the timer) is left to the
      // next one: make sure the host comes back for it.
      std::lock_guard<std::mutex> lock(s.mutex);
      settle_exits(s);
      s.watcher.wake();
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      settle_exits(s);
      s.cgroups.collect_garbage();
      to_launch = take_launchable(s);
    }
    for (Record* record : to_launch) launch(s, *record);
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      flush_job(s);
      arm_timer(s);
      events.clear();
      events.swap(s.events);
    }
    return delivered + deliver(s, events);
  }

  /// A descriptor that becomes readable when `poll()` has work. On Linux it
  /// also covers deadlines; elsewhere wait at most `next_timeout()` too.
  int event_fd() const { return state().watcher.fd(); }

  /// How long the host may sleep before `poll()` has deadline work to do;
  /// `std::nullopt` when no deadline is pending (zero: call `poll()` now).
  std::optional<std::chrono::milliseconds> next_timeout() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::optional<std::chrono::milliseconds> wait;
    if (auto deadline = earliest_deadline(s)) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - s.now());
      wait = std::max(left, std::chrono::milliseconds(0));
    }
    if (s.active_pumps > 0 && !s.watcher.multiplexes_readers()) {
      // No wake-up for capped logs on the portable path: pump them often.
      constexpr std::chrono::milliseconds pump_interval{20};
      wait = wait ? std::min(*wait, pump_interval) : pump_interval;
    }
    return wait;
  }

  /// Registers a handler for worker events; handlers run inside `poll()`.
  void on_event(event_handler handler) {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    s.handlers.push_back(std::move(handler));
  }

  /// Blocks until worker `id` is terminal or `timeout` passes (none: no
  /// limit). Returns whether it is terminal. Throws for an unknown id.
  bool wait(const std::string& id,
            std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    info(id);  // throws for an unknown id
    return wait_until_true([&] { return is_terminal(info(id).state); }, timeout);
  }

  /// Blocks until every worker is terminal or `timeout` passes. Returns
  /// whether every worker is terminal.
  bool wait_all(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    return wait_until_true([&] { return active_count() == 0; }, timeout);
  }

  /// A snapshot of worker `id`. Throws `std::system_error` for an unknown id.
  WorkerInfo info(const std::string& id) const {
    std::error_code ec;
    auto result = info_impl(id, &ec);
    if (ec) detail::throw_error(ec, "unknown worker " + detail::quote_id(id));
    return result;
  }

  /// Non-throwing form (`errc::unknown_worker`, empty info).
  WorkerInfo info(const std::string& id, std::error_code& ec) const {
    ec.clear();
    return info_impl(id, &ec);
  }

  /// Snapshots of every worker, in submission order.
  std::vector<WorkerInfo> workers() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::vector<WorkerInfo> out;
    out.reserve(s.order.size());
    for (const Record* record : s.order) out.push_back(record->info);
    return out;
  }

  /// Whether workers run in their own cgroups (escapee-proof stopping).
  bool cgroups_active() const { return state().cgroups.active(); }

  /// Why workers run without cgroups (empty when they have them).
  const std::string& cgroups_unavailable_reason() const { return state().cgroups_unavailable; }

  /// Whether the orphan guard runs (see `SupervisorOptions::orphan_guard`).
  bool guard_active() const { return state().sentinel.active(); }

  /// Workers running now (started, not yet reaped).
  std::size_t running_count() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.running;
  }

  /// Workers not yet terminal (pending or running).
  std::size_t active_count() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.active;
  }

 private:
  struct Record {
    WorkerSpec spec;
    WorkerInfo info;
    LaunchContext context;
    long cgroup_serial = -1;
    long guard_slot = -1;  // the worker's slot in the orphan guard's table
    int pidfd = -1;
    std::unique_ptr<detail::OutputPump> pumps[2];  // capped stdout, stderr
    bool unsaved = false;  // its last process.json write failed
    bool launching = false;  // reserved a slot; spawn in progress outside the lock
    bool kill_sent = false;  // the grace period ended and SIGKILL went out
    std::optional<WorkerState> stop_reason;  // why we began stopping it
    std::optional<time_point> deadline;      // timeout
    std::optional<time_point> kill_at;       // end of the grace period
    std::optional<time_point> restart_at;    // a restart is scheduled for then
    std::optional<time_point> stall_check_at;  // when to look at its heartbeat next
    std::deque<time_point> restart_times;    // recent restarts, for the rate limit
  };

  /// A worker whose exit was noted but whose zombie and pidfd wait for `settle_exits`.
  struct Exited {
    int zombie;  ///< pid to reap (-1: nothing to reap)
    int pidfd;   ///< to close (-1: none)
    long guard_slot;  ///< to take off the guard's list (-1: not on it)

    /// Closes the pidfd and reaps the zombie.
    void collect() const {
      if (pidfd >= 0) ::close(pidfd);
      detail::ExitStatus ignored;
      if (zombie > 0) detail::reap(zombie, ignored);
    }
  };

  struct State {
    SupervisorOptions options;
    std::function<time_point()> now = [] { return Clock::now(); };
    mutable std::mutex mutex;  // records, queue, counters, events
    std::recursive_mutex poll_mutex;  // one poll at a time (handlers may re-enter); guards handlers
    std::map<std::string, std::unique_ptr<Record>> records;
    std::vector<Record*> order;
    std::deque<Record*> queue;
    std::vector<WorkerEvent> events;
    std::vector<Exited> exited;  // see settle_exits
    std::vector<event_handler> handlers;
    detail::ExitWatcher watcher;
    detail::CgroupTree cgroups;
    std::string cgroups_unavailable;  // why workers run without cgroups
    detail::Sentinel sentinel;  // declared after the records: stops before they go
    std::size_t running = 0;  // launching or running
    std::size_t active = 0;   // not terminal
    std::size_t next_auto_id = 1;
    std::vector<Record*> restarting;  // pending workers waiting out a backoff
    std::vector<Record*> live;        // running workers whose process is not yet reaped
    std::size_t active_pumps = 0;     // capped logs being moved
    std::array<std::size_t, all_worker_states.size()> counts{};  // workers per state
    std::optional<detail::JobRecorder> recorder;  // the job directory, when there is a root
    std::optional<StatusAggregator<Progress>> aggregator;  // for status(); made on first use
    std::mutex aggregator_mutex;  // reading never holds up poll()
    detail::RecoveryReport recovery;  // what was found of an earlier, dead supervisor
    bool job_dirty = false;       // job.json is behind the workers' states
    std::vector<Record*> unsaved;  // process records to write again
    bool stop_requested = false;  // stop.request was seen
    bool watches_stop_request = false;  // inotify wakes us; else looked at each refresh
    bool stop_request_unchecked = false;  // look at the next poll (first poll, or a failed read)
    bool job_closed = false;      // the final job state is written
    std::optional<time_point> next_job_refresh;
    time_point opened_at{};  // when the job directory was opened: the heartbeat follows its age
    std::optional<time_point> armed_deadline;  // what the timer was last armed for
    std::optional<time_point> last_job_write;  // when job.json was last written by flush_job
    JobState last_job_state = JobState::pending;
    std::uint64_t status_write_failures = 0;
    std::error_code last_status_error;
    std::string last_status_error_path;
    std::mt19937_64 random{std::random_device{}()};  // backoff jitter
    bool accepting = true;      // submit() takes work (false after finish() or shutdown)
    bool shutting_down = false;  // nothing new starts or restarts
    int null_in = -1;
    int null_out = -1;

    ~State() {
      // A handler that threw out of the last poll() may have left some.
      for (const Exited& done : exited) done.collect();
      if (null_in >= 0) ::close(null_in);
      if (null_out >= 0) ::close(null_out);
    }
  };

  State& state() { return *state_; }
  const State& state() const { return *state_; }

  void init(SupervisorOptions options, std::error_code* ec, bool throwing) {
    if (!is_valid_id(options.job_id)) {
      if (throwing) validate_id(options.job_id, "job id");
      *ec = make_error_code(errc::invalid_id);
      return;
    }
    if (options.max_concurrency == 0) {
      options.max_concurrency = std::max(1U, std::thread::hardware_concurrency());
    }
    try {
      state_ = std::make_unique<State>();
    } catch (const std::system_error& e) {
      if (throwing) throw;
      *ec = e.code();
      return;
    }
    if (!options.launcher) options.launcher = std::make_shared<LocalLauncher>();
    state_->options = std::move(options);
    if (state_->options.use_cgroups) {
      state_->cgroups.open(state_->cgroups_unavailable);
    } else {
      state_->cgroups_unavailable = "turned off (SupervisorOptions::use_cgroups)";
    }
    if (state_->options.orphan_guard) {
      state_->sentinel.start(state_->cgroups.parent());  // best effort: see guard_active()
    }
    if (!state_->options.root.empty()) {
      detail::JobRecorderOptions recorder_options;
      recorder_options.durable = state_->options.durable;
      recorder_options.replace_finished = state_->options.replace_finished_job;
      recorder_options.supervisor_cgroup = state_->cgroups.parent();  // for recovery after our death
      detail::JobLayout layout{state_->options.root, state_->options.job_id};
      std::error_code recovery_error;
      state_->recovery = detail::recover_abandoned_job(layout, state_->options.recovery_grace,
                                                       recovery_error);
      // unknown_job: a new job. job_locked: open() below says so. Anything
      // else (a corrupt job.json...) is for open() to judge as well.
      state_->recorder.emplace(layout, recorder_options);
      std::error_code open_error;
      state_->recorder->open(open_error);
      if (open_error) {
        std::string what = "cannot open job \"" + state_->options.job_id + "\" under " +
                           state_->options.root;
        if (open_error == errc::job_locked) what += ": it already has a live supervisor";
        if (open_error == errc::job_exists) what += ": a finished job with that id exists";
        state_.reset();
        if (throwing) detail::throw_error(open_error, what);
        *ec = open_error;
        return;
      }
      state_->opened_at = state_->now();
      if (state_->options.job_refresh_interval.count() > 0) {
        state_->next_job_refresh = state_->now() + heartbeat_interval(*state_, state_->now());
      }
      // A stop request is never removed here: once open() has taken the lock
      // and written job.json, `jobwarden stop` takes this supervisor for the
      // job's, and what it writes is for us (stale requests are removed by
      // recovery and when a finished job id is reused). One written before
      // the watch below exists raises no event: the first poll() looks.
      state_->watches_stop_request =
          state_->watcher.watch_directory(state_->recorder->layout().job_dir(),
                                          detail::stop_request_file_name);
      state_->stop_request_unchecked = true;
      state_->watcher.wake();
    }
    state_->null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    state_->null_out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (state_->null_in < 0 || state_->null_out < 0) {
      std::error_code err(errno, std::system_category());
      state_.reset();
      if (throwing) detail::throw_error(err, "jobwarden: cannot open /dev/null");
      *ec = err;
    }
  }

  void destroy() {
    if (!state_) return;
    try {
      shutdown();
    } catch (...) {
      // A destructor must not throw; shutdown only throws on allocation failure.
    }
    state_.reset();
  }

  std::string submit_impl(WorkerSpec spec, std::error_code* ec) {
    State& s = state();
    if (spec.argv.empty() || spec.argv[0].empty()) {
      detail::report(ec, make_error_code(errc::empty_argv),
                     "invalid worker spec: argv is empty (nothing to run)");
      return {};
    }
    if (spec.timeout.count() < 0 || spec.grace_period.count() < 0) {
      detail::report(ec, make_error_code(errc::invalid_duration),
                     "invalid worker spec: timeout and grace_period must not be negative");
      return {};
    }
    if (spec.stop_signal <= 0 || spec.stop_signal >= NSIG) {
      detail::report(ec, make_error_code(errc::invalid_signal),
                     "invalid worker spec: stop_signal " + std::to_string(spec.stop_signal) +
                         " is not a signal");
      return {};
    }
    if (spec.stall_timeout.count() < 0) {
      detail::report(ec, make_error_code(errc::invalid_duration),
                     "invalid worker spec: stall_timeout must not be negative");
      return {};
    }
    if (spec.stall_timeout.count() > 0 && s.options.root.empty()) {
      detail::report(ec, make_error_code(errc::invalid_argument),
                     "invalid worker spec: stall detection needs a job directory "
                     "(SupervisorOptions::root), where the worker's heartbeat is kept");
      return {};
    }
    for (const auto& [key, value] : spec.env) {
      if (key.empty() || key.find('=') != std::string::npos ||
          key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
        detail::report(ec, make_error_code(errc::invalid_argument),
                       "invalid worker spec: environment variable name " +
                           detail::quote_id(key) + " is empty or contains '=' or NUL");
        return {};
      }
    }
    Record* record = nullptr;
    std::vector<Record*> launchable;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.accepting) {
        detail::report(ec, make_error_code(errc::supervisor_shut_down),
                       "cannot submit to job \"" + s.options.job_id + "\": it is shut down");
        return {};
      }
      if (spec.id.empty()) {
        do {
          spec.id = std::to_string(s.next_auto_id++);
        } while (s.records.count(spec.id) != 0);
      } else if (!is_valid_id(spec.id)) {
        if (ec != nullptr) {
          *ec = make_error_code(errc::invalid_id);
          return {};
        }
        validate_id(spec.id, "worker id");
      } else if (s.records.count(spec.id) != 0) {
        detail::report(ec, make_error_code(errc::duplicate_id),
                       "duplicate worker id " + detail::quote_id(spec.id) + " in job \"" +
                           s.options.job_id + "\"");
        return {};
      }
      auto owned = std::make_unique<Record>();
      record = owned.get();
      record->info.id = spec.id;
      record->info.argv = spec.argv;
      record->spec = std::move(spec);
      s.records.emplace(record->info.id, std::move(owned));
      s.order.push_back(record);
      ++s.active;
      ++s.counts[static_cast<std::size_t>(WorkerState::pending)];
      if (s.recorder) {
        std::error_code dir_error;
        s.recorder->prepare_worker(record->info.id, dir_error);
        if (dir_error) {
          note_status_error(s, dir_error, s.recorder->layout().worker_dir(record->info.id));
        }
      }
      s.queue.push_back(record);
      launchable = take_launchable(s);
      // A worker that starts right now is recorded as running in a moment;
      // a "pending" record first would cost a file creation for nothing.
      if (std::find(launchable.begin(), launchable.end(), record) == launchable.end()) {
        record_worker(s, *record);
      } else {
        s.job_dirty = true;
      }
    }
    // The queue may hand out others too (restarts that came due): start
    // every worker that got a slot, not only this one.
    for (Record* ready : launchable) launch(s, *ready);
    if (!launchable.empty()) s.watcher.wake();  // events wait for the host's poll()
    return record->info.id;
  }

  void cancel_impl(const std::string& id, std::error_code* ec) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      auto it = s.records.find(id);
      if (it == s.records.end()) {
        detail::report(ec, make_error_code(errc::unknown_worker),
                       "cannot cancel unknown worker " + detail::quote_id(id) + " in job \"" +
                           s.options.job_id + "\"");
        return;
      }
      Record& record = *it->second;
      if (record.info.state == WorkerState::pending && !record.launching) {
        s.queue.erase(std::remove(s.queue.begin(), s.queue.end(), &record), s.queue.end());
        s.restarting.erase(std::remove(s.restarting.begin(), s.restarting.end(), &record),
                           s.restarting.end());
        record.restart_at.reset();
        finish_unstarted(s, record, WorkerState::cancelled, "cancelled before it started");
      } else if (record.launching) {
        record.stop_reason = WorkerState::cancelled;  // launch() begins the stop when done
      } else if (record.info.state == WorkerState::running) {
        begin_stop(s, record, WorkerState::cancelled);
        arm_timer(s);
      }
    }
    s.watcher.wake();
  }

  WorkerInfo info_impl(const std::string& id, std::error_code* ec) const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.records.find(id);
    if (it == s.records.end()) {
      *ec = make_error_code(errc::unknown_worker);
      return {};
    }
    return it->second->info;
  }

  // ---- under s.mutex -------------------------------------------------------

  /// The workers whose process runs, as a copy (callers reap while they walk).
  /// Kept as a list so that poll() costs what runs, not what ever ran.
  std::vector<Record*> running_records(State& s) { return s.live; }

  /// Pops queued workers while slots are free and reserves a slot for each.
  std::vector<Record*> take_launchable(State& s) {
    std::vector<Record*> out;
    if (!s.restarting.empty()) {
      auto now = s.now();
      // Restarted workers go ahead of never-started ones: they were submitted first.
      for (auto it = s.restarting.rbegin(); it != s.restarting.rend(); ++it) {
        if (*(*it)->restart_at <= now) s.queue.push_front(*it);
      }
      s.restarting.erase(std::remove_if(s.restarting.begin(), s.restarting.end(),
                                        [&](Record* r) {
                                          if (*r->restart_at > now) return false;
                                          r->restart_at.reset();
                                          return true;
                                        }),
                         s.restarting.end());
    }
    while (!s.queue.empty() && s.running < s.options.max_concurrency && !s.shutting_down) {
      Record* record = s.queue.front();
      s.queue.pop_front();
      record->launching = true;
      ++s.running;
      out.push_back(record);
    }
    return out;
  }

  /// Runs the handlers for `events`, under the poll lock but not `s.mutex`
  /// (a handler may call in).
  std::size_t deliver(State& s, const std::vector<WorkerEvent>& events) {
    if (events.empty()) return 0;
    auto handlers = s.handlers;  // a handler may register another
    for (const auto& event : events) {
      for (const auto& handler : handlers) handler(event);
    }
    return events.size();
  }

  void emit(State& s, EventKind kind, const Record& record) {
    s.events.push_back(WorkerEvent{kind, record.info});
  }

  /// The one place a worker's state changes (transitions checked by
  /// `is_allowed_transition`); every change reaches the job directory.
  void set_state(State& s, Record& record, WorkerState next) {
    if (!is_allowed_transition(record.info.state, next)) return;
    bool was_active = !is_terminal(record.info.state);
    --s.counts[static_cast<std::size_t>(record.info.state)];
    ++s.counts[static_cast<std::size_t>(next)];
    record.info.state = next;
    if (was_active && is_terminal(next)) --s.active;
    record_worker(s, record);
  }

  /// Writes the worker's process record; a failed write (ENOSPC, EIO) is
  /// counted and kept for `status_errors()`, never fatal: the next write of
  /// the same file repairs it.
  void record_worker(State& s, Record& record) {
    if (!s.recorder) return;
    std::error_code ec;
    s.recorder->write_process(record.info, ec);
    if (ec) {
      note_status_error(s, ec, s.recorder->layout().process_file(record.info.id));
      if (!record.unsaved) s.unsaved.push_back(&record);  // retried at every poll
      record.unsaved = true;
    }
    s.job_dirty = true;
  }

  /// Retries the process records whose last write failed (a full disk that
  /// has room again): no worker's record stays behind for good.
  void retry_unsaved(State& s) {
    if (s.unsaved.empty()) return;
    std::vector<Record*> failed;
    failed.swap(s.unsaved);
    for (Record* record : failed) {
      record->unsaved = false;
      std::error_code ec;
      s.recorder->write_process(record->info, ec);
      if (ec) {
        record->unsaved = true;
        s.unsaved.push_back(record);
      }
    }
  }

  void note_status_error(State& s, std::error_code ec, std::string path) {
    ++s.status_write_failures;
    s.last_status_error = ec;
    s.last_status_error_path = std::move(path);
  }

  JobSummary summary_of(const State& s) const {
    JobSummary summary;
    for (WorkerState state : all_worker_states) {
      std::size_t n = s.counts[static_cast<std::size_t>(state)];
      summary.total += n;
      if (state == WorkerState::pending) summary.pending += n;
      else if (state == WorkerState::running) summary.running += n;
      else if (state == WorkerState::succeeded) summary.succeeded += n;
      else summary.failed += n;
      if (state == WorkerState::cancelled) summary.cancelled += n;
      if (state == WorkerState::lost) summary.lost += n;
    }
    summary.done = summary.succeeded + summary.failed;
    return summary;
  }

  /// Time to the next job.json heartbeat: half the job's age, at least
  /// `job_summary_interval` (250 ms if that is zero), at most `job_refresh_interval`.
  static std::chrono::milliseconds heartbeat_interval(const State& s, time_point now) {
    using std::chrono::milliseconds;
    const milliseconds longest = s.options.job_refresh_interval;
    const milliseconds shortest = std::min(
        longest, s.options.job_summary_interval.count() > 0 ? s.options.job_summary_interval : milliseconds(250));
    const milliseconds half_age = std::chrono::duration_cast<milliseconds>(now - s.opened_at) / 2;
    return std::clamp(half_age, shortest, longest);
  }

  /// Brings job.json up to date: `pending` until a worker starts, `running`
  /// while the supervisor may still get work, and once it accepts no more and
  /// every worker is terminal, the final state (written once).
  void flush_job(State& s) {
    if (!s.recorder) return;
    retry_unsaved(s);
    if (s.job_closed) return;
    auto now = s.now();
    if (s.next_job_refresh && *s.next_job_refresh <= now) s.job_dirty = true;
    if (!s.job_dirty) return;
    JobSummary summary = summary_of(s);
    JobState state = JobState::running;
    bool final = !s.accepting && s.active == 0;
    if (final) {
      state = job_state_from_workers(summary);
      if (state == JobState::pending) state = JobState::cancelled;  // nothing ever ran
    } else if (summary.pending == summary.total && s.running == 0) {
      state = JobState::pending;
    }
    // Counts alone: at most one write per job_summary_interval (the timer
    // brings the held-back one).
    const auto interval = s.options.job_summary_interval;
    if (!final && s.last_job_write && s.last_job_state == state && interval.count() > 0 &&
        now < *s.last_job_write + interval) {
      const auto due = *s.last_job_write + interval;
      if (!s.next_job_refresh || due < *s.next_job_refresh) s.next_job_refresh = due;
      return;
    }
    std::error_code ec;
    s.recorder->write_job(state, summary, ec);
    if (ec) {
      note_status_error(s, ec, s.recorder->layout().job_file());
      return;  // still dirty: retried at the next poll
    }
    s.last_job_write = now;
    s.last_job_state = state;
    s.job_dirty = false;
    s.job_closed = final;
    if (s.options.job_refresh_interval.count() > 0 && !final) {
      s.next_job_refresh = now + heartbeat_interval(s, now);
    } else {
      s.next_job_refresh.reset();
    }
  }

  void finish_unstarted(State& s, Record& record, WorkerState final_state, std::string error) {
    record.info.error = std::move(error);
    record.info.ended_at = std::chrono::system_clock::now();
    set_state(s, record, final_state);
    emit(s, EventKind::exited, record);
  }

  /// Begins the stop sequence: the stop signal to the whole group, then
  /// SIGKILL when the grace period ends (see `enforce_deadlines`).
  void begin_stop(State& s, Record& record, WorkerState reason) {
    if (record.kill_at || record.info.state != WorkerState::running) return;
    if (!record.stop_reason) record.stop_reason = reason;
    record.deadline.reset();
    if (record.info.error.empty()) {
      record.info.error =
          reason == WorkerState::timed_out ? "timed out after " + format_duration(record.spec.timeout)
          : reason == WorkerState::stalled
              ? "stalled: no report for " + format_duration(record.spec.stall_timeout)
              : "cancelled";
    }
    auto grace = record.spec.grace_period;
    Launcher& launcher = *s.options.launcher;
    if (grace.count() == 0 || record.spec.stop_signal == SIGKILL) {
      launcher.signal_tree(record.info, SIGKILL, record.context);
      record.kill_at = s.now();
      record.kill_sent = true;
    } else {
      launcher.signal_tree(record.info, record.spec.stop_signal, record.context);
      // SIGCONT too: a stopped (SIGSTOP) worker could not act on the signal.
      launcher.signal_tree(record.info, SIGCONT, record.context);
      record.kill_at = s.now() + grace;
    }
    emit(s, reason == WorkerState::timed_out ? EventKind::timed_out : EventKind::stop_requested,
         record);
  }

  void enforce_deadlines(State& s) {
    auto now = s.now();
    for (Record* record : running_records(s)) {
      if (record->deadline && *record->deadline <= now) {
        begin_stop(s, *record, WorkerState::timed_out);
      } else if (record->stall_check_at && *record->stall_check_at <= now && !record->kill_at) {
        check_heartbeat(s, *record, now);
      } else if (record->kill_at && *record->kill_at <= now && !record->kill_sent) {
        s.options.launcher->signal_tree(record->info, SIGKILL, record->context);
        record->kill_sent = true;
        emit(s, EventKind::killed, *record);
      }
    }
  }

  /// Stops a worker whose last report is older than its stall limit; else
  /// schedules the next look for when it would become stale.
  void check_heartbeat(State& s, Record& record, time_point now) {
    auto last = record.info.started_at.value_or(std::chrono::system_clock::now());
    struct stat st;
    if (::stat(s.recorder->layout().status_file(record.info.id).c_str(), &st) == 0) {
      auto modified = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
      last = std::max(last, modified);
    }
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now() - last);
    if (age >= record.spec.stall_timeout) {
      record.stall_check_at.reset();
      begin_stop(s, record, WorkerState::stalled);
    } else {
      record.stall_check_at = now + (record.spec.stall_timeout - age);
    }
  }

  std::optional<time_point> earliest_deadline(const State& s) const {
    std::optional<time_point> earliest = s.job_closed ? std::nullopt : s.next_job_refresh;
    for (const Record* record : s.live) {
      std::optional<time_point> t = record->deadline;
      if (record->stall_check_at && (!t || *record->stall_check_at < *t)) t = record->stall_check_at;
      if (record->kill_at) t = record->kill_sent ? std::nullopt : record->kill_at;
      if (t && (!earliest || *t < *earliest)) earliest = t;
    }
    for (const Record* record : s.restarting) {
      if (!earliest || *record->restart_at < *earliest) earliest = record->restart_at;
    }
    return earliest;
  }

  void arm_timer(State& s) {
    auto deadline = earliest_deadline(s);
    if (!deadline) {
      s.watcher.set_timer(std::nullopt);
      s.armed_deadline.reset();
      return;
    }
    auto now = s.now();
    // Still armed for the same future moment: nothing to change.
    if (s.armed_deadline == deadline && *deadline > now) return;
    s.watcher.set_timer(std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - now));
    s.armed_deadline = deadline;
  }

  /// Collects the zombies `check_exit` left, closes their pidfds, checks
  /// their cgroups for escapees, and only then takes them off the guard's list.
  void settle_exits(State& s) {
    for (const Exited& done : s.exited) {
      s.watcher.remove(done.pidfd);
      done.collect();
    }
    s.cgroups.settle();
    for (const Exited& done : s.exited) s.sentinel.remove(done.guard_slot);
    s.exited.clear();
  }

  /// Takes note of `record`'s exit if its process has exited: kills what is
  /// left of its group while the zombie still pins the group id.
  void check_exit(State& s, Record& record) {
    if (record.info.state != WorkerState::running || record.launching) return;
    detail::ExitStatus status;
    bool reaped;  // ours, and exited (false: someone else reaped it)
#if JOBWARDEN_LINUX_FAST_PATH
    // The status and usage come without reaping: the zombie is collected
    // (and its pidfd closed, its cgroup checked) by `settle_exits`, after the
    // host has heard of the exit.
    int outcome = detail::peek_exit(record.info.pid, status);
    if (outcome == 0) return;
    reaped = outcome > 0;
    // Whatever it left in its group dies while the zombie pins the group id
    // (a worker may not be in its cgroup: a join the kernel refused, or a
    // process moved out); the cgroup check in settle_exits catches escapees.
    if (reaped) detail::signal_group(record.info.pid, SIGKILL);
    s.exited.push_back({reaped ? record.info.pid : -1, record.pidfd, record.guard_slot});
#else
    if (!detail::has_exited(record.info.pid)) return;
    detail::signal_group(record.info.pid, SIGKILL);
    reaped = detail::reap(record.info.pid, status);
    s.exited.push_back({-1, record.pidfd, record.guard_slot});
#endif
    s.live.erase(std::remove(s.live.begin(), s.live.end(), &record), s.live.end());
    record.pidfd = -1;
    record.guard_slot = -1;
    --s.running;
    record.info.ended_at = std::chrono::system_clock::now();
    record.info.usage = ResourceUsage{status.user_cpu, status.system_cpu, status.max_rss_kib};
    finish_outputs(s, record);  // a capped log holds everything before a launcher reads it
    auto interpreted = s.options.launcher->interpret_exit(record.info, status, record.context);
    record.info.exit_code = status.exit_code;
    record.info.signal = status.signal;
    record.info.core_dumped = status.core_dumped;
    WorkerState final_state;
    if (record.stop_reason) {
      final_state = *record.stop_reason;
    } else if (!reaped) {
      final_state = WorkerState::lost;
      record.info.error =
          "the process was reaped by someone else (a waitpid(-1) in the host, or SIGCHLD ignored "
          "since its start?)";
    } else if (interpreted) {
      final_state = *interpreted;
    } else if (status.exit_code) {
      final_state = *status.exit_code == 0 ? WorkerState::succeeded : WorkerState::failed;
    } else {
      final_state = WorkerState::crashed;
    }
    s.options.launcher->release(record.info, record.context);
    // Escapees of a finished worker die too, once the events are delivered
    // (reading cgroup.events costs more than everything else here).
    s.cgroups.retire_later(record.cgroup_serial);
    record.cgroup_serial = -1;
    record.context.cgroup_dir.clear();
    if (maybe_restart(s, record, final_state)) return;
    set_state(s, record, final_state);
    emit(s, EventKind::exited, record);
  }

  void begin_shutdown_locked(State& s, std::optional<std::chrono::milliseconds> grace) {
    s.accepting = false;
    s.shutting_down = true;
    for (Record* record : s.order) {
      if (record->info.state == WorkerState::pending && !record->launching) {
        finish_unstarted(s, *record, WorkerState::cancelled, "cancelled before it started");
      } else if (record->info.state == WorkerState::running || record->launching) {
        if (grace) record->spec.grace_period = *grace;
        // A second, shorter request (a second Ctrl-C) cuts a grace period short.
        if (grace && record->kill_at && !record->kill_sent && s.now() + *grace < *record->kill_at) {
          record->kill_at = s.now() + *grace;
        }
        if (record->launching) {
          record->stop_reason = WorkerState::cancelled;
        } else {
          begin_stop(s, *record, WorkerState::cancelled);
        }
      }
    }
    s.queue.clear();
    for (Record* record : s.restarting) record->restart_at.reset();
    s.restarting.clear();
    s.job_dirty = true;
    arm_timer(s);
  }

  /// Honours `<job>/stop.request` (written by `jobwarden stop`): shuts down,
  /// with the grace period the request names, if any, and removes the request.
  /// Read like every file of the job directory: relative to the job's
  /// descriptor, never through a symlink, never a FIFO or other special file
  /// (which cannot block this call: `O_NONBLOCK`), at most
  /// `max_stop_request_size` bytes. A symlink or special file named
  /// `stop.request` is not a request and is ignored; a regular file is one
  /// even when its content is not valid JSON (the default grace then).
  void check_stop_request(State& s) {
    s.stop_request_unchecked = false;
    if (!s.recorder || s.stop_requested) return;
    std::string text;
    const int job_fd = s.recorder->job_dir_fd();
    std::error_code ec =
        detail::read_file_at(job_fd, detail::stop_request_file_name, text, nullptr, detail::max_stop_request_size);
    if (ec == errc::oversized_file) {
      text.clear();
    } else if (ec == std::errc::no_such_file_or_directory || ec == std::errc::too_many_symbolic_link_levels ||
               ec == errc::not_regular_file) {
      return;
    } else if (ec) {
      // EMFILE, EIO...: the file may well be a request. Look again at the
      // next poll, which the job.json refresh guarantees even when idle.
      s.stop_request_unchecked = true;
      return;
    }
    s.stop_requested = true;
    ::unlinkat(job_fd, detail::stop_request_file_name, 0);  // honoured: not for a later run
    std::optional<std::chrono::milliseconds> grace;
    auto request = nlohmann::json::parse(text, nullptr, false);
    if (request.is_object() && request.contains("grace_ms") && request["grace_ms"].is_number_unsigned()) {
      grace = std::chrono::milliseconds(request["grace_ms"].template get<std::int64_t>());
    }
    begin_shutdown_locked(s, grace);
  }

  /// Applies the restart policy to a worker that just ended with `outcome`.
  /// Returns true when a restart was scheduled (the worker is pending again);
  /// otherwise may adjust `outcome` and the error (rate limit, permanent exit).
  bool maybe_restart(State& s, Record& record, WorkerState& outcome) {
    const RestartSpec& policy = record.spec.restart;
    if (policy.policy == RestartPolicy::never || s.shutting_down) return false;
    if (outcome == WorkerState::cancelled || outcome == WorkerState::lost) return false;
    if (policy.policy == RestartPolicy::on_failure && outcome == WorkerState::succeeded) return false;
    const auto& permanent = policy.permanent_failure_exit_codes;
    if (record.info.exit_code && !record.stop_reason &&
        std::find(permanent.begin(), permanent.end(), *record.info.exit_code) != permanent.end()) {
      record.info.error = "exit code " + std::to_string(*record.info.exit_code) +
                          " means permanent failure: not restarted";
      return false;
    }
    int restarts_done = record.info.attempt - 1;
    if (restarts_done >= policy.max_restarts) {
      if (outcome != WorkerState::succeeded) {
        record.info.error = append_note(record.info.error, "gave up after " +
                                                               std::to_string(restarts_done) +
                                                               " restarts");
      }
      return false;
    }
    auto now = s.now();
    while (!record.restart_times.empty() && now - record.restart_times.front() > policy.burst_window) {
      record.restart_times.pop_front();
    }
    if (static_cast<int>(record.restart_times.size()) >= policy.burst_limit) {
      outcome = WorkerState::failed;
      record.info.error = append_note(
          record.info.error, "restart rate limit: " + std::to_string(record.restart_times.size()) +
                                 " restarts within " + format_duration(policy.burst_window));
      return false;
    }
    record.restart_times.push_back(now);
    double delay = static_cast<double>(policy.initial_backoff.count());
    for (int i = 0; i < restarts_done; ++i) delay *= policy.backoff_multiplier;
    delay = std::min(delay, static_cast<double>(policy.max_backoff.count()));
    if (policy.jitter > 0) {
      std::uniform_real_distribution<double> spread(1.0 - policy.jitter, 1.0 + policy.jitter);
      delay *= spread(s.random);
    }
    record.restart_at = now + std::chrono::milliseconds(static_cast<long long>(delay));
    record.stop_reason.reset();
    record.kill_at.reset();
    record.kill_sent = false;
    set_state(s, record, WorkerState::pending);
    s.restarting.push_back(&record);
    emit(s, EventKind::restarting, record);
    return true;
  }

  static std::string append_note(const std::string& error, const std::string& note) {
    return error.empty() ? note : error + "; " + note;
  }

  // ---- outside s.mutex -----------------------------------------------------

  /// Opens the descriptor a stdout/stderr spec asks for (-1: inherit).
  /// Where one of a worker's output streams goes, while it is being started.
  struct OutputTarget {
    int child_fd = -1;   // what the child gets as its fd 1 or 2 (-1: inherit); may be
                         // borrowed from the other stream's target (then neither below is set)
    int file_fd = -1;    // the log file, when one was opened
    int pipe_read = -1;  // capped logs: the supervisor's end of the pipe
    std::uint64_t limit = 0;

    /// After the spawn: the child has its copy; keep only what a pump needs.
    void release_child_side() {
      if (pipe_read >= 0) {
        ::close(child_fd);
      } else if (file_fd >= 0) {
        ::close(file_fd);
        file_fd = -1;
      }
      child_fd = -1;
    }
    /// When the worker never ran.
    void close_all() {
      for (int fd : {pipe_read, file_fd}) {
        if (fd >= 0) ::close(fd);
      }
      if (pipe_read >= 0 && child_fd >= 0) ::close(child_fd);
      pipe_read = file_fd = child_fd = -1;
    }
  };

  /// `automatic` means the worker's log file in the job directory (appended
  /// to by restarts), or the supervisor's own stream without one.
  OutputSpec resolve_output(State& s, const Record& record, const OutputSpec& spec, bool is_stdout) {
    if (spec.kind != OutputSpec::Kind::automatic || !s.recorder) return spec;
    const auto& layout = s.recorder->layout();
    OutputSpec resolved = spec;
    resolved.kind = OutputSpec::Kind::file;
    resolved.path = is_stdout ? layout.stdout_file(record.info.id) : layout.stderr_file(record.info.id);
    resolved.append = record.info.attempt > 1;
    return resolved;
  }

  /// Opens what an output spec asks for.
  bool open_output(State& s, const OutputSpec& spec, OutputTarget& target, std::string& error,
                   int& error_number) {
    auto fail = [&](const std::string& what) {
      error_number = errno;
      error = what + ": " + std::strerror(error_number);
      target.close_all();
      return false;
    };
    switch (spec.kind) {
      case OutputSpec::Kind::automatic:
      case OutputSpec::Kind::inherit: return true;
      case OutputSpec::Kind::discard: target.child_fd = s.null_out; return true;
      case OutputSpec::Kind::file: break;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append ? O_APPEND : O_TRUNC);
    target.file_fd = ::open(spec.path.c_str(), flags, 0644);
    if (target.file_fd < 0) return fail("cannot open \"" + spec.path + "\"");
    if (!spec.max_bytes) {
      target.child_fd = target.file_fd;
      return true;
    }
    if (!make_capped_pipe(target, *spec.max_bytes)) {
      return fail("cannot make a pipe for a capped log");
    }
    return true;
  }

  /// Puts a pipe between the worker and `target`'s file, moved by a pump
  /// that keeps `limit`. False (errno set) when the kernel refuses a pipe.
  static bool make_capped_pipe(OutputTarget& target, std::uint64_t limit) {
    int pipe_fds[2];
#if defined(__linux__)
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return false;
#else
    if (::pipe(pipe_fds) != 0) return false;
    ::fcntl(pipe_fds[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(pipe_fds[1], F_SETFD, FD_CLOEXEC);
#endif
    ::fcntl(pipe_fds[0], F_SETFL, ::fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
    target.pipe_read = pipe_fds[0];
    target.child_fd = pipe_fds[1];
    target.limit = limit;
    return true;
  }

  /// `cmd >f 2>&1`: when stderr's spec names the file stdout's target just
  /// opened (the same file, however the path is spelled), stderr shares that
  /// target instead of opening the file a second time — two opens would mean
  /// two file offsets, and each stream would overwrite the other. Shared, the
  /// streams go through one open file description, in the order written:
  /// uncapped, straight into the file with O_APPEND; capped, through one pipe
  /// and one pump, whose cap is the smaller of the two and whose dropped
  /// bytes are counted as stdout's. stdout's spec decides append or truncate.
  /// Returns whether stderr now shares stdout's target (false with `error`
  /// set when the pipe could not be made).
  bool share_output(const OutputSpec& stderr_spec, OutputTarget targets[2], std::string& error,
                    int& error_number) {
    OutputTarget& out = targets[0];
    if (stderr_spec.kind != OutputSpec::Kind::file || out.file_fd < 0) return false;
    struct stat opened, named;
    if (::fstat(out.file_fd, &opened) != 0 || ::stat(stderr_spec.path.c_str(), &named) != 0 ||
        opened.st_dev != named.st_dev || opened.st_ino != named.st_ino) {
      return false;
    }
    if (stderr_spec.max_bytes) {
      if (out.pipe_read >= 0) {
        out.limit = std::min(out.limit, *stderr_spec.max_bytes);
      } else if (!make_capped_pipe(out, *stderr_spec.max_bytes)) {
        error_number = errno;
        error = "cannot make a pipe for a capped log: " + std::string(std::strerror(error_number));
        out.close_all();
        return true;
      }
    } else if (out.pipe_read < 0) {
      // One description already orders the writes; O_APPEND also keeps each
      // one whole at the end where a shared offset alone may not (POSIX).
      ::fcntl(out.file_fd, F_SETFL, ::fcntl(out.file_fd, F_GETFL) | O_APPEND);
    }
    targets[1].child_fd = out.child_fd;  // borrowed: closed with stdout's target
    return true;
  }

  /// Moves capped output; on the portable path there is no per-pipe wake-up,
  /// so every poll pumps every capped log.
  void pump_outputs(State& s, const std::vector<void*>& readable) {
    if (s.active_pumps == 0) return;
    if (s.watcher.multiplexes_readers()) {
      for (void* token : readable) static_cast<detail::OutputPump*>(token)->pump();
      return;
    }
    for (Record* record : running_records(s)) {
      for (auto& pump : record->pumps) {
        if (pump) pump->pump();
      }
    }
  }

  /// A worker ended: take the rest of its capped output and record what was dropped.
  void finish_outputs(State& s, Record& record) {
    std::uint64_t* dropped[2] = {&record.info.stdout_dropped_bytes,
                                 &record.info.stderr_dropped_bytes};
    for (int i = 0; i < 2; ++i) {
      auto& pump = record.pumps[i];
      if (!pump) continue;
      s.watcher.remove(pump->read_fd());
      pump->finish();
      *dropped[i] = pump->dropped();
      pump.reset();
      --s.active_pumps;
    }
  }

  detail::SpawnPlan make_plan(State& s, Record& record, std::string& error) {
    const WorkerSpec& spec = record.spec;
    detail::SpawnPlan plan;
    // The worker's own variables, then the host's (one pass over environ, no
    // map: this runs for every spawn) except those the worker's override.
    std::map<std::string, std::string> own = spec.env;
    own["JOBWARDEN_JOB_ID"] = s.options.job_id;
    own["JOBWARDEN_WORKER_ID"] = record.info.id;
    own["JOBWARDEN_ATTEMPT"] = std::to_string(record.info.attempt);
    if (s.recorder) own["JOBWARDEN_STATUS_FILE"] = s.recorder->status_file(record.info.id);
    for (const auto& [key, value] : own) plan.env_storage.push_back(key + "=" + value);
    if (spec.inherit_env) {
      for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
        const char* eq = std::strchr(*entry, '=');
        if (eq == nullptr) continue;
        std::string key(*entry, static_cast<std::size_t>(eq - *entry));
        if (own.count(key) == 0) plan.env_storage.emplace_back(*entry);
      }
    }
    plan.argv_storage = spec.argv;
    plan.cwd = spec.cwd;
    if (!detail::features().close_range) plan.max_fd = detail::max_descriptor_bound();  // the close loop's bound
    add_limits(plan, spec.limits);
    if (!record.context.cgroup_dir.empty()) {
      plan.cgroup_dir = record.context.cgroup_dir;
    }
    s.options.launcher->prepare(plan, spec, record.context, error);
    plan.seal();
    return plan;
  }

  static void add_limits(detail::SpawnPlan& plan, const ResourceLimits& limits) {
    auto add = [&](int resource, const std::optional<std::uint64_t>& value, rlim_t extra_hard = 0) {
      if (!value) return;
      auto soft = static_cast<rlim_t>(*value);
      plan.rlimits.push_back({resource, soft, soft + extra_hard});
    };
    add(RLIMIT_AS, limits.address_space_bytes);
    add(RLIMIT_DATA, limits.data_bytes);
    if (limits.cpu_time) {
      add(RLIMIT_CPU, static_cast<std::uint64_t>(limits.cpu_time->count()), 1);
    }
    add(RLIMIT_NOFILE, limits.open_files);
    add(RLIMIT_CORE, limits.core_file_bytes);
    add(RLIMIT_FSIZE, limits.file_size_bytes);
#ifdef RLIMIT_NPROC
    add(RLIMIT_NPROC, limits.processes);
#endif
  }

  /// Whether a failed spawn may succeed if tried again (resources, not the spec).
  static bool is_transient_spawn_error(int error_number) {
    return error_number == EAGAIN || error_number == EMFILE || error_number == ENFILE ||
           error_number == ENOMEM;
  }

  /// Starts a worker that holds a reserved slot. Runs without `s.mutex` so
  /// host threads can spawn in parallel.
  void launch(State& s, Record& record) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      record.info.attempt += 1;
      if (record.info.attempt > 1) {  // a restart: the last attempt's outcome is history
        record.info.exit_code.reset();
        record.info.signal.reset();
        record.info.core_dumped = false;
        record.info.error.clear();
        record.info.ended_at.reset();
      }
      record.context.job_id = s.options.job_id;
      record.context.worker_id = record.info.id;
      record.context.attempt = record.info.attempt;
      record.context.stdout_spec = resolve_output(s, record, record.spec.stdout_spec, true);
      record.context.stderr_spec = resolve_output(s, record, record.spec.stderr_spec, false);
      record.context.cgroup_dir = s.cgroups.create(record.cgroup_serial);
    }
    std::string error;
    detail::SpawnPlan plan = make_plan(s, record, error);
    detail::SpawnOutcome outcome;
    OutputTarget outputs[2];
    int outcome_errno = 0;
    if (error.empty() &&
        open_output(s, record.context.stdout_spec, outputs[0], error, outcome_errno) &&
        !share_output(record.context.stderr_spec, outputs, error, outcome_errno)) {
      open_output(s, record.context.stderr_spec, outputs[1], error, outcome_errno);
    }
    if (error.empty()) {
      plan.stdio[0] = s.null_in;
      plan.stdio[1] = outputs[0].child_fd;
      plan.stdio[2] = outputs[1].child_fd;
      // The host may have set SIGCHLD to SIG_IGN since the last spawn.
      s.watcher.keep_children_waitable();
      outcome = detail::spawn(plan);
      outcome_errno = outcome.error;
      if (outcome.error != 0) {
        error = outcome.stage == detail::SpawnStage::exec
                    ? "cannot run \"" + record.spec.argv[0] + "\": " + std::strerror(outcome.error)
                    : std::string("cannot start \"") + record.spec.argv[0] + "\" (" +
                          detail::to_string(outcome.stage) + "): " + std::strerror(outcome.error);
      }
    }
    for (auto& target : outputs) {
      if (error.empty()) {
        target.release_child_side();
      } else {
        target.close_all();
      }
    }
    auto started_wall = std::chrono::system_clock::now();
    auto start_time = outcome.pid > 0 ? detail::process_start_time(outcome.pid) : std::nullopt;

    std::lock_guard<std::mutex> lock(s.mutex);
    record.launching = false;
    if (error.empty() && !s.watcher.add(outcome.pidfd, &record)) {
      outcome_errno = errno;
      error = std::string("cannot watch \"") + record.spec.argv[0] + "\": " + std::strerror(errno);
      ::close(outcome.pidfd);
      detail::abandon(outcome.pid, outcome_errno);
    }
    if (!error.empty()) {
      --s.running;
      record.info.started_at.reset();
      s.cgroups.retire(record.cgroup_serial);
      record.cgroup_serial = -1;
      record.context.cgroup_dir.clear();
      WorkerState outcome = WorkerState::spawn_failed;
      if (is_transient_spawn_error(outcome_errno)) {
        record.info.error = error;
        if (maybe_restart(s, record, outcome)) {
          arm_timer(s);
          return;
        }
      }
      finish_unstarted(s, record, outcome, std::move(error));
      return;
    }
    record.info.pid = outcome.pid;
    record.info.process_start_time = start_time.value_or(0);
    record.info.started_at = started_wall;
    record.pidfd = outcome.pidfd;
    for (int i = 0; i < 2; ++i) {
      if (outputs[i].pipe_read < 0) continue;
      record.pumps[i] = std::make_unique<detail::OutputPump>(outputs[i].pipe_read,
                                                              outputs[i].file_fd, outputs[i].limit);
      ++s.active_pumps;
      s.watcher.add_reader(outputs[i].pipe_read, record.pumps[i].get());
    }
    record.guard_slot = s.sentinel.add(record.info.pid, record.info.process_start_time, record.cgroup_serial);
    if (record.spec.timeout.count() > 0) record.deadline = s.now() + record.spec.timeout;
    if (record.spec.stall_timeout.count() > 0) {
      record.stall_check_at = s.now() + record.spec.stall_timeout;
    }
    set_state(s, record, WorkerState::running);
    s.live.push_back(&record);
    emit(s, EventKind::started, record);
    if (record.stop_reason) {
      WorkerState reason = *record.stop_reason;
      record.stop_reason.reset();
      begin_stop(s, record, reason);
    }
    arm_timer(s);
  }

  template <class Predicate>
  bool wait_until_true(Predicate done, std::optional<std::chrono::milliseconds> timeout) {
    auto give_up = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
    for (;;) {
      poll();
      if (done()) return true;
      int wait_ms = -1;
      if (timeout) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(give_up -
                                                                 std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        wait_ms = static_cast<int>(std::min<long long>(left.count(), 60'000));
      }
      if (auto next = next_timeout()) {
        int deadline_ms = static_cast<int>(std::min<long long>(next->count() + 1, 60'000));
        wait_ms = wait_ms < 0 ? deadline_ms : std::min(wait_ms, deadline_ms);
      }
      pollfd pfd{event_fd(), POLLIN, 0};
      ::poll(&pfd, 1, wait_ms);
    }
  }

  std::unique_ptr<State> state_;
};

}  // namespace jobwarden

#include "jobwarden/compiled/job_supervisor.hpp"  // the separately compiled mode
