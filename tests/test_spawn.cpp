// Spawning safely: concurrency limit, no descriptor leaks, many host threads,
// and never touching children that are not ours.
#include <fcntl.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
std::set<int> fds_listed_by(const std::string& path) {
  std::set<int> fds;
  std::istringstream in(jwtest::read_file(path));
  int fd;
  while (in >> fd) fds.insert(fd);
  return fds;
}
}  // namespace

TEST_CASE("no host descriptor leaks into a worker, not even one opened without O_CLOEXEC") {
  jwtest::TempDir dir;
  int leaky = ::open("/dev/null", O_RDONLY);  // deliberately inheritable
  int leaky_pipe[2];
  REQUIRE(::pipe(leaky_pipe) == 0);
  // A descriptor far above the usual range, as a big host would have.
  int high = ::fcntl(leaky, F_DUPFD, 900);
  REQUIRE(leaky >= 0);
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {jwtest::test_worker(), "fds"};
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "fds.txt");
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(fds_listed_by(dir / "fds.txt") == std::set<int>{0, 1, 2});
  for (int fd : {leaky, leaky_pipe[0], leaky_pipe[1], high}) ::close(fd);
}

TEST_CASE("at most max_concurrency workers run at once and the rest start in submission order") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 2;
  JobSupervisor<> supervisor(options);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    WorkerSpec spec;
    spec.argv = {jwtest::test_worker(), "times", dir / ("w" + std::to_string(i)), "150"};
    spec.stdout_spec = jobwarden::OutputSpec::discard();
    ids.push_back(supervisor.submit(spec));
  }
  CHECK(supervisor.running_count() <= 2);
  REQUIRE(supervisor.wait_all(60s));
  std::vector<std::pair<long long, long long>> spans;
  for (int i = 0; i < 6; ++i) {
    CHECK(supervisor.info(ids[static_cast<size_t>(i)]).state == WorkerState::succeeded);
    std::istringstream in(jwtest::read_file(dir / ("w" + std::to_string(i))));
    long long start = 0, end = 0;
    in >> start >> end;
    REQUIRE(end > start);
    spans.emplace_back(start, end);
  }
  // Measured from inside the workers: no instant has more than two running.
  for (const auto& probe : spans) {
    int overlapping = 0;
    for (const auto& other : spans) {
      if (other.first <= probe.first && probe.first < other.second) ++overlapping;
    }
    CHECK(overlapping <= 2);
  }
  // Queued workers start only after an earlier one ended, in submission order.
  for (size_t i = 2; i < spans.size(); ++i) {
    CHECK(spans[i].first >= std::min(spans[i - 2].second, spans[i - 1].second));
    CHECK(supervisor.info(ids[i]).started_at >= supervisor.info(ids[i - 1]).started_at);
  }
}

TEST_CASE("spawning from 8 host threads at once works and leaks nothing") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 64;
  JobSupervisor<> supervisor(options);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        // Other threads open inheritable descriptors while we spawn.
        int noise = ::open("/dev/null", O_RDONLY);
        WorkerSpec spec;
        spec.id = "t" + std::to_string(t) + "-" + std::to_string(i);
        spec.argv = {jwtest::test_worker(), "fds"};
        spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / (spec.id + ".txt"));
        std::error_code ec;
        supervisor.submit(spec, ec);
        if (ec) ++failures;
        ::close(noise);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  REQUIRE(supervisor.wait_all(60s));
  auto all = supervisor.workers();
  CHECK(all.size() == 64);
  for (const auto& info : all) {
    CHECK(info.state == WorkerState::succeeded);
    CHECK(fds_listed_by(dir / (info.id + ".txt")) == std::set<int>{0, 1, 2});
  }
}

TEST_CASE("a child of the host that is not a worker is never reaped by the supervisor") {
  pid_t own = ::fork();
  REQUIRE(own >= 0);
  if (own == 0) ::_exit(7);
  {
    JobSupervisor<> supervisor;
    WorkerSpec spec;
    spec.argv = {"/bin/true"};
    for (int i = 0; i < 5; ++i) supervisor.submit(spec);
    REQUIRE(supervisor.wait_all(30s));
  }
  int status = 0;
  pid_t got = ::waitpid(own, &status, 0);
  CHECK(got == own);  // still ours to reap: ECHILD would mean the supervisor took it
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 7);
}

TEST_CASE("each worker leads its own process group") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  // Field 5 of /proc/<pid>/stat is the process group (the shell's name has no spaces).
  spec.argv = {"/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat > " + (dir / "pgid")};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  std::string text = jwtest::read_file(dir / "pgid");
  REQUIRE_FALSE(text.empty());
  CHECK(std::stoi(text) == supervisor.info(id).pid);
}
