# include/jobwarden/version.hpp must state the version that
# project(jobwarden VERSION ...) declares (passed in as JOBWARDEN_VERSION).

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")

set(header "${JOBWARDEN_SOURCE_DIR}/include/jobwarden/version.hpp")
file(READ "${header}" text)

string(REPLACE "." ";" expected_parts "${JOBWARDEN_VERSION}")
list(LENGTH expected_parts count)
if(NOT count EQUAL 3)
  message(FATAL_ERROR "project version ${JOBWARDEN_VERSION} is not MAJOR.MINOR.PATCH")
endif()
list(GET expected_parts 0 expected_MAJOR)
list(GET expected_parts 1 expected_MINOR)
list(GET expected_parts 2 expected_PATCH)

set(problems "")
foreach(part IN ITEMS MAJOR MINOR PATCH)
  if(NOT text MATCHES "#define JOBWARDEN_VERSION_${part} ([0-9]+)\n")
    string(APPEND problems "  no '#define JOBWARDEN_VERSION_${part} <number>'\n")
  elseif(NOT CMAKE_MATCH_1 STREQUAL expected_${part})
    string(APPEND problems
      "  JOBWARDEN_VERSION_${part} is ${CMAKE_MATCH_1}, the project says ${expected_${part}}\n")
  endif()
endforeach()
if(NOT text MATCHES "#define JOBWARDEN_VERSION_STRING \"([^\"]*)\"")
  string(APPEND problems "  no '#define JOBWARDEN_VERSION_STRING \"...\"'\n")
elseif(NOT CMAKE_MATCH_1 STREQUAL JOBWARDEN_VERSION)
  string(APPEND problems
    "  JOBWARDEN_VERSION_STRING is \"${CMAKE_MATCH_1}\", the project says ${JOBWARDEN_VERSION}\n")
endif()

if(problems)
  message(FATAL_ERROR "${header} disagrees with CMakeLists.txt:\n${problems}"
    "Bump project(jobwarden VERSION ...) and version.hpp together.")
endif()
message(STATUS "version.hpp says ${JOBWARDEN_VERSION}, as CMakeLists.txt does")
