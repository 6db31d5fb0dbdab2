// jobwarden's separately compiled mode: the one translation unit that
// instantiates the library's default class templates, so that a host with many
// translation units compiles them once instead of once per unit.
//
// Built as the library jobwarden::compiled (CMake option
// JOBWARDEN_BUILD_COMPILED, or link the target from add_subdirectory), or added
// to a host's own build with JOBWARDEN_SEPARATE_COMPILATION defined for every
// translation unit of the host and for this one. The headers then declare the
// instantiations below `extern template` (include/jobwarden/compiled/), which
// keeps every other translation unit from instantiating their members.
//
// Header-only use stays the default and is unchanged: without the macro the
// headers declare nothing extern and this file is not needed.
#ifndef JOBWARDEN_SEPARATE_COMPILATION
#error "src/jobwarden.cpp is built with JOBWARDEN_SEPARATE_COMPILATION defined, as its users are"
#endif

#include "jobwarden/jobwarden.hpp"

namespace jobwarden {

template class detail::SupervisorEngine<std::chrono::steady_clock>;
template class JobSupervisor<>;
template struct WorkerStatus<>;
template struct JobStatus<>;
template class StatusAggregator<>;
template class WorkerStatusWriterBase<>;
template class WorkerStatusWriter<>;

}  // namespace jobwarden
