#pragma once
/// \file
/// The separately compiled mode's declarations for `StatusAggregator<>`,
/// `JobStatus<>` and `WorkerStatus<>`, included at the end of
/// jobwarden/status_aggregator.hpp.
///
/// With `JOBWARDEN_SEPARATE_COMPILATION` defined (the CMake target
/// `jobwarden::compiled` defines it, or define it yourself and add
/// src/jobwarden.cpp to your build), these default instantiations are declared
/// `extern template`: a translation unit that uses them does not instantiate
/// their members; src/jobwarden.cpp instantiates them once. Other
/// instantiations (another `Progress`) stay header-only. Without the macro this
/// header declares nothing.

#include "jobwarden/status_aggregator.hpp"

#ifdef JOBWARDEN_SEPARATE_COMPILATION
namespace jobwarden {
extern template struct WorkerStatus<>;
extern template struct JobStatus<>;
extern template class StatusAggregator<>;
}  // namespace jobwarden
#endif
