# The separately compiled mode as a user gets it: installs jobwarden with
# JOBWARDEN_BUILD_COMPILED=ON to a temporary prefix, checks that the CMake and
# pkg-config files hold no absolute path, moves the prefix, then builds and runs
# a two-unit consumer that links jobwarden::compiled. Where nm is at hand, it
# also checks that the consumer's objects do not define JobSupervisor<>'s
# members and that the library does. Given JW_PKG_CONFIG, the same consumer is
# built again with nothing but `pkg-config --cflags --libs jobwarden-compiled`.

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(compiled_mode)

set(prefix "${JW_TMP}/prefix")
jw_install_jobwarden("${prefix}" -DJOBWARDEN_BUILD_COMPILED=ON)

file(GLOB_RECURSE libraries "${prefix}/*/libjobwarden_compiled.a")
if(NOT libraries)
  jw_fail("the install has no libjobwarden_compiled.a")
endif()
foreach(file IN ITEMS share/cmake/jobwarden/jobwardenTargets.cmake share/pkgconfig/jobwarden-compiled.pc)
  if(NOT EXISTS "${prefix}/${file}")
    jw_fail("the install has no ${file}")
  endif()
endforeach()
file(GLOB_RECURSE text_files "${prefix}/share/*")
foreach(file IN LISTS text_files)
  file(READ "${file}" text)
  foreach(path IN ITEMS "${JW_TMP}" "${JOBWARDEN_SOURCE_DIR}")
    string(FIND "${text}" "${path}" at)
    if(NOT at EQUAL -1)
      jw_fail("${file} holds the absolute path ${path}")
    endif()
  endforeach()
endforeach()

set(moved "${JW_TMP}/moved/elsewhere")
jw_move("${prefix}" "${moved}")

set(consumer_build "${JW_TMP}/consumer-build")
jw_configure("configure the compiled-mode consumer"
  "${CMAKE_CURRENT_LIST_DIR}/consumers/compiled" "${consumer_build}"
  "-DCMAKE_PREFIX_PATH=${moved}"
  "-DJOBWARDEN_EXPECTED_VERSION=${JOBWARDEN_VERSION}")
jw_build_and_run("compiled-mode consumer" "${consumer_build}" compiled_consumer)

find_program(JW_NM nm)
if(JW_NM)
  # JobSupervisor<>::submit(WorkerSpec), demangled, with nlohmann::json's inline
  # namespace (json_abi_...) in between.
  set(submit_regex "[TW] jobwarden::JobSupervisor<nlohmann::[^\n]*>::submit\\(jobwarden::WorkerSpec\\)")
  file(GLOB_RECURSE objects "${consumer_build}/*.o")
  if(NOT objects)
    jw_fail("no object files of the consumer under ${consumer_build}")
  endif()
  foreach(object IN LISTS objects)
    jw_run("nm ${object}" COMMAND "${JW_NM}" -C "${object}" OUTPUT_VARIABLE symbols)
    if(symbols MATCHES "${submit_regex}")
      jw_fail("${object} defines JobSupervisor<>::submit: the extern template declarations did not apply")
    endif()
  endforeach()
  file(GLOB_RECURSE libraries "${moved}/*/libjobwarden_compiled.a")
  jw_run("nm libjobwarden_compiled.a" COMMAND "${JW_NM}" -C ${libraries} OUTPUT_VARIABLE symbols)
  if(NOT symbols MATCHES "${submit_regex}")
    jw_fail("libjobwarden_compiled.a does not define JobSupervisor<>::submit")
  endif()
  message(STATUS "JobSupervisor<>::submit: defined by the library only")
else()
  message(STATUS "no nm: the consumer's objects are not checked")
endif()

if(JW_PKG_CONFIG)
  if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
    set(ENV{PKG_CONFIG_PATH} "${moved}/share/pkgconfig:$ENV{PKG_CONFIG_PATH}")
  else()
    set(ENV{PKG_CONFIG_PATH} "${moved}/share/pkgconfig")
  endif()
  jw_run("pkg-config --validate jobwarden-compiled"
    COMMAND "${JW_PKG_CONFIG}" --validate jobwarden-compiled)
  jw_run("pkg-config --cflags --libs jobwarden-compiled"
    COMMAND "${JW_PKG_CONFIG}" --cflags --libs jobwarden-compiled OUTPUT_VARIABLE pc_flags)
  string(STRIP "${pc_flags}" pc_flags)
  message(STATUS "pkg-config --cflags --libs jobwarden-compiled: ${pc_flags}")
  separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
  jw_run("compile the consumer with pkg-config's flags"
    COMMAND "${JW_CXX_COMPILER}" -std=c++17
            "${CMAKE_CURRENT_LIST_DIR}/consumers/compiled/main.cpp"
            "${CMAKE_CURRENT_LIST_DIR}/consumers/compiled/job.cpp" ${pc_flags}
            -o "${JW_TMP}/pkg-config-consumer")
  jw_run("run the pkg-config consumer" COMMAND "${JW_TMP}/pkg-config-consumer" SHOW_OUTPUT)
endif()

jw_finish()
