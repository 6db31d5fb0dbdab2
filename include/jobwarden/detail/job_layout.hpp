#pragma once
/// \file
/// Compatibility include: the job directory's names and paths (`JobLayout`)
/// now live in `job_files.hpp`.
#include "jobwarden/detail/job_files.hpp"
