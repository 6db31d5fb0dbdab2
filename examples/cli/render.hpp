#pragma once
// Text rendering for `jobwarden run` and `jobwarden status`: progress bars,
// worker tables and summaries, from the aggregated `JobStatus` any reader
// gets. Pure functions from a status to lines of text; the callers decide
// where and how often they are drawn.
//
// Text is put together with fmt. Columns of ids, states, counts and durations
// (ASCII: ids are `[A-Za-z0-9._-]`) are aligned with fmt's width (`{:<{}}`);
// columns of text a worker chose (its progress payload, its message) keep
// pad(), which counts UTF-8 code points as the terminal shows them.

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <jobwarden/jobwarden.hpp>

namespace jobwarden_cli {

/// Columns and rows of the terminal on `fd` (80x24 when it cannot be asked).
struct TerminalSize {
  int columns = 80;
  int rows = 24;
};

inline TerminalSize terminal_size(int fd) {
  TerminalSize size;
  struct winsize window {};
  if (::ioctl(fd, TIOCGWINSZ, &window) == 0) {
    if (window.ws_col >= 20) size.columns = window.ws_col;
    if (window.ws_row >= 5) size.rows = window.ws_row;
  }
  return size;
}

/// `text` made safe for a terminal: workers choose their messages and errors,
/// and an escape sequence in one must not drive the user's terminal.
inline std::string printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
}

/// How many columns `text` takes (UTF-8 code points; wide characters are rare
/// enough in status lines to count as one).
inline std::size_t display_width(const std::string& text) {
  std::size_t width = 0;
  for (char c : text) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return width;
}

/// `text` cut to at most `width` columns, never inside a UTF-8 sequence;
/// a cut is marked with `...`.
inline std::string clip(const std::string& text, std::size_t width) {
  if (display_width(text) <= width) return text;
  const std::size_t keep = width > 3 ? width - 3 : 0;
  std::size_t columns = 0, end = 0;
  while (end < text.size()) {
    std::size_t next = end + 1;
    while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
    if (columns + 1 > keep) break;
    ++columns;
    end = next;
  }
  return text.substr(0, end) + std::string(std::min<std::size_t>(3, width), '.');
}

/// `text` padded with spaces to `width` columns (left-aligned).
inline std::string pad(const std::string& text, std::size_t width) {
  const std::size_t used = display_width(text);
  return used >= width ? text : text + std::string(width - used, ' ');
}

/// `{done, total}` when `progress` is the contract's `{"done": N, "total": M}` (docs/contract.md)
/// with a positive total.
inline std::optional<std::pair<double, double>> progress_counts(const nlohmann::json& progress) {
  if (!progress.is_object()) return std::nullopt;
  auto done = progress.find("done");
  auto total = progress.find("total");
  if (done == progress.end() || total == progress.end() || !done->is_number() || !total->is_number()) {
    return std::nullopt;
  }
  const double d = done->get<double>(), t = total->get<double>();
  if (!std::isfinite(d) || !std::isfinite(t) || t <= 0 || d < 0) return std::nullopt;
  return std::make_pair(d, t);
}

/// `[#####.....]` filled to `fraction` (clamped to 0..1), `width` inner columns.
inline std::string bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(std::floor(fraction * width + 1e-9));
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(width - filled), '.') + "]";
}

/// A whole number without a fraction, else one decimal (`"40"`, `"2.5"`).
inline std::string number_text(double value) {
  if (std::fabs(value - std::round(value)) < 1e-9 && std::fabs(value) < 1e15) {
    return fmt::format("{}", std::llround(value));
  }
  return fmt::format("{:.1f}", value);
}

/// A worker's progress as `[####......]  40%  40/120`; other progress
/// payloads as compact JSON; nothing when there is none.
inline std::string progress_text(const std::optional<nlohmann::json>& progress, int bar_width) {
  if (!progress || progress->is_null()) return {};
  if (auto counts = progress_counts(*progress)) {
    const double fraction = counts->first / counts->second;
    const int percent = static_cast<int>(std::floor(std::clamp(fraction, 0.0, 1.0) * 100));
    return fmt::format("{} {:>3}%  {}/{}", bar(fraction, bar_width), percent, number_text(counts->first),
                       number_text(counts->second));
  }
  return printable(progress->dump());
}

