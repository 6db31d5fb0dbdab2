// A worker that must not starve its host: the nice value it starts with
// (`WorkerSpec::nice`) and its cgroup's CPU weight (`WorkerSpec::cpu_weight`),
// both seen from inside the worker.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <jobwarden/detail/cgroup.hpp>
#include <jobwarden/detail/spawn.hpp>
#include <jobwarden/detail/supervisor/spec_validation.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;
namespace jd = jobwarden::detail;

namespace {
/// A shell line that prints the nice value of the process that runs it
/// (a child of the worker's shell: what the worker starts inherits it), field
/// 19 of its /proc/<pid>/stat.
const char* const print_nice = "cut -d' ' -f19 /proc/self/stat";

/// A shell line that prints the worker's own cgroup (below the cgroup v2
/// mount, in $CGROUP_MOUNT) and that cgroup's cpu.weight ("none" without one).
const char* const print_cgroup_weight =
    "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); echo \"$cg\"; "
    "cat \"$CGROUP_MOUNT$cg/cpu.weight\" 2>/dev/null || echo none";

/// Runs `script` with /bin/sh as one worker of `supervisor` and returns what
/// it printed (and the worker's final info in `info`).
std::string run_script(JobSupervisor<>& supervisor, const jwtest::TempDir& dir, const std::string& name,
                       const std::string& script, WorkerSpec spec, jobwarden::WorkerInfo* info = nullptr) {
  spec.argv = {"/bin/sh", "-c", script};
  spec.stdout_spec = jobwarden::OutputSpec::to_file(dir / name);
  spec.env["CGROUP_MOUNT"] = jd::CgroupTree::cgroup2_mount();
  const std::string id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 60s));
  auto ended = supervisor.info(id);
  CHECK(ended.state == WorkerState::succeeded);
  if (info != nullptr) *info = ended;
  return jwtest::read_file(dir / name);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// This process's cgroup v2 directory.
std::string own_cgroup_dir() {
  const std::string own = jd::CgroupTree::own_cgroup();
  return jd::CgroupTree::cgroup2_mount() + (own == "/" ? "" : own);
}

/// Whether the cpu controller is in this process's cgroup (listed in its
/// cgroup.controllers): a supervisor may then enable it below.
bool cpu_controller_available() {
  return jd::cgroup_lists_controller(own_cgroup_dir() + "/cgroup.controllers", "cpu");
}

/// Whether the cpu controller is already handed down to the cgroups below
/// this process's (its cgroup.subtree_control lists it): a supervisor must
/// then be able to weight its workers.
bool cpu_controller_handed_down() {
  return jd::cgroup_lists_controller(own_cgroup_dir() + "/cgroup.subtree_control", "cpu");
}

/// The calling process's nice value.
int own_nice() {
  errno = 0;
  return ::getpriority(PRIO_PROCESS, 0);
}
}  // namespace

TEST_CASE("a worker starts with the nice value of its spec, without one, with the supervisor's") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  const int base = own_nice();
  const int asked = base < 19 ? 19 : 18;  // above our own: needs no privilege
  WorkerSpec niced;
  niced.nice = asked;
  CHECK(first_line(run_script(supervisor, dir, "niced", print_nice, niced)) == std::to_string(asked));
  CHECK(first_line(run_script(supervisor, dir, "plain", print_nice, WorkerSpec{})) == std::to_string(base));
  CHECK(own_nice() == base);  // the supervisor's own is untouched
}

TEST_CASE("both spawn strategies give the child its nice value before exec") {
  jwtest::TempDir dir;
  const int asked = own_nice() < 19 ? 19 : 18;
  auto run = [&](jd::SpawnOutcome (*strategy)(const jd::SpawnPlan&), const std::string& name) {
    jd::SpawnPlan plan;
    plan.path = "/bin/sh";
    plan.argv = {"sh", "-c", std::string(print_nice) + " > " + (dir / name)};
    plan.env = {"PATH=/usr/bin:/bin"};
    plan.set_nice = true;
    plan.nice = asked;
    plan.max_fd = jd::max_descriptor_bound();
    plan.seal();
    const jd::SpawnOutcome outcome = strategy(plan);
    REQUIRE(outcome.error == 0);
    REQUIRE(outcome.pid > 0);
    if (outcome.pidfd >= 0) ::close(outcome.pidfd);
    int status = 0;
    REQUIRE(::waitpid(outcome.pid, &status, 0) == outcome.pid);
    CHECK(WIFEXITED(status));
    CHECK(first_line(jwtest::read_file(dir / name)) == std::to_string(asked));
  };
  run(jd::spawn_fork, "fork");
#if JOBWARDEN_LINUX_FAST_PATH
  if (jd::features().vfork_spawn) run(jd::spawn_vfork, "vfork");
#endif
}

