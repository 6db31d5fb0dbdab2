#pragma once
/// \file
/// Compatibility include: the format of a worker's `status.json`
/// (`StatusRecord`, `status_record_to_json`, `status_record_from_json`) is now
/// in `job_format.hpp`, with every other file of the job directory.
#include "jobwarden/detail/job_format.hpp"
