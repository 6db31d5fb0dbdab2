#pragma once
/// \file
/// The separately compiled mode's declaration for `JobSupervisor<>`, included
/// at the end of jobwarden/job_supervisor.hpp.
///
/// With `JOBWARDEN_SEPARATE_COMPILATION` defined (the CMake target
/// `jobwarden::compiled` defines it, or define it yourself and add
/// src/jobwarden.cpp to your build), `JobSupervisor<>` — the default
/// instantiation — is declared `extern template`: a translation unit that uses
/// it does not instantiate its members; src/jobwarden.cpp instantiates them once.
/// Other instantiations (another `Progress` or `Clock`) stay header-only.
/// Without the macro this header declares nothing.

#include "jobwarden/job_supervisor.hpp"

#ifdef JOBWARDEN_SEPARATE_COMPILATION
namespace jobwarden {
extern template class detail::SupervisorEngine<std::chrono::steady_clock>;
extern template class JobSupervisor<>;
}  // namespace jobwarden
#endif
