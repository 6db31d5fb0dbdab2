# Packs the parts of the source tree a consumer needs into a release-style archive
# and builds a consumer that gets jobwarden from it with FetchContent (a file://
# URL with its SHA-256: FetchContent's download path, no network).

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(fetchcontent)

set(stage "${JW_TMP}/stage/jobwarden-${JOBWARDEN_VERSION}")
file(MAKE_DIRECTORY "${stage}")
file(COPY "${JOBWARDEN_SOURCE_DIR}/CMakeLists.txt" "${JOBWARDEN_SOURCE_DIR}/cmake"
          "${JOBWARDEN_SOURCE_DIR}/include" "${JOBWARDEN_SOURCE_DIR}/src"
     DESTINATION "${stage}")
file(GLOB notices "${JOBWARDEN_SOURCE_DIR}/LICENSE*" "${JOBWARDEN_SOURCE_DIR}/README*")
if(notices)
  file(COPY ${notices} DESTINATION "${stage}")
endif()

set(archive "${JW_TMP}/jobwarden-${JOBWARDEN_VERSION}.tar.gz")
jw_run("pack the source archive"
  COMMAND "${CMAKE_COMMAND}" -E tar czf "${archive}" "jobwarden-${JOBWARDEN_VERSION}"
  WORKING_DIRECTORY "${JW_TMP}/stage")
file(SHA256 "${archive}" archive_sha256)

set(consumer_build "${JW_TMP}/consumer-build")
jw_configure("configure the FetchContent consumer"
  "${CMAKE_CURRENT_LIST_DIR}/consumers/fetchcontent" "${consumer_build}"
  "-DJOBWARDEN_ARCHIVE_URL=file://${archive}"
  "-DJOBWARDEN_ARCHIVE_SHA256=${archive_sha256}"
  "-DJOBWARDEN_EXPECTED_VERSION=${JOBWARDEN_VERSION}")
jw_build_and_run("FetchContent consumer" "${consumer_build}" consumer)

jw_finish()
