// pipeline_control: a pipeline backend on jobwarden. It starts
// long-running pipeline "driver" processes, stops them on request without
// leaving anything behind, and notices the moment a driver exits by itself,
// recording each run as completed, failed or stopped. Event-driven: one
// poll() on the supervisor's descriptor, a timer and pidfds; no sleeps.
//
//   pipeline_control                                   the backend (runs four scenarios)
//   pipeline_control --driver STEPS [--fail-at K] [--ignore-sigterm]   one driver
//
// A driver prints its progress (to its log), reports it through
// WorkerStatusWriter, and runs a "stage" child process that ignores SIGTERM,
// as real tools sometimes do. The backend:
//   run-1  endless driver; the operator presses Stop: SIGTERM, the driver stops cleanly -> stopped
//   run-2  endless driver deaf to SIGTERM: SIGKILL after the grace period      -> stopped
//   run-3  finishes its 5 steps                                                   -> completed
//   run-4  fails at step 3                                                        -> failed
// and for every run shows that its stage process is gone too. Linux only (pidfd).
#include <poll.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;
using jobwarden::WorkerState;

namespace {

long long wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- the driver -------------------------------------------------------------

volatile std::sig_atomic_t stop_requested = 0;

int run_driver(int steps, int fail_at, bool ignore_sigterm) {
  std::error_code outside_jobwarden;
  auto status = jobwarden::WorkerStatusWriter<>::from_environment(outside_jobwarden);
  std::signal(
      SIGTERM, ignore_sigterm ? SIG_IGN : [](int) { stop_requested = 1; });

  const pid_t stage = ::fork();
  if (stage == 0) {  // the stage: a child that ignores SIGTERM
    std::signal(SIGTERM, SIG_IGN);
    ::execlp("sleep", "sleep", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::printf("driver: stage process %d started\n", stage);
  status.progress({{"step", 0}, {"steps", steps}, {"stage_pid", stage}});
  status.flush();

  int done = 0;
  while ((steps == 0 || done < steps) && !stop_requested) {
    std::this_thread::sleep_for(100ms);  // one step of pipeline work
    if (done + 1 == fail_at) {
      std::fprintf(stderr, "driver: step %d failed: input batch is corrupt\n", fail_at);
      status.set_error("step " + std::to_string(fail_at) + " failed: input batch is corrupt");
      status.result(nlohmann::json{{"steps_done", done}, {"exiting_at_ms", wall_ms()}});
      return 1;
    }
    ++done;
    std::printf("driver: step %d done\n", done);
    std::fflush(stdout);
    status.progress({{"step", done}, {"steps", steps}, {"stage_pid", stage}});
  }
  if (stop_requested) {
    std::printf("driver: SIGTERM received, stopped cleanly after step %d\n", done);
  }
  // The stage is left running on purpose: the supervisor must not let it outlive its driver.
  status.result(nlohmann::json{{"steps_done", done}, {"exiting_at_ms", wall_ms()}});
  return 0;
}

// ---- the backend --------------------------------------------------------------

/// The run status a pipeline backend stores (a pipeline_runs table).
std::string run_status(WorkerState state) {
  if (state == WorkerState::succeeded) return "completed";
  if (state == WorkerState::cancelled) return "stopped";
  return "failed";
}

/// The last line of a file (a driver's log), or "".
std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

struct Run {
  std::string id;
  std::vector<std::string> driver_args;
  std::string expected_status;
  std::string final_status = "";  ///< what the backend recorded
  int stage_pid = 0;
  int stage_pidfd = -1;  ///< watched until the stage process is gone
  bool stage_gone = false;
};

int run_backend(const std::string& self) {
  // Piped into `head`, we must still stop our workers and clean up rather than
  // die of SIGPIPE (workers start with every signal back at its default).
  std::signal(SIGPIPE, SIG_IGN);
  std::string root = (std::filesystem::temp_directory_path() / "pipeline-control-XXXXXX").string();
  if (::mkdtemp(root.data()) == nullptr) {
    throw std::runtime_error("cannot make a temporary directory");
  }
  struct RemoveRoot {
    std::string path;
    ~RemoveRoot() { std::filesystem::remove_all(path); }
  } remove_root{root};  // declared before the supervisor: removed after it is gone

  jobwarden::SupervisorOptions options;
  options.job_id = "pipeline";
  options.root = root;
  options.max_concurrency = 4;
  jobwarden::JobSupervisor<> supervisor(options);

  std::map<std::string, Run> runs;
  runs["run-1"] = {"run-1", {"--driver", "0"}, "stopped"};
  runs["run-2"] = {"run-2", {"--driver", "0", "--ignore-sigterm"}, "stopped"};
  runs["run-3"] = {"run-3", {"--driver", "5"}, "completed"};
  runs["run-4"] = {"run-4", {"--driver", "5", "--fail-at", "3"}, "failed"};

  const auto start = std::chrono::steady_clock::now();
  auto say = [&](const std::string& text) {
    std::printf("[%5.3fs] %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                text.c_str());
    std::fflush(stdout);
  };

  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    Run& run = runs[event.worker.id];
    switch (event.kind) {
      case jobwarden::EventKind::started:
        say(run.id + ": driver started, pid " + std::to_string(event.worker.pid));
        break;
      case jobwarden::EventKind::stop_requested:
        say(run.id + ": stop sequence begins: SIGTERM to the driver's process tree");
        break;
      case jobwarden::EventKind::killed:
        say(run.id + ": still running after the grace period: SIGKILL to the whole tree");
        break;
      case jobwarden::EventKind::exited: {
        const long long noticed_ms = wall_ms();
        run.final_status = run_status(event.worker.state);
        auto status = supervisor.status();
        const auto* worker = status.find_worker(run.id);
        std::string how = event.worker.exit_code ? "exit " + std::to_string(*event.worker.exit_code)
                                                 : event.worker.signal_name();
        if (worker && worker->result.contains("exiting_at_ms")) {
          how += ", noticed " +
                 std::to_string(noticed_ms - worker->result["exiting_at_ms"].get<long long>()) +
                 "ms after its last act";
        }
        if (worker && worker->error && event.worker.state == WorkerState::failed) {
          how += "; " + *worker->error;
        }
        say(run.id + ": driver ended (" + how + ") -> pipeline_runs." + run.id + " = " +
            run.final_status);
        say(run.id + ":   its log ends with \"" +
            last_line(supervisor.job_dir() + "/workers/" + run.id + ".stdout.log") + "\"");
        // The stage it started: watch its pidfd until it is gone.
        if (worker && worker->progress && worker->progress->contains("stage_pid")) {
          run.stage_pid = (*worker->progress)["stage_pid"].get<int>();
          run.stage_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, run.stage_pid, 0));
          if (run.stage_pidfd < 0) {  // ESRCH: already gone and reaped
            run.stage_gone = true;
            say(run.id + ":   its stage process " + std::to_string(run.stage_pid) +
                " (deaf to SIGTERM) is gone");
          }
        }
        break;
      }
      default:
        break;
    }
  });