TEST_CASE("a nice value below the supervisor's own without privilege ends the worker spawn_failed with why") {
  // As root (CAP_SYS_NICE) every nice value is allowed: the check runs in a
  // forked host that gives up root first.
  int report[2];
  REQUIRE(::pipe(report) == 0);
  const pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    ::close(report[0]);
    std::string verdict;
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      verdict = "cannot give up root";
    } else {
      try {
        SupervisorOptions options;
        options.orphan_guard = false;
        JobSupervisor<> supervisor(options);
        WorkerSpec spec;
        spec.argv = {"/bin/true"};
        spec.nice = own_nice() - 1;  // below our own (-20 is never ours: as nobody, lowering is refused)
        const std::string lowered = supervisor.submit(spec);
        spec.nice = own_nice() + 1 > 19 ? 19 : own_nice() + 1;
        const std::string raised = supervisor.submit(spec);
        supervisor.wait_all(60s);
        const auto refused = supervisor.info(lowered);
        const auto allowed = supervisor.info(raised);
        verdict = std::string(jobwarden::to_string(refused.state)) + "|" + refused.error + "|" +
                  std::string(jobwarden::to_string(allowed.state));
      } catch (const std::exception& error) {
        verdict = std::string("threw: ") + error.what();
      }
    }
    ssize_t ignored = ::write(report[1], verdict.data(), verdict.size());
    (void)ignored;
    ::_exit(0);
  }
  ::close(report[1]);
  std::string verdict;
  char buffer[512];
  for (ssize_t n; (n = ::read(report[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    verdict.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  REQUIRE(::waitpid(host, &status, 0) == host);
  if (own_nice() == -20) {
    WARN("SKIPPED: this process already runs at nice -20: nothing lies below it");
    return;
  }
  INFO(verdict);
  CHECK(verdict.rfind("spawn_failed|", 0) == 0);
  CHECK_THAT(verdict, Catch::Contains("cannot start \"/bin/true\": nice ") &&
                          Catch::Contains("refused (setpriority: Permission denied)") &&
                          Catch::Contains("CAP_SYS_NICE"));
  CHECK_THAT(verdict, Catch::EndsWith("|succeeded"));
}

TEST_CASE("nice and cpu_weight out of range are refused at submit, naming the field") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  auto refusal = [&](const WorkerSpec& bad) {
    std::error_code ec;
    CHECK(supervisor.submit(bad, ec).empty());
    CHECK(ec == jobwarden::errc::invalid_argument);
    try {
      supervisor.submit(bad);
    } catch (const std::exception& error) {
      return std::string(error.what());
    }
    return std::string("accepted");
  };
  for (int bad : {-21, 20, -1000, 1000}) {
    WorkerSpec niced = spec;
    niced.nice = bad;
    CHECK_THAT(refusal(niced), Catch::Contains("nice " + std::to_string(bad) + " is out of range (-20 to 19)"));
  }
  for (int bad : {0, -1, 10001}) {
    WorkerSpec weighted = spec;
    weighted.cpu_weight = bad;
    CHECK_THAT(refusal(weighted),
               Catch::Contains("cpu_weight " + std::to_string(bad) + " is out of range (1 to 10000)"));
  }
  CHECK(supervisor.workers().empty());
  // The bounds themselves are valid (checked without running anything:
  // -20 would need privilege).
  for (int good : {-20, 0, 19}) {
    WorkerSpec niced = spec;
    niced.nice = good;
    std::error_code ec;
    CHECK(jd::validate_spec(niced, false, &ec));
    CHECK_FALSE(ec);
  }
  for (int good : {1, 100, 10000}) {
    WorkerSpec weighted = spec;
    weighted.cpu_weight = good;
    std::error_code ec;
    CHECK(jd::validate_spec(weighted, false, &ec));
    CHECK_FALSE(ec);
  }
}

TEST_CASE("a worker's cgroup has its cpu_weight, and a reused cgroup without one reads 100 again") {
  jwtest::TempDir dir;
  SupervisorOptions options;
  options.max_concurrency = 1;  // one after the other: the second reuses the first's cgroup
  JobSupervisor<> supervisor(options);
  if (!supervisor.cgroups_active()) {
    WARN("SKIPPED: cgroup v2 is not writable here (" << supervisor.cgroups_unavailable_reason() << ")");
    return;
  }
  WorkerSpec weighted;
  weighted.cpu_weight = 50;
  jobwarden::WorkerInfo first;
  const std::string seen = run_script(supervisor, dir, "weighted", print_cgroup_weight, weighted, &first);
  if (!first.cpu_weight_error.empty()) {
    REQUIRE_FALSE(cpu_controller_handed_down());  // else the weight should have been written
    WARN("SKIPPED: " << first.cpu_weight_error);
    return;
  }
  std::istringstream lines(seen);
  std::string cgroup, weight;
  std::getline(lines, cgroup);
  std::getline(lines, weight);
  CHECK(weight == "50");
  CHECK(first.cpu_weight_error.empty());

  jobwarden::WorkerInfo second;
  std::istringstream again(run_script(supervisor, dir, "plain", print_cgroup_weight, WorkerSpec{}, &second));
  std::string cgroup_again, weight_again;
  std::getline(again, cgroup_again);
  std::getline(again, weight_again);
  CHECK(cgroup_again == cgroup);  // the pooled cgroup, reused
  CHECK(weight_again == "100");
  CHECK(second.cpu_weight_error.empty());

  WorkerSpec heavy;
  heavy.cpu_weight = 10000;
  std::istringstream third(run_script(supervisor, dir, "heavy", print_cgroup_weight, heavy));
  std::string cgroup_third, weight_third;
  std::getline(third, cgroup_third);
  std::getline(third, weight_third);
  CHECK(weight_third == "10000");
}

TEST_CASE("a worker whose cpu_weight cannot be applied still runs, and says why") {
  jwtest::TempDir dir;
  WorkerSpec weighted;
  weighted.cpu_weight = 20;
  SECTION("without cgroups") {
    SupervisorOptions options;
    options.use_cgroups = false;
    JobSupervisor<> supervisor(options);
    jobwarden::WorkerInfo info;
    const std::string seen = run_script(supervisor, dir, "out", print_nice, weighted, &info);
    CHECK(first_line(seen) == std::to_string(own_nice()));  // it ran
    CHECK(info.cpu_weight_error ==
          "cpu_weight not applied: the worker has no cgroup of its own (turned off (SupervisorOptions::use_cgroups))");
    // A worker that asks for no weight has nothing to report.
    jobwarden::WorkerInfo plain;
    run_script(supervisor, dir, "plain", print_nice, WorkerSpec{}, &plain);
    CHECK(plain.cpu_weight_error.empty());
  }
  SECTION("with cgroups, where the cpu controller is missing") {
    JobSupervisor<> supervisor;
    jobwarden::WorkerInfo info;
    run_script(supervisor, dir, "out", print_cgroup_weight, weighted, &info);
    if (!supervisor.cgroups_active()) {
      CHECK_THAT(info.cpu_weight_error, Catch::StartsWith("cpu_weight not applied: the worker has no cgroup of its own (") &&
                                            Catch::Contains(supervisor.cgroups_unavailable_reason()));
    } else if (!cpu_controller_available()) {
      CHECK_THAT(info.cpu_weight_error, Catch::StartsWith("cpu_weight not applied: the cpu controller is not available in "));
    } else if (info.cpu_weight_error.empty()) {
      WARN("SKIPPED: the cpu controller is available here (the weight is checked by the test above)");
    } else {
      // Listed, but not handed down, and the kernel refused to (processes
      // live in our cgroup).
      CHECK_FALSE(cpu_controller_handed_down());
      CHECK_THAT(info.cpu_weight_error, Catch::StartsWith("cpu_weight not applied: cannot enable the cpu controller in "));
    }
  }
}

TEST_CASE("cpu.weight is written into a cgroup's file, and a cgroup without the file says so") {
  jwtest::TempDir dir;
  std::ofstream(dir / "cpu.weight");  // a stand-in, empty (the kernel's file takes the value whole)
  int error_number = -1;
  CHECK(jd::cgroup_set_cpu_weight(dir.path(), 250, error_number));
  CHECK(error_number == 0);
  CHECK(jwtest::read_file(dir / "cpu.weight") == "250");
  ::unlink((dir / "cpu.weight").c_str());
  CHECK_FALSE(jd::cgroup_set_cpu_weight(dir.path(), 250, error_number));
  CHECK(error_number == ENOENT);
  // "cpuset" is not "cpu".
  std::ofstream(dir / "cgroup.controllers") << "cpuset io memory pids\n";
  CHECK_FALSE(jd::cgroup_lists_controller(dir / "cgroup.controllers", "cpu"));
  std::ofstream(dir / "cgroup.controllers") << "cpuset cpu io\n";
  CHECK(jd::cgroup_lists_controller(dir / "cgroup.controllers", "cpu"));
}

TEST_CASE("the cpu controller is enabled for the workers' cgroups, first where it is not handed down") {
  // Stand-ins for the kernel's files (the kernel would also add cpu to the
  // tree's cgroup.controllers once its parent enables it; a regular file
  // does not, which is enough for what is checked here).
  jwtest::TempDir dir;
  const std::string base = dir.path();
  const std::string tree = dir / "jobwarden-1-2-0";
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  auto make = [](const std::string& path, const std::string& text) { std::ofstream(path) << text; };
  std::string why_not;

  SECTION("not in the supervisor's cgroup at all: nothing is written, and why") {
    make(base + "/cgroup.controllers", "cpuset io memory pids\n");
    make(base + "/cgroup.subtree_control", "");
    make(tree + "/cgroup.controllers", "");
    make(tree + "/cgroup.subtree_control", "");
    CHECK_FALSE(jd::enable_cpu_controller(base, tree, why_not));
    CHECK(why_not == "the cpu controller is not available in " + base +
                         " (not in its cgroup.controllers: not delegated, or bound to a cgroup v1 hierarchy)");
    CHECK(jwtest::read_file(base + "/cgroup.subtree_control").empty());
    CHECK(jwtest::read_file(tree + "/cgroup.subtree_control").empty());
  }
  SECTION("in the supervisor's cgroup, not handed down: enabled there, then in the tree") {
    make(base + "/cgroup.controllers", "cpuset cpu io memory pids\n");
    make(base + "/cgroup.subtree_control", "");
    make(tree + "/cgroup.controllers", "");
    make(tree + "/cgroup.subtree_control", "");
    CHECK(jd::enable_cpu_controller(base, tree, why_not));
    CHECK(jwtest::read_file(base + "/cgroup.subtree_control") == "+cpu");
    CHECK(jwtest::read_file(tree + "/cgroup.subtree_control") == "+cpu");
  }
  SECTION("handed down already: only the tree is touched") {
    make(base + "/cgroup.controllers", "cpu\n");
    make(tree + "/cgroup.controllers", "cpu memory\n");
    make(tree + "/cgroup.subtree_control", "");
    CHECK(jd::enable_cpu_controller(base, tree, why_not));
    CHECK_FALSE(std::filesystem::exists(base + "/cgroup.subtree_control"));
    CHECK(jwtest::read_file(tree + "/cgroup.subtree_control") == "+cpu");
  }
  SECTION("a refusal is reported with the system's reason") {
    make(base + "/cgroup.controllers", "cpu\n");
    make(tree + "/cgroup.controllers", "");
    // No cgroup.subtree_control in base: the write fails (ENOENT).
    CHECK_FALSE(jd::enable_cpu_controller(base, tree, why_not));
    CHECK(why_not == "cannot enable the cpu controller in " + base +
                         "/cgroup.subtree_control: " + std::strerror(ENOENT));
  }
}
