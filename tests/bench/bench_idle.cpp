// Idle cost (benchmark 6 of issue 6), jobwarden and baselines alternating.
//
//   - CPU: a supervisor holding 200 sleeping workers while its host sleeps in
//     poll(2) on event_fd() for 10 s: CPU time of the whole host process
//     (getrusage RUSAGE_SELF), the number of times it woke, and the orphan
//     guard's CPU over the window; against a hand-written loop (waitpid WNOHANG
//     on every pid, then sleep 10 ms) over the same workers and time.
//   - Memory: the host's growth per running worker with 1,000 sleeping
//     workers (RSS delta / workers, and malloc's bytes in use / workers, which
//     heap reuse cannot hide); against a plain posix_spawn loop keeping pids.
//     Kernel objects per worker (a pidfd, its epoll entry, a cgroup) are not
//     in the host's RSS and are not counted.
//
//   bench_idle [--workers 200] [--seconds 10] [--rounds 3] [--memory-workers 1000] [--smoke]
#include <malloc.h>
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

jobwarden::JobSupervisor<> make_supervisor(int workers) {
  jobwarden::SupervisorOptions options;
  options.job_id = "idle";
  options.max_concurrency = static_cast<std::size_t>(workers);
  options.orphan_guard = true;
  return jobwarden::JobSupervisor<>(options);
}

