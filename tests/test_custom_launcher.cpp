// A launcher written by a user, with public types only: it rewrites the
// LaunchPlan, wraps the local defaults, and refines an ExitStatus. Also the
// public ProcessIdentity of a started worker.
#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/launch_plan.hpp>
#include <jobwarden/launcher.hpp>
#include <jobwarden/process_identity.hpp>
#include <jobwarden/worker_info.hpp>

#include <algorithm>
#include <memory>
#include <string>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {
/// Runs every worker through `/bin/sh -c 'exit 3'` and calls exit code 3 a success.
class ExitThreeLauncher : public jobwarden::LocalLauncher {
 public:
  std::string name() const override { return "exit-three"; }

  std::error_code prepare(jobwarden::LaunchPlan& plan, const jobwarden::WorkerSpec& spec,
                          const jobwarden::LaunchContext& context, std::string& error) override {
    seen_env = std::any_of(plan.env.begin(), plan.env.end(), [](const std::string& entry) {
      return entry.rfind("JOBWARDEN_WORKER_ID=", 0) == 0;
    });
    seen_argv0 = plan.argv.empty() ? std::string() : plan.argv[0];
    plan.argv = {"/bin/sh", "-c", "exit 3"};
    jobwarden::WorkerSpec shell = spec;
    shell.argv = plan.argv;
    return Launcher::prepare(plan, shell, context, error);  // the local default finds /bin/sh
  }

  std::optional<jobwarden::WorkerState> interpret_exit(jobwarden::WorkerInfo& worker,
                                                       jobwarden::ExitStatus& status,
                                                       const jobwarden::LaunchContext&) override {
    if (status.exit_code == 3) {
      worker.error = "exit 3 means done here";
      return jobwarden::WorkerState::succeeded;
    }
    return std::nullopt;
  }

  bool seen_env = false;
  std::string seen_argv0;
};
}  // namespace

TEST_CASE("a custom launcher rewrites the plan and refines the exit with public types") {
  auto launcher = std::make_shared<ExitThreeLauncher>();
  jobwarden::SupervisorOptions options;
  options.job_id = "custom";
  options.orphan_guard = false;
  options.use_cgroups = false;
  options.launcher = launcher;
  jobwarden::JobSupervisor<> supervisor(options);
  auto id = supervisor.submit(jwtest::quiet({"/nonexistent/never-run"}));
  REQUIRE(supervisor.wait(id, 20s));
  auto info = supervisor.info(id);
  CHECK(info.state == jobwarden::WorkerState::succeeded);
  CHECK(info.exit_code == 3);
  CHECK(info.error == "exit 3 means done here");
  CHECK(launcher->seen_env);
  CHECK(launcher->seen_argv0 == "/nonexistent/never-run");
  CHECK(info.identity() == jobwarden::ProcessIdentity{info.pid, info.process_start_time});
  CHECK(info.identity().known());
}

TEST_CASE("LocalLauncher is the default and still a Launcher") {
  std::shared_ptr<jobwarden::Launcher> local = std::make_shared<jobwarden::LocalLauncher>();
  CHECK(local->name() == "local");
  jobwarden::WorkerInfo never_started;
  CHECK_FALSE(never_started.identity().known());
}
