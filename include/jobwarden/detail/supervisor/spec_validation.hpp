#pragma once
/// \file
/// Checking a `WorkerSpec` before it is accepted: what `JobSupervisor::submit`
/// rejects (empty argv, negative durations, a bad stop signal, stall
/// detection without a job directory, a capped log that goes direct, bad
/// environment names). Worker ids are checked by `submit` itself, against
/// the job's other workers.

#include <csignal>
#include <string>
#include <system_error>

#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// Whether `spec` may be submitted to a supervisor with (`has_root`) or
/// without a job directory. When not: sets `*ec`, or throws when `ec` is null.
inline bool validate_spec(const WorkerSpec& spec, bool has_root, std::error_code* ec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    report(ec, make_error_code(errc::empty_argv),
           "invalid worker spec: argv is empty (nothing to run)");
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
