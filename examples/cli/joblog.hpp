#pragma once
// `jobwarden status --format tsv`: a job log for `sort`, `awk` and `cut`, in
// the spirit of GNU parallel's --joblog. One header line, then one line per
// worker (natural id order), fields separated by tabs:
//
//   id  attempt  start  runtime  exit  signal  state  label  command
//
// - start: when its last attempt started (RFC 3339 UTC, as in the JSON).
// - runtime: seconds of that attempt, three decimals: to its end, or to now
//   while it runs (`-` for one that ended without a recorded end: `lost`).
// - exit / signal: its exit code, or the name of the signal that ended it.
// - command: its argv as a POSIX shell reads it back (words with anything
//   but [A-Za-z0-9_@%+=:,./-] in single quotes).
// - `-` stands for a value that is not there (never started, no exit code, no
//   label...). A field that is `-` itself is written `\-`.
// - Inside a field, `\` is written `\\`, a tab `\t`, a newline `\n`, a
//   carriage return `\r`, and any other control byte `\xHH`, so each worker
//   stays on one line and every tab separates fields.

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <jobwarden/detail/time_format.hpp>
#include <jobwarden/jobwarden.hpp>

namespace jobwarden_cli {

/// The job log's header line (without its newline).
inline constexpr std::string_view joblog_header = "id\tattempt\tstart\truntime\texit\tsignal\tstate\tlabel\tcommand";

/// `text` as one field of the job log (escaped as the file comment says).
inline std::string joblog_field(std::string_view text) {
  if (text == "-") return "\\-";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default:
        if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
        else out += c;
    }
  }
  return out;
}

/// `argv` as words a POSIX shell reads back into the same argv.
inline std::string shell_words(const std::vector<std::string>& argv) {
  auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
  };
  std::string out;
  for (const std::string& word : argv) {
    if (!out.empty()) out += ' ';
    bool bare = !word.empty();
    for (char c : word) bare = bare && plain(c);
    if (bare) {
      out += word;
      continue;
    }
    out += '\'';
    for (char c : word) {
      if (c == '\'') out += "'\\''";
      else out += c;
    }
    out += '\'';
  }
  return out;
}

/// The job log of `status` (header included, each line ending in a newline);
/// a running worker's runtime counts to `now`.
inline std::string render_joblog(const jobwarden::JobStatus<>& status, jobwarden::WallTime now) {
  std::string out(joblog_header);
  out += '\n';
  const std::string none = "-";
  for (const auto& worker : status.workers) {
    std::string runtime = none;
    if (worker.started_at) {
      std::optional<jobwarden::WallTime> until = worker.ended_at;
      if (!until && worker.state == jobwarden::WorkerState::running) until = now;
      if (until) {
        runtime = fmt::format("{:.3f}", std::max(0.0, jobwarden::detail::seconds_between(*worker.started_at, *until)));
      }
    }
    const bool has_command = worker.argv && !worker.argv->empty();
    out += joblog_field(worker.id);
    out += '\t';
    out += std::to_string(worker.attempt);
    out += '\t';
    out += worker.started_at ? jobwarden::detail::format_rfc3339(*worker.started_at) : none;
    out += '\t';
    out += runtime;
    out += '\t';
    out += worker.exit_code ? std::to_string(*worker.exit_code) : none;
    out += '\t';
    out += worker.signal ? joblog_field(*worker.signal) : none;
    out += '\t';
    out += jobwarden::to_string(worker.state);
    out += '\t';
    out += worker.label ? joblog_field(*worker.label) : none;
    out += '\t';
    out += has_command ? joblog_field(shell_words(*worker.argv)) : none;
    out += '\n';
  }
  return out;
}

}  // namespace jobwarden_cli