/// How a finished worker ended, in a few words: `exit 3`, `SIGSEGV (core
/// dumped)`, or its error; for a running one, its message.
inline std::string outcome_text(const jobwarden::WorkerStatus<>& worker) {
  std::string text;
  if (worker.exit_code && worker.state != jobwarden::WorkerState::succeeded) {
    text = fmt::format("exit {}", *worker.exit_code);
  } else if (worker.signal) {
    text = *worker.signal + (worker.core_dumped ? " (core dumped)" : "");
  }
  std::string words;
  if (worker.error && !worker.error->empty()) words = *worker.error;
  else if (worker.message && !worker.message->empty()) words = *worker.message;
  if (!words.empty()) text += (text.empty() ? "" : ": ") + words;
  return printable(text);
}

/// `2026-11-21 10:00:00` (UTC) for a JSON timestamp as the aggregator writes
/// it (`2026-11-21T10:00:00.123Z`), `-` for null.
inline std::string time_text(const nlohmann::json& timestamp) {
  if (!timestamp.is_string()) return "-";
  std::string text = timestamp.get<std::string>();
  if (text.size() >= 19 && text[10] == 'T') return text.substr(0, 10) + " " + text.substr(11, 8);
  return printable(text);
}

/// How long ago `time` was, compactly (`"12.5s"`, `"2m05s"`).
inline std::string age_text(const std::optional<jobwarden::WallTime>& since,
                            const std::optional<jobwarden::WallTime>& until = std::nullopt) {
  if (!since) return "";
  const auto end = until ? *until : std::chrono::system_clock::now();
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(end - *since);
  if (elapsed.count() < 0) elapsed = std::chrono::milliseconds(0);
  return jobwarden::format_duration(elapsed);
}

/// `8 workers: 3 running, 2 pending, 2 succeeded, 1 failed`.
inline std::string summary_text(const jobwarden::JobSummary& summary) {
  return fmt::format("{} {}: {} running, {} pending, {} succeeded, {} failed", summary.total,
                     summary.total == 1 ? "worker" : "workers", summary.running, summary.pending,
                     summary.succeeded, summary.failed);
}

/// The first line about a job: `job "scan-42" running, 12.5s, supervisor 4242 alive`.
inline std::string job_headline(const jobwarden::JobStatus<>& status) {
  const auto elapsed = std::chrono::milliseconds(static_cast<long long>(std::llround(status.elapsed_seconds * 1000)));
  std::string text = fmt::format("job \"{}\" {}, {}", status.job_id, jobwarden::to_string(status.state),
                                 jobwarden::format_duration(elapsed));
  if (status.supervisor.pid) {
    text += fmt::format(", supervisor {} {}", *status.supervisor.pid, status.supervisor.alive ? "alive" : "gone");
  }
  return text;
}

/// What `jobwarden status` prints: headline, counts, one row per worker
/// (id, state, progress bar, outcome or message, stale flag) and the files
/// that could not be read. At most `max_rows` lines (0: no limit), each at
/// most `columns` wide.
inline std::vector<std::string> render_status(const jobwarden::JobStatus<>& status, std::size_t columns,
                                              std::size_t max_rows = 0) {
  std::vector<std::string> lines;
  lines.push_back(job_headline(status));
  lines.push_back(fmt::format("{} ({}/{} done)", summary_text(status.summary), status.summary.done,
                              status.summary.total));
  std::size_t id_width = 2;
  for (const auto& worker : status.workers) id_width = std::max(id_width, std::min<std::size_t>(24, worker.id.size()));
  constexpr std::size_t state_width = 12;
  constexpr int bar_width = 20;
  constexpr std::size_t progress_width = bar_width + 2 + 4 + 2 + 9;
  std::vector<std::string> rows;
  for (const auto& worker : status.workers) {
    // A paused worker is running with a flag (its state keeps its meaning).
    const std::string state =
        worker.paused ? "paused" : std::string(jobwarden::to_string(worker.state));
    std::string row = fmt::format("{:<{}}  {:<{}}  {}  ", clip(worker.id, id_width), id_width, state, state_width,
                                  pad(progress_text(worker.progress, bar_width), progress_width));
    std::string detail;
    if (worker.state == jobwarden::WorkerState::running) {
      detail = age_text(worker.started_at);
      if (worker.message && !worker.message->empty()) detail += "  " + printable(*worker.message);
    } else {
      detail = outcome_text(worker);
    }
    if (worker.attempt > 1) detail = fmt::format("attempt {}  {}", worker.attempt, detail);
    if (worker.stale) detail = "STALE  " + detail;
    rows.push_back(row + detail);
  }
  if (!rows.empty()) {
    lines.emplace_back();
    lines.push_back(fmt::format("{:<{}}  {:<{}}  {:<{}}  DETAIL", "ID", id_width, "STATE", state_width, "PROGRESS",
                                progress_width));
  }
  std::vector<std::string> tail;
  if (!status.errors.empty()) {
    tail.emplace_back();
    tail.push_back("unreadable files:");
    for (const auto& error : status.errors) {
      tail.push_back(fmt::format("  {}: {}{}", printable(error.path), printable(error.error),
                                 error.detail.empty() ? "" : " (" + printable(error.detail) + ")"));
    }
  }
  std::size_t room = rows.size();
  if (max_rows != 0) {
    const std::size_t fixed = lines.size() + tail.size();
    room = max_rows > fixed + 1 ? max_rows - fixed - 1 : 1;
  }
  for (std::size_t i = 0; i < rows.size() && i < room; ++i) lines.push_back(rows[i]);
  if (rows.size() > room) lines.push_back(fmt::format("... {} more workers", rows.size() - room));
  lines.insert(lines.end(), tail.begin(), tail.end());
  for (auto& line : lines) line = clip(line, columns);
  return lines;
}

