// Resource limits set before exec, and a supervisor that keeps going when the
// system runs out of descriptors.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
int highest_open_fd() {
  int highest = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  int own = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] != '.' && fd != own) highest = std::max(highest, fd);
  }
  ::closedir(dir);
  return highest;
}

/// Lowers RLIMIT_NOFILE so that no new descriptor can be opened; restores it.
class NoMoreDescriptors {
 public:
  NoMoreDescriptors() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    struct rlimit tight = saved_;
    tight.rlim_cur = static_cast<rlim_t>(highest_open_fd() + 1);
    ::setrlimit(RLIMIT_NOFILE, &tight);
    // Fill the free numbers below the limit too.
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers_.push_back(fd);
  }
  ~NoMoreDescriptors() {
    for (int fd : fillers_) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  struct rlimit saved_;
  std::vector<int> fillers_;
};
}  // namespace

TEST_CASE("resource limits reach the worker") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "ulimit -n; ulimit -c; ulimit -f"};
  spec.limits.open_files = 64;
  spec.limits.core_file_bytes = 0;
  spec.limits.file_size_bytes = 1024 * 512;  // ulimit -f counts 512-byte blocks... in dash: KiB
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "limits.txt");
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  std::istringstream in(jwtest::read_file(dir / "limits.txt"));
  std::string open_files, core, fsize;
  in >> open_files >> core >> fsize;
  CHECK(open_files == "64");
  CHECK(core == "0");
  CHECK((fsize == "512" || fsize == "1024"));  // shells count in KiB or 512-byte blocks
}

TEST_CASE("a worker over its CPU time limit dies of SIGXCPU and reads crashed") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "while :; do :; done"};
  spec.limits.cpu_time = 1s;
  spec.timeout = 60s;  // a safety net only
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::crashed);
  CHECK(info.signal_name() == "SIGXCPU");
}

TEST_CASE("a worker over its file size limit gets SIGXFSZ") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {jwtest::test_worker(), "flood", "1048576"};
  spec.limits.file_size_bytes = 4096;
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / "out");
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).signal_name() == "SIGXFSZ");
  CHECK(std::filesystem::file_size(dir / "out") == 4096u);
}

TEST_CASE("a limit the supervisor may not grant is a spawn failure naming setrlimit") {
  if (::geteuid() == 0) {
    // As root raising the hard limit is allowed; lower our own hard limit in a child instead.
    WARN("running as root: checking with a hard limit lowered in a forked host");
  }
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    struct rlimit hard = {64, 64};
    ::setrlimit(RLIMIT_NOFILE, &hard);
    if (::geteuid() == 0) {
      // Drop CAP_SYS_RESOURCE's effect by becoming nobody.
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    }
    try {
      JobSupervisor<> supervisor;
      WorkerSpec spec;
      spec.argv = {"/bin/true"};
      spec.limits.open_files = 4096;
      auto id = supervisor.submit(spec);
      supervisor.wait(id, 30s);
      auto info = supervisor.info(id);
      bool ok = info.state == WorkerState::spawn_failed &&
                info.error.find("setrlimit") != std::string::npos;
      ::_exit(ok ? 0 : 11);
    } catch (...) {
      ::_exit(12);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("running out of descriptors at spawn fails that worker and the supervisor goes on") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  WorkerSpec ok;
  ok.argv = {"/bin/true"};
  auto before = supervisor.submit(ok);
  REQUIRE(supervisor.wait(before, 30s));
  std::string to_log, plain;
  {
    NoMoreDescriptors exhausted;
    WorkerSpec logged;
    logged.argv = {"/bin/true"};
    logged.stdout_spec = jobwarden::OutputSpec::to_file(dir / "log");
    to_log = supervisor.submit(logged);
    plain = supervisor.submit(ok);
  }
  REQUIRE(supervisor.wait_all(30s));
  for (const auto& id : {to_log, plain}) {
    auto info = supervisor.info(id);
    CHECK(info.state == WorkerState::spawn_failed);
    CHECK(info.error.find("Too many open files") != std::string::npos);
  }
  // Earlier records are intact and new work runs.
  CHECK(supervisor.info(before).state == WorkerState::succeeded);
  auto after = supervisor.submit(ok);
  REQUIRE(supervisor.wait(after, 30s));
  CHECK(supervisor.info(after).state == WorkerState::succeeded);
}