/// Submits `workers` sleepers and drives poll() until every `started` event is delivered.
void start_sleepers(jobwarden::JobSupervisor<>& supervisor, int workers, std::set<int>& groups) {
  auto started = std::make_shared<int>(0);  // the handler outlives this call
  supervisor.on_event([started](const jobwarden::WorkerEvent& event) {
    if (event.kind == jobwarden::EventKind::started) ++*started;
  });
  jobwarden::WorkerSpec spec;
  spec.argv = {worker, "sleep"};
  for (int i = 0; i < workers; ++i) supervisor.submit(spec);
  long long give_up = now_ns() + 60'000'000'000LL;
  while (*started < workers) {
    pollfd pfd{supervisor.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    supervisor.poll();
    if (now_ns() > give_up) throw std::runtime_error("workers did not start");
  }
  for (const auto& info : supervisor.workers()) {
    if (info.state != jobwarden::WorkerState::running) throw std::runtime_error("a sleeper is not running");
    groups.insert(info.pid);
  }
}

pid_t spawn_sleeper() {
  std::string mode = "sleep";
  char* argv[] = {const_cast<char*>(worker.c_str()), mode.data(), nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, worker.c_str(), nullptr, nullptr, argv, environ);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  return pid;
}

unsigned long long guard_ticks() {
  for (const auto& p : jwbench::our_children(/*include_guards=*/true)) {
    if (p.comm == "jobwarden-guard") return p.cpu_ticks;
  }
  return 0;
}

void idle_cpu(int rounds, int workers, double seconds, std::set<int>& groups) {
  enum Method { jw, polling, method_count };
  std::vector<double> cpu_ms[method_count], wakeups, guard_ms, ratio;
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  for (int round = 0; round < rounds; ++round) {
    double cpu[method_count] = {};
    for (int m : jwbench::round_order(method_count, round)) {
      if (m == jw) {
        auto supervisor = make_supervisor(workers);
        start_sleepers(supervisor, workers, groups);
        unsigned long long guard0 = guard_ticks();
        int woke = 0;
        double cpu0 = jwbench::self_cpu_seconds();
        long long end = now_ns() + static_cast<long long>(seconds * 1e9);
        for (long long now = now_ns(); now < end; now = now_ns()) {
          int wait_ms = static_cast<int>((end - now) / 1'000'000) + 1;
          if (auto next = supervisor.next_timeout()) wait_ms = std::min(wait_ms, static_cast<int>(next->count()) + 1);
          pollfd pfd{supervisor.event_fd(), POLLIN, 0};
          if (::poll(&pfd, 1, wait_ms) > 0) {
            ++woke;
            supervisor.poll();
          }
        }
        cpu[m] = (jwbench::self_cpu_seconds() - cpu0) * 1e3;
        guard_ms.push_back(static_cast<double>(guard_ticks() - guard0) * 1e3 / static_cast<double>(ticks_per_second));
        wakeups.push_back(woke);
        if (supervisor.running_count() != static_cast<std::size_t>(workers)) {
          throw std::runtime_error("a sleeper ended during the idle window");
        }
        supervisor.shutdown();
      } else {
        jwbench::ChildGuard guard;
        std::vector<pid_t> pids;
        for (int i = 0; i < workers; ++i) {
          pids.push_back(spawn_sleeper());
          guard.add(pids.back());
        }
        double cpu0 = jwbench::self_cpu_seconds();
        long long end = now_ns() + static_cast<long long>(seconds * 1e9);
        while (now_ns() < end) {
          for (pid_t pid : pids) {
            if (::waitpid(pid, nullptr, WNOHANG) == pid) throw std::runtime_error("a sleeper ended");
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        cpu[m] = (jwbench::self_cpu_seconds() - cpu0) * 1e3;
      }
    }
    cpu_ms[jw].push_back(cpu[jw]);
    cpu_ms[polling].push_back(cpu[polling]);
    ratio.push_back(cpu[polling] / std::max(cpu[jw], 0.001));
  }
  note("idle: %d sleeping workers for %.1f s, %d round(s): jobwarden host CPU %.3f ms (%g wake-ups, guard %.1f ms); "
       "hand-written 10 ms polling %.1f ms\n",
       workers, seconds, rounds, median(cpu_ms[jw]), median(wakeups), median(guard_ms), median(cpu_ms[polling]));
  figure("idle.jobwarden_cpu", median(cpu_ms[jw]), "ms", "< 10", median(cpu_ms[jw]) < 10);
  figure("idle.jobwarden_wakeups", median(wakeups), "count");
  figure("idle.guard_cpu", median(guard_ms), "ms");
  figure("idle.poll10ms_cpu", median(cpu_ms[polling]), "ms");
}

std::size_t malloc_in_use() { return mallinfo2().uordblks; }

void memory_per_worker(int rounds, int workers, std::set<int>& groups) {
  enum Method { jw, plain, method_count };
  std::vector<double> rss[method_count], heap[method_count];
  long long guard_rss = -1;
  for (int round = 0; round < rounds; ++round) {
    for (int m : jwbench::round_order(method_count, round)) {
      if (m == jw) {
        auto supervisor = make_supervisor(workers);
        long long rss0 = jwbench::rss_kib();
        std::size_t heap0 = malloc_in_use();
        start_sleepers(supervisor, workers, groups);
        rss[m].push_back(static_cast<double>(jwbench::rss_kib() - rss0) / workers);
        heap[m].push_back(static_cast<double>(malloc_in_use() - heap0) / 1024.0 / workers);
        for (const auto& p : jwbench::our_children(true)) {
          if (p.comm == "jobwarden-guard") guard_rss = jwbench::rss_kib(p.pid);
        }
        supervisor.shutdown();
      } else {
        jwbench::ChildGuard guard;
        long long rss0 = jwbench::rss_kib();
        std::size_t heap0 = malloc_in_use();
        std::vector<pid_t> pids;
        pids.reserve(static_cast<std::size_t>(workers));
        for (int i = 0; i < workers; ++i) {
          pids.push_back(spawn_sleeper());
          guard.add(pids.back());
        }
        rss[m].push_back(static_cast<double>(jwbench::rss_kib() - rss0) / workers);
        heap[m].push_back(static_cast<double>(malloc_in_use() - heap0) / 1024.0 / workers);
      }
    }
  }
  // RSS: the largest delta, i.e. the round whose allocations could not reuse
  // pages freed by an earlier round (later rounds often show 0). Heap: bytes
  // malloc reports in use, which page reuse cannot hide.
  double rss_jw = jwbench::max_of(rss[jw]), heap_jw = median(heap[jw]);
  note("memory: %d running workers, %d round(s): jobwarden host +%.2f KiB RSS/worker (largest round), +%.2f KiB "
       "malloc'd/worker; plain posix_spawn loop +%.2f KiB RSS/worker, +%.2f KiB malloc'd/worker (its pid "
       "vector); orphan guard RSS %lld KiB (fixed)\n",
       workers, rounds, rss_jw, heap_jw, jwbench::max_of(rss[plain]), median(heap[plain]), guard_rss);
  figure("memory.jobwarden_rss_per_worker", rss_jw, "KiB", "< 16", rss_jw < 16);
  figure("memory.jobwarden_heap_per_worker", heap_jw, "KiB", "< 16", heap_jw < 16);
  figure("memory.plain_rss_per_worker", jwbench::max_of(rss[plain]), "KiB");
  figure("memory.guard_rss", static_cast<double>(guard_rss), "KiB");
}
}  // namespace

int main(int argc, char** argv) {
  std::set<int> groups;
  int rc = 0;
  try {
    jwbench::Args args(argc, argv);
    bool smoke = args.has("smoke");
    int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 3));
    int workers = static_cast<int>(args.num("workers", smoke ? 20 : 200));
    double seconds = args.real("seconds", smoke ? 0.5 : 10);
    int memory_workers = static_cast<int>(args.num("memory-workers", smoke ? 50 : 1000));
    jwbench::raise_nofile_limit();
    memory_per_worker(rounds, memory_workers, groups);
    idle_cpu(rounds, workers, seconds, groups);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_idle: %s\n", e.what());
    rc = 1;
  }
  if (!jwbench::check_nothing_left(groups)) return 1;
  note("nothing left behind: ok\n");
  return rc;
}