  for (auto& [id, run] : runs) {
    jobwarden::WorkerSpec spec;
    spec.id = id;
    spec.argv = {self};
    spec.argv.insert(spec.argv.end(), run.driver_args.begin(), run.driver_args.end());
    spec.grace_period = 1s;
    supervisor.submit(spec);
  }

  // The operator presses Stop for run-1 and run-2 one second from now.
  int stop_button = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  itimerspec in_one_second{};
  in_one_second.it_value.tv_sec = 1;
  ::timerfd_settime(stop_button, 0, &in_one_second, nullptr);

  auto all_settled = [&] {
    for (auto& [id, run] : runs) {
      if (run.final_status.empty() || !run.stage_gone) return false;
    }
    return true;
  };
  // Everything settles in about two seconds; a stage still alive after ten is
  // an orphan, and the table below says so.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!all_settled() && std::chrono::steady_clock::now() < give_up) {
    std::vector<pollfd> fds = {{supervisor.event_fd(), POLLIN, 0}, {stop_button, POLLIN, 0}};
    std::vector<Run*> watched;
    for (auto& [id, run] : runs) {
      if (run.stage_pidfd >= 0 && !run.stage_gone) {
        fds.push_back({run.stage_pidfd, POLLIN, 0});  // readable once the process has exited
        watched.push_back(&run);
      }
    }
    int wait_ms = 1000;  // at the latest, to look at the clock for give_up
    if (auto next = supervisor.next_timeout()) {
      wait_ms = static_cast<int>(std::min<long long>(next->count(), 1000));
    }
    ::poll(fds.data(), fds.size(), wait_ms);

    if (fds[1].revents & POLLIN) {
      std::uint64_t expirations;
      (void)::read(stop_button, &expirations, sizeof expirations);
      say("operator: Stop run-1 and run-2");
      supervisor.cancel("run-1");
      supervisor.cancel("run-2");
    }
    for (std::size_t i = 0; i < watched.size(); ++i) {
      if (fds[2 + i].revents & POLLIN) {
        watched[i]->stage_gone = true;
        ::close(watched[i]->stage_pidfd);
        say(watched[i]->id + ":   its stage process " + std::to_string(watched[i]->stage_pid) +
            " (deaf to SIGTERM) is gone");
      }
    }
    supervisor.poll();  // never blocks: reaps, enforces grace periods, runs the handlers above
  }
  ::close(stop_button);

  bool as_designed = true;
  std::printf("\nrun     recorded   designed   stage process\n");
  for (auto& [id, run] : runs) {
    const bool ok = run.final_status == run.expected_status && run.stage_gone;
    as_designed = as_designed && ok;
    std::printf("%-7s %-10s %-10s %s%s\n", id.c_str(), run.final_status.c_str(),
                run.expected_status.c_str(), run.stage_gone ? "gone" : "STILL ALIVE (orphan)",
                ok ? "" : "   <- not as designed");
    if (run.stage_pidfd >= 0 && !run.stage_gone) ::close(run.stage_pidfd);
  }
  std::printf("%s\n", as_designed ? "Every run ended as designed and nothing was orphaned."
                                  : "Something did not end as designed.");
  return as_designed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 3 && std::string(argv[1]) == "--driver") {
      int fail_at = 0;
      bool ignore_sigterm = false;
      for (int i = 3; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--fail-at" && i + 1 < argc) {
          fail_at = std::atoi(argv[++i]);
        } else if (arg == "--ignore-sigterm") {
          ignore_sigterm = true;
        }
      }
      return run_driver(std::atoi(argv[2]), fail_at, ignore_sigterm);
    }
    return run_backend(std::filesystem::read_symlink("/proc/self/exe").string());
  } catch (const std::exception& e) {  // the supervisor has stopped and reaped its drivers by now
    std::fprintf(stderr, "pipeline_control: %s\n", e.what());
    return 1;
  }
}
