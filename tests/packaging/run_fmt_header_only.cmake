# Some fmt installs provide only the target fmt::fmt-header-only. jobwarden,
# installed from a build that linked fmt::fmt, must still resolve there: the
# consumer finds fmt through a stand-in package (fmt-header-only/) that defines
# only fmt::fmt-header-only over the system's fmt headers.

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(fmt_header_only)

set(prefix "${JW_TMP}/prefix")
jw_install_jobwarden("${prefix}")

set(fmt_DIR "${CMAKE_CURRENT_LIST_DIR}/fmt-header-only")
set(consumer_build "${JW_TMP}/consumer-build")
jw_configure("configure the find_package consumer against a header-only fmt"
  "${CMAKE_CURRENT_LIST_DIR}/consumers/find_package" "${consumer_build}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  "-DJOBWARDEN_EXPECTED_VERSION=${JOBWARDEN_VERSION}"
  -DJOBWARDEN_EXPECT_FMT_HEADER_ONLY=ON)
jw_build_and_run("header-only fmt consumer" "${consumer_build}" consumer)

jw_finish()
