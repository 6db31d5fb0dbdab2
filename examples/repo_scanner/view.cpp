// What repo_scanner prints: the live view (everything it shows comes from
// the job directory through StatusAggregator, as a web endpoint would read
// it) and the results at the end.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <optional>

#include "repo_scanner.hpp"

using jobwarden::WorkerState;

namespace {

std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* pattern, ...) {
  char buffer[512];
  va_list args;
  va_start(args, pattern);
  std::vsnprintf(buffer, sizeof buffer, pattern, args);
  va_end(args);
  return buffer;
}

std::string state_name(WorkerState state) { return std::string(jobwarden::to_string(state)); }

/// The state name padded to a column, in colour on a terminal.
std::string painted_state(WorkerState state, bool color) {
  std::string text = format("%-10s", state_name(state).c_str());
  if (!color) return text;
  const char* code = state == WorkerState::succeeded   ? "32"
                     : state == WorkerState::timed_out ? "33"
                                                       : "31";
  return format("\x1b[%sm%s\x1b[0m", code, text.c_str());
}

std::string seconds(double value) { return format("%.1fs", value); }

/// "1 manifest", "3 manifests".
std::string count(std::size_t n, const char* one, const char* many) {
  return format("%zu %s", n, n == 1 ? one : many);
}

/// How long the worker ran.
std::string run_time(const WorkerStatus& worker) {
  if (!worker.started_at || !worker.ended_at) return "-";
  return seconds(std::chrono::duration<double>(*worker.ended_at - *worker.started_at).count());
}

/// "at file 13 of 40", or empty without progress.
std::string position(const WorkerStatus& worker) {
  if (!worker.progress) return {};
  return format("at file %zu of %zu", worker.progress->files_done + 1,
                worker.progress->files_total);
}

std::string join(const std::vector<std::string>& names, std::size_t at_most) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < at_most; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > at_most) out += format(" and %zu more", names.size() - at_most);
  return out;
}

