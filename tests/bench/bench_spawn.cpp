// Spawn throughput: N short workers (/bin/true) under full supervision against
// a plain posix_spawn + waitpid loop, alternating rounds in one process and
// printing the median ratio (robust on a noisy shared machine).
//
//   bench_spawn [N] [ROUNDS] [CONCURRENCY]
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <jobwarden/jobwarden.hpp>

extern char** environ;

namespace {
using seconds_d = std::chrono::duration<double>;

double plain_loop(int n, int concurrency) {
  auto start = std::chrono::steady_clock::now();
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  int running = 0, started = 0;
  std::vector<pid_t> pids;
  while (started < n || running > 0) {
    while (started < n && running < concurrency) {
      pid_t pid;
      if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) std::abort();
      pids.push_back(pid);
      ++running;
      ++started;
    }
    // Wait for the oldest (specific pids, like a careful host would).
    pid_t pid = pids.front();
    pids.erase(pids.begin());
    int status;
    waitpid(pid, &status, 0);
    --running;
  }
  return seconds_d(std::chrono::steady_clock::now() - start).count();
}

double supervised(int n, int concurrency) {
  auto start = std::chrono::steady_clock::now();
  jobwarden::SupervisorOptions options;
  options.max_concurrency = static_cast<std::size_t>(concurrency);
  jobwarden::JobSupervisor<> supervisor(options);
  jobwarden::WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.stdout_spec = jobwarden::OutputSpec::inherit();
  for (int i = 0; i < n; ++i) supervisor.submit(spec);
  supervisor.wait_all();
  for (const auto& w : supervisor.workers()) {
    if (w.state != jobwarden::WorkerState::succeeded) std::abort();
  }
  return seconds_d(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  int concurrency = argc > 3 ? std::atoi(argv[3]) : 1;
  std::vector<double> plain, ours, ratio;
  for (int r = 0; r < rounds; ++r) {
    double a = plain_loop(n, concurrency);
    double b = supervised(n, concurrency);
    plain.push_back(a);
    ours.push_back(b);
    ratio.push_back(a / b);  // throughput ratio: jobwarden / plain
  }
  std::printf("spawn %d x /bin/true, concurrency %d, %d rounds (median)\n", n, concurrency, rounds);
  std::printf("  plain posix_spawn+waitpid: %8.1f workers/s\n", n / median(plain));
  std::printf("  jobwarden JobSupervisor:   %8.1f workers/s\n", n / median(ours));
  std::printf("  throughput ratio jobwarden/plain: %.3f\n", median(ratio));
  return 0;
}
