#pragma once
/// \file
/// `detail::SupervisorEngine<Clock>`: the state machine behind
/// `JobSupervisor` (submit and the queue, launching, deadlines and the stop
/// sequence, exits and their classification, restarts, the job directory's
/// records, events). It does not read the job directory back: that is the
/// reader's (status_aggregator.hpp), which only the public facade uses.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "jobwarden/detail/control_files.hpp"
#include "jobwarden/detail/event_loop.hpp"
#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/output_pump.hpp"
#include "jobwarden/detail/platform.hpp"
#include "jobwarden/detail/process_control.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/detail/spawn.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/job_directory_sync.hpp"
#include "jobwarden/detail/supervisor/spec_validation.hpp"
#include "jobwarden/detail/supervisor/stop_sequence.hpp"
#include "jobwarden/detail/supervisor/worker_input.hpp"
#include "jobwarden/detail/supervisor/worker_launch.hpp"
#include "jobwarden/detail/supervisor/worker_output.hpp"
#include "jobwarden/detail/supervisor/worker_pause.hpp"
#include "jobwarden/detail/supervisor/worker_record.hpp"
#include "jobwarden/detail/supervisor/worker_transitions.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/launch_plan.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/process_identity.hpp"
#include "jobwarden/restart_policy.hpp"
#include "jobwarden/worker_control.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_info.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// The supervisor's engine: everything `JobSupervisor` does but reading the
/// job back (its `status()`). Templated on the clock deadlines are measured
/// on, never on the workers' payload type, and independent of the reader.
///
/// The engine's concepts each have their own file, as free functions over
/// `EngineState`: worker_transitions.hpp (state changes and events),
/// job_directory_sync.hpp (the journal's worker and job lines), stop_sequence.hpp
/// (deadlines, stall checks, the stop sequence, shutdown, stop.request),
/// worker_output.hpp (where output goes, supervised streams, delivery to
/// handlers), worker_launch.hpp (what an attempt executes),
/// spec_validation.hpp (what submit rejects). This class
/// keeps the host's calls, submit and the queue, launching, exits and
/// restarts (restart_policy.hpp decides those).
///
/// Locks: the host's calls take `EngineState::mutex` themselves; `poll()`
/// also holds `poll_mutex` throughout, so one poll runs at a time and
/// handlers run with `poll_mutex` held but not `mutex` (a handler may call
/// back in). Each private section says which lock it needs.
template <class Clock>
class SupervisorEngine {
 public:
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using event_handler = std::function<void(const WorkerEvent&)>;

  // ---- construction ---------------------------------------------------------

  /// Starts supervising. With `ec == nullptr` a failure throws; otherwise it
  /// sets `*ec` and leaves the engine unusable (`valid()` is false).
  SupervisorEngine(SupervisorOptions options, std::error_code* ec) {
    std::error_code ignored;
    init(std::move(options), ec != nullptr ? ec : &ignored, ec == nullptr);
  }

  SupervisorEngine(SupervisorEngine&&) noexcept = default;
  SupervisorEngine& operator=(SupervisorEngine&& other) noexcept {
    if (this != &other) {
      destroy();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  SupervisorEngine(const SupervisorEngine&) = delete;
  SupervisorEngine& operator=(const SupervisorEngine&) = delete;

  /// Stops and reaps every worker (`shutdown()`).
  ~SupervisorEngine() { destroy(); }

  // ---- the host's calls (any thread; each takes `mutex` as it needs) --------
  // Described on `JobSupervisor`, which forwards to them.

  bool valid() const { return state_ != nullptr; }
  const SupervisorOptions& options() const { return state().options; }
  const std::string& job_id() const { return state().options.job_id; }
  std::size_t max_concurrency() const { return state().options.max_concurrency; }

  /// Submits a worker; `ec == nullptr` throws on a bad spec.
  std::string submit(WorkerSpec spec, std::error_code* ec) { return submit_impl(std::move(spec), ec); }

  /// Cancels a worker; `ec == nullptr` throws for an unknown id.
  void cancel(const std::string& id, std::error_code* ec) { cancel_impl(id, ec); }

  /// Sends `sig` to a running worker's tree or leader; `ec == nullptr` throws.
  void signal(const std::string& id, int sig, SignalScope scope, std::error_code* ec) {
    signal_impl(id, sig, scope, ec);
  }

  /// Pauses a running worker (no-op when paused); `ec == nullptr` throws.
  void pause(const std::string& id, std::error_code* ec) { pause_impl(id, true, ec); }

  /// Resumes a paused worker (no-op when not paused); `ec == nullptr` throws.
  void resume(const std::string& id, std::error_code* ec) { pause_impl(id, false, ec); }

  void begin_shutdown(std::optional<std::chrono::milliseconds> grace = std::nullopt) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      begin_shutdown_locked(s, grace);
    }
    s.watcher.wake();
  }

