#pragma once
/// \file
/// What to run: `WorkerSpec` and its parts (output, restart policy, limits),
/// plain aggregates with defaults in the spirit of `reproc::options`. What
/// became of a worker (`WorkerInfo`) is in worker_info.hpp.

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// Where a worker's stdout or stderr goes (`kind`), and how the bytes get
/// there (`route`): written by the worker itself, or read by the supervisor,
/// which can then cap the log, keep its tail and hand lines to handlers.
struct OutputSpec {
  enum class Kind {
    /// The worker's log file in the job directory if there is one (appended
    /// to by restarts); else the supervisor's own stream, or — once a line or
    /// chunk handler is registered — the handlers alone.
    automatic,
    inherit,    ///< the supervisor's own stream
    discard,    ///< /dev/null (read by the supervisor: nowhere, but the tail and handlers see it)
    file,       ///< `path`, created or truncated (or appended to with `append`)
  };
  Kind kind = Kind::automatic;
  std::string path;     ///< for `Kind::file`
  bool append = false;  ///< for `Kind::file`: append instead of truncating
  /// Cap on the log file's size (a `file`, or the job directory's log).
  /// Output beyond it is counted (`WorkerInfo::stdout_dropped_bytes`) and
  /// dropped, and a note says so in the file; `keep` says which part stays.
  /// Only the supervisor can keep a cap: a capped log goes through it
  /// (`Route::direct` with a cap is refused at submit). Ignored for
  /// `inherit` and `discard`. The cap is per attempt: a restart that appends
  /// to the log may write as much again.
  std::optional<std::uint64_t> max_bytes;

  /// What a capped log keeps.
  enum class Keep {
    head,           ///< the first `max_bytes` bytes
    /// The first and the last `max_bytes / 2` bytes, the gap noted between
    /// them. The tail half waits in a scratch file next to the log (never in
    /// memory, whatever the cap) and is appended when the stream ends: until
    /// then the log holds the head, and it only ever grows.
    head_and_tail,
  };
  Keep keep = Keep::head;

  /// How the bytes travel.
  enum class Route {
    /// `supervisor` when something needs to see the bytes — a cap on a log
    /// file, a tail (`tail_bytes` after its default: stderr keeps one), a
    /// line or chunk handler registered before the spawn — else `direct`.
    /// An `inherit`ed stream stays `direct` unless a tail is asked for: the
    /// worker, not `poll()`, then waits when the terminal or pipe is full.
    automatic,
    /// The worker writes its file (or /dev/null, or the supervisor's stream)
    /// itself: zero supervisor CPU per byte. A log file is created before the
    /// spawn, even if the worker never writes; one that cannot be opened
    /// makes the worker `spawn_failed`. No cap, tail or handler sees the bytes.
    direct,
    /// Through a pipe the supervisor reads in `poll()`: line and chunk
    /// handlers, the tail in `WorkerInfo`, caps; a log file is created on the
    /// first byte (one that exists is emptied at the spawn, unless appended
    /// to), and one that cannot be created or written loses its bytes
    /// (counted, `WorkerInfo::output_error`), never the worker. Bytes only the
    /// log needs go from the pipe to the file in the kernel (splice(2), Linux).
    /// When the host does not call `poll()`, the pipe fills and the worker
    /// blocks on its next write, as in a shell pipeline; nothing is dropped
    /// unless a cap says so. Likewise a file that blocks (a FIFO nobody
    /// reads) or an inherited stream that does holds up `poll()`.
    supervisor,
  };
  Route route = Route::automatic;

  /// How many of the stream's last bytes the supervisor keeps in memory and
  /// shows in `WorkerInfo::stdout_tail` / `stderr_tail` (0: none). Unset: the
  /// default of the stream — 4096 bytes of stderr (also of stdout when it
  /// carries stderr, `stderr_to_stdout`), none of stdout, none of an
  /// `inherit`ed stream (see the README's "Worker output"). A tail makes an
  /// `automatic` route supervised.
  std::optional<std::size_t> tail_bytes;

