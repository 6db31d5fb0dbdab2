// repo_scanner: jobwarden's demo. A host scans many repositories in parallel
// worker processes and always knows where each one is.
//
//   repo_scanner [--jobs N] [--timeout DUR] [--root DIR] [--pace DUR] [DIR...]
//
// It shows:
// - one worker process per repository (this same binary re-executed as
//   `repo_scanner --worker DIR`), at most N at once, each with a timeout;
// - typed progress written by the workers (WorkerStatusWriter<ScanProgress>)
//   and read back from the job directory (StatusAggregator<ScanProgress>):
//   "3 of 9 repositories done", "game-engine 40/100 files";
// - a real result from every worker: the manifests and dependencies it found;
// - every way a worker can end, told apart: succeeded, failed (exit code and
//   the worker's error), crashed (signal), timed_out (with the processes it
//   started), and a worker that is alive but silent, shown as such.
//
// Without DIRs it scans a demo tree it generates, built to show each outcome,
// and exits 0 when every outcome is the designed one. With DIRs it exits 0
// when every scan succeeded. The job directory lives in a temporary root
// removed at exit; --root DIR keeps it (`jobwarden status --root DIR --job ID`
// or examples/python/read_job.py read it later).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "repo_scanner.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using jobwarden::WorkerState;

namespace {

volatile std::sig_atomic_t interrupted = 0;

struct Options {
  std::size_t jobs = 0;  // 0: 3 for the demo, the CPU count otherwise
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<std::chrono::milliseconds> pace;
  std::string root;
  std::vector<std::string> directories;
};

/// A temporary directory, removed with everything in it when it goes.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "repo-scanner-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw fs::filesystem_error("mkdtemp", pattern,
                                 std::error_code(errno, std::generic_category()));
    }
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(
      stderr,
      "repo_scanner: %s\n"
      "usage: repo_scanner [--jobs N] [--timeout DUR] [--root DIR] [--pace DUR] [DIR...]\n",
      what.c_str());
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    std::error_code ec;
    if (arg == "-h" || arg == "--help") {
      std::printf(
          "usage: repo_scanner [--jobs N] [--timeout DUR] [--root DIR] [--pace DUR] [DIR...]\n"
          "Scans each DIR for dependency manifests in parallel worker processes; without DIRs,\n"
          "scans a generated demo tree built to show every way a worker can end.\n"
          "  --jobs N       workers at once (demo: 3, else the CPU count)\n"
          "  --timeout DUR  per repository (demo: 3s, else 10m); DUR is 500ms, 30s, 5m, 1h...\n"
          "  --root DIR     keep the job directory under DIR (default: a temporary one)\n"
          "  --pace DUR     pause per file, to watch the progress (demo: 20ms, else 0)\n");
      std::exit(0);
    } else if (arg == "--jobs") {
      options.jobs = std::strtoul(value().c_str(), nullptr, 10);
      if (options.jobs == 0) usage_error("--jobs needs a number above 0");
    } else if (arg == "--timeout" || arg == "--pace") {
      auto duration = jobwarden::parse_duration(value(), ec);
      if (ec) usage_error(arg + ": invalid duration \"" + argv[i] + "\" (e.g. 500ms, 30s, 5m)");
      (arg == "--timeout" ? options.timeout : options.pace) = duration;
    } else if (arg == "--root") {
      options.root = value();
    } else if (arg.rfind("--", 0) == 0) {
      usage_error("unknown option " + arg);
    } else {
      options.directories.push_back(arg);
    }
  }
  return options;
}

/// A worker id for a directory: its name made into a valid id, unique in the job.
std::string worker_id_for(const std::string& directory, std::set<std::string>& taken) {
  std::string name = fs::weakly_canonical(fs::absolute(directory)).filename().string();
  std::string id;
  for (char c : name.substr(0, 100)) {
    id += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ? c : '-';
  }
  if (id.empty() || !std::isalnum(static_cast<unsigned char>(id[0]))) id = "repo" + id;
  std::string unique = id;
  for (int n = 2; !taken.insert(unique).second; ++n) unique = id + "-" + std::to_string(n);
  return unique;
}

std::string make_job_id() {
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return "scan-" + std::string(stamp) + "-" + std::to_string(::getpid());
}

