import os
import re

from conan import ConanFile
from conan.errors import ConanException, ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"


class JobwardenConan(ConanFile):
    name = "jobwarden"
    description = "Header-only C++17 library for supervised subprocess jobs"
    license = "MIT"
    homepage = "https://github.com/jobwarden/jobwarden"
    url = "https://github.com/jobwarden/jobwarden"
    topics = ("process", "subprocess", "supervisor", "jobs", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # compiled: also build jobwarden::compiled, the optional separately compiled
    # mode (a static library of the default instantiations, src/jobwarden.cpp);
    # jobwarden::jobwarden stays header-only either way.
    options = {"portable": [True, False], "compiled": [True, False]}
    default_options = {"portable": False, "compiled": False}
    # Header-only: the package is the same for every configuration, and the
    # sources need no copy into the build folder (the compiled mode builds out
    # of source).
    no_copy_source = True
    # The same files a source archive needs (tests/packaging's FetchContent test
    # builds from exactly these).
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "src/*", "LICENSE*"

    def set_version(self):
        # One place holds the version: project(jobwarden VERSION ...).
        if self.version:
            return
        cmakelists = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        match = re.search(r"project\(\s*jobwarden\s+VERSION\s+([0-9.]+)", cmakelists)
        if not match:
            raise ConanException("CMakeLists.txt has no project(jobwarden VERSION ...)")
        self.version = match.group(1)

    def configure(self):
        if self.options.compiled:
            self.package_type = "static-library"

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # The public headers include both, and fmt's library must reach the link.
        self.requires("nlohmann_json/3.11.2", transitive_headers=True)
        self.requires("fmt/9.1.0", transitive_headers=True, transitive_libs=True)

    def package_id(self):
        # Header-only, one package serves every configuration; the compiled
        # mode's library depends on them like any other.
        if not self.info.options.compiled:
            self.info.clear()

    def validate(self):
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, 17)
        if self.settings.os == "Windows":
            raise ConanInvalidConfiguration(f"{self.ref} runs on POSIX systems only")

    def generate(self):
        toolchain = CMakeToolchain(self)
        toolchain.cache_variables["JOBWARDEN_BUILD_TESTS"] = False
        toolchain.cache_variables["JOBWARDEN_BUILD_EXAMPLES"] = False
        toolchain.cache_variables["JOBWARDEN_INSTALL"] = True
        toolchain.cache_variables["JOBWARDEN_BUILD_COMPILED"] = bool(self.options.compiled)
        toolchain.cache_variables["JOBWARDEN_PORTABLE"] = bool(self.options.portable)
        toolchain.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        if self.options.compiled:
            cmake.build()

    def package(self):
        copy(self, "LICENSE*", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan's generators write the CMake and pkg-config files for consumers.
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "jobwarden")
        self.cpp_info.set_property("cmake_target_name", "jobwarden::jobwarden")
        self.cpp_info.set_property("pkg_config_name", "jobwarden")
        if not self.options.compiled:
            self.cpp_info.bindirs = []
            self.cpp_info.libdirs = []
            if self.options.portable:
                self.cpp_info.defines.append("JOBWARDEN_PORTABLE=1")
            if self.settings.os in ["Linux", "FreeBSD"]:
                self.cpp_info.system_libs.append("pthread")
            return
        # With the compiled mode: two components, the headers (jobwarden::jobwarden)
        # and the library that instantiates their defaults once (jobwarden::compiled).
        headers = self.cpp_info.components["headers"]
        headers.set_property("cmake_target_name", "jobwarden::jobwarden")
        headers.set_property("pkg_config_name", "jobwarden")
        headers.requires = ["nlohmann_json::nlohmann_json", "fmt::fmt"]
        headers.bindirs = []
        headers.libdirs = []
        if self.options.portable:
            headers.defines.append("JOBWARDEN_PORTABLE=1")
        if self.settings.os in ["Linux", "FreeBSD"]:
            headers.system_libs.append("pthread")
        compiled = self.cpp_info.components["compiled"]
        compiled.set_property("cmake_target_name", "jobwarden::compiled")
        compiled.set_property("pkg_config_name", "jobwarden-compiled")
        compiled.requires = ["headers"]
        compiled.libs = ["jobwarden_compiled"]
        compiled.bindirs = []
        compiled.defines.append("JOBWARDEN_SEPARATE_COMPILATION=1")
