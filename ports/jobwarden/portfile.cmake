# Overlay port: builds from the jobwarden tree this port sits in
# (vcpkg install jobwarden --overlay-ports=<tree>/ports).
set(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../..")

# Feature "compiled": also build and install jobwarden::compiled, the
# separately compiled mode (a static library of the default instantiations).
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
    FEATURES
        compiled JOBWARDEN_BUILD_COMPILED
)

# Header-only: one (release) configuration is all there is. The compiled mode
# has a library, built for both configurations as vcpkg expects.
if(NOT "compiled" IN_LIST FEATURES)
    set(VCPKG_BUILD_TYPE release)
endif()

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DJOBWARDEN_BUILD_TESTS=OFF
        -DJOBWARDEN_BUILD_EXAMPLES=OFF
        ${FEATURE_OPTIONS}
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME jobwarden CONFIG_PATH share/cmake/jobwarden)
vcpkg_fixup_pkgconfig()

if("compiled" IN_LIST FEATURES)
    file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include" "${CURRENT_PACKAGES_DIR}/debug/share")
else()
    file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug")
endif()

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
