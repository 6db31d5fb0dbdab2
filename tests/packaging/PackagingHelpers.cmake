# Helpers for the packaging test scripts (run with `cmake -P`, see CMakeLists.txt).
#
# A test calls jw_begin(<name>) first: it makes the fresh directory JW_TMP, which
# jw_finish() or any failure removes again (set JOBWARDEN_KEEP_PACKAGING_TMP in the
# environment to keep it for a look). Every step runs through jw_run(), which
# fails the test with the step's output.

cmake_minimum_required(VERSION 3.16)

foreach(required IN ITEMS JOBWARDEN_SOURCE_DIR JOBWARDEN_VERSION WORK_ROOT JW_CXX_COMPILER)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "${required} is not set; tests/packaging/CMakeLists.txt passes it")
  endif()
endforeach()

# jw_begin(<name>): makes the fresh work directory JW_TMP = WORK_ROOT/<name>-<random>.
macro(jw_begin name)
  string(RANDOM LENGTH 12 ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789" _jw_suffix)
  set(JW_TMP "${WORK_ROOT}/${name}-${_jw_suffix}")
  if(EXISTS "${JW_TMP}")
    message(FATAL_ERROR "work directory ${JW_TMP} already exists")
  endif()
  file(MAKE_DIRECTORY "${JW_TMP}")
endmacro()

function(jw_remove_tmp)
  if(DEFINED ENV{JOBWARDEN_KEEP_PACKAGING_TMP})
    message(STATUS "keeping ${JW_TMP}")
  elseif(JW_TMP)
    file(REMOVE_RECURSE "${JW_TMP}")
  endif()
endfunction()

# jw_fail(<message>): removes JW_TMP and fails the test.
function(jw_fail message)
  jw_remove_tmp()
  message(FATAL_ERROR "${message}")
endfunction()

# jw_finish(): removes JW_TMP after a passing test.
function(jw_finish)
  jw_remove_tmp()
endfunction()

# jw_run(<step> COMMAND <cmd>... [WORKING_DIRECTORY <dir>] [OUTPUT_VARIABLE <var>]
#        [SHOW_OUTPUT]): runs one step; a non-zero exit fails the test, showing
# what the step printed.
function(jw_run step)
  cmake_parse_arguments(PARSE_ARGV 1 arg "SHOW_OUTPUT" "WORKING_DIRECTORY;OUTPUT_VARIABLE" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY "${JW_TMP}")
  endif()
  execute_process(COMMAND ${arg_COMMAND}
    WORKING_DIRECTORY "${arg_WORKING_DIRECTORY}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)
  if(NOT result STREQUAL "0")
    string(REPLACE ";" " " command_line "${arg_COMMAND}")
    jw_fail("${step} failed (${result}):\n  ${command_line}\n${output}")
  endif()
  if(arg_SHOW_OUTPUT)
    string(STRIP "${output}" output)
    message(STATUS "${step}: ok: ${output}")
  else()
    message(STATUS "${step}: ok")
  endif()
  if(arg_OUTPUT_VARIABLE)
    set(${arg_OUTPUT_VARIABLE} "${output}" PARENT_SCOPE)
  endif()
endfunction()

# jw_configure(<step> <source dir> <build dir> [-D...]): configures a CMake project
# with this build's generator, compiler and dependency locations.
function(jw_configure step source_dir build_dir)
  set(command "${CMAKE_COMMAND}" -S "${source_dir}" -B "${build_dir}")
  if(JW_GENERATOR)
    list(APPEND command -G "${JW_GENERATOR}")
  endif()
  if(JW_MAKE_PROGRAM)
    list(APPEND command "-DCMAKE_MAKE_PROGRAM=${JW_MAKE_PROGRAM}")
  endif()
  list(APPEND command "-DCMAKE_CXX_COMPILER=${JW_CXX_COMPILER}")
  foreach(dependency IN ITEMS nlohmann_json fmt)
    if(${dependency}_DIR)
      list(APPEND command "-D${dependency}_DIR=${${dependency}_DIR}")
    endif()
  endforeach()
  jw_run("${step}" COMMAND ${command} ${ARGN})
endfunction()

# jw_build_and_run(<step> <build dir> <program>): builds the project and runs
# <program> from it.
function(jw_build_and_run step build_dir program)
  jw_run("${step}: build" COMMAND "${CMAKE_COMMAND}" --build "${build_dir}")
  # Multi-config generators put programs in a per-configuration subdirectory.
  foreach(subdirectory IN ITEMS . Debug Release RelWithDebInfo MinSizeRel)
    get_filename_component(path "${build_dir}/${subdirectory}/${program}" ABSOLUTE)
    if(EXISTS "${path}")
      jw_run("${step}: run" COMMAND "${path}" SHOW_OUTPUT)
      return()
    endif()
  endforeach()
  jw_fail("${step}: ${program} was not built in ${build_dir}")
endfunction()

# jw_install_jobwarden(<prefix> [-D...]): configures jobwarden from the source
# tree as a packager would (tests and examples off), builds it (nothing to build
# unless the options ask for the compiled mode) and installs it to <prefix>.
function(jw_install_jobwarden prefix)
  set(build_dir "${JW_TMP}/jobwarden-build")
  jw_configure("configure jobwarden" "${JOBWARDEN_SOURCE_DIR}" "${build_dir}"
    -DJOBWARDEN_BUILD_TESTS=OFF -DJOBWARDEN_BUILD_EXAMPLES=OFF
    "-DCMAKE_INSTALL_PREFIX=${prefix}" ${ARGN})
  jw_run("build jobwarden" COMMAND "${CMAKE_COMMAND}" --build "${build_dir}")
  jw_run("install jobwarden" COMMAND "${CMAKE_COMMAND}" --install "${build_dir}")
endfunction()

# jw_move(<from> <to>): moves a directory tree (an install prefix) elsewhere.
function(jw_move from to)
  get_filename_component(parent "${to}" DIRECTORY)
  file(MAKE_DIRECTORY "${parent}")
  file(RENAME "${from}" "${to}")
  if(EXISTS "${from}" OR NOT EXISTS "${to}")
    jw_fail("could not move ${from} to ${to}")
  endif()
endfunction()
