#pragma once
/// \file
/// What the supervisor engine knows: its options (`SupervisorOptions`, of
/// which it ignores `status_options`: reading is the facade's) and its state
/// (`EngineState`): the worker records, the queue, the counters, the event
/// loop, the cgroup tree, the orphan guard and the job directory's recorder.
///
/// Two locks: `mutex` guards the records, the queue, the counters, the
/// events and the output read for handlers; `poll_mutex` lets one `poll()`
/// run at a time (a handler may call back in) and guards the handlers.

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/detail/cgroup.hpp"
#include "jobwarden/detail/event_loop.hpp"
#include "jobwarden/detail/job_recorder.hpp"
#include "jobwarden/detail/orphan_guard.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/detail/supervisor/background_recovery.hpp"
#include "jobwarden/detail/supervisor/launch_queue.hpp"
#include "jobwarden/detail/supervisor/shared_slot_use.hpp"
#include "jobwarden/detail/supervisor/worker_record.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/supervisor_options.hpp"
#include "jobwarden/worker_event.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden::detail {

/// Output a pump read for the host's line or chunk handlers, waiting for
/// `poll()` to deliver it outside the mutex. `before_event` keeps it in
/// order with the events: it goes out before the event that was that many
/// in the queue when it was read (a worker's last line before its exit).
struct QueuedOutput {
  std::size_t before_event = 0;
  std::string worker_id;
  int attempt = 1;
  OutputPiece piece;
};

/// The engine's whole state, behind one pointer so the engine can move.
template <class Clock>
struct EngineState {
  using time_point = typename Clock::time_point;
  using Record = WorkerRecord<time_point>;
  using event_handler = std::function<void(const WorkerEvent&)>;

  SupervisorOptions options;
  std::function<time_point()> now = [] { return Clock::now(); };
  mutable std::mutex mutex;  // records, queue, counters, events
  std::recursive_mutex poll_mutex;  // one poll at a time (handlers may re-enter); guards handlers
  std::map<std::string, std::unique_ptr<Record>> records;
  std::vector<Record*> order;
  LaunchQueue<Record> queue;  // pending workers waiting for a slot, by priority then FIFO
  std::vector<WorkerEvent> events;
  std::vector<ExitedWorker> exited;  // see settle_exits
  std::vector<event_handler> handlers;
  std::vector<output_line_handler> line_handlers;    // guarded by poll_mutex
  std::vector<output_chunk_handler> chunk_handlers;  // guarded by poll_mutex
  // Whether any line or chunk handler is registered: read by launch (the
  // route of `automatic` output) and the pumps without poll_mutex.
  std::atomic<bool> wants_lines{false};
  std::atomic<bool> wants_chunks{false};
  std::vector<QueuedOutput> output;  // read for the handlers, delivered by poll()
  EventLoop watcher;
  SharedSlotMembership shared_slots;  // options.shared_slots; after watcher: leaves before it goes
  CgroupTree cgroups;
  std::string cgroups_unavailable;  // why workers run without cgroups
  OrphanGuard guard;  // the orphan guard; declared after the records: stops before they go
  std::size_t running = 0;  // launching or running
  std::size_t active = 0;   // not terminal
  std::size_t next_auto_id = 1;
  std::vector<Record*> restarting;  // pending workers waiting out a backoff
  std::vector<Record*> live;        // running workers whose process is not yet reaped
  std::size_t active_pumps = 0;     // supervised streams being read
  std::size_t unwatched_pumps = 0;  // ...of which the event loop could not watch (pumped every poll)
  bool output_backlog = false;      // a pump left bytes behind at its budget
  std::size_t active_feeders = 0;   // stdin pipes the supervisor holds open
  std::array<std::size_t, all_worker_states.size()> counts{};  // workers per state
  std::optional<JobRecorder> recorder;  // the job directory, when there is a root
  RecoveryReport recovery;  // what was found of an earlier, dead supervisor
  // A recovery poll() drives (recover_in_background); the job is opened once it is done.
  std::unique_ptr<BackgroundRecovery> background_recovery;
  bool job_dirty = false;       // the journal's job line is behind the workers' states
  std::vector<Record*> unsaved;  // worker lines to append again
  bool stop_requested = false;  // stop.request was seen
  bool watches_stop_request = false;  // inotify wakes us; else looked at each refresh
  bool stop_request_unchecked = false;  // look at the next poll (first poll, or a failed read)
  bool control_requests_waiting = false;  // more control requests than one poll takes, or a failed read
  bool job_closed = false;      // the final job state is written
  bool exit_status_unwritten = false;  // set_exit_status() came after the final job line
  std::optional<time_point> next_job_refresh;
  time_point opened_at{};  // when the job directory was opened: the heartbeat follows its age
  std::optional<time_point> armed_deadline;  // what the timer was last armed for
  std::optional<time_point> last_job_write;  // when flush_job last appended a job line
  JobState last_job_state = JobState::pending;
  std::uint64_t status_write_failures = 0;
  std::error_code last_status_error;
  std::string last_status_error_path;
  std::mt19937_64 random{std::random_device{}()};  // backoff jitter
  bool accepting = true;      // submit() takes work (false after finish() or shutdown)
  bool shutting_down = false;  // nothing new starts or restarts
  // Fail fast (`options.halt`; note_halt_outcome, apply_halt).
  std::size_t halt_failures = 0;  // workers that ended for good without succeeding (cancelled aside)
  bool halted = false;        // the threshold was reached: nothing new starts or restarts
  bool halt_applied = false;  // poll() cancelled the queue (and with `now` began the stops)
  std::string halt_reason;    // "the job halted after 3 workers did not succeed (halt policy soon,fail=3)"
  bool halt_check_due = false;  // a failure outside reading_exits: a share is decided by the next apply_halt
  bool reading_exits = false;   // poll() is reading exits and deadlines (a halt is decided at once)
  std::uint64_t forgotten = 0;  // workers forgotten (their counts stay in `counts`)
  std::vector<std::string> forget_later;  // forget_finished_workers: ended, last line not yet written
  int null_in = -1;
  int null_out = -1;

  ~EngineState() {
    // A handler that threw out of the last poll() may have left some.
    for (const ExitedWorker& done : exited) done.collect();
    if (null_in >= 0) ::close(null_in);
    if (null_out >= 0) ::close(null_out);
  }
};

}  // namespace jobwarden::detail
