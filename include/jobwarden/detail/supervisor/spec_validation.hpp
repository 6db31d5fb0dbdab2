#pragma once
/// \file
/// Checking a `WorkerSpec` before it is accepted: what `JobSupervisor::submit`
/// rejects (empty argv, negative durations, a bad stop signal, a warning
/// before the deadline that cannot be sent in time, stall
/// detection without a job directory, an inconsistent stdin spec, a nice
/// value or CPU weight out of range, a capped log that goes direct, bad
/// environment names, a label that is too long or
/// not UTF-8). Worker ids are checked by
/// `submit` itself, against the job's other workers.

#include <csignal>
#include <string>
#include <system_error>

#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/worker_io.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// Whether a stdin spec is consistent: a file needs a path, and each field
/// belongs to its kind (a `path` or `data` the kind would ignore is a
/// mistake, not something to drop silently).
inline bool validate_input(const InputSpec& input, std::error_code* ec) {
  auto reject = [&](const std::string& why) {
    report(ec, make_error_code(errc::invalid_argument), "invalid worker spec: stdin_spec" + why);
    return false;
  };
  if (input.kind != InputSpec::Kind::null && input.kind != InputSpec::Kind::file &&
      input.kind != InputSpec::Kind::host && input.kind != InputSpec::Kind::inherit) {
    return reject(".kind is not a known kind");
  }
  bool is_file = input.kind == InputSpec::Kind::file;
  bool is_host = input.kind == InputSpec::Kind::host;
  if (is_file && input.path.empty()) return reject(".path is empty (Kind::file needs a file to read)");
  if (is_file && input.path.find('\0') != std::string::npos) return reject(".path contains NUL");
  if (!is_file && !input.path.empty()) return reject(".path is set but kind is not Kind::file");
  if (!is_host && !input.data.empty()) return reject(".data is set but kind is not Kind::host");
  if (!is_host && input.keep_open) return reject(".keep_open is set but kind is not Kind::host");
  return true;
}

/// Whether the warning before the deadline makes sense: a timeout to come
/// before, a lead time inside it, and a signal the worker can catch that is
/// not its stop signal.
inline bool validate_warning(const WorkerSpec& spec, std::error_code* ec) {
  if (!spec.warning) return true;
  const DeadlineWarning& warning = *spec.warning;
  if (warning.signal <= 0 || warning.signal >= NSIG || warning.signal == SIGKILL || warning.signal == SIGSTOP) {
    report(ec, make_error_code(errc::invalid_signal),
           "invalid worker spec: warning signal " + std::to_string(warning.signal) +
               " is not a signal a worker can catch");
    return false;
  }
  if (warning.signal == spec.stop_signal) {
    // It would begin the stop early (a launcher such as Slurm's takes the
    // stop signal as the stop itself); a warning must be told apart from it.
    report(ec, make_error_code(errc::invalid_signal),
           "invalid worker spec: warning signal " + std::to_string(warning.signal) +
               " is the worker's stop signal; a warning needs another signal (to stop earlier, shorten the "
               "timeout)");
    return false;
  }
  if (spec.timeout.count() <= 0) {
    report(ec, make_error_code(errc::invalid_argument),
           "invalid worker spec: a warning before the deadline needs a timeout");
    return false;
  }
  if (warning.before.count() <= 0 || warning.before >= spec.timeout) {
    report(ec, make_error_code(errc::invalid_duration),
           "invalid worker spec: warning.before (" + std::to_string(warning.before.count()) +
               " ms) must be more than zero and less than the timeout (" +
               std::to_string(spec.timeout.count()) + " ms)");
    return false;
  }
  return true;
}

/// Whether the nice value and the CPU weight are in their ranges.
inline bool validate_cpu_share(const WorkerSpec& spec, std::error_code* ec) {
  if (spec.nice && (*spec.nice < min_nice || *spec.nice > max_nice)) {
    report(ec, make_error_code(errc::invalid_argument),
           "invalid worker spec: nice " + std::to_string(*spec.nice) + " is out of range (" +
               std::to_string(min_nice) + " to " + std::to_string(max_nice) + ")");
    return false;
  }
  if (spec.cpu_weight && (*spec.cpu_weight < min_cpu_weight || *spec.cpu_weight > max_cpu_weight)) {
    report(ec, make_error_code(errc::invalid_argument),
           "invalid worker spec: cpu_weight " + std::to_string(*spec.cpu_weight) + " is out of range (" +
               std::to_string(min_cpu_weight) + " to " + std::to_string(max_cpu_weight) + ")");
    return false;
  }
  return true;
}

/// Whether `spec` may be submitted to a supervisor with (`has_root`) or
/// without a job directory. When not: sets `*ec`, or throws when `ec` is null.
inline bool validate_spec(const WorkerSpec& spec, bool has_root, std::error_code* ec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    report(ec, make_error_code(errc::empty_argv),
           "invalid worker spec: argv is empty (nothing to run)");
    return false;
  }
  if (spec.label.size() > max_label_bytes) {
    report(ec, make_error_code(errc::invalid_argument),
           "invalid worker spec: label is " + std::to_string(spec.label.size()) + " bytes long, more than the " +
               std::to_string(max_label_bytes) + " allowed");
    return false;
  }
  if (!is_valid_utf8(spec.label)) {
    report(ec, make_error_code(errc::invalid_argument), "invalid worker spec: label is not valid UTF-8");
    return false;
  }
  if (spec.timeout.count() < 0 || spec.grace_period.count() < 0) {
    report(ec, make_error_code(errc::invalid_duration),
           "invalid worker spec: timeout and grace_period must not be negative");
    return false;
  }
  if (spec.stop_signal <= 0 || spec.stop_signal >= NSIG) {
    report(ec, make_error_code(errc::invalid_signal),
           "invalid worker spec: stop_signal " + std::to_string(spec.stop_signal) +
               " is not a signal");
    return false;
  }
  if (!validate_warning(spec, ec)) return false;
  if (spec.stall_timeout.count() < 0) {
    report(ec, make_error_code(errc::invalid_duration),
           "invalid worker spec: stall_timeout must not be negative");
    return false;
  }
  if (spec.stall_timeout.count() > 0 && !has_root) {
    report(ec, make_error_code(errc::invalid_argument),
           "invalid worker spec: stall detection needs a job directory "
           "(SupervisorOptions::root), where the worker's heartbeat is kept");
    return false;
  }
  if (!validate_input(spec.stdin_spec, ec)) return false;
  if (!validate_cpu_share(spec, ec)) return false;
  for (const auto* output : {&spec.stdout_spec, &spec.stderr_spec}) {
    if (output == &spec.stderr_spec && spec.stderr_to_stdout) continue;  // ignored
    if (output->route == OutputSpec::Route::direct && output->max_bytes &&
        output->kind != OutputSpec::Kind::inherit && output->kind != OutputSpec::Kind::discard) {
      report(ec, make_error_code(errc::invalid_argument),
             std::string("invalid worker spec: ") +
                 (output == &spec.stdout_spec ? "stdout_spec" : "stderr_spec") +
                 " caps its log (max_bytes) but goes direct: only the supervisor can keep a "
                 "cap (Route::supervisor or automatic)");
      return false;
    }
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos ||
        key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      report(ec, make_error_code(errc::invalid_argument),
             "invalid worker spec: environment variable name " +
                 quote_id(key) + " is empty or contains '=' or NUL");
      return false;
    }
  }
  return true;
}

}  // namespace jobwarden::detail
