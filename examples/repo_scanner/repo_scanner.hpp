#pragma once
// The parts of repo_scanner and how they meet:
//   main.cpp       the host: options, one worker per repository, supervision, the verdict
//   worker.cpp     the worker: `repo_scanner --worker DIR` walks DIR and reports
//   view.cpp       what the host prints: the live view and the final results
//   demo_tree.cpp  the demo's repositories, one for every way a scan can end
//   scan_types.hpp the typed progress and result both halves agree on

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <jobwarden/jobwarden.hpp>

#include "scan_types.hpp"

/// Files the demo tree plants to make a worker misbehave on purpose.
inline constexpr const char* crash_marker = ".jobwarden-demo-crash";  ///< the worker raises SIGSEGV
inline constexpr const char* hang_marker =
    ".jobwarden-demo-hang";  ///< the worker hangs, with a helper process

/// `repo_scanner --worker [--pace DUR] DIR`: scans DIR, reporting through
/// `$JOBWARDEN_STATUS_FILE` when there is one. Returns the exit code.
int run_worker(const std::string& directory, std::chrono::milliseconds pace);

/// One repository of the demo tree and the outcome it is built to show.
struct DemoRepo {
  std::string name;  ///< directory name and worker id
  std::string path;
  jobwarden::WorkerState expected;
  std::vector<std::string> expected_dependencies;  ///< names its result must contain
};

/// Writes the demo repositories under `directory` (one of them is left out
/// on purpose: its directory does not exist).
std::vector<DemoRepo> make_demo_tree(const std::string& directory);

using JobStatus = jobwarden::JobStatus<ScanProgress>;
using WorkerStatus = jobwarden::WorkerStatus<ScanProgress>;

/// The host's output while the job runs: on a terminal, a block of lines
/// redrawn in place; otherwise a progress line now and then.
class LiveView {
 public:
  explicit LiveView(bool terminal) : terminal_(terminal) {}
  /// Shows the job as it is now.
  void update(const JobStatus& status);
  /// Prints a line that stays (above the live block on a terminal).
  void print_line(const std::string& line);
  /// Removes the live block.
  void close();
  /// "[2.5s] ": the time since the view was made, to start a line with.
  std::string stamp() const;

 private:
  void erase();
  void draw();
  bool terminal_;
  std::vector<std::string> block_;  ///< the live block's lines
  int drawn_ = 0;                   ///< how many lines of it are on the screen
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_line_{};
};

/// One line saying how a finished worker ended ("succeeded  25 files, 1 manifest...").
std::string outcome_line(const WorkerStatus& worker, bool killed, bool color);

/// The dependencies found per repository, then a table of outcomes.
void print_results(const JobStatus& status, const std::set<std::string>& killed, bool color);
