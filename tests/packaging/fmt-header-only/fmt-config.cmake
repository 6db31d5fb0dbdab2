# A stand-in for an fmt package that provides only fmt::fmt-header-only, as
# header-only fmt builds of package managers do; it wraps the system's fmt
# headers. Used by run_fmt_header_only.cmake through fmt_DIR.

find_path(JOBWARDEN_TEST_FMT_INCLUDE_DIR fmt/core.h)
if(NOT JOBWARDEN_TEST_FMT_INCLUDE_DIR)
  set(fmt_FOUND FALSE)
  set(fmt_NOT_FOUND_MESSAGE "the stand-in header-only fmt found no fmt/core.h")
  return()
endif()

if(NOT TARGET fmt::fmt-header-only)
  add_library(fmt::fmt-header-only INTERFACE IMPORTED)
  set_target_properties(fmt::fmt-header-only PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${JOBWARDEN_TEST_FMT_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "FMT_HEADER_ONLY=1")
endif()
