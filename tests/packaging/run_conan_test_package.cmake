# Builds the Conan recipe's test_package/ with plain CMake against an installed
# jobwarden (Conan itself is not needed: test_package/CMakeLists.txt only does
# find_package(jobwarden CONFIG REQUIRED)) and runs it. Where Python is at hand,
# the recipe files are also checked to be valid Python.

include("${CMAKE_CURRENT_LIST_DIR}/PackagingHelpers.cmake")
jw_begin(conan_test_package)

if(JW_PYTHON)
  foreach(recipe IN ITEMS conanfile.py test_package/conanfile.py)
    jw_run("${recipe} parses as Python"
      COMMAND "${JW_PYTHON}" -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"
              "${JOBWARDEN_SOURCE_DIR}/${recipe}")
  endforeach()
endif()

set(prefix "${JW_TMP}/prefix")
jw_install_jobwarden("${prefix}")

set(test_package_build "${JW_TMP}/test_package-build")
jw_configure("configure test_package" "${JOBWARDEN_SOURCE_DIR}/test_package" "${test_package_build}"
  "-DCMAKE_PREFIX_PATH=${prefix}")
jw_build_and_run("test_package" "${test_package_build}" test_package)

jw_finish()
