#pragma once
/// \file
/// The umbrella header: includes every public jobwarden header, nothing else.

#include "jobwarden/duration.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_cleanup.hpp"
#include "jobwarden/job_control.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/job_status.hpp"
#include "jobwarden/job_supervisor.hpp"
#include "jobwarden/launcher.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/slurm_launcher.hpp"
#include "jobwarden/status_aggregator.hpp"
#include "jobwarden/version.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"
#include "jobwarden/worker_status_writer.hpp"
