#pragma once
/// \file
/// What is executed for one attempt of a worker: the `SpawnPlan` built from
/// its spec (argv, the environment with the `JOBWARDEN_*` variables, working
/// directory, resource limits, nice value, cgroup) and handed to the
/// launcher's `prepare` (built outside the engine's mutex, in `launch`,
/// from fields no other thread changes then), which spawn failures are
/// worth a retry, and the CPU weight of the worker's cgroup.

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/platform.hpp"
#include "jobwarden/detail/spawn.hpp"
#include "jobwarden/detail/supervisor/engine_state.hpp"
#include "jobwarden/detail/supervisor/worker_record.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// The spec's resource limits, as the child sets them before exec.
inline void add_limits(SpawnPlan& plan, const ResourceLimits& limits) {
  auto add = [&](int resource, const std::optional<std::uint64_t>& value, rlim_t extra_hard = 0) {
    if (!value) return;
    auto soft = static_cast<rlim_t>(*value);
    plan.rlimits.push_back({resource, soft, soft + extra_hard});
  };
  add(RLIMIT_AS, limits.address_space_bytes);
  add(RLIMIT_DATA, limits.data_bytes);
  if (limits.cpu_time) {
    add(RLIMIT_CPU, static_cast<std::uint64_t>(limits.cpu_time->count()), 1);
  }
  add(RLIMIT_NOFILE, limits.open_files);
  add(RLIMIT_CORE, limits.core_file_bytes);
  add(RLIMIT_FSIZE, limits.file_size_bytes);
#ifdef RLIMIT_NPROC
  add(RLIMIT_NPROC, limits.processes);
#endif
}

/// Whether a failed spawn may succeed if tried again (resources, not the spec).
inline bool is_transient_spawn_error(int error_number) {
  return error_number == EAGAIN || error_number == EMFILE || error_number == ENFILE ||
         error_number == ENOMEM;
}

/// Why a spawn failed, for `WorkerInfo::error`: the program that could not
/// run, or the step of the child's setup that failed.
inline std::string spawn_failure_message(const WorkerSpec& spec, const SpawnOutcome& outcome) {
  const std::string program = "\"" + spec.argv[0] + "\"";
  if (outcome.stage == SpawnStage::exec) return "cannot run " + program + ": " + std::strerror(outcome.error);
  if (outcome.stage == SpawnStage::nice) {
    const bool refused = outcome.error == EACCES || outcome.error == EPERM;
    return "cannot start " + program + ": nice " + std::to_string(spec.nice.value_or(0)) + " refused (" +
           to_string(outcome.stage) + ": " + std::strerror(outcome.error) + ")" +
           (refused ? "; a nice value below the supervisor's own needs CAP_SYS_NICE or a higher RLIMIT_NICE" : "");
  }
  return "cannot start " + program + " (" + to_string(outcome.stage) + "): " + std::strerror(outcome.error);
}

/// Gives the attempt's cgroup its CPU weight, before the spawn, once the
/// cgroup is chosen (under the engine's mutex): the spec's, or the default
/// for a worker without one (its cgroup may have served one with a weight).
/// Nothing is written while no worker of the supervisor asked for a weight.
/// When the spec asked for one and it could not be given, says why in
/// `WorkerInfo::cpu_weight_error`; the worker runs all the same.
template <class Clock>
void apply_cpu_weight(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record) {
  record.info.cpu_weight_error.clear();
  const std::optional<int>& asked = record.spec.cpu_weight;
  if (!asked && !s.cgroups.cpu_enabled()) return;  // every cgroup is at the kernel's default
  const std::string& dir = record.context.cgroup_dir;
  const std::string not_applied = "cpu_weight not applied: ";
  if (dir.empty()) {
    if (asked) {
      record.info.cpu_weight_error =
          not_applied + "the worker has no cgroup of its own (" +
          (s.cgroups.active() ? std::string("its cgroup could not be created") : s.cgroups_unavailable) + ")";
    }
    return;
  }
  std::string why_not;
  if (!s.cgroups.enable_cpu(why_not)) {
    record.info.cpu_weight_error = not_applied + why_not;
    return;
  }
  int error_number = 0;
  if (!cgroup_set_cpu_weight(dir, asked.value_or(default_cpu_weight), error_number) && asked) {
    record.info.cpu_weight_error =
        not_applied + "cannot write " + dir + "/cpu.weight: " + std::strerror(error_number);
  }
}

/// What this attempt of `record` executes, after the launcher's `prepare`
/// (which sets `error` when the worker cannot be started).
template <class Clock>
SpawnPlan make_plan(EngineState<Clock>& s, WorkerRecord<typename Clock::time_point>& record,
                    std::string& error) {
  const WorkerSpec& spec = record.spec;
  SpawnPlan plan;
  // The worker's own variables, then the host's (one pass over environ, no
  // map: this runs for every spawn) except those the worker's override.
  std::map<std::string, std::string> own = spec.env;
  own[job_id_env] = s.options.job_id;
  own[worker_id_env] = record.info.id;
  own[attempt_env] = std::to_string(record.info.attempt);
  if (s.recorder) own[status_file_env] = s.recorder->status_file(record.info.id);
  for (const auto& [key, value] : own) plan.env.push_back(key + "=" + value);
  if (spec.inherit_env) {
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
      const char* eq = std::strchr(*entry, '=');
      if (eq == nullptr) continue;
      std::string key(*entry, static_cast<std::size_t>(eq - *entry));
      if (own.count(key) == 0) plan.env.emplace_back(*entry);
    }
  }
  plan.argv = spec.argv;
  plan.cwd = spec.cwd;
  if (!features().close_range) plan.max_fd = max_descriptor_bound();  // the close loop's bound
  add_limits(plan, spec.limits);
  if (spec.nice) {
    plan.set_nice = true;
    plan.nice = *spec.nice;
  }
  if (!record.context.cgroup_dir.empty()) {
    plan.cgroup_dir = record.context.cgroup_dir;
  }
  s.options.launcher->prepare(plan, spec, record.context, error);
  plan.seal();
  return plan;
}

}  // namespace jobwarden::detail