  static OutputSpec inherit() { return make(Kind::inherit); }
  static OutputSpec discard() { return make(Kind::discard); }
  static OutputSpec to_file(std::string p, bool append = false) {
    OutputSpec spec = make(Kind::file);
    spec.path = std::move(p);
    spec.append = append;
    return spec;
  }
  /// A file capped at `limit` bytes.
  static OutputSpec to_capped_file(std::string p, std::uint64_t limit,
                                   Keep keep = Keep::head) {
    OutputSpec spec = to_file(std::move(p));
    spec.max_bytes = limit;
    spec.keep = keep;
    return spec;
  }
  /// Read by the supervisor: handlers and the tail see every byte, and the
  /// log file (the job directory's, for `automatic`; set `path` for `file`)
  /// is created on the first byte.
  static OutputSpec supervised(Kind kind = Kind::automatic) {
    OutputSpec spec = make(kind);
    spec.route = Route::supervisor;
    return spec;
  }

 private:
  static OutputSpec make(Kind kind) {
    OutputSpec spec;
    spec.kind = kind;
    return spec;
  }
};

/// When a worker that ended is started again.
enum class RestartPolicy {
  never,       ///< never restart
  on_failure,  ///< restart after failed, crashed, timed_out or stalled (never after cancel)
  always,      ///< restart after any end but a cancel, success included
};

