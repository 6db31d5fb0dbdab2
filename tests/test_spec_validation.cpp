// Bad specs are rejected with a clear message before anything runs.
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;

TEST_CASE("an empty argv is rejected") {
  JobSupervisor<> supervisor;
  std::error_code ec;
  CHECK(supervisor.submit(WorkerSpec{}, ec).empty());
  CHECK(ec == jobwarden::errc::empty_argv);
  CHECK_THROWS_WITH(supervisor.submit(WorkerSpec{}), Catch::Contains("argv is empty"));
  CHECK(supervisor.workers().empty());
}

TEST_CASE("negative durations are rejected") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.timeout = -1s;
  std::error_code ec;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_duration);
  spec.timeout = 0s;
  spec.grace_period = -5ms;
  CHECK_THROWS_WITH(supervisor.submit(spec), Catch::Contains("must not be negative"));
}

TEST_CASE("invalid worker ids are rejected and valid ones accepted") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  for (const std::string& bad : std::vector<std::string>{"..", "a/b", "-lead", ".hidden", std::string(129, 'a'),
                          std::string("nul\0byte", 8), "sp ace"}) {
    spec.id = bad;
    std::error_code ec;
    supervisor.submit(spec, ec);
    CHECK(ec == jobwarden::errc::invalid_id);
  }
  spec.id = "a/b";
  CHECK_THROWS_WITH(supervisor.submit(spec), Catch::Contains("invalid worker id \"a/b\""));
  spec.id = std::string(128, 'x');
  CHECK(supervisor.submit(spec) == spec.id);
  spec.id = "Scan_1.2-3";
  CHECK(supervisor.submit(spec) == "Scan_1.2-3");
  REQUIRE(supervisor.wait_all(30s));
}

TEST_CASE("a duplicate worker id is rejected and the first worker is kept") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.id = "same";
  spec.argv = {"/bin/true"};
  supervisor.submit(spec);
  std::error_code ec;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::duplicate_id);
  CHECK(supervisor.workers().size() == 1);
  REQUIRE(supervisor.wait_all(30s));
}

TEST_CASE("an invalid job id is rejected when the supervisor is made") {
  jobwarden::SupervisorOptions options;
  options.job_id = "../escape";
  std::error_code ec;
  JobSupervisor<> supervisor(options, ec);
  CHECK(ec == jobwarden::errc::invalid_id);
  CHECK_THROWS_WITH(JobSupervisor<>(options), Catch::Contains("invalid job id"));
}

TEST_CASE("an invalid stop signal or environment name is rejected") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.stop_signal = 0;
  std::error_code ec;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_signal);
  spec.stop_signal = SIGTERM;
  spec.env["BAD=NAME"] = "x";
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
}

TEST_CASE("worker ids are numbered in submission order when not given") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  CHECK(supervisor.submit(spec) == "1");
  CHECK(supervisor.submit(spec) == "2");
  REQUIRE(supervisor.wait_all(30s));
}
