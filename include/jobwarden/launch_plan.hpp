#pragma once
/// \file
/// The two public types a custom `Launcher` works with: `LaunchPlan` (what
/// will be executed for a worker, which `Launcher::prepare` may rewrite) and
/// `ExitStatus` (how the local process ended, which
/// `Launcher::interpret_exit` may refine). Plain data, no system headers.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace jobwarden {

/// What the supervisor will execute for one attempt of a worker. Before
/// `Launcher::prepare` runs, `argv` is the worker's argv and `env` its whole
/// environment (`KEY=value` entries, the `JOBWARDEN_*` variables included);
/// a launcher may rewrite both (wrap the program in `srun`, drop variables)
/// and must set `path`, the program to execute.
struct LaunchPlan {
  std::string path;               ///< the program to execute (resolved: no PATH lookup follows)
  std::vector<std::string> argv;  ///< its arguments, argv[0] included
  std::vector<std::string> env;   ///< its environment, `KEY=value`
  std::string cwd;                ///< working directory (empty: the supervisor's)
};

/// How the local process of a worker ended (from `waitid`/`wait4`).
struct ExitStatus {
  std::optional<int> exit_code;  ///< set when it exited normally
  std::optional<int> signal;     ///< set when a signal ended it
  bool core_dumped = false;
  std::chrono::microseconds user_cpu{0};
  std::chrono::microseconds system_cpu{0};
  long long max_rss_kib = 0;  ///< peak resident set size
};

}  // namespace jobwarden
