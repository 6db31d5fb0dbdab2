// hello_supervisor: the smallest JobSupervisor host. Runs three commands at
// once (one exits non-zero, one outlives its timeout) and prints how each ended.
#include <cstdio>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;

int main() {
  jobwarden::JobSupervisor<> supervisor;  // no root: no status files, output goes to ours
  const std::vector<std::vector<std::string>> commands = {
      {"echo", "hello from a worker"}, {"sh", "-c", "exit 3"}, {"sleep", "10"}};
  for (const auto& argv : commands) {
    jobwarden::WorkerSpec spec;
    spec.argv = argv;
    spec.timeout = 500ms;  // then SIGTERM to its process tree, and SIGKILL after the grace period
    supervisor.submit(spec);
  }
  supervisor.wait_all();  // or drive poll() from your own event loop (see event_loop_host.cpp)

  for (const jobwarden::WorkerInfo& worker : supervisor.workers()) {
    std::string how =
        worker.exit_code ? "exit code " + std::to_string(*worker.exit_code) : worker.signal_name();
    std::printf("%-6s %-10s %-10s%s\n", worker.argv[0].c_str(),
                std::string(jobwarden::to_string(worker.state)).c_str(), how.c_str(),
                (worker.error.empty() ? "" : " (" + worker.error + ")").c_str());
  }
  using jobwarden::WorkerState;
  const std::vector<WorkerState> expected = {WorkerState::succeeded, WorkerState::failed,
                                             WorkerState::timed_out};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (supervisor.workers()[i].state != expected[i]) return 1;
  }
  return 0;
}
