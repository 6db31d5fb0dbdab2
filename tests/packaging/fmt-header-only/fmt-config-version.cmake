# The stand-in header-only fmt (fmt-config.cmake) has the version of the system's
# fmt headers (FMT_VERSION in fmt/core.h); it accepts requests of its own major
# version, as fmt's own version file does.

find_path(JOBWARDEN_TEST_FMT_INCLUDE_DIR fmt/core.h)
set(PACKAGE_VERSION "0.0.0")
if(JOBWARDEN_TEST_FMT_INCLUDE_DIR)
  file(STRINGS "${JOBWARDEN_TEST_FMT_INCLUDE_DIR}/fmt/core.h" fmt_version_line
    REGEX "^#define FMT_VERSION [0-9]+")
  if(fmt_version_line MATCHES "([0-9]+)$")
    math(EXPR fmt_major "${CMAKE_MATCH_1} / 10000")
    math(EXPR fmt_minor "${CMAKE_MATCH_1} / 100 % 100")
    math(EXPR fmt_patch "${CMAKE_MATCH_1} % 100")
    set(PACKAGE_VERSION "${fmt_major}.${fmt_minor}.${fmt_patch}")
  endif()
endif()

set(PACKAGE_VERSION_COMPATIBLE FALSE)
if(PACKAGE_FIND_VERSION_MAJOR STREQUAL ""
   OR (PACKAGE_FIND_VERSION_MAJOR EQUAL fmt_major AND NOT PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION))
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
