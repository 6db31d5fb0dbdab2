// How a worker ended, as data: states, exit codes, signals, errors, usage.
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

TEST_CASE("a worker that exits 0 succeeded") {
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(jwtest::quiet({"/bin/true"}));
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 0);
  CHECK_FALSE(info.signal);
  CHECK(info.attempt == 1);
  CHECK(info.pid > 0);
  CHECK(info.process_start_time > 0);
  CHECK(info.started_at);
  CHECK(info.ended_at);
}

TEST_CASE("a worker that exits non-zero failed with its exit code") {
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(jwtest::quiet({jwtest::test_worker(), "exit", "3"}));
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  REQUIRE(info.exit_code);
  CHECK(*info.exit_code == 3);
}

TEST_CASE("a worker killed by SIGSEGV crashed and the signal is named") {
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(jwtest::quiet({jwtest::test_worker(), "crash"}));
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::crashed);
  REQUIRE(info.signal);
  CHECK(*info.signal == SIGSEGV);
  CHECK(info.signal_name() == "SIGSEGV");
  CHECK_FALSE(info.exit_code);
}

TEST_CASE("a worker that aborts crashed with SIGABRT") {
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(jwtest::quiet({jwtest::test_worker(), "abort"}));
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).signal_name() == "SIGABRT");
  CHECK(supervisor.info(id).state == WorkerState::crashed);
}

TEST_CASE("a missing binary is a spawn failure with the errno text and never exit 127") {
  JobSupervisor<> supervisor;
  auto absolute = supervisor.submit(jwtest::quiet({"/nonexistent/jobwarden-no-such-program"}));
  auto searched = supervisor.submit(jwtest::quiet({"jobwarden-no-such-program-on-path"}));
  for (const auto& id : {absolute, searched}) {
    REQUIRE(supervisor.wait(id, 30s));
    auto info = supervisor.info(id);
    CHECK(info.state == WorkerState::spawn_failed);
    CHECK(info.error.find("No such file or directory") != std::string::npos);
    CHECK_FALSE(info.exit_code);
    CHECK(info.pid == 0);
  }
}

TEST_CASE("a directory or a non-executable file is a spawn failure naming the reason") {
  jwtest::TempDir dir;
  std::ofstream(dir / "not-executable") << "#!/bin/sh\nexit 0\n";
  JobSupervisor<> supervisor;
  auto directory = supervisor.submit(jwtest::quiet({dir.path()}));
  auto plain_file = supervisor.submit(jwtest::quiet({dir / "not-executable"}));
  for (const auto& id : {directory, plain_file}) {
    REQUIRE(supervisor.wait(id, 30s));
    auto info = supervisor.info(id);
    CHECK(info.state == WorkerState::spawn_failed);
    CHECK(info.error.find("Permission denied") != std::string::npos);
  }
}

TEST_CASE("a working directory that does not exist is a spawn failure") {
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/true"});
  spec.cwd = "/nonexistent/jobwarden-dir";
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("chdir") != std::string::npos);
  CHECK(info.error.find("No such file or directory") != std::string::npos);
}

TEST_CASE("resource usage of a finished worker is recorded") {
  JobSupervisor<> supervisor;
  // Burn a little CPU so user time is measurable.
  auto id = supervisor.submit(
      jwtest::quiet({"/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"}));
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.usage.max_rss_kib > 0);
  CHECK((info.usage.user_cpu + info.usage.system_cpu).count() > 0);
}

TEST_CASE("the worker gets the environment overrides, the JOBWARDEN variables and its cwd") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.job_id = "env-job";
  JobSupervisor<> supervisor(options);
  auto spec = jwtest::quiet({"/bin/sh", "-c",
                       "echo \"$GREETING $JOBWARDEN_JOB_ID $JOBWARDEN_WORKER_ID "
                       "$JOBWARDEN_ATTEMPT $(pwd)\""});
  spec.id = "w1";
  spec.env["GREETING"] = "hello";
  spec.cwd = dir.path();
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "out.txt");
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  auto real_dir = std::filesystem::canonical(dir.path()).string();
  CHECK(jwtest::read_file(dir / "out.txt") == "hello env-job w1 1 " + real_dir + "\n");
}

