// The demo's input: small fake repositories with real manifests, and four
// that are built to go wrong, so that one run shows every outcome.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "repo_scanner.hpp"

namespace fs = std::filesystem;
using jobwarden::WorkerState;

namespace {

void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

/// `count` filler source files named `<dir>/<stem>_NN<extension>`.
void write_sources(const fs::path& repo, const std::string& dir, const std::string& stem,
                   const std::string& extension, int count) {
  for (int i = 1; i <= count; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%02d%s", stem.c_str(), i, extension.c_str());
    write_file(repo / dir / name, "// " + std::string(name) + ": nothing to see here\n");
  }
}

}  // namespace

std::vector<DemoRepo> make_demo_tree(const std::string& directory) {
  const fs::path base(directory);
  std::vector<DemoRepo> repos;
  auto repo = [&](std::string name, WorkerState expected,
                  std::vector<std::string> dependencies = {}) {
    repos.push_back({name, (base / name).string(), expected, std::move(dependencies)});
    return base / name;
  };

  fs::path web = repo("web-frontend", WorkerState::succeeded, {"react", "axios", "vite"});
  write_file(web / "package.json", R"({
  "name": "web-frontend",
  "dependencies": {"react": "^18.2.0", "react-dom": "^18.2.0", "axios": "^1.6.0"},
  "devDependencies": {"vite": "^5.0.0", "eslint": "^8.56.0"}
})");
  write_sources(web, "src/components", "Widget", ".jsx", 24);

  // Hangs at its 13th file (sorted order: docs/, index/, requirements.txt, src/).
  fs::path stuck = repo("stuck-indexer", WorkerState::timed_out);
  write_sources(stuck, "docs", "page", ".md", 12);
  write_file(stuck / "index" / hang_marker,
             "the worker hangs here (demo of the timed_out outcome)\n");
  write_file(stuck / "requirements.txt", "whoosh==2.7.4\nlxml\n");
  write_sources(stuck, "src", "indexer", ".py", 26);

  // The slow one: many files.
  fs::path engine = repo("game-engine", WorkerState::succeeded, {"SDL2", "sdl2", "zlib"});
  write_file(engine / "CMakeLists.txt",
             "cmake_minimum_required(VERSION 3.16)\nproject(engine CXX)\n"
             "find_package(SDL2 REQUIRED)\nfind_package(fmt CONFIG REQUIRED)\nfind_package(glm)\n");
  write_file(engine / "vcpkg.json",
             R"({"name": "game-engine", "dependencies": ["sdl2", "fmt", {"name": "glm"}]})");
  write_file(engine / "conanfile.py",
             "from conan import ConanFile\n\nclass Engine(ConanFile):\n"
             "    requires = \"zlib/1.3\", \"openal-soft/1.22.2\"\n");
  write_sources(engine, "src/engine", "system", ".cpp", 72);

  fs::path ml =
      repo("ml-pipeline", WorkerState::succeeded, {"numpy", "pandas", "scikit-learn", "fastapi"});
  write_file(ml / "requirements.txt",
             "# runtime\nnumpy>=1.26\npandas[parquet]==2.1.4\n"
             "scikit-learn~=1.3 ; python_version >= \"3.9\"\n-r requirements-dev.txt\n");
  write_file(ml / "requirements-dev.txt", "pytest>=8\nblack\n");
  write_file(ml / "pyproject.toml",
             "[project]\nname = \"ml-pipeline\"\ndependencies = [\n  \"fastapi>=0.110\",\n  "
             "\"pydantic>=2\",\n]\n");
  write_sources(ml, "src/pipeline", "step", ".py", 25);

  // Crashes at its 9th file (cmd/ sorts before pkg/).
  fs::path crashing = repo("segfault-demo", WorkerState::crashed);
  write_sources(crashing, "cmd", "tool", ".go", 7);
  write_file(crashing / "go.mod", "module example.com/segfault-demo\n\ngo 1.22\n");
  write_file(crashing / "pkg" / crash_marker,
             "the worker crashes here (demo of the crashed outcome)\n");
  write_sources(crashing, "pkg", "parser", ".go", 8);

  fs::path gateway =
      repo("api-gateway", WorkerState::succeeded, {"github.com/gin-gonic/gin", "go.uber.org/zap"});
  write_file(
      gateway / "go.mod",
      "module example.com/api-gateway\n\ngo 1.22\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.9.1\n"
      "\tgo.uber.org/zap v1.26.0 // indirect\n)\n\nrequire github.com/google/uuid v1.6.0\n");
  write_sources(gateway, "internal/routes", "route", ".go", 19);

  fs::path billing =
      repo("billing-service", WorkerState::succeeded, {"spring-boot-starter-web", "postgresql"});
  write_file(billing / "pom.xml", R"(<project>
  <artifactId>billing-service</artifactId>
  <dependencies>
    <dependency>
      <groupId>org.springframework.boot</groupId>
      <artifactId>spring-boot-starter-web</artifactId>
    </dependency>
    <dependency>
      <groupId>org.postgresql</groupId>
      <artifactId>postgresql</artifactId>
      <version>42.7.1</version>
    </dependency>
  </dependencies>
</project>
)");
  write_sources(billing, "src/main/java/billing", "Invoice", ".java", 17);

  repo("deleted-repo", WorkerState::failed);  // never created: its worker fails with a clear error

  fs::path cli = repo("rust-cli", WorkerState::succeeded, {"clap", "serde", "tokio"});
  write_file(cli / "Cargo.toml",
             "[package]\nname = \"rust-cli\"\nversion = \"0.1.0\"\n\n[dependencies]\n"
             "clap = { version = \"4\", features = [\"derive\"] }\nserde = \"1\"\ntokio.workspace "
             "= true\n\n"
             "[dev-dependencies]\nassert_cmd = \"2\"\n");
  write_sources(cli, "src", "command", ".rs", 14);
  return repos;
}
