# Installs jobwarden, moves the prefix, then compiles the consumer with nothing
# but `g++ -std=c++17 consumer.cpp $(pkg-config --cflags --libs jobwarden)`, with
# PKG_CONFIG_PATH pointing into the moved prefix.

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
if(NOT JW_PKG_CONFIG)
  message(FATAL_ERROR "JW_PKG_CONFIG is not set; tests/packaging/CMakeLists.txt passes it")
endif()
jw_begin(pkg_config)

set(prefix "${JW_TMP}/prefix")
jw_install_jobwarden("${prefix}")
set(moved "${JW_TMP}/moved/elsewhere")
jw_move("${prefix}" "${moved}")

if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
  set(ENV{PKG_CONFIG_PATH} "${moved}/share/pkgconfig:$ENV{PKG_CONFIG_PATH}")
else()
  set(ENV{PKG_CONFIG_PATH} "${moved}/share/pkgconfig")
endif()

jw_run("pkg-config --validate jobwarden" COMMAND "${JW_PKG_CONFIG}" --validate jobwarden)
jw_run("pkg-config --modversion jobwarden"
  COMMAND "${JW_PKG_CONFIG}" --modversion jobwarden OUTPUT_VARIABLE pc_version)
string(STRIP "${pc_version}" pc_version)
if(NOT pc_version STREQUAL JOBWARDEN_VERSION)
  jw_fail("jobwarden.pc says version ${pc_version}, the project ${JOBWARDEN_VERSION}")
endif()
jw_run("pkg-config --cflags --libs jobwarden"
  COMMAND "${JW_PKG_CONFIG}" --cflags --libs jobwarden OUTPUT_VARIABLE pc_flags)
string(STRIP "${pc_flags}" pc_flags)
message(STATUS "pkg-config --cflags --libs jobwarden: ${pc_flags}")
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")

# The include directory must be the moved prefix's, found through ${pcfiledir}.
set(include_dir_found FALSE)
get_filename_component(expected_include_dir "${moved}/include" REALPATH)
foreach(flag IN LISTS pc_flags)
  if(flag MATCHES "^-I(.+)$")
    get_filename_component(include_dir "${CMAKE_MATCH_1}" REALPATH)
    if(include_dir STREQUAL expected_include_dir)
      set(include_dir_found TRUE)
    endif()
  endif()
endforeach()
if(NOT include_dir_found)
  jw_fail("pkg-config's flags (${pc_flags}) do not point at ${expected_include_dir}")
endif()

jw_run("compile the consumer with pkg-config's flags"
  COMMAND "${JW_CXX_COMPILER}" -std=c++17
          "-DJOBWARDEN_EXPECTED_VERSION_STRING=\"${pc_version}\""
          "${CMAKE_CURRENT_LIST_DIR}/consumers/consumer.cpp" ${pc_flags}
          -o "${JW_TMP}/consumer")
jw_run("run the pkg-config consumer" COMMAND "${JW_TMP}/consumer" SHOW_OUTPUT)

jw_finish()
