#pragma once
/// \file
/// `RecoveryReport`: what a supervisor (or `stop_job`) found of a dead
/// predecessor on the same job, and what it did about it. Filled by the
/// recovery in detail/recovery.hpp; read through
/// `JobSupervisor::recovery_report()` and `StopOutcome::recovery`.

#include <string>
#include <utility>
#include <vector>

namespace jobwarden {

/// What recovery of a job with a dead supervisor found and did: the workers
/// whose leftover processes it stopped, the workers it marked `lost`, and the
/// problems it met (files it could not use, processes that outlived SIGKILL).
struct RecoveryReport {
  /// Workers whose leftover processes were stopped (sorted by id).
  std::vector<std::string> stopped;
  /// Workers whose latest journal lines now say `lost` (sorted by id).
  std::vector<std::string> marked_lost;
  /// `{path relative to the job directory, or a worker id; what went wrong}`:
  /// files that could not be read or written, processes that outlived SIGKILL.
  std::vector<std::pair<std::string, std::string>> problems;
  /// The supervisor was dead and its journal's job line did not say the job had finished.
  bool job_was_abandoned = false;
  /// The dead supervisor's cgroup tree (as its job line records it) that
  /// recovery killed — escapees included — and removed; empty when there was
  /// none left.
  std::string reclaimed_cgroup;
};

}  // namespace jobwarden