/// The worker's result, if it wrote a well-formed one.
std::optional<ScanResult> result_of(const WorkerStatus& worker) {
  try {
    if (!worker.result.is_null()) return worker.result.get<ScanResult>();
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

int terminal_width() {
  winsize size{};
  return ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 20 ? size.ws_col : 100;
}

}  // namespace

// ---- the live view ----------------------------------------------------------

void LiveView::update(const JobStatus& status) {
  const auto& s = status.summary;
  std::string headline = stamp() + format("%zu of %zu repositories done", s.done, s.total);
  if (s.failed > 0) headline += format(" (%zu did not succeed)", s.failed);
  headline += format(", %zu running", s.running);
  if (s.pending > 0) headline += format(", %zu waiting", s.pending);
  block_.assign(1, headline);
  std::string running_summary;  // the one-line form, for logs
  for (const WorkerStatus& worker : status.workers) {
    if (worker.state != WorkerState::running) continue;
    std::string counts = worker.progress ? format("%zu/%zu", worker.progress->files_done,
                                                  worker.progress->files_total)
                                         : "";
    std::string doing = worker.progress && !worker.progress->current_file.empty()
                            ? worker.progress->current_file
                            : worker.message.value_or("starting");
    std::string silent;
    if (worker.stale && worker.last_update) {
      // Alive (the supervisor has not reaped it) but not reporting: stuck, not dead.
      double quiet =
          std::chrono::duration<double>(std::chrono::system_clock::now() - *worker.last_update)
              .count();
      silent = format("silent %s, pid %d alive", seconds(quiet).c_str(), worker.pid.value_or(0));
      doing = silent + ": " + worker.message.value_or(doing);
    }
    block_.push_back(format("  %-16s %9s %s  %s", worker.id.c_str(), counts.c_str(),
                            counts.empty() ? "     " : "files", doing.c_str()));
    running_summary += format("%s%s %s%s", running_summary.empty() ? " | " : ", ",
                              worker.id.c_str(), counts.empty() ? "starting" : counts.c_str(),
                              silent.empty() ? "" : (" (" + silent + ")").c_str());
  }
  if (terminal_) {
    erase();
    draw();
  } else if (std::chrono::steady_clock::now() - last_line_ >= std::chrono::seconds(1)) {
    last_line_ = std::chrono::steady_clock::now();
    std::printf("%s%s\n", headline.c_str(), running_summary.c_str());
    std::fflush(stdout);
  }
}

std::string LiveView::stamp() const {
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started_;
  return "[" + seconds(elapsed.count()) + "] ";
}

void LiveView::print_line(const std::string& line) {
  erase();
  std::printf("%s\n", line.c_str());
  if (terminal_) draw();
  std::fflush(stdout);
}

void LiveView::close() {
  erase();
  block_.clear();
  std::fflush(stdout);
}

void LiveView::erase() {
  if (drawn_ > 0) {
    std::printf("\x1b[%dF\x1b[J", drawn_);  // up to the block's first line, clear below
    drawn_ = 0;
  }
}

void LiveView::draw() {
  const std::size_t width = static_cast<std::size_t>(terminal_width() - 1);
  for (const std::string& line : block_) {
    std::printf("%s\n", line.substr(0, width).c_str());  // a wrapped line would break the redraw
  }
  drawn_ = static_cast<int>(block_.size());
  std::fflush(stdout);
}

// ---- the results ----------------------------------------------------------

std::string outcome_line(const WorkerStatus& worker, bool killed, bool color) {
  std::string details;
  switch (worker.state) {
    case WorkerState::succeeded:
      if (auto result = result_of(worker)) {
        std::size_t dependencies = 0;
        for (const Manifest& manifest : result->manifests) {
          dependencies += manifest.dependencies.size();
        }
        details = count(result->files_scanned, "file", "files") + ", " +
                  count(result->manifests.size(), "manifest", "manifests") + ", " +
                  count(dependencies, "dependency", "dependencies");
      } else {
        details = "exited 0 but wrote no result";  // the silent "empty results" of hand-written runners, made visible
      }
      break;
    case WorkerState::failed:
      details = format("exit %d: %s", worker.exit_code.value_or(-1),
                       worker.error.value_or("(no error reported)").c_str());
      break;
    case WorkerState::crashed:
      details = worker.signal.value_or("signal") + " " + position(worker);
      if (worker.message) details += " (" + *worker.message + ")";
      break;
    case WorkerState::timed_out:
      details = "stopped " + position(worker) + " by its timeout; " +
                (killed ? "it ignored SIGTERM, so SIGKILL went to its whole process tree"
                        : "SIGTERM stopped its process tree");
      break;
    default:
      details = position(worker);
      if (worker.error) details += (details.empty() ? "" : ": ") + *worker.error;
      break;
  }
  return format("  %-16s %s %6s  %s", worker.id.c_str(), painted_state(worker.state, color).c_str(),
                run_time(worker).c_str(), details.c_str());
}

void print_results(const JobStatus& status, const std::set<std::string>& killed, bool color) {
  std::printf("\nDependencies found (in the repositories whose scan succeeded)\n");
  for (const WorkerStatus& worker : status.workers) {
    auto result = result_of(worker);
    if (worker.state != WorkerState::succeeded || !result) continue;
    std::printf("  %s (%zu files)\n", worker.id.c_str(), result->files_scanned);
    if (result->manifests.empty()) std::printf("    no manifests\n");
    int width = 14;
    for (const Manifest& manifest : result->manifests) {
      width = std::max(width, static_cast<int>(manifest.path.size()));
    }
    for (const Manifest& manifest : result->manifests) {
      std::printf("    %-*s  %-7s %s\n", std::min(width, 40), manifest.path.c_str(),
                  manifest.ecosystem.c_str(),
                  manifest.dependencies.empty() ? "(no dependencies listed)"
                                                : join(manifest.dependencies, 8).c_str());
    }
  }

  std::printf("\nOutcomes\n  %-16s %-10s %6s  %s\n", "repository", "outcome", "time", "details");
  std::map<WorkerState, int> counts;
  for (const WorkerStatus& worker : status.workers) {
    std::printf("%s\n", outcome_line(worker, killed.count(worker.id) > 0, color).c_str());
    ++counts[worker.state];
  }
  std::string tally;
  for (const auto& [state, count] : counts) {
    tally += format("%s%d %s", tally.empty() ? "" : ", ", count, state_name(state).c_str());
  }
  std::printf("\n%s: %s. Job %s after %s.\n",
              count(status.summary.total, "repository", "repositories").c_str(), tally.c_str(),
              std::string(jobwarden::to_string(status.state)).c_str(),
              seconds(status.elapsed_seconds).c_str());
}
