#pragma once
/// \file
/// What became of a worker: `WorkerInfo` (a snapshot the supervisor hands
/// out in events and queries) and `ResourceUsage`.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "jobwarden/process_identity.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// CPU time and memory a finished worker used: its main process's (from
/// `wait4`, which counts the children it waited for too) and, where the
/// worker has a cgroup, every process of its tree's.
struct ResourceUsage {
  std::chrono::microseconds user_cpu{0};
  std::chrono::microseconds system_cpu{0};
  long long max_rss_kib = 0;  ///< peak resident set size of the worker's main process
  /// The CPU time of every process the worker ran, waited for or not
  /// (daemonized, escaped, still running at its end): its cgroup's
  /// `cpu.stat` for this attempt. Unset without a cgroup (portable build,
  /// cgroups unavailable or turned off, a worker that never ran).
  std::optional<std::chrono::microseconds> tree_user_cpu;
  std::optional<std::chrono::microseconds> tree_system_cpu;
};

/// Everything known about one worker: a snapshot, safe to copy and keep.
struct WorkerInfo {
  std::string id;
  WorkerState state = WorkerState::pending;
  int attempt = 0;                   ///< 1-based once started
  int pid = 0;                       ///< 0 until started
  unsigned long long process_start_time = 0;  ///< kernel start time (clock ticks since boot), proves pid identity
  std::optional<int> exit_code;      ///< set when it exited normally
  std::optional<int> signal;         ///< set when a signal ended it
  bool core_dumped = false;
  std::string error;                 ///< why it never ran or why it was stopped (the supervisor's word)
  /// The worker's own word, from its status file (`WorkerStatusWriter`'s
  /// `set_message` and `set_error`), for the current (or last) attempt:
  /// its latest message and its error (empty: none reported, or no job
  /// directory). Brought up to date when the supervisor looks at the status
  /// file anyway — a stall check (`WorkerSpec::stall_timeout`) while it runs,
  /// and once when it ends — and only when the file changed. Not in the
  /// journal: readers take them from the status file themselves.
  std::string message;
  std::string worker_error;
  std::optional<std::chrono::system_clock::time_point> started_at;
  std::optional<std::chrono::system_clock::time_point> ended_at;
  ResourceUsage usage;               ///< filled in when it ended
  /// Output of this attempt that was lost: past a capped log's limit (the
  /// gap of a head-and-tail log), or refused by a log that could not be
  /// written (`output_error`). Counted as the stream goes. With
  /// `stderr_to_stdout` (or one file named for both) everything is stdout's.
  std::uint64_t stdout_dropped_bytes = 0;
  std::uint64_t stderr_dropped_bytes = 0;
  /// The last bytes of each stream the supervisor read
  /// (`OutputSpec::tail_bytes`), as of this snapshot (brought up to date at
  /// each `poll()`, complete at the exit event); empty for a stream that went
  /// direct. With `stderr_to_stdout`, stdout's holds both.
  std::string stdout_tail;
  std::string stderr_tail;
  /// The log files of this attempt: a direct one from the spawn, a
  /// supervised one once its first byte created it; empty when there is none.
  /// With `stderr_to_stdout` (or one file named for both) both name it.
  std::string stdout_log;
  std::string stderr_log;
  /// Why output was lost: a log that could not be created or written
  /// (EACCES, ENOSPC, EMFILE...) or a supervisor's stream that refused it;
  /// the bytes are counted as dropped. Never ends the worker.
  std::string output_error;
  /// stdin fed by the supervisor (`InputSpec::Kind::host`), for the current
  /// (or last) attempt: bytes written to the worker's pipe so far.
  std::uint64_t stdin_written_bytes = 0;
  /// Bytes queued and not yet written (`data` and `write_input`'s; before
  /// the worker starts, only `write_input`'s): what the supervisor holds for
  /// this worker. Bounding it is the host's business: wait while it is high
  /// before writing more. 0 once feeding stopped (the bytes left are
  /// dropped; `input_error` counts them).
  std::uint64_t stdin_pending_bytes = 0;
  /// Why feeding stopped before everything was written, e.g. "stdin closed by
  /// the worker with 10485760 bytes unwritten" (EPIPE: the worker closed its
  /// stdin or ended). Reported, never fatal: the worker's outcome is its own.
  /// Empty while all is well; cleared when an attempt starts.
  std::string input_error;
  std::vector<std::string> argv;     ///< as given in the spec
  /// A record kept from an earlier run of a resumed job
  /// (`SupervisorOptions::resume_finished_job`), not run by this supervisor:
  /// a worker submitted again that had succeeded with the same argv (skipped;
  /// its attempt, times and exit code are the earlier run's), or one of the
  /// earlier run's workers that was not submitted this time.
  bool kept = false;
  std::string label;                 ///< as given in the spec (`WorkerSpec::label`); empty: none
  /// Paused by the host (`JobSupervisor::pause`) and not yet resumed. A flag
  /// on a `running` worker, not a state of its own: the state stays
  /// `running`. Its timeout and stall clocks stand still while it is set.
  bool paused = false;
  /// Why this attempt runs without the CPU weight its spec asked for
  /// (`WorkerSpec::cpu_weight`): no cgroup of its own (portable build,
  /// cgroups unavailable or turned off), no `cpu` controller where its
  /// cgroup is, or a write the kernel refused. Set when it starts (the
  /// `started` event has it), cleared at each attempt; empty when the weight
  /// was applied or none was asked for. Never stops the worker.
  std::string cpu_weight_error;

  /// The signal's name (`"SIGSEGV"`), empty when no signal ended it.
  std::string signal_name() const;

  /// The worker's process as pid and start time (zeros until started).
  ProcessIdentity identity() const { return ProcessIdentity{pid, process_start_time}; }
};

}  // namespace jobwarden

#include "jobwarden/signals.hpp"

inline std::string jobwarden::WorkerInfo::signal_name() const {
  return signal ? jobwarden::signal_name(*signal) : std::string{};
}
