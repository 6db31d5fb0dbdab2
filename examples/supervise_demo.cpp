// A small host that supervises a few commands with a concurrency limit and a
// timeout, and prints how each one ended. Every outcome appears once: success,
// failure, crash, a missing program, and a timeout whose grandchild dies too.
#include <cstdio>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;

int main() {
  jobwarden::SupervisorOptions options;
  options.job_id = "demo";
  options.max_concurrency = 2;
  jobwarden::JobSupervisor<> supervisor(options);

  supervisor.on_event([](const jobwarden::WorkerEvent& event) {
    const auto& w = event.worker;
    if (event.kind == jobwarden::EventKind::started) {
      std::printf("  started   %-8s pid %d\n", w.id.c_str(), w.pid);
    } else if (event.kind == jobwarden::EventKind::timed_out) {
      std::printf("  deadline  %-8s stopping its process tree\n", w.id.c_str());
    } else if (event.kind == jobwarden::EventKind::exited) {
      std::string how = w.exit_code ? "exit " + std::to_string(*w.exit_code)
                        : w.signal  ? w.signal_name()
                                    : w.error;
      std::printf("  finished  %-8s %-12s %s\n", w.id.c_str(),
                  std::string(jobwarden::to_string(w.state)).c_str(), how.c_str());
    }
  });

  auto add = [&](std::string id, std::vector<std::string> argv,
                 std::chrono::milliseconds timeout = 0ms) {
    jobwarden::WorkerSpec spec;
    spec.id = std::move(id);
    spec.argv = std::move(argv);
    spec.timeout = timeout;
    spec.grace_period = 1s;
    spec.stdout_spec = jobwarden::OutputSpec::discard();
    supervisor.submit(spec);
  };
  std::printf("jobwarden demo: 5 workers, at most 2 at once\n");
  add("ok", {"/bin/sh", "-c", "sleep 0.2; exit 0"});
  add("fails", {"/bin/sh", "-c", "exit 3"});
  add("crashes", {"/bin/sh", "-c", "kill -SEGV $$"});
  add("missing", {"/nonexistent/program"});
  add("hangs", {"/bin/sh", "-c", "sleep 60 & sleep 60"}, 500ms);

  if (!supervisor.wait_all(60s)) {
    std::fprintf(stderr, "demo: workers did not finish in time\n");
    return 1;
  }
  int expected = 0;
  for (const auto& w : supervisor.workers()) {
    auto want = w.id == "ok"        ? jobwarden::WorkerState::succeeded
                : w.id == "fails"   ? jobwarden::WorkerState::failed
                : w.id == "crashes" ? jobwarden::WorkerState::crashed
                : w.id == "missing" ? jobwarden::WorkerState::spawn_failed
                                    : jobwarden::WorkerState::timed_out;
    expected += w.state == want ? 1 : 0;
  }
  std::printf("%d of 5 workers ended as expected\n", expected);
  return expected == 5 ? 0 : 1;
}
