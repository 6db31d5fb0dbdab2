# Installs jobwarden to a temporary prefix, checks that no installed file holds an
# absolute path, moves the prefix elsewhere, then builds and runs a consumer that
# finds it with find_package(jobwarden CONFIG REQUIRED).

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(find_package)

set(prefix "${JW_TMP}/prefix")
jw_install_jobwarden("${prefix}")

set(expected_files
  include/jobwarden/jobwarden.hpp
  include/jobwarden/version.hpp
  share/cmake/jobwarden/jobwardenConfig.cmake
  share/cmake/jobwarden/jobwardenConfigVersion.cmake
  share/cmake/jobwarden/jobwardenTargets.cmake
  share/pkgconfig/jobwarden.pc)
foreach(file IN LISTS expected_files)
  if(NOT EXISTS "${prefix}/${file}")
    jw_fail("the install has no ${file}")
  endif()
endforeach()

# Relocatable: no installed file may name the prefix, the build or the sources.
file(GLOB_RECURSE installed_files "${prefix}/*")
foreach(file IN LISTS installed_files)
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
jw_configure("configure the find_package consumer"
  "${CMAKE_CURRENT_LIST_DIR}/consumers/find_package" "${consumer_build}"
  "-DCMAKE_PREFIX_PATH=${moved}"
  "-DJOBWARDEN_EXPECTED_VERSION=${JOBWARDEN_VERSION}"
  "-DJOBWARDEN_EXPECTED_PREFIX=${moved}")
jw_build_and_run("find_package consumer" "${consumer_build}" consumer)

jw_finish()