/// Restart policy with backoff and a rate limit (systemd's StartLimitBurst).
struct RestartSpec {
  RestartPolicy policy = RestartPolicy::never;
  /// Most restarts of one worker (attempts = restarts + 1).
  int max_restarts = 3;
  /// Delay before the first restart; each further one multiplies it.
  std::chrono::milliseconds initial_backoff{200};
  double backoff_multiplier = 2.0;
  /// Upper bound of the delay.
  std::chrono::milliseconds max_backoff{30'000};
  /// Random spread of each delay, as a fraction (0.2: ±20%), so a crowd of
  /// workers that failed together does not restart together.
  double jitter = 0.2;
  /// More than `burst_limit` restarts within `burst_window` end the worker
  /// `failed` ("restart rate limit") instead of letting it flap.
  int burst_limit = 5;
  std::chrono::milliseconds burst_window{10'000};
  /// Exit codes by which a worker says "permanent failure: do not restart".
  std::vector<int> permanent_failure_exit_codes;
};

/// Resource limits set in the worker before exec (soft = hard = the value,
/// except CPU time, whose hard limit is one second later so the worker gets
/// SIGXCPU before SIGKILL). Unset: inherited from the supervisor.
struct ResourceLimits {
  std::optional<std::uint64_t> address_space_bytes;  ///< RLIMIT_AS
  std::optional<std::uint64_t> data_bytes;           ///< RLIMIT_DATA
  std::optional<std::chrono::seconds> cpu_time;      ///< RLIMIT_CPU
  std::optional<std::uint64_t> open_files;           ///< RLIMIT_NOFILE
  std::optional<std::uint64_t> core_file_bytes;      ///< RLIMIT_CORE (0: no core dumps)
  std::optional<std::uint64_t> file_size_bytes;      ///< RLIMIT_FSIZE
  std::optional<std::uint64_t> processes;            ///< RLIMIT_NPROC (per user!)
};

/// A signal sent to a worker some time before its timeout (Slurm's
/// `--signal=SIG@T`), so that it can save what it has before the stop
/// sequence begins. Sent to the worker's whole tree, the way the stop signal
/// is, at most once per attempt, and only if the worker still runs then.
struct DeadlineWarning {
  int signal = SIGUSR1;
  /// How long before the deadline: more than zero and less than the timeout.
  /// Measured from the deadline as it stands when checked, so a deadline
  /// that moves (a paused worker's) takes the warning with it.
  std::chrono::milliseconds before{0};
};

/// One worker to run. Only `argv` is required.
///
/// ```
/// jobwarden::WorkerSpec spec;
/// spec.argv = {"scan", "--repo", "src/"};
/// spec.timeout = std::chrono::seconds(30);
/// ```
struct WorkerSpec {
  /// The worker's id (docs/contract.md's id rules); empty means "the next number".
  std::string id;
  /// Program and arguments, no shell. `argv[0]` without a `/` is looked up in
  /// `PATH` (the worker's, if `env` sets one).
  std::vector<std::string> argv;
  /// Free text naming the worker for people and hosts (a repository, a
  /// shard), recorded with it and shown by every reader (`WorkerInfo::label`,
  /// the aggregated JSON's `label`); empty means none. Any valid UTF-8 up to
  /// `max_label_bytes` bytes, newlines and quotes included; anything else is
  /// refused at submit (`errc::invalid_argument`).
  std::string label;
  /// Variables to set (or override) in the worker's environment.
  std::map<std::string, std::string> env;
  /// Start from the supervisor's environment (true) or from an empty one.
  bool inherit_env = true;
  /// Working directory; empty means the supervisor's.
  std::string cwd;
  /// Where stdin comes from (default /dev/null).
  InputSpec stdin_spec{};
  /// Where stdout and stderr go. Both sent to the same file (`cmd >f 2>&1`)
  /// share one target — one open of it, or one pipe when either is
  /// supervised — so neither overwrites the other and lines keep the order
  /// they were written in, as with `stderr_to_stdout`; `stdout_spec` decides
  /// append or truncate, and a cap on either caps the file (the smaller
  /// one), its dropped bytes counted as stdout's.
  OutputSpec stdout_spec{};
  OutputSpec stderr_spec{};
  /// `2>&1`: stderr joins stdout's stream (one pipe or file, or the
  /// supervisor's stdout for `inherit`; bytes in the order written; handlers
  /// see them as `OutputStream::out`), and `stderr_spec` is ignored.
  bool stderr_to_stdout = false;
  /// Wall-clock limit from start; zero means none. On expiry: stop sequence, `timed_out`.
  std::chrono::milliseconds timeout{0};
  /// A signal some time before the timeout (`EventKind::warned`); needs a
  /// timeout. Unset: none.
  std::optional<DeadlineWarning> warning;
  /// Signal that begins the stop sequence.
  int stop_signal = SIGTERM;
  /// Time between the stop signal and SIGKILL.
  std::chrono::milliseconds grace_period{std::chrono::seconds(10)};
  /// Stall limit: a worker whose last report (its status file's heartbeat)
  /// is older than this is stopped and ends `stalled`; zero means none.
  /// Needs a job directory (`SupervisorOptions::root`).
  std::chrono::milliseconds stall_timeout{0};
  /// Whether and how it is started again after it ends.
  RestartSpec restart{};
  /// Limits set in the child before exec.
  ResourceLimits limits{};
  /// Which pending worker starts first when a slot frees: the highest
  /// priority, and among equal priorities the one submitted first. A restart
  /// waiting out its backoff goes back to its place: its priority, its
  /// submission order. Never stops a running worker.
  int priority = 0;
  /// The nice value the worker's process starts with (`setpriority`, set in
  /// the child before exec; everything it starts inherits it): -20 (most
  /// favoured) to 19 (least), `min_nice`..`max_nice`. Unset: the
  /// supervisor's own. A value below the supervisor's own needs privilege
  /// (CAP_SYS_NICE, or RLIMIT_NICE): without it the worker ends
  /// `spawn_failed`, the reason in `WorkerInfo::error`. Not the same as
  /// `priority`, which orders the queue.
  std::optional<int> nice;
  /// The CPU share of the worker's whole tree against the supervisor's other
  /// workers: its cgroup's `cpu.weight` (cgroup v2), `min_cpu_weight`..
  /// `max_cpu_weight`, 100 being the kernel's default (a worker with 50 gets
  /// half the CPU of one with 100 while both want more than there is).
  /// Written before the spawn; a worker without one gets 100 (its cgroup may
  /// have served a worker that had one). Needs the worker's own cgroup and
  /// the `cpu` controller there (docs/contract.md, "CPU share"): where
  /// either is missing the worker still runs, unweighted, and
  /// `WorkerInfo::cpu_weight_error` says why. Unset: 100.
  std::optional<int> cpu_weight;
};

/// The range of `WorkerSpec::nice`.
inline constexpr int min_nice = -20;
inline constexpr int max_nice = 19;
/// The range of `WorkerSpec::cpu_weight` (cgroup v2's `cpu.weight`).
inline constexpr int min_cpu_weight = 1;
inline constexpr int max_cpu_weight = 10000;
/// The kernel's `cpu.weight` of a cgroup: what a worker without one gets.
inline constexpr int default_cpu_weight = 100;

/// The longest `WorkerSpec::label` accepted, in bytes.
inline constexpr std::size_t max_label_bytes = 1024;

/// Kept for compatibility: the old name of `WorkerSpec` (a job runs many
/// workers; there is no spec of a job as such).
using JobSpec = WorkerSpec;

}  // namespace jobwarden

// WorkerInfo used to live here; code that includes this header for it keeps working.
#include "jobwarden/worker_info.hpp"
