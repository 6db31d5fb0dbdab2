#pragma once
/// \file
/// Compatibility include: the supervisor's writer (`JobRecorder`) is now
/// `job_recorder.hpp`, and the records' formats (`JobRecord`,
/// `job_record_to_json`, `process_record_text` and their parsers) are
/// `job_format.hpp`.
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/job_recorder.hpp"
