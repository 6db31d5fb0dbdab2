#pragma once
/// \file
/// What to run (`WorkerSpec`) and what became of it (`WorkerInfo`): plain
/// aggregates with defaults, in the spirit of `reproc::options`.

#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "jobwarden/worker_state.hpp"

namespace jobwarden {

using namespace std::chrono_literals;

/// Where a worker's stdout or stderr goes.
struct OutputSpec {
  enum class Kind {
    automatic,  ///< the worker's log file in the job directory if there is one, else inherit
    inherit,    ///< the supervisor's own stream
    discard,    ///< /dev/null
    file,       ///< `path`, created or truncated (or appended to with `append`)
  };
  Kind kind = Kind::automatic;
  std::string path;     ///< for `Kind::file`
  bool append = false;  ///< for `Kind::file`: append instead of truncating

  static OutputSpec inherit() { return {Kind::inherit, {}, false}; }
  static OutputSpec discard() { return {Kind::discard, {}, false}; }
  static OutputSpec to_file(std::string p, bool append = false) {
    return {Kind::file, std::move(p), append};
  }
};

/// One worker to run. Only `argv` is required.
///
/// ```
/// jobwarden::WorkerSpec spec;
/// spec.argv = {"scan", "--repo", "src/"};
/// spec.timeout = 30s;
/// ```
struct WorkerSpec {
  /// The worker's id (SPEC.md's id rules); empty means "the next number".
  std::string id;
  /// Program and arguments, no shell. `argv[0]` without a `/` is looked up in
  /// `PATH` (the worker's, if `env` sets one).
  std::vector<std::string> argv;
  /// Variables to set (or override) in the worker's environment.
  std::map<std::string, std::string> env;
  /// Start from the supervisor's environment (true) or from an empty one.
  bool inherit_env = true;
  /// Working directory; empty means the supervisor's.
  std::string cwd;
  /// Where stdout and stderr go. stdin is always /dev/null.
  OutputSpec stdout_spec{};
  OutputSpec stderr_spec{};
  /// Wall-clock limit from start; zero means none. On expiry: stop sequence, `timed_out`.
  std::chrono::milliseconds timeout{0};
  /// Signal that begins the stop sequence.
  int stop_signal = SIGTERM;
  /// Time between the stop signal and SIGKILL.
  std::chrono::milliseconds grace_period{10s};
};

/// A job spec is the spec of one worker of the job.
using JobSpec = WorkerSpec;

/// CPU time and memory a finished worker used (from `wait4`).
struct ResourceUsage {
  std::chrono::microseconds user_cpu{0};
  std::chrono::microseconds system_cpu{0};
  long long max_rss_kib = 0;  ///< peak resident set size of the worker's main process
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
  std::string error;                 ///< why it never ran or why it was stopped
  std::optional<std::chrono::system_clock::time_point> started_at;
  std::optional<std::chrono::system_clock::time_point> ended_at;
  ResourceUsage usage;               ///< filled in when it ended
  std::vector<std::string> argv;     ///< as given in the spec

  /// The signal's name (`"SIGSEGV"`), empty when no signal ended it.
  std::string signal_name() const;
};

}  // namespace jobwarden

#include "jobwarden/signals.hpp"

inline std::string jobwarden::WorkerInfo::signal_name() const {
  return signal ? jobwarden::signal_name(*signal) : std::string{};
}
