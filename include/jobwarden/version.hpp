#pragma once
/// \file
/// jobwarden's version. The macros serve `#if` checks; the constants below hold
/// the same values for C++ code. A ctest keeps them equal to
/// `project(jobwarden VERSION ...)` in CMakeLists.txt, so bump both together.

#include <string_view>

/// Major version: changes when a release breaks the public API.
#define JOBWARDEN_VERSION_MAJOR 0
/// Minor version: changes when a release adds to the public API.
#define JOBWARDEN_VERSION_MINOR 1
/// Patch version: changes for fixes only.
#define JOBWARDEN_VERSION_PATCH 0
/// The version as one comparable number: `MAJOR * 10000 + MINOR * 100 + PATCH`
/// (0.1.0 is `100`), e.g. `#if JOBWARDEN_VERSION >= 100`.
#define JOBWARDEN_VERSION \
  (JOBWARDEN_VERSION_MAJOR * 10000 + JOBWARDEN_VERSION_MINOR * 100 + JOBWARDEN_VERSION_PATCH)
/// The version as text, `"MAJOR.MINOR.PATCH"`.
#define JOBWARDEN_VERSION_STRING "0.1.0"

namespace jobwarden {

/// Same as `JOBWARDEN_VERSION_MAJOR`.
inline constexpr int version_major = JOBWARDEN_VERSION_MAJOR;
/// Same as `JOBWARDEN_VERSION_MINOR`.
inline constexpr int version_minor = JOBWARDEN_VERSION_MINOR;
/// Same as `JOBWARDEN_VERSION_PATCH`.
inline constexpr int version_patch = JOBWARDEN_VERSION_PATCH;
/// Same as `JOBWARDEN_VERSION_STRING`, e.g. `"0.1.0"`.
inline constexpr std::string_view version_string = JOBWARDEN_VERSION_STRING;

}  // namespace jobwarden
