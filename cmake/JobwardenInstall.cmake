# Install rules: the headers, the CMake package (find_package(jobwarden CONFIG)
# gives jobwarden::jobwarden) and a pkg-config file. jobwarden is header-only, so
# everything goes to architecture-independent places, and nothing installed holds
# an absolute path: each file finds the prefix relative to itself, so an installed
# tree can be moved (the packaging tests move it before using it).
#
# With JOBWARDEN_BUILD_COMPILED, the separately compiled mode comes along: the
# static library libjobwarden_compiled.a in the library directory, the target
# jobwarden::compiled in the same CMake package (find_package(jobwarden CONFIG
# COMPONENTS compiled) requires it) and jobwarden-compiled.pc. The package is
# then no longer architecture-independent, and its version file says so.

include(CMakePackageConfigHelpers)

set(JOBWARDEN_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATAROOTDIR}/cmake/jobwarden"
  CACHE STRING "Where jobwarden's CMake package files go, relative to the install prefix")
set(JOBWARDEN_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATAROOTDIR}/pkgconfig"
  CACHE STRING "Where jobwarden.pc goes, relative to the install prefix")
mark_as_advanced(JOBWARDEN_INSTALL_CMAKEDIR JOBWARDEN_INSTALL_PKGCONFIGDIR)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/jobwarden"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.hpp")

install(TARGETS jobwarden EXPORT jobwardenTargets)
if(JOBWARDEN_BUILD_COMPILED)
  install(TARGETS jobwarden_compiled EXPORT jobwardenTargets
    ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}")
  set(JOBWARDEN_ARCH_INDEPENDENT "")
else()
  set(JOBWARDEN_ARCH_INDEPENDENT ARCH_INDEPENDENT)
endif()
install(EXPORT jobwardenTargets
  FILE jobwardenTargets.cmake
  NAMESPACE jobwarden::
  DESTINATION "${JOBWARDEN_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/jobwardenConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/jobwardenConfig.cmake"
  INSTALL_DESTINATION "${JOBWARDEN_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/jobwardenConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion
  ${JOBWARDEN_ARCH_INDEPENDENT})
install(FILES
  "${PROJECT_BINARY_DIR}/jobwardenConfig.cmake"
  "${PROJECT_BINARY_DIR}/jobwardenConfigVersion.cmake"
  DESTINATION "${JOBWARDEN_INSTALL_CMAKEDIR}")

# jobwarden.pc: prefix=${pcfiledir}/<path back up to the prefix>. Only a
# destination given as an absolute path pins an absolute one.
if(IS_ABSOLUTE "${JOBWARDEN_INSTALL_PKGCONFIGDIR}")
  set(JOBWARDEN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH JOBWARDEN_PC_PREFIX "/${JOBWARDEN_INSTALL_PKGCONFIGDIR}" "/")
  string(REGEX REPLACE "/$" "" JOBWARDEN_PC_PREFIX "\${pcfiledir}/${JOBWARDEN_PC_PREFIX}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(JOBWARDEN_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(JOBWARDEN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(JOBWARDEN_PC_CFLAGS "-I\${includedir}")
if(JOBWARDEN_PORTABLE)
  string(APPEND JOBWARDEN_PC_CFLAGS " -DJOBWARDEN_PORTABLE=1")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/jobwarden.pc.in" "${PROJECT_BINARY_DIR}/jobwarden.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/jobwarden.pc" DESTINATION "${JOBWARDEN_INSTALL_PKGCONFIGDIR}")

# jobwarden-compiled.pc: the separately compiled mode for pkg-config users
# (`pkg-config --cflags --libs jobwarden-compiled`).
if(JOBWARDEN_BUILD_COMPILED)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(JOBWARDEN_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
  else()
    set(JOBWARDEN_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  endif()
  configure_file("${CMAKE_CURRENT_LIST_DIR}/jobwarden-compiled.pc.in"
    "${PROJECT_BINARY_DIR}/jobwarden-compiled.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/jobwarden-compiled.pc"
    DESTINATION "${JOBWARDEN_INSTALL_PKGCONFIGDIR}")
endif()

# The Python reader of job directories (python/jobwarden_reader, standard
# library only): hosts in Python put <prefix>/share/jobwarden/python on their
# path and `import jobwarden_reader`, or `pip install` python/ from the sources.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/python/jobwarden_reader"
  DESTINATION "${CMAKE_INSTALL_DATADIR}/jobwarden/python"
  PATTERN "__pycache__" EXCLUDE)
