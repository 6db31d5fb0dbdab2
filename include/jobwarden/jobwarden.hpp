#pragma once
/// \file
/// The umbrella header: includes every public jobwarden header, nothing else.

#include "jobwarden/duration.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_supervisor.hpp"
#include "jobwarden/signals.hpp"
#include "jobwarden/version.hpp"
#include "jobwarden/worker_spec.hpp"
#include "jobwarden/worker_state.hpp"