  bool halted() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.halted;
  }

  std::string halt_reason() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.halt_reason;
  }

  bool stop_requested() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.stop_requested;
  }

  void finish() {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.accepting = false;
      s.job_dirty = true;
    }
    s.watcher.wake();
  }

  void set_exit_status(int code) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.recorder) return;
      s.recorder->set_exit_status(code);
      s.job_dirty = true;
      if (s.job_closed) s.exit_status_unwritten = true;
    }
    s.watcher.wake();
  }

  const RecoveryReport& recovery_report() const { return state().recovery; }

  /// Whether a background recovery is still under way (the job is not open yet).
  bool recovering() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.background_recovery != nullptr;
  }

  /// Whether the engine keeps a job directory (a root was given). From the
  /// options, which never change: the recorder itself is made inside poll()
  /// when the job opens after a background recovery.
  bool has_job_directory() const { return !state().options.root.empty(); }

  std::string job_dir() const {
    const State& s = state();
    return s.options.root.empty() ? std::string{} : JobLayout{s.options.root, s.options.job_id}.job_dir();
  }

  std::uint64_t status_write_failures() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.status_write_failures;
  }

  std::pair<std::error_code, std::string> last_status_error() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return {s.last_status_error, s.last_status_error_path};
  }

  void shutdown() {
    begin_shutdown();
    wait_all();
  }

  /// One round of work; see `JobSupervisor::poll` for the order of events.
  std::size_t poll() {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    std::vector<WorkerEvent> events;
    std::vector<QueuedOutput> output;  // read for line and chunk handlers
    std::vector<Record*> to_launch;
    std::vector<TakenControlRequest> controls;  // from the job directory, applied below
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      auto ready = s.watcher.collect();
      if (s.background_recovery) advance_background_recovery(s);
      pump_outputs(s, ready.readable);  // before exits: an exit finishes its streams
      // A halt these exits reach is decided at once (note_halt_outcome).
      struct ReadingExits {
        bool& flag;
        ~ReadingExits() { flag = false; }
      } reading{s.reading_exits};
      s.reading_exits = true;
      if (ready.check_all || !s.watcher.uses_pidfd()) {
        for (Record* record : running_records(s)) check_exit(s, *record);
      } else {
        for (void* token : ready.exited) check_exit(s, *static_cast<Record*>(token));
      }
      feed_inputs(s, ready.writable);
      if (ready.directory_changed || s.stop_request_unchecked || s.control_requests_waiting ||
          (!s.watches_stop_request && s.next_job_refresh && *s.next_job_refresh <= s.now())) {
        check_stop_request(s);
        if (s.recorder) {
          const ControlBacklog backlog = take_control_requests(s.recorder->job_dir_fd(), controls);
          // More than one look takes: the next poll, at once. A failed read:
          // the next poll, whenever it comes (the heartbeat guarantees one).
          s.control_requests_waiting = backlog != ControlBacklog::none;
          if (backlog == ControlBacklog::more) s.watcher.wake();
        }
      }
      enforce_deadlines(s);
      reading.flag = false;
      apply_halt(s);  // fail fast: the exits above may have reached the threshold
      events.swap(s.events);
      output.swap(s.output);
    }
    // Control requests: applied as the host's own calls would be (they take
    // the mutex); their events go out with this poll's second batch.
    for (const TakenControlRequest& taken : controls) answer_control_request(s, taken);
    // Exits first: the host learns of them before any cleanup or new start.
    std::size_t delivered;
    try {
      delivered = deliver_then_forget(s, events, output);
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
      apply_halt(s);  // workers that could not be started count too
      flush_job(s);
      arm_timer(s);
      events.clear();
      events.swap(s.events);
      output.clear();
      output.swap(s.output);
    }
    delivered += deliver_then_forget(s, events, output);
    return delivered;
  }

  int event_fd() const { return state().watcher.fd(); }

  /// How long the host may sleep before `poll()` has deadline work to do.
  std::optional<std::chrono::milliseconds> next_timeout() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::optional<std::chrono::milliseconds> wait;
    if (auto deadline = earliest_deadline(s)) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - s.now());
      wait = std::max(left, std::chrono::milliseconds(0));
    }
    if (auto pump_wait = output_wait(s)) {  // supervised output without a wake-up per pipe
      wait = wait ? std::min(*wait, *pump_wait) : *pump_wait;
    }
    if (auto retry = s.shared_slots.retry_wait()) wait = wait ? std::min(*wait, *retry) : *retry;
    if (input_needs_retry(s)) {
      // No wake-up for stdin pipes with room on the portable path: retry often.
      constexpr std::chrono::milliseconds feed_interval{20};
      wait = wait ? std::min(*wait, feed_interval) : feed_interval;
    }
    return wait;
  }

  /// Queues `bytes` for worker `id`'s stdin; `ec == nullptr` throws.
  void write_input(const std::string& id, std::string_view bytes, std::error_code* ec) {
    if (queue_host_input(state(), id, bytes, ec)) state().watcher.wake();  // poll() writes it
  }

  /// Closes worker `id`'s stdin once what is queued is written.
  void close_input(const std::string& id, std::error_code* ec) {
    if (close_host_input(state(), id, ec)) state().watcher.wake();
  }

  void on_event(event_handler handler) {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    s.handlers.push_back(std::move(handler));
  }

  void on_output_line(output_line_handler handler) {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    if (!handler) return;
    s.line_handlers.push_back(std::move(handler));
    s.wants_lines = true;
  }

  void on_output_chunk(output_chunk_handler handler) {
    State& s = state();
    std::lock_guard<std::recursive_mutex> poll_lock(s.poll_mutex);
    if (!handler) return;
    s.chunk_handlers.push_back(std::move(handler));
    s.wants_chunks = true;
  }

  bool wait(const std::string& id, std::optional<std::chrono::milliseconds> timeout) {
    info(id);  // throws for an unknown id
    return wait_until_true(
        [&] {
          std::error_code ec;
          const WorkerInfo now = info(id, ec);
          return ec || is_terminal(now.state);  // unknown now: forgotten, so it had finished
        },
        timeout);
  }

  bool wait_all(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    return wait_until_true([&] { return active_count() == 0 && !recovering(); }, timeout);
  }

  /// A snapshot of worker `id`; throws for an unknown id.
  WorkerInfo info(const std::string& id) const {
    std::error_code ec;
    auto result = info_impl(id, &ec);
    if (ec) throw_error(ec, "unknown worker " + quote_id(id));
    return result;
  }

  /// Non-throwing form (`errc::unknown_worker`, empty info).
  WorkerInfo info(const std::string& id, std::error_code& ec) const {
    ec.clear();
    return info_impl(id, &ec);
  }

  void forget(const std::string& id, std::error_code* ec) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.records.find(id);
    if (it == s.records.end()) {
      report(ec, make_error_code(errc::unknown_worker),
             "cannot forget unknown worker " + quote_id(id) + " in job \"" + s.options.job_id + "\"");
      return;
    }
    Record& record = *it->second;
    if (!forgettable(s, record)) {
      const std::string why = !is_terminal(record.info.state)
                                  ? "it has not finished (" + std::string(to_string(record.info.state)) + ")"
                                  : std::string("its last record is not yet written to the journal");
      report(ec, make_error_code(errc::worker_not_finished),
             "cannot forget worker " + quote_id(id) + " in job \"" + s.options.job_id + "\": " + why);
      return;
    }
    forget_record(s, record);
  }

  std::size_t forget_finished() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::vector<Record*> finished;
    for (Record* record : s.order) {
      if (forgettable(s, *record)) finished.push_back(record);
    }
    forget_records(s, finished);
    return finished.size();
  }

  std::uint64_t forgotten_count() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.forgotten;
  }

  std::vector<WorkerInfo> workers() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::vector<WorkerInfo> out;
    out.reserve(s.order.size());
    for (const Record* record : s.order) out.push_back(record->info);
    return out;
  }

  bool cgroups_active() const { return state().cgroups.active(); }
  const std::string& cgroups_unavailable_reason() const { return state().cgroups_unavailable; }
  bool guard_active() const { return state().guard.active(); }

  std::size_t running_count() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.running;
  }

  std::size_t active_count() const {
    const State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.active;
  }

 private:
  using Record = WorkerRecord<time_point>;
  using State = EngineState<Clock>;

  State& state() { return *state_; }
  const State& state() const { return *state_; }

  // ---- setup and teardown (no lock: nobody else holds the engine yet, or any more)

  void init(SupervisorOptions options, std::error_code* ec, bool throwing) {
    if (!is_valid_id(options.job_id)) {
      if (throwing) validate_id(options.job_id, "job id");
      *ec = make_error_code(errc::invalid_id);
      return;
    }
    if (options.resume_finished_job && options.replace_finished_job) {
      const std::string what = "cannot open job \"" + options.job_id +
                               "\": resume_finished_job and replace_finished_job exclude each other";
      if (throwing) throw_error(make_error_code(errc::invalid_argument), what);
      *ec = make_error_code(errc::invalid_argument);
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
    state_->shared_slots.join(state_->options.shared_slots, state_->watcher);
    if (state_->options.use_cgroups) {
      state_->cgroups.open(state_->cgroups_unavailable);
    } else {
      state_->cgroups_unavailable = "turned off (SupervisorOptions::use_cgroups)";
    }
    if (state_->options.orphan_guard) {
      state_->guard.start(state_->cgroups.parent());  // best effort: see guard_active()
    }
    if (!state_->options.root.empty()) {
      JobRecorderOptions recorder_options;
      recorder_options.durable = state_->options.durable;
      recorder_options.replace_finished = state_->options.replace_finished_job;
      recorder_options.resume_finished = state_->options.resume_finished_job;
      recorder_options.supervisor_cgroup = state_->cgroups.parent();  // for recovery after our death
      recorder_options.compact_bytes = state_->options.journal_compact_bytes;
      JobLayout layout{state_->options.root, state_->options.job_id};
      std::unique_ptr<BackgroundRecovery> finished;  // recovered at once, lock held
      if (state_->options.recover_in_background) {
        std::error_code refused;
        state_->background_recovery = begin_background_recovery(
            layout, state_->options.replace_finished_job || state_->options.resume_finished_job,
            state_->options.recovery_grace, finished, refused);
        if (refused) {
          std::string what = open_error_text(*state_, refused, false);
          state_.reset();
          if (throwing) throw_error(refused, what);
          *ec = refused;
          return;
        }
      }
      if (state_->background_recovery) {
        state_->background_recovery->recorder_options = recorder_options;
        state_->watcher.wake();  // the host's first poll() carries recovery on
      } else {
        OwnedFd held_lock;
        bool requests_cleared = false;
        bool unreadable_layout = false;
        if (finished) {
          state_->recovery = std::move(finished->report);
          held_lock = std::move(finished->lock);
          requests_cleared = finished->requests_cleared;
        } else {
          std::error_code recovery_error;
          state_->recovery = recover_abandoned_job(layout, state_->options.recovery_grace, recovery_error);
          // unknown_job: a new job. job_locked: open() below says so. Anything
          // else (a journal without a job line, a schema 1 directory...) is for
          // open() to judge as well. A layout recovery cannot read (schema 1, or
          // a journal of another version) is replaced only when it is a schema 1
          // job that had finished: else its records may be all that names
          // workers still running.
          unreadable_layout = recovery_error == errc::unsupported_layout;
          if (unreadable_layout && recorder_options.replace_finished) {
            std::error_code dir_error;
            OwnedFd job_dir = open_directory(layout.job_dir(), dir_error);
            recorder_options.replace_finished = !dir_error && is_finished_legacy_job(job_dir.get());
          }
        }
        std::error_code open_error = open_job(*state_, recorder_options, std::move(held_lock), requests_cleared);
        if (open_error) {
          std::string what = open_error_text(*state_, open_error, unreadable_layout);
          state_.reset();
          if (throwing) throw_error(open_error, what);
          *ec = open_error;
          return;
        }
      }
    }
    state_->null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    state_->null_out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (state_->null_in < 0 || state_->null_out < 0) {
      std::error_code err(errno, std::system_category());
      state_.reset();
      if (throwing) throw_error(err, "jobwarden: cannot open /dev/null");
      *ec = err;
    }
  }

  /// Opens the job directory (the recorder; `lock`, when given, is the
  /// job's lock, already held, and `requests_cleared` says whether its
  /// holder removed the stale requests then: see `JobRecorder::adopt_lock`)
  /// and sets up what watches it. No lock needed: from init, nobody else
  /// holds the engine; from poll(), under `mutex`.
  static std::error_code open_job(State& s, const JobRecorderOptions& recorder_options, OwnedFd lock,
                                  bool requests_cleared = false) {
    s.recorder.emplace(JobLayout{s.options.root, s.options.job_id}, recorder_options);
    if (lock) s.recorder->adopt_lock(std::move(lock), requests_cleared);
    std::error_code open_error;
    s.recorder->open(open_error);
    if (open_error) {
      s.recorder.reset();
      return open_error;
    }
    s.opened_at = s.now();
    keep_earlier_workers(s);
    // The job line open() wrote says `running`: with nothing to do yet
    // the job is `idle`, and readers see that at once.
    s.job_dirty = true;
    flush_job(s);
    if (s.options.job_refresh_interval.count() > 0) {
      s.next_job_refresh = s.now() + heartbeat_interval(s, s.now());
    }
    // A stop request is never removed here: once open() has taken the lock
    // and started the journal, `jobwarden stop` takes this supervisor for the
    // job's, and what it writes is for us (stale requests are removed by
    // recovery and when a finished job id is reused). One written before
    // the watch below exists raises no event: the first poll() looks.
    s.watches_stop_request =
        s.watcher.watch_directory(s.recorder->layout().job_dir(), stop_request_file_name, control_request_suffix);
    s.stop_request_unchecked = true;
    s.watcher.wake();
    return {};
  }

  /// What the host is told when the job cannot be opened.
  static std::string open_error_text(const State& s, std::error_code open_error, bool unreadable_layout) {
    std::string what = "cannot open job \"" + s.options.job_id + "\" under " + s.options.root;
    if (open_error == errc::job_locked) what += ": it already has a live supervisor";
    if (s.options.resume_finished_job && open_error != errc::job_locked) {
      what += ": cannot resume it";
      if (open_error == errc::invalid_state_transition) {
        what += ": it has not finished and its supervisor could not be shown dead";
        if (!s.recovery.problems.empty()) what += " (" + s.recovery.problems.front().second + ")";
      }
    }
    if (open_error == errc::job_exists) {
      if (!unreadable_layout) {
        what += ": a finished job with that id exists";
        if (s.recovery.job_was_abandoned) {
          what += " (its supervisor had died: recovery stopped what was left of it and marked it lost)";
        }
        what += "; " + job_exists_advice();
      } else {
        what += ": its job directory has a layout this version does not read (";
        what += s.recovery.problems.empty() ? std::string("unsupported layout") : s.recovery.problems.front().second;
        what += s.options.replace_finished_job
                    ? "), and it cannot be shown to have finished: stop it with the version that wrote it, "
                      "or remove it"
                    : ")";
      }
    }
    return what;
  }

  /// poll()'s part of a background recovery (under `mutex`): one step; once
  /// it is done, the report is the engine's, and the job is opened with the
  /// lock recovery held — unless the host shut down meanwhile (then the lock
  /// is let go and the job stays as recovery left it). The workers submitted
  /// meanwhile get their journal lines and start in this poll().
  void advance_background_recovery(State& s) {
    std::error_code verdict_error;  // its problems are in the report; the job is opened as after a blocking recovery
    if (!s.background_recovery->advance(verdict_error)) return;
    std::unique_ptr<BackgroundRecovery> done = std::move(s.background_recovery);
    s.recovery = std::move(done->report);
    // `jobwarden stop` took the holder of the lock for the job's supervisor:
    // a request written meanwhile is ours, honoured before the job opens
    // (which then need not open it at all; one that could not be read is
    // kept by the opening and read at the next poll).
    if (!s.shutting_down) take_stop_request(s, done->job_dir.get());
    if (s.shutting_down) return;
    const std::error_code open_error =
        open_job(s, done->recorder_options, std::move(done->lock), done->requests_cleared);
    if (open_error) {
      // Whatever failed (a full disk, a job that could not be resumed), the
      // host hears of it through its workers: each one queued ends cancelled
      // saying why, and the job takes no more work.
      const std::string what = open_error_text(s, open_error, false) + ": " + open_error.message();
      s.recovery.problems.emplace_back(journal_file_name, what);
      note_status_error(s, open_error, JobLayout{s.options.root, s.options.job_id}.job_dir());
      s.accepting = false;
      for (Record* record : s.order) {
        if (record->info.state == WorkerState::pending && !record->launching) {
          s.queue.erase(record);
          finish_unstarted(s, *record, WorkerState::cancelled, "cancelled before it started: " + what);
        }
      }
      return;
    }
    // Every worker of this run gets its line, ended ones (cancelled while
    // the job was recovering) included: the journal's fold and the job
    // line's counts must agree.
    for (Record* record : s.order) {
      if (!record->earlier_run) record_worker(s, *record);
    }
    s.job_dirty = true;
  }

  /// A resumed job: its earlier workers' records, as the journal left them,
  /// become the engine's (terminal, `kept`, `earlier_run` until submitted
  /// again), so they count toward the summary from the start.
  /// After a background recovery, a worker the host submitted meanwhile is
  /// matched with its earlier record as submit() would have: a success with
  /// the same argv is kept (no event, as in submit), anything else runs as
  /// the next attempt.
  static void keep_earlier_workers(State& s) {
    for (const WorkerInfo& earlier : s.recorder->earlier_workers()) {
      if (auto submitted = s.records.find(earlier.id); submitted != s.records.end()) {
        Record& record = *submitted->second;
        record.earlier_attempts = earlier.attempt;
        if (earlier.state == WorkerState::succeeded && earlier.argv == record.spec.argv &&
            record.info.state == WorkerState::pending && !record.launching) {
          s.queue.erase(&record);
          --s.active;
          --s.counts[static_cast<std::size_t>(WorkerState::pending)];
          record.info = earlier;
          ++s.counts[static_cast<std::size_t>(earlier.state)];
        } else {
          record.info.attempt = earlier.attempt;  // launch() makes it the next one
        }
        continue;
      }
      auto owned = std::make_unique<Record>();
      Record* record = owned.get();
      record->info = earlier;
      record->earlier_run = true;
      record->earlier_attempts = earlier.attempt;
      s.records.emplace(earlier.id, std::move(owned));
      s.order.push_back(record);
      ++s.counts[static_cast<std::size_t>(earlier.state)];
    }
    if (!s.recorder->earlier_workers().empty()) s.job_dirty = true;
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

  // ---- submit, cancel, info (take `mutex` themselves; launch runs outside it)

  std::string submit_impl(WorkerSpec spec, std::error_code* ec) {
    State& s = state();
    if (!validate_spec(spec, !s.options.root.empty(), ec)) return {};
    Record* record = nullptr;
    std::vector<Record*> launchable;
    bool halted_at_submit = false;
    // Copied under the lock: once it is released, a poll on another thread
    // may end and forget the record (`forget_finished_workers`).
    std::string id;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.accepting) {
        report(ec, make_error_code(errc::supervisor_shut_down),
                       "cannot submit to job \"" + s.options.job_id + "\": it is shut down");
        return {};
      }
      auto taken = [&s](const std::string& id) {  // an earlier run's record may be submitted again
        auto it = s.records.find(id);
        return it != s.records.end() && !it->second->earlier_run;
      };
      if (spec.id.empty()) {
        do {
          spec.id = std::to_string(s.next_auto_id++);
        } while (taken(spec.id));
      } else if (!is_valid_id(spec.id)) {
        if (ec != nullptr) {
          *ec = make_error_code(errc::invalid_id);
          return {};
        }
        validate_id(spec.id, "worker id");
      } else if (taken(spec.id)) {
        report(ec, make_error_code(errc::duplicate_id),
                       "duplicate worker id " + quote_id(spec.id) + " in job \"" +
                           s.options.job_id + "\"");
        return {};
      }
      auto earlier = s.records.find(spec.id);
      std::optional<WorkerInfo> forgotten;
      if (earlier == s.records.end() && s.recorder && s.forgotten > 0) {
        // A forgotten worker's id: the new worker continues its record as the
        // next attempt, and replaces it in the counts (readers fold the
        // journal by id: one worker). A failed read of the journal: a new worker.
        std::error_code read_error;
        forgotten = s.recorder->forgotten_worker(spec.id, read_error);
      }
      if (forgotten) {
        std::size_t& counted = s.counts[static_cast<std::size_t>(forgotten->state)];
        if (counted > 0) --counted;  // never below 0, whatever the journal says
        auto owned = std::make_unique<Record>();
        record = owned.get();
        s.records.emplace(spec.id, std::move(owned));
        s.order.push_back(record);
        record->earlier_attempts = forgotten->attempt;
        record->info.attempt = forgotten->attempt;  // launch() makes it the next one
      } else if (earlier != s.records.end()) {
        // Submitted again in a resumed job: a success with the same argv is
        // kept as it is; anything else runs again as a new attempt.
        record = earlier->second.get();
        record->earlier_run = false;
        if (record->info.state == WorkerState::succeeded && record->info.argv == spec.argv) {
          record->spec = std::move(spec);
          return record->info.id;
        }
        --s.counts[static_cast<std::size_t>(record->info.state)];
        const int earlier_attempts = record->earlier_attempts;
        *record = Record{};
        record->earlier_attempts = earlier_attempts;
        record->info.attempt = earlier_attempts;  // launch() makes it the next one
      } else {
        auto owned = std::make_unique<Record>();
        record = owned.get();
        s.records.emplace(spec.id, std::move(owned));
        s.order.push_back(record);
      }
      record->info.id = spec.id;
      record->info.argv = spec.argv;
      record->info.label = spec.label;
      record->spec = std::move(spec);
      ++s.active;
      ++s.counts[static_cast<std::size_t>(WorkerState::pending)];
      halted_at_submit = s.halted;
      if (s.halt_applied) {
        // The job halted (fail fast): the worker ends at once; the host hears
        // of it at its next poll().
        finish_unstarted(s, *record, WorkerState::cancelled, "cancelled before it started: " + s.halt_reason);
      } else {
        s.queue.push(record);
        launchable = take_launchable(s);
        // A worker that starts right now is recorded as running in a moment;
        // a "pending" line first would cost a write for nothing.
        if (std::find(launchable.begin(), launchable.end(), record) == launchable.end()) {
          record_worker(s, *record);
        } else {
          s.job_dirty = true;
        }
      }
      id = record->info.id;
    }
    // The queue may hand out others too (restarts that came due): start
    // every worker that got a slot, not only this one.
    for (Record* ready : launchable) launch(s, *ready);
    if (!launchable.empty() || halted_at_submit) s.watcher.wake();  // events wait for the host's poll()
    return id;
  }

  void cancel_impl(const std::string& id, std::error_code* ec) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      auto it = s.records.find(id);
      if (it == s.records.end()) {
        report(ec, make_error_code(errc::unknown_worker),
                       "cannot cancel unknown worker " + quote_id(id) + " in job \"" +
                           s.options.job_id + "\"");
        return;
      }
      Record& record = *it->second;
      if (record.info.state == WorkerState::pending && !record.launching) {
        s.queue.erase(&record);
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

  // ---- controls of running workers (take `mutex`) ---------------------------

  /// The running worker `id`, whose process jobwarden holds unreaped (so a
  /// signal cannot reach a reused pid); null after reporting why not:
  /// `unknown_worker`, or `worker_not_running` (pending, ended, reaped).
  Record* running_target(State& s, const std::string& id, const char* action, std::error_code* ec) {
    auto it = s.records.find(id);
    if (it == s.records.end()) {
      report(ec, make_error_code(errc::unknown_worker),
             std::string("cannot ") + action + " unknown worker " + quote_id(id) + " in job \"" +
                 s.options.job_id + "\"");
      return nullptr;
    }
    Record& record = *it->second;
    const bool live = record.info.state == WorkerState::running && !record.launching &&
                      std::find(s.live.begin(), s.live.end(), &record) != s.live.end();
    if (!live) {
      const std::string why = record.info.state == WorkerState::pending
                                  ? "it has not started"
                                  : "it has ended (" + std::string(to_string(record.info.state)) + ")";
      report(ec, make_error_code(errc::worker_not_running),
             std::string("cannot ") + action + " worker " + quote_id(id) + " in job \"" + s.options.job_id +
                 "\": the worker is not running: " + why);
      return nullptr;
    }
    return &record;
  }

  void signal_impl(const std::string& id, int sig, SignalScope scope, std::error_code* ec) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (sig <= 0 || sig >= NSIG) {
        report(ec, make_error_code(errc::invalid_signal),
               "cannot signal worker " + quote_id(id) + " in job \"" + s.options.job_id + "\": " +
                   std::to_string(sig) + " is not a signal number");
        return;
      }
      Record* record = running_target(s, id, "signal", ec);
      if (record == nullptr) return;
      if (scope == SignalScope::leader) {
        int rc;
#if JOBWARDEN_LINUX_FAST_PATH
        rc = record->pidfd >= 0 ? sys_pidfd_send_signal(record->pidfd, sig) : ::kill(record->info.pid, sig);
#else
        rc = ::kill(record->info.pid, sig);  // unreaped: the pid is still the worker's
#endif
        if (rc != 0 && errno != ESRCH) {  // ESRCH: it just exited (a zombie may refuse): nothing to reach
          const int error = errno;
          report(ec, std::error_code(error, std::system_category()),
                 "cannot signal worker " + quote_id(id) + " in job \"" + s.options.job_id + "\": " +
                     std::strerror(error));
          return;
        }
      } else {
        s.options.launcher->signal_tree(record->info, sig, record->context);
        if (sig == SIGKILL) record->tree_killed = true;
      }
      WorkerEvent event{EventKind::signalled, record->info};
      event.signal = sig;
      event.scope = scope;
      s.events.push_back(std::move(event));
      if (sig == SIGCONT && record->info.paused && !record->frozen) {
        // Paused by SIGSTOP, and this SIGCONT let it run: it is resumed, and
        // its clocks run again (a frozen cgroup ignores SIGCONT: still paused).
        resume_worker(s, *record);
        arm_timer(s);
      }
    }
    s.watcher.wake();  // the host hears of it at its next poll()
  }

  void pause_impl(const std::string& id, bool pausing, std::error_code* ec) {
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      Record* record = running_target(s, id, pausing ? "pause" : "resume", ec);
      if (record == nullptr) return;
      if (pausing == record->info.paused) return;  // already so: nothing to do, nothing to tell
      if (pausing && (record->kill_at || record->stop_reason || s.shutting_down)) {
        // Its stop has begun: a pause now would hold off its SIGKILL (and a
        // shutdown waiting for it) until someone resumed it.
        report(ec, make_error_code(errc::worker_not_running),
               "cannot pause worker " + quote_id(id) + " in job \"" + s.options.job_id +
                   "\": the worker is not running: it is being stopped");
        return;
      }
      if (pausing) {
        pause_worker(s, *record);
      } else {
        resume_worker(s, *record);
      }
      arm_timer(s);  // a paused worker's deadlines are not due; a resumed one's are again
    }
    s.watcher.wake();
  }

  // ---- forgetting finished workers (under `mutex`) -------------------------

  /// Whether `record` may be forgotten: terminal, and its last line is in
  /// the journal (retried once here after a failed write).
  static bool forgettable(State& s, Record& record) {
    if (!is_terminal(record.info.state) || record.launching) return false;
    if (record.unsaved) retry_unsaved(s);
    return !record.unsaved;
  }

  /// Drops `record` from the engine (and the recorder's memory). Its count
  /// stays in `s.counts`: the job's summary and final state still count it.
  static void forget_record(State& s, Record& record) {
    s.order.erase(std::remove(s.order.begin(), s.order.end(), &record), s.order.end());
    drop_record(s, record);
  }

  /// `forget_record` for many, with one pass over `order`.
  static void forget_records(State& s, const std::vector<Record*>& records) {
    if (records.empty()) return;
    std::vector<Record*> sorted(records);
    std::sort(sorted.begin(), sorted.end());
    s.order.erase(std::remove_if(s.order.begin(), s.order.end(),
                                 [&](Record* r) { return std::binary_search(sorted.begin(), sorted.end(), r); }),
                  s.order.end());
    for (Record* record : records) drop_record(s, *record);
  }

  static void drop_record(State& s, Record& record) {
    if (s.recorder) s.recorder->forget_worker(record.info.id);
    ++s.forgotten;
    s.records.erase(record.info.id);  // frees the record: `record` dangles from here
  }

  /// Delivers `events` and `output`, then forgets the workers whose end was
  /// delivered (`forget_delivered`). When a handler throws, the workers whose
  /// end was delivered up to it (its own event included) are forgotten at the
  /// next poll; the events after it are not delivered, as for any handler
  /// that throws.
  std::size_t deliver_then_forget(State& s, const std::vector<WorkerEvent>& events,
                                  const std::vector<QueuedOutput>& output) {
    std::size_t reached = 0;
    try {
      const std::size_t delivered = deliver_events_and_output(s, events, output, &reached);
      forget_delivered(s, events);
      return delivered;
    } catch (...) {
      if (s.options.forget_finished_workers) {
        std::lock_guard<std::mutex> lock(s.mutex);
        for (std::size_t i = 0; i < reached && i < events.size(); ++i) {
          if (events[i].kind == EventKind::exited && is_terminal(events[i].worker.state)) {
            s.forget_later.push_back(events[i].worker.id);
          }
        }
        if (!s.forget_later.empty()) s.watcher.wake();  // the next poll forgets them
      }
      throw;
    }
  }

  /// `SupervisorOptions::forget_finished_workers`: forgets the workers whose
  /// end was among `events`, just delivered (those not yet forgettable, for
  /// want of a journal line, at a later poll).
  void forget_delivered(State& s, const std::vector<WorkerEvent>& events) {
    if (!s.options.forget_finished_workers) return;
    std::lock_guard<std::mutex> lock(s.mutex);
    std::vector<Record*> finished;
    auto consider = [&](const std::string& id) {
      auto it = s.records.find(id);
      if (it == s.records.end()) return;
      Record* record = it->second.get();
      if (std::find(finished.begin(), finished.end(), record) != finished.end()) return;
      if (forgettable(s, *record)) {
        finished.push_back(record);
      } else if (is_terminal(record->info.state)) {
        s.forget_later.push_back(id);
      }
    };
    if (!s.forget_later.empty()) {
      std::vector<std::string> later;
      later.swap(s.forget_later);
      for (const std::string& id : later) consider(id);
    }
    for (const WorkerEvent& event : events) {
      if (event.kind == EventKind::exited && is_terminal(event.worker.state)) consider(event.worker.id);
    }
    forget_records(s, finished);
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

  // Delivery (under the poll lock but not `s.mutex`: a handler may call in)
  // is `deliver_events_and_output` (worker_output.hpp): each event, and
  // before it the output read before it was raised.

  // ---- exits and how they are classified (under `mutex`) --------------------

  /// Collects the zombies `check_exit` left, closes their pidfds, checks
  /// their cgroups for escapees, and only then takes them off the orphan guard's table.
  void settle_exits(State& s) {
    for (const ExitedWorker& done : s.exited) {
      s.watcher.remove(done.pidfd);
      done.collect();
    }
    s.cgroups.settle();
    for (const ExitedWorker& done : s.exited) s.guard.remove(done.guard_slot);
    s.exited.clear();
  }

  /// Takes note of `record`'s exit if its process has exited: kills what is
  /// left of its group while the zombie still pins the group id.
  void check_exit(State& s, Record& record) {
    if (record.info.state != WorkerState::running || record.launching) return;
    ExitStatus status;
    bool reaped;  // ours, and exited (false: someone else reaped it)
#if JOBWARDEN_LINUX_FAST_PATH
    // The status and usage come without reaping: the zombie is collected
    // (and its pidfd closed, its cgroup checked) by `settle_exits`, after the
    // host has heard of the exit.
    int outcome = peek_exit(record.info.pid, status);
    if (outcome == 0) return;
    reaped = outcome > 0;
    // Whatever it left in its group dies while the zombie pins the group id
    // (a worker may not be in its cgroup: a join the kernel refused, or a
    // process moved out); the cgroup check in settle_exits catches escapees.
    if (reaped) signal_group(record.info.pid, SIGKILL);
    s.exited.push_back({reaped ? record.info.pid : -1, record.pidfd, record.guard_slot});
#else
    if (!has_exited(record.info.pid)) return;
    signal_group(record.info.pid, SIGKILL);
    reaped = reap(record.info.pid, status);
    s.exited.push_back({-1, record.pidfd, record.guard_slot});
#endif
    s.live.erase(std::remove(s.live.begin(), s.live.end(), &record), s.live.end());
    record.pidfd = -1;
    record.guard_slot = -1;
    --s.running;
    s.shared_slots.give_back(record.shared_slot);
    forget_pause<Clock>(record);  // before its cgroup goes back to the pool
    record.info.ended_at = std::chrono::system_clock::now();
    record.info.usage = ResourceUsage{status.user_cpu, status.system_cpu, status.max_rss_kib, std::nullopt, std::nullopt};
    std::optional<CgroupCpu> counted = add_tree_cpu(record);  // before its cgroup is retired (and reused)
    finish_outputs(s, record);  // logs and tails are complete before a launcher reads them
    finish_input(s, record);
    refresh_worker_report(s, record);  // its last word, before the exit event carries the info
    record.report.reset();  // read no more for this attempt: no memory kept for it
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
    // A cgroup that got SIGKILL through cgroup.kill is never reused (see CgroupTree::retire).
    s.cgroups.retire_later(record.cgroup_serial, record.kill_sent || record.tree_killed, counted);
    record.tree_killed = false;
    record.cgroup_serial = -1;
    record.context.cgroup_dir.clear();
    if (maybe_restart(s, record, final_state)) return;
    set_state(s, record, final_state);
    emit(s, EventKind::exited, record);
  }

  // ---- restarts (under `mutex`): restart_policy.hpp decides, this applies --

  /// Applies the restart policy to a worker that just ended with `outcome`.
  /// Returns true when a restart was scheduled (the worker is pending again);
  /// otherwise may adjust `outcome` and the error (rate limit, permanent exit).
  bool maybe_restart(State& s, Record& record, WorkerState& outcome) {
    if (s.shutting_down || s.halted) return false;
    auto now = s.now();
    // Restarts older than the rate limit's window no longer count.
    const RestartSpec& policy = record.spec.restart;
    while (!record.restart_times.empty() && now - record.restart_times.front() > policy.burst_window) {
      record.restart_times.pop_front();
    }
    AttemptEnd ended{outcome, record.info.exit_code, record.stop_reason.has_value()};
    RestartDecision decision =
        decide_restart(policy, ended, record.info.attempt - record.earlier_attempts, record.restart_times, now,
                       [&](double low, double high) {
                         return std::uniform_real_distribution<double>(low, high)(s.random);
                       });
    if (!decision.restart()) {
      outcome = decision.final_state;
      if (decision.reason == RestartReason::permanent_exit_code) {
        record.info.error = decision.note;
      } else if (!decision.note.empty()) {
        record.info.error = append_note(record.info.error, decision.note);
      }
      return false;
    }
    record.restart_times.push_back(now);
    record.restart_at = now + decision.delay;
    record.stop_reason.reset();
    record.kill_at.reset();
    record.kill_sent = false;
    set_state(s, record, WorkerState::pending);
    s.restarting.push_back(&record);
    emit(s, EventKind::restarting, record);
    return true;
  }

  /// The CPU time of the attempt's whole tree: its cgroup's `cpu.stat` now,
  /// less what it had counted when the attempt began (cgroups are reused).
  /// Returns the figure read, the next attempt's starting point in that cgroup.
  static std::optional<CgroupCpu> add_tree_cpu(Record& record) {
    auto base = std::move(record.tree_cpu_base);
    record.tree_cpu_base.reset();
    auto now = read_cgroup_cpu(record.context.cgroup_dir);
    if (!base || !now || now->user < base->user || now->system < base->system) return now;
    record.info.usage.tree_user_cpu = now->user - base->user;
    record.info.usage.tree_system_cpu = now->system - base->system;
    return now;
  }

  static std::string append_note(const std::string& error, const std::string& note) {
    return error.empty() ? note : error + "; " + note;
  }

  // ---- launching (outside `mutex`, taking it around what it shares) -------

  /// Starts a worker that holds a reserved slot. Runs without `s.mutex` so
  /// host threads can spawn in parallel.
  /// Applies one control request from the job directory and writes its
  /// reply. No lock held: `signal`, `pause` and `resume` take the mutex.
  void answer_control_request(State& s, const TakenControlRequest& taken) {
    ControlReply reply;
    if (!taken.problem.empty()) {
      reply.failed.push_back({"", "bad_request", taken.problem});
    } else {
      std::vector<std::string> targets;
      if (taken.request.worker) {
        targets.push_back(*taken.request.worker);
      } else {
        std::lock_guard<std::mutex> lock(s.mutex);
        for (Record* record : s.order) {
          // Every running worker; for resume, every paused one.
          if (record->info.state != WorkerState::running || record->launching) continue;
          if (taken.request.action == ControlAction::resume && !record->info.paused) continue;
          targets.push_back(record->info.id);
        }
      }
      for (const std::string& id : targets) {
        std::error_code ec;
        try {
          switch (taken.request.action) {
            case ControlAction::signal: signal(id, taken.request.signal, taken.request.scope, &ec); break;
            case ControlAction::pause: pause(id, &ec); break;
            case ControlAction::resume: resume(id, &ec); break;
          }
        } catch (const std::exception& error) {  // a launcher's signal_tree, bad_alloc: answered, not thrown
          reply.failed.push_back({id, "error", error.what()});
          continue;
        }
        if (ec) reply.failed.push_back({id, control_failure_reason(ec), ec.message()});
        else reply.done.push_back(id);
      }
    }
    const std::error_code ec = write_control_reply(s.recorder->job_dir_fd(), taken.nonce, reply);
    if (ec) {
      std::lock_guard<std::mutex> lock(s.mutex);
      note_status_error(s, ec, s.recorder->layout().job_dir() + "/" + taken.nonce + control_reply_suffix);
    }
  }

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
        record.info.message.clear();  // the worker's word was of the last attempt
        record.info.worker_error.clear();
      }
      record.context.job_id = s.options.job_id;
      record.context.worker_id = record.info.id;
      record.context.attempt = record.info.attempt;
      plan_outputs(s, record);  // routes, 2>&1; the launcher's prepare sees them
      record.context.cgroup_dir = s.cgroups.create(record.cgroup_serial, record.tree_cpu_base);
      apply_cpu_weight(s, record);
      record.warned = false;
      record.heartbeat_floor.reset();
    }
    // What a reused cgroup whose last figure is unknown has counted so far
    // (outside the lock: only launch touches the record now).
    if (!record.tree_cpu_base) record.tree_cpu_base = read_cgroup_cpu(record.context.cgroup_dir);
    std::string error;
    SpawnPlan plan = make_plan(s, record, error);
    SpawnOutcome outcome;
    InputTarget input;
    OutputTarget outputs[2];
    int outcome_errno = 0;
    if (error.empty() && open_input(s.null_in, record.spec.stdin_spec, input, error, outcome_errno)) {
      open_outputs(s.null_out, record, outputs, error, outcome_errno);
    }
    if (error.empty()) {
      plan.stdio[0] = input.child_fd;
      plan.stdio[1] = outputs[0].child_fd;
      plan.stdio[2] = outputs[1].child_fd;
      // The host may have set SIGCHLD to SIG_IGN since the last spawn.
      s.watcher.keep_children_waitable();
      outcome = spawn(plan);
      outcome_errno = outcome.error;
      if (outcome.error != 0) {
        error = spawn_failure_message(record.spec, outcome);
      }
    }
    for (auto& target : outputs) {
      if (error.empty()) {
        target.release_child_side();
      } else {
        target.close_all();
      }
    }
    if (error.empty()) {
      input.release_child_side();  // the worker's copy alone keeps the pipe's read end open
    } else {
      input.close_all();
    }
    auto started_wall = std::chrono::system_clock::now();
    ProcessIdentity process;
    if (outcome.pid > 0) process = identify_process(outcome.pid);

    std::lock_guard<std::mutex> lock(s.mutex);
    record.launching = false;
    if (error.empty() && !s.watcher.add(outcome.pidfd, &record)) {
      outcome_errno = errno;
      error = std::string("cannot watch \"") + record.spec.argv[0] + "\": " + std::strerror(errno);
      ::close(outcome.pidfd);
      abandon(outcome.pid, outcome_errno);
    }
    if (!error.empty()) {
      for (auto& target : outputs) target.close_all();
      input.close_all();
      --s.running;
      s.shared_slots.give_back(record.shared_slot);
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
    record.info.pid = process.pid;
    record.info.process_start_time = process.start_time;
    record.info.started_at = started_wall;
    record.pidfd = outcome.pidfd;
    start_outputs(s, record, outputs);
    start_input(s, record, input);
    record.guard_slot = s.guard.add(record.info.identity(), record.cgroup_serial);
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

  // ---- blocking waits (no lock: built on poll()) -----------------------------

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

}  // namespace jobwarden::detail
