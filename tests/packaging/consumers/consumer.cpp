// A program that uses jobwarden as a host application would. Every packaging test
// builds it (find_package, add_subdirectory, FetchContent, pkg-config); it exits
// 0 only if the headers work and agree with the package on the version.
#include <jobwarden/jobwarden.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

static_assert(JOBWARDEN_VERSION == JOBWARDEN_VERSION_MAJOR * 10000 +
                                       JOBWARDEN_VERSION_MINOR * 100 + JOBWARDEN_VERSION_PATCH);
static_assert(jobwarden::version_major == JOBWARDEN_VERSION_MAJOR);
static_assert(jobwarden::version_minor == JOBWARDEN_VERSION_MINOR);
static_assert(jobwarden::version_patch == JOBWARDEN_VERSION_PATCH);

int main() {
  int failures = 0;
  auto expect = [&failures](bool ok, std::string_view what) {
    if (!ok) {
      std::fprintf(stderr, "consumer: expected %.*s\n", static_cast<int>(what.size()), what.data());
      ++failures;
    }
  };

  expect(jobwarden::is_valid_id("abc"), "\"abc\" to be a valid id");
  expect(!jobwarden::is_valid_id("../etc"), "\"../etc\" to be an invalid id");
  expect(jobwarden::parse_duration("30s") == std::chrono::seconds(30), "\"30s\" to parse as 30 s");
  expect(jobwarden::to_string(jobwarden::WorkerState::timed_out) == "timed_out",
         "WorkerState::timed_out to be named \"timed_out\"");
  expect(jobwarden::version_string == JOBWARDEN_VERSION_STRING,
         "version_string to equal JOBWARDEN_VERSION_STRING");
#ifdef JOBWARDEN_EXPECTED_VERSION_STRING
  expect(jobwarden::version_string == JOBWARDEN_EXPECTED_VERSION_STRING,
         "the header's version to be the package's, " JOBWARDEN_EXPECTED_VERSION_STRING);
#endif

  // The dependencies come along with jobwarden (include paths, and libfmt to link).
  nlohmann::json progress = {{"done", 40}, {"total", 120}};
  std::string line = fmt::format("jobwarden {}: {} {}", jobwarden::version_string,
                                 jobwarden::to_string(jobwarden::WorkerState::running),
                                 progress.dump());
  expect(line == fmt::format("jobwarden {}: running {{\"done\":40,\"total\":120}}",
                             JOBWARDEN_VERSION_STRING),
         "fmt and nlohmann::json to work alongside jobwarden");

  std::puts(line.c_str());
  return failures == 0 ? 0 : 1;
}