/// What `jobwarden run` redraws on a terminal: counts, an overall bar, one
/// bar per running worker — the slowest first (least progress, then longest
/// running) — and the latest failures, within `max_rows` lines.
inline std::vector<std::string> render_live(const jobwarden::JobStatus<>& status, std::chrono::milliseconds elapsed,
                                            std::size_t columns, std::size_t max_rows) {
  using jobwarden::WorkerState;
  std::vector<std::string> lines;
  const auto& summary = status.summary;
  const double overall = summary.total == 0 ? 0.0 : static_cast<double>(summary.done) / static_cast<double>(summary.total);
  lines.push_back(
      fmt::format("job \"{}\"  {}  {}", status.job_id, jobwarden::format_duration(elapsed), summary_text(summary)));
  lines.push_back(fmt::format("{} {}/{} done", bar(overall, 30), summary.done, summary.total));

  std::vector<const jobwarden::WorkerStatus<>*> running;
  for (const auto& worker : status.workers) {
    if (worker.state == WorkerState::running) running.push_back(&worker);
  }
  auto fraction = [](const jobwarden::WorkerStatus<>* worker) {
    if (!worker->progress) return 2.0;  // unknown: after every worker that reports progress
    auto counts = progress_counts(*worker->progress);
    return counts ? counts->first / counts->second : 2.0;
  };
  std::stable_sort(running.begin(), running.end(), [&](const auto* a, const auto* b) {
    const double fa = fraction(a), fb = fraction(b);
    if (fa != fb) return fa < fb;
    return a->started_at.value_or(jobwarden::WallTime::max()) < b->started_at.value_or(jobwarden::WallTime::max());
  });
  std::vector<const jobwarden::WorkerStatus<>*> failures;
  for (const auto& worker : status.workers) {
    if (jobwarden::is_terminal(worker.state) && worker.state != WorkerState::succeeded) failures.push_back(&worker);
  }

  const std::size_t room = max_rows > lines.size() + 1 ? max_rows - lines.size() - 1 : 1;
  const std::size_t failure_rows = std::min<std::size_t>(failures.size(), std::min<std::size_t>(3, room / 3));
  const std::size_t worker_rows = std::min(running.size(), room - failure_rows);
  std::size_t id_width = 2;
  for (std::size_t i = 0; i < worker_rows; ++i) id_width = std::max(id_width, std::min<std::size_t>(16, running[i]->id.size()));
  for (std::size_t i = 0; i < worker_rows; ++i) {
    const auto& worker = *running[i];
    const std::string progress = progress_text(worker.progress, 20);
    std::string row = fmt::format("  {:<{}}  {}  {:>6}", clip(worker.id, id_width), id_width,
                                  pad(progress.empty() ? "(no progress reported)" : progress, 20 + 2 + 4 + 2 + 9),
                                  age_text(worker.started_at));
    if (worker.stale) row += "  STALE";
    if (worker.message && !worker.message->empty()) row += "  " + printable(*worker.message);
    lines.push_back(row);
  }
  if (running.size() > worker_rows) {
    lines.push_back(fmt::format("  ... {} more running", running.size() - worker_rows));
  }
  for (std::size_t i = failures.size() - failure_rows; i < failures.size(); ++i) {
    const auto& worker = *failures[i];
    lines.push_back(fmt::format("  {:<{}}  {}  {}", clip(worker.id, id_width), id_width,
                                jobwarden::to_string(worker.state), outcome_text(worker)));
  }
  for (auto& line : lines) line = clip(line, columns);
  return lines;
}

}  // namespace jobwarden_cli
