// Scale (benchmark 7 of issue 6): 1,000 sleeping workers supervised at once,
// started and stopped cleanly, jobwarden and a plain loop alternating.
//
//   - jobwarden: max_concurrency = N; submit N sleepers (each spawns inside
//     submit), then drive poll() until every `started` event is delivered
//     (start time); then shutdown(): SIGTERM to every tree, reap all (stop
//     time). Every worker must end `cancelled`, none of their process groups
//     may hold a live process, and the host must have no child left but the
//     orphan guard, which goes with the supervisor.
//   - plain: posix_spawn N sleepers in their own process groups, then
//     kill(-pg, SIGTERM) each and waitpid each.
// RLIMIT_NOFILE's soft limit is raised to the hard one (a pidfd per worker).
//
//   bench_scale [--workers 1000] [--rounds 3] [--smoke]
#include <poll.h>
#include <spawn.h>

#include <jobwarden/jobwarden.hpp>

#include "bench_common.hpp"

extern char** environ;

namespace {
using jwbench::figure;
using jwbench::median;
using jwbench::note;
using jwbench::now_ns;

const std::string worker = JOBWARDEN_BENCH_WORKER;

struct Times {
  double start_ms = 0;
  double stop_ms = 0;
};

Times supervised(int workers, std::set<int>& groups, bool& clean) {
  Times t;
  jobwarden::SupervisorOptions options;
  options.job_id = "scale";
  options.max_concurrency = static_cast<std::size_t>(workers);
  jobwarden::JobSupervisor<> supervisor(options);
  auto started = std::make_shared<int>(0);
  supervisor.on_event([started](const jobwarden::WorkerEvent& event) {
    if (event.kind == jobwarden::EventKind::started) ++*started;
  });
  jobwarden::WorkerSpec spec;
  spec.argv = {worker, "sleep"};
  long long t0 = now_ns();
  for (int i = 0; i < workers; ++i) supervisor.submit(spec);
  long long give_up = now_ns() + 120'000'000'000LL;
  while (*started < workers) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    supervisor.poll();
    if (now_ns() > give_up) throw std::runtime_error("workers did not start");
  }
  t.start_ms = (now_ns() - t0) / 1e6;
  std::set<int> mine;
  for (const auto& info : supervisor.workers()) {
    if (info.state != jobwarden::WorkerState::running) throw std::runtime_error("a worker is not running");
    mine.insert(info.pid);
    groups.insert(info.pid);
  }
  if (supervisor.running_count() != static_cast<std::size_t>(workers)) throw std::runtime_error("running_count");

  long long t1 = now_ns();
  supervisor.shutdown();
  t.stop_ms = (now_ns() - t1) / 1e6;

  std::size_t cancelled = 0;
  for (const auto& info : supervisor.workers()) cancelled += info.state == jobwarden::WorkerState::cancelled;
  std::size_t live = 0;
  for (const auto& p : jwbench::processes_in_groups(mine)) live += p.state != 'Z' || p.ppid == ::getpid();
  std::size_t children = jwbench::our_children(/*include_guards=*/false).size();
  if (cancelled != static_cast<std::size_t>(workers) || live != 0 || children != 0) {
    note("jobwarden: %zu of %d cancelled, %zu processes of their groups left, %zu unreaped children\n", cancelled,
         workers, live, children);
    clean = false;
  }
  return t;
}

Times plain(int workers, std::set<int>& groups) {
  Times t;
  jwbench::ChildGuard guard;
  std::string mode = "sleep";
  char* argv[] = {const_cast<char*>(worker.c_str()), mode.data(), nullptr};
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<pid_t> pids;
  long long t0 = now_ns();
  for (int i = 0; i < workers; ++i) {
    pid_t pid;
    int rc = posix_spawn(&pid, worker.c_str(), nullptr, &attr, argv, environ);
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
    guard.add(pid, true);
    groups.insert(pid);
    pids.push_back(pid);
  }
  t.start_ms = (now_ns() - t0) / 1e6;
  posix_spawnattr_destroy(&attr);
  long long t1 = now_ns();
  for (pid_t pid : pids) ::kill(-pid, SIGTERM);
  for (pid_t pid : pids) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    guard.reaped(pid);
  }
  t.stop_ms = (now_ns() - t1) / 1e6;
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  std::set<int> groups;
  int rc = 0;
  try {
    jwbench::Args args(argc, argv);
    bool smoke = args.has("smoke");
    int workers = static_cast<int>(args.num("workers", smoke ? 100 : 1000));
    int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 3));
    rlim_t nofile = jwbench::raise_nofile_limit();
    if (nofile < static_cast<rlim_t>(workers) + 64) {
      throw std::runtime_error("RLIMIT_NOFILE hard limit " + std::to_string(nofile) + " is too low");
    }
    enum Method { jw, plain_method, method_count };
    std::vector<double> start_ms[method_count], stop_ms[method_count], start_ratio, stop_ratio;
    bool clean = true;
    for (int round = 0; round < rounds; ++round) {
      Times t[method_count];
      for (int m : jwbench::round_order(method_count, round)) {
        t[m] = m == jw ? supervised(workers, groups, clean) : plain(workers, groups);
      }
      for (int m = 0; m < method_count; ++m) {
        start_ms[m].push_back(t[m].start_ms);
        stop_ms[m].push_back(t[m].stop_ms);
      }
      start_ratio.push_back(t[plain_method].start_ms / t[jw].start_ms);
      stop_ratio.push_back(t[plain_method].stop_ms / t[jw].stop_ms);
    }
    note("scale: %d sleeping workers at once, %d round(s): jobwarden start %.1f ms, stop+reap %.1f ms; plain "
         "posix_spawn start %.1f ms, kill+waitpid %.1f ms; everything reaped: %s\n",
         workers, rounds, median(start_ms[jw]), median(stop_ms[jw]), median(start_ms[plain_method]),
         median(stop_ms[plain_method]), clean ? "yes" : "NO");
    figure("scale.jobwarden_start", median(start_ms[jw]), "ms");
    figure("scale.jobwarden_stop", median(stop_ms[jw]), "ms");
    figure("scale.plain_start", median(start_ms[plain_method]), "ms");
    figure("scale.plain_stop", median(stop_ms[plain_method]), "ms");
    figure("scale.jobwarden_start_vs_plain", median(start_ratio), "x");
    figure("scale.jobwarden_stop_vs_plain", median(stop_ratio), "x");
    figure("scale.all_reaped", clean ? 1 : 0, "bool", "== 1", clean);
    if (!clean) rc = 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_scale: %s\n", e.what());
    rc = 1;
  }
  if (!jwbench::check_nothing_left(groups)) return 1;
  note("nothing left behind: ok\n");
  return rc;
}
