# A consumer that adds the jobwarden source tree with add_subdirectory: jobwarden's
# tests and examples stay off, and none of its warning flags reach the consumer.

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(add_subdirectory)

set(consumer_build "${JW_TMP}/consumer-build")
jw_configure("configure the add_subdirectory consumer"
  "${CMAKE_CURRENT_LIST_DIR}/consumers/add_subdirectory" "${consumer_build}"
  "-DJOBWARDEN_SOURCE_DIR=${JOBWARDEN_SOURCE_DIR}"
  "-DJOBWARDEN_EXPECTED_VERSION=${JOBWARDEN_VERSION}")
# Builds warning_probe too, which compiles only if no -Werror leaked.
jw_build_and_run("add_subdirectory consumer" "${consumer_build}" consumer)

jw_finish()