TEST_CASE("a clean environment holds only what the spec sets") {
  jwtest::TempDir dir;
  ::setenv("JOBWARDEN_TEST_SECRET", "leaked", 1);
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({jwtest::test_worker(), "env", "JOBWARDEN_TEST_SECRET"});
  spec.inherit_env = false;
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "out.txt");
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  CHECK(jwtest::read_file(dir / "out.txt") == "<unset>\n");
  ::unsetenv("JOBWARDEN_TEST_SECRET");
}

TEST_CASE("stdin is /dev/null") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "cat; echo end"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "out.txt");
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  CHECK(jwtest::read_file(dir / "out.txt") == "end\n");
}

TEST_CASE("a 20 MB stdout does not block the worker or the supervisor") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto to_file = jwtest::quiet({jwtest::test_worker(), "flood", "20971520"});
  to_file.stdout_spec = jobwarden::OutputSpec::to_file(dir / "big.txt");
  auto discarded = jwtest::quiet({jwtest::test_worker(), "flood", "20971520"});
  auto a = supervisor.submit(to_file);
  auto b = supervisor.submit(discarded);
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(a).state == WorkerState::succeeded);
  CHECK(supervisor.info(b).state == WorkerState::succeeded);
  CHECK(std::filesystem::file_size(dir / "big.txt") == 20971520u);
}

TEST_CASE("a capped log keeps its limit and counts what was dropped while the worker runs free") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({jwtest::test_worker(), "flood", "52428800"});  // 50 MiB
  spec.stdout_spec = jobwarden::OutputSpec::to_capped_file(dir / "out.log", 1 << 20);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 120s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.stdout_dropped_bytes == 52428800u - (1u << 20));
  std::string log = jwtest::read_file(dir / "out.log");
  CHECK(log.size() > (1u << 20));
  CHECK(log.size() < (1u << 20) + 200);
  CHECK(log.find("log limit of 1048576 bytes reached") != std::string::npos);
}

TEST_CASE("a capped log under its limit is complete and carries no note") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "echo out; echo err >&2"});
  spec.stdout_spec = jobwarden::OutputSpec::to_capped_file(dir / "out.log", 1000);
  spec.stderr_spec = jobwarden::OutputSpec::to_capped_file(dir / "err.log", 1000);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(jwtest::read_file(dir / "out.log") == "out\n");
  CHECK(jwtest::read_file(dir / "err.log") == "err\n");
  CHECK(supervisor.info(id).stdout_dropped_bytes == 0);
}

namespace {
/// The lines `jobwarden_test_worker interleave` wrote, in the order written.
std::string interleaved_lines(int total) {
  std::string text;
  for (int i = 0; i < total; ++i) text += (i % 2 == 0 ? "out " : "err ") + std::to_string(i) + "\n";
  return text;
}
}  // namespace

TEST_CASE("stdout and stderr sent to one file keep every line, whole and in order") {
  jwtest::TempDir dir;
  // Uncapped and capped; the same path, and the same file by another name.
  const bool capped = GENERATE(false, true);
  const bool other_name = GENERATE(false, true);
  CAPTURE(capped, other_name);
  const std::string path = dir / "both.log";
  const std::string alias = other_name ? dir.path() + "/./both.log" : path;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({jwtest::test_worker(), "interleave", "600"});
  spec.stdout_spec = capped ? jobwarden::OutputSpec::to_capped_file(path, 1 << 20)
                            : jobwarden::OutputSpec::to_file(path);
  spec.stderr_spec = capped ? jobwarden::OutputSpec::to_capped_file(alias, 1 << 20)
                            : jobwarden::OutputSpec::to_file(alias);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(jwtest::read_file(path) == interleaved_lines(600));
  CHECK(info.stdout_dropped_bytes == 0);
  CHECK(info.stderr_dropped_bytes == 0);
}

TEST_CASE("stdout and stderr sharing one capped file share the smaller cap") {
  jwtest::TempDir dir;
  const std::string path = dir / "both.log";
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({jwtest::test_worker(), "interleave", "600"});
  spec.stdout_spec = jobwarden::OutputSpec::to_file(path);  // uncapped itself
  spec.stderr_spec = jobwarden::OutputSpec::to_capped_file(path, 100);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  const std::string all = interleaved_lines(600);
  std::string log = jwtest::read_file(path);
  CHECK(log.compare(0, 100, all, 0, 100) == 0);
  CHECK(log.find("log limit of 100 bytes reached") != std::string::npos);
  CHECK(info.stdout_dropped_bytes == all.size() - 100);
  CHECK(info.stderr_dropped_bytes == 0);
}
