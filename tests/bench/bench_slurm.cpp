// Per-worker overhead of running through Slurm: N short workers (`true`)
// under JobSupervisor + SlurmLauncher against plain `srun true` started the
// same way (posix_spawn + waitpid, same concurrency) on the same cluster.
// Rounds alternate which goes first; the median per-round ratio is printed.
//
//   bench_slurm [--smoke] [--stderr-file] [N] [ROUNDS] [CONCURRENCY]   (default 40 5 1)
//
// --stderr-file sends the workers' stderr to a file (read in place) instead
// of discarding it (srun's stderr then goes through the launcher's capture).
//
// Needs a cluster (scripts/slurm-up.sh, SLURM_CONF exported); without one it
// says so and exits 0. Timing is printed, never asserted.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/slurm_launcher.hpp>

extern char** environ;

namespace {
using seconds_d = std::chrono::duration<double>;

double since(std::chrono::steady_clock::time_point start) {
  return seconds_d(std::chrono::steady_clock::now() - start).count();
}

/// The baseline: what a careful host does by hand — `srun true` per worker,
/// output to /dev/null, waiting for specific pids.
double plain_srun(const std::string& srun, int n, int concurrency) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> args{srun, "--ntasks=1", "--nodes=1", "--input=none", "true"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::deque<pid_t> running;
  int started = 0;
  while (started < n || !running.empty()) {
    while (started < n && static_cast<int>(running.size()) < concurrency) {
      pid_t pid;
      if (posix_spawn(&pid, srun.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
        std::perror("posix_spawn srun");
        std::exit(1);
      }
      running.push_back(pid);
      ++started;
    }
    int status = 0;
    waitpid(running.front(), &status, 0);
    running.pop_front();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "bench_slurm: plain srun true failed (status %d)\n", status);
      std::exit(1);
    }
  }
  posix_spawn_file_actions_destroy(&actions);
  return since(start);
}

/// jobwarden: a supervisor with the Slurm launcher (orphan guard on), N
/// workers, wait_all, destruction — all timed: it is what a job costs.
double supervised(int n, int concurrency, int round, bool stderr_to_file) {
  auto start = std::chrono::steady_clock::now();
  {
    jobwarden::SupervisorOptions options;
    options.job_id = "bench-slurm-" + std::to_string(::getpid()) + "-" + std::to_string(round);
    options.max_concurrency = static_cast<std::size_t>(concurrency);
    options.launcher = std::make_shared<jobwarden::SlurmLauncher>();
    jobwarden::JobSupervisor<> supervisor(options);
    jobwarden::WorkerSpec spec;
    spec.argv = {"true"};
    spec.stdout_spec = jobwarden::OutputSpec::discard();
    // Discarded stderr makes the launcher capture srun's own stderr through a
    // /bin/sh wrapper; a stderr file is read in place (no wrapper).
    spec.stderr_spec = stderr_to_file
                           ? jobwarden::OutputSpec::to_file(
                                 "/tmp/bench_slurm." + std::to_string(::getpid()) + ".err", true)
                           : jobwarden::OutputSpec::discard();
    for (int i = 0; i < n; ++i) supervisor.submit(spec);
    supervisor.wait_all();
    for (const auto& w : supervisor.workers()) {
      if (w.state != jobwarden::WorkerState::succeeded) {
        std::fprintf(stderr, "bench_slurm: worker %s ended %s: %s\n", w.id.c_str(),
                     std::string(jobwarden::to_string(w.state)).c_str(), w.error.c_str());
        std::exit(1);
      }
    }
  }
  return since(start);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void figure(const std::string& name, double value, const char* unit) {
  std::printf("FIGURE %-44s %12.3f %-10s\n", name.c_str(), value, unit);
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<int> numbers;
  bool smoke = false;
  bool stderr_to_file = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--smoke") {
      smoke = true;
    } else if (arg == "--stderr-file") {
      stderr_to_file = true;
    } else {
      numbers.push_back(std::atoi(argv[i]));
    }
  }
  int n = numbers.size() > 0 ? numbers[0] : (smoke ? 8 : 40);
  int rounds = numbers.size() > 1 ? numbers[1] : (smoke ? 1 : 5);
  int concurrency = numbers.size() > 2 ? numbers[2] : 1;

  const char* conf = std::getenv("SLURM_CONF");
  if (conf == nullptr || *conf == '\0' || std::system("sinfo --noheader >/dev/null 2>&1") != 0) {
    std::printf(
        "bench_slurm: Slurm is not up (%s); nothing measured. Run scripts/slurm-up.sh "
        "and export the SLURM_CONF it prints.\n",
        conf == nullptr || *conf == '\0' ? "SLURM_CONF is not set" : "sinfo fails");
    return 0;
  }
  std::string error;
  int error_number = 0;
  const char* path = std::getenv("PATH");
  std::string srun = jobwarden::detail::resolve_program("srun", path ? path : "", error_number);
  if (error_number != 0) {
    std::printf("bench_slurm: srun not found in PATH; nothing measured.\n");
    return 0;
  }

  std::vector<double> plain, ours, ratio;
  for (int r = 0; r < rounds; ++r) {
    double a, b;
    if (r % 2 == 0) {
      a = plain_srun(srun, n, concurrency);
      b = supervised(n, concurrency, r, stderr_to_file);
    } else {
      b = supervised(n, concurrency, r, stderr_to_file);
      a = plain_srun(srun, n, concurrency);
    }
    plain.push_back(a);
    ours.push_back(b);
    ratio.push_back(b / a);
    std::printf("round %d: srun loop %.3f s, jobwarden+slurm %.3f s\n", r + 1, a, b);
  }
  std::printf("%d x `true` through Slurm, concurrency %d, %d rounds (median)\n", n, concurrency,
              rounds);
  std::printf("  plain srun loop:        %8.3f s  (%.1f ms per worker)\n", median(plain),
              1000 * median(plain) / n);
  std::printf("  JobSupervisor + Slurm:  %8.3f s  (%.1f ms per worker)\n", median(ours),
              1000 * median(ours) / n);
  std::printf("  ratio jobwarden / plain: %.3f  (overhead %.1f ms per worker)\n", median(ratio),
              1000 * (median(ours) - median(plain)) / n);
  figure("slurm.per_worker_plain_srun", 1000 * median(plain) / n, "ms");
  figure("slurm.per_worker_jobwarden", 1000 * median(ours) / n, "ms");
  figure("slurm.ratio_jobwarden_over_srun", median(ratio), "x");
  if (stderr_to_file)
    std::remove(("/tmp/bench_slurm." + std::to_string(::getpid()) + ".err").c_str());
  return 0;
}