/// Live processes whose environment carries this job's id. Every worker, and
/// everything a worker starts, inherits JOBWARDEN_JOB_ID: after the job none
/// may be left.
std::vector<int> processes_of_job(const std::string& job_id) {
  std::vector<int> pids;
  const std::string variable = "JOBWARDEN_JOB_ID=" + job_id;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream environ(entry.path() / "environ", std::ios::binary);
    for (std::string item; std::getline(environ, item, '\0');) {
      if (item == variable) pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

/// Whether the demo ended as designed: each repository's outcome, the
/// dependencies its result must list, and no process of the job left.
bool check_demo(const JobStatus& status, const std::vector<DemoRepo>& repos,
                const std::string& job_id) {
  std::vector<std::string> problems;
  for (const DemoRepo& repo : repos) {
    const WorkerStatus* worker = status.find_worker(repo.name);
    if (worker == nullptr) {
      problems.push_back(repo.name + ": no status at all");
      continue;
    }
    if (worker->state != repo.expected) {
      problems.push_back(repo.name + " ended " + std::string(jobwarden::to_string(worker->state)) +
                         ", designed to end " + std::string(jobwarden::to_string(repo.expected)));
    }
    std::set<std::string> found;
    try {
      for (const Manifest& manifest : worker->result.get<ScanResult>().manifests) {
        found.insert(manifest.dependencies.begin(), manifest.dependencies.end());
      }
    } catch (const nlohmann::json::exception&) {  // no result (expected for the ones built to fail)
    }
    for (const std::string& name : repo.expected_dependencies) {
      if (found.count(name) == 0) {
        problems.push_back(repo.name + ": dependency " + name + " missing from its result");
      }
    }
  }
  // SIGKILL takes effect at once, but a killed process needs a moment to be
  // torn down: look again for up to a second before calling one a leftover.
  std::vector<int> leftovers = processes_of_job(job_id);
  for (int attempt = 0; attempt < 50 && !leftovers.empty(); ++attempt) {
    std::this_thread::sleep_for(20ms);
    leftovers = processes_of_job(job_id);
  }
  for (int pid : leftovers) {
    problems.push_back("process " + std::to_string(pid) + " of the job is still alive");
  }

  if (problems.empty()) {
    std::printf(
        "Demo check: every outcome is the designed one, every result lists its dependencies, "
        "and no process of the job is left.\n");
    return true;
  }
  std::printf("Demo check FAILED:\n");
  for (const std::string& problem : problems) std::printf("  %s\n", problem.c_str());
  return false;
}

int run_host(const std::string& self, const Options& options) {
  const bool demo = options.directories.empty();
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  const auto timeout = options.timeout.value_or(demo ? 3s : 10min);
  const auto grace = demo ? 500ms : 5s;
  const auto pace = options.pace.value_or(demo ? 20ms : 0ms);

  // Piped into `head`, we must still stop our workers and clean up rather than
  // die of SIGPIPE (workers start with every signal back at its default).
  std::signal(SIGPIPE, SIG_IGN);
  // Ctrl-C or SIGTERM: stop every worker (stop sequence), then report as usual.
  struct sigaction on_interrupt {};
  on_interrupt.sa_handler = [](int) { interrupted = 1; };
  ::sigaction(SIGINT, &on_interrupt, nullptr);
  ::sigaction(SIGTERM, &on_interrupt, nullptr);

  TempDir scratch;  // declared before the supervisor, so it outlives it
  std::vector<DemoRepo> demo_repos;
  std::vector<std::pair<std::string, std::string>> repos;  // worker id, directory
  if (demo) {
    demo_repos = make_demo_tree(scratch.path + "/repos");
    for (const DemoRepo& repo : demo_repos) repos.emplace_back(repo.name, repo.path);
  } else {
    std::set<std::string> taken;
    for (const std::string& directory : options.directories) {
      repos.emplace_back(worker_id_for(directory, taken), directory);
    }
  }

  jobwarden::SupervisorOptions supervisor_options;
  supervisor_options.job_id = make_job_id();
  supervisor_options.root = options.root.empty() ? scratch.path + "/jobs" : options.root;
  supervisor_options.max_concurrency = options.jobs ? options.jobs : demo ? 3 : 0;
  fs::create_directories(supervisor_options.root);
  jobwarden::JobSupervisor<ScanProgress> supervisor(supervisor_options);
  const std::string& job_id = supervisor.job_id();

  // The host reads the job exactly as any other process would.
  jobwarden::StatusAggregatorOptions reader_options;
  reader_options.stale_after = 1500ms;  // workers report every 200ms: silence this long means stuck
  jobwarden::StatusAggregator<ScanProgress> reader(supervisor_options.root, reader_options);

  if (demo) {
    std::printf(
        "repo_scanner demo: %zu repositories, %zu at a time, a %s timeout each.\n"
        "Built to show every outcome: segfault-demo crashes on purpose (SIGSEGV),\n"
        "stuck-indexer hangs with a helper process until its timeout, deleted-repo does not\n"
        "exist. Workers pause %s per file so there is something to watch (--pace 0: no pause).\n\n",
        repos.size(), supervisor.max_concurrency(), jobwarden::format_duration(timeout).c_str(),
        jobwarden::format_duration(pace).c_str());
  } else {
    std::printf("repo_scanner: %zu repositories, %zu at a time, a %s timeout each.\n\n",
                repos.size(), supervisor.max_concurrency(),
                jobwarden::format_duration(timeout).c_str());
  }

  LiveView view(terminal);
  std::set<std::string> killed;  // workers that needed SIGKILL
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    const std::string& id = event.worker.id;
    if (event.kind == jobwarden::EventKind::timed_out) {
      view.print_line(view.stamp() + id + ": " + jobwarden::format_duration(timeout) +
                      " timeout reached, SIGTERM to its process tree");
    } else if (event.kind == jobwarden::EventKind::killed) {
      killed.insert(id);
      view.print_line(view.stamp() + id + ": still there after the " +
                      jobwarden::format_duration(grace) +
                      " grace period, SIGKILL to its process tree");
    } else if (event.kind == jobwarden::EventKind::exited) {
      JobStatus status = reader.read(job_id);
      if (const WorkerStatus* worker = status.find_worker(id)) {
        view.print_line(view.stamp() +
                        outcome_line(*worker, killed.count(id) > 0, terminal).substr(2));
      }
    }
  });

  for (const auto& [id, directory] : repos) {
    jobwarden::WorkerSpec spec;
    spec.id = id;
    spec.argv = {self, "--worker", "--pace", std::to_string(pace.count()) + "ms", directory};
    spec.timeout = timeout;
    spec.grace_period = grace;
    spec.limits.core_file_bytes = 0;  // a crashing scan leaves no core file behind
    supervisor.submit(spec);
  }

  bool stopping = false;
  // wait_all sleeps on the supervisor's event descriptor and runs the event
  // handlers as things happen; every 200ms it comes back to redraw the view.
  while (!supervisor.wait_all(200ms)) {
    if (interrupted && !stopping) {
      stopping = true;
      view.print_line(view.stamp() + "interrupted: stopping every worker");
      supervisor.begin_shutdown();
    }
    view.update(reader.read(job_id));
  }
  view.close();
  // No more work: finish() makes the next poll() write the job's final state.
  // (Called only now because, in this version, finish() with workers still
  // queued keeps them from ever starting.)
  supervisor.finish();
  supervisor.poll();

  const JobStatus final_status = reader.read(job_id);
  print_results(final_status, killed, terminal);
  if (!options.root.empty()) {
    std::printf("The job directory stays in %s/%s (try: jobwarden status --root %s --job %s).\n",
                options.root.c_str(), job_id.c_str(), options.root.c_str(), job_id.c_str());
  }
  if (stopping) return 130;
  if (demo) return check_demo(final_status, demo_repos, job_id) ? 0 : 1;
  return final_status.state == jobwarden::JobState::succeeded ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 2 && std::string(argv[1]) == "--worker") {
      // repo_scanner --worker [--pace DUR] DIR
      std::chrono::milliseconds pace{0};
      int at = 2;
      if (argc >= 4 && std::string(argv[2]) == "--pace") {
        pace = jobwarden::parse_duration(argv[3]);
        at = 4;
      }
      if (at + 1 != argc) {
        std::fprintf(stderr, "usage: repo_scanner --worker [--pace DUR] DIR\n");
        return 2;
      }
      return run_worker(argv[at], pace);
    }
    // Workers run this very binary; /proc/self/exe names it whatever argv[0] says.
    return run_host(fs::read_symlink("/proc/self/exe").string(), parse_options(argc, argv));
  } catch (const std::exception& e) {  // the supervisor has stopped and reaped its workers by now
    std::fprintf(stderr, "repo_scanner: %s\n", e.what());
    return 1;
  }
}
