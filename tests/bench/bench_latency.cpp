// Latency (benchmarks 3 and 4 of issue 6), jobwarden and baselines alternating
// sample by sample, the order rotated every sample.
//
// Exit detection: a worker sleeps 20-30 ms (jittered, so a polling loop's
// phase is random), writes its CLOCK_MONOTONIC time to a file and exits. The
// latency is from that stamp to the moment the host learns of the exit:
//   - jobwarden: the host sleeps in poll(2) on event_fd(), calls poll(), and
//     the on_event `exited` handler reads the clock;
//   - blocking waitpid (the floor);
//   - waitpid(WNOHANG) + 10 ms sleep (what hand-written hosts do).
// The stamp is taken just before _exit, so every method also pays the
// kernel's process teardown; the comparison is what matters.
//
// Stop latency:
//   - timeout accuracy: a worker that traps SIGTERM and stamps when it gets
//     it, with a timeout; lateness = stamp - (submit returned + timeout).
//     Baseline: a 10 ms polling loop that checks the deadline (hand-written hosts).
//   - stopping a tree: sh with 50 grandchildren (all the bench worker in
//     `sleep` mode); time from cancel() to the `exited` event (the leader
//     reaped, the group killed) and until every process of the group is dead;
//     against the floor kill(-pg, SIGTERM) + waitpid + kill(-pg, SIGKILL).
//   - grace accuracy: the same tree ignoring SIGTERM, grace 100 ms: how long
//     after the grace period the tree is reaped.
//
//   bench_latency [--rounds 5] [--samples 20] [--tree-samples 3] [--timeout-ms 50] [--smoke]
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include <jobwarden/jobwarden.hpp>

#include "bench_common.hpp"

extern char** environ;

namespace {
using jwbench::figure;
using jwbench::median;
using jwbench::note;
using jwbench::now_ns;
using jwbench::percentile;

const std::string worker = JOBWARDEN_BENCH_WORKER;

long long read_stamp(const std::string& path) {
  std::string text = jwbench::read_text(path);
  if (text.empty()) throw std::runtime_error("no stamp in " + path);
  ::unlink(path.c_str());
  return std::atoll(text.c_str());
}

/// A supervisor driven the way a host's event loop would: sleep in poll(2)
/// on event_fd() (its timerfd covers deadlines), then poll().
class Host {
 public:
  Host() : supervisor_(make_options()) {
    supervisor_.on_event([this](const jobwarden::WorkerEvent& event) {
      if (event.kind == jobwarden::EventKind::exited && event.worker.id == awaited_) {
        exited_ns_ = now_ns();
        final_ = event.worker;
      }
    });
  }

  jobwarden::JobSupervisor<>& supervisor() { return supervisor_; }

  /// Runs the loop until worker `id` exits; returns when the handler saw it.
  jobwarden::WorkerInfo wait_exit(const std::string& id, long long& exited_ns) {
    awaited_ = id;
    exited_ns_ = 0;
    while (exited_ns_ == 0) {
      int wait_ms = -1;
      if (auto next = supervisor_.next_timeout()) wait_ms = static_cast<int>(next->count()) + 1;
      pollfd pfd{supervisor_.event_fd(), POLLIN, 0};
      ::poll(&pfd, 1, wait_ms);
      woke_ns_ = now_ns();
      supervisor_.poll();
    }
    exited_ns = exited_ns_;
    return final_;
  }

  /// When the host's poll(2) returned in the iteration that delivered the
  /// last awaited exit: splits the latency into wake-up and poll() work.
  long long woke_ns() const { return woke_ns_; }

 private:
  static jobwarden::SupervisorOptions make_options() {
    jobwarden::SupervisorOptions options;
    options.job_id = "latency";
    options.max_concurrency = 8;
    options.orphan_guard = true;
    return options;
  }

  jobwarden::JobSupervisor<> supervisor_;
  std::string awaited_;
  long long exited_ns_ = 0;
  long long woke_ns_ = 0;
  jobwarden::WorkerInfo final_;
};

pid_t spawn_plain(const std::vector<std::string>& args, bool own_group) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  return pid;
}

void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0) {
  }
}

// ---- exit detection --------------------------------------------------------

int exit_detection(int rounds, int samples, const std::string& dir) {
  enum Method { jw, blocking, polling, method_count };
  const char* names[method_count] = {"jobwarden (event_fd + poll + on_event)", "blocking waitpid (floor)",
                                     "waitpid WNOHANG + 10 ms sleep (by hand)"};
  Host host;
  std::mt19937 random(12345);
  std::vector<double> all[method_count];
  std::vector<double> diff_vs_blocking, ratio_polling, jw_wake, jw_work;
  int counter = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<double> per_round[method_count];
    for (int sample = 0; sample < samples; ++sample) {
      for (int m : jwbench::round_order(method_count, round * samples + sample)) {
        std::string path = dir + "/stamp-" + std::to_string(counter++);
        std::string delay = std::to_string(20000 + random() % 10000);
        long long seen = 0;
        if (m == jw) {
          jobwarden::WorkerSpec spec;
          spec.argv = {worker, "stamp", path, delay};
          std::string id = host.supervisor().submit(spec);
          auto info = host.wait_exit(id, seen);
          if (info.state != jobwarden::WorkerState::succeeded) throw std::runtime_error("stamp worker failed");
          jw_work.push_back((seen - host.woke_ns()) / 1e3);
          jw_wake.push_back((host.woke_ns() - jwbench::stamp_peek(path)) / 1e3);
        } else {
          jwbench::ChildGuard guard;
          pid_t pid = spawn_plain({worker, "stamp", path, delay}, false);
          guard.add(pid);
          int status = 0;
          if (m == blocking) {
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            seen = now_ns();
          } else {
            for (;;) {
              if (::waitpid(pid, &status, WNOHANG) == pid) {
                seen = now_ns();
                break;
              }
              sleep_ms(10);
            }
          }
          guard.reaped(pid);
        }
        double us = (seen - read_stamp(path)) / 1e3;
        per_round[m].push_back(us);
        all[m].push_back(us);
      }
    }
    diff_vs_blocking.push_back(median(per_round[jw]) - median(per_round[blocking]));
    ratio_polling.push_back(median(per_round[polling]) / median(per_round[jw]));
  }
  note("exit detection: worker's last moment -> host knows, %d round(s) x %d sample(s)\n", rounds, samples);
  for (int m = 0; m < method_count; ++m) {
    note("  %-42s median %8.1f us  p90 %8.1f us  max %8.1f us\n", names[m], median(all[m]),
         percentile(all[m], 90), jwbench::max_of(all[m]));
  }
  figure("exit.jobwarden_median", median(all[jw]), "us");
  note("  jobwarden split: stamp -> host's poll(2) returns %.1f us; poll() until the handler runs %.1f us (medians)\n",
       median(jw_wake), median(jw_work));
  figure("exit.jobwarden_p90", percentile(all[jw], 90), "us");
  figure("exit.jobwarden_wakeup", median(jw_wake), "us");
  figure("exit.jobwarden_poll_work", median(jw_work), "us");
  figure("exit.blocking_waitpid_median", median(all[blocking]), "us");
  figure("exit.poll10ms_median", median(all[polling]), "us");
  double diff = median(diff_vs_blocking), ratio = median(ratio_polling);
  figure("exit.jobwarden_minus_blocking_waitpid", diff, "us", "<= 50", diff <= 50);
  figure("exit.poll10ms_over_jobwarden", ratio, "x", ">= 50", ratio >= 50);
  return 0;
}

// ---- timeout accuracy ------------------------------------------------------

int timeout_accuracy(int rounds, int samples, int base_timeout_ms, const std::string& dir) {
  enum Method { jw, polling, method_count };
  Host host;
  std::mt19937 random(54321);
  std::vector<double> all[method_count];
  std::vector<double> ratio;
  int counter = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<double> per_round[method_count];
    for (int sample = 0; sample < samples; ++sample) {
      for (int m : jwbench::round_order(method_count, round * samples + sample)) {
        std::string path = dir + "/term-" + std::to_string(counter++);
        // Jittered, so the polling loop's phase relative to the deadline is random.
        int timeout_ms = base_timeout_ms + static_cast<int>(random() % 10);
        long long reference = 0;
        if (m == jw) {
          jobwarden::WorkerSpec spec;
          spec.argv = {worker, "term-stamp", path};
          spec.timeout = std::chrono::milliseconds(timeout_ms);
          std::string id = host.supervisor().submit(spec);
          reference = now_ns();  // the deadline was set inside submit, just before it returned
          long long seen = 0;
          auto info = host.wait_exit(id, seen);
          if (info.state != jobwarden::WorkerState::timed_out) throw std::runtime_error("expected timed_out");
        } else {
          jwbench::ChildGuard guard;
          pid_t pid = spawn_plain({worker, "term-stamp", path}, false);
          reference = now_ns();
          guard.add(pid);
          long long deadline = reference + timeout_ms * 1'000'000LL;
          bool sent = false;
          int status = 0;
          for (;;) {
            if (::waitpid(pid, &status, WNOHANG) == pid) break;
            if (!sent && now_ns() >= deadline) {
              ::kill(pid, SIGTERM);
              sent = true;
            }
            sleep_ms(10);
          }
          guard.reaped(pid);
        }
        double late_us = (read_stamp(path) - (reference + timeout_ms * 1'000'000LL)) / 1e3;
        per_round[m].push_back(late_us);
        all[m].push_back(late_us);
      }
    }
    ratio.push_back(median(per_round[polling]) / std::max(1.0, median(per_round[jw])));
  }
  note("timeout accuracy: SIGTERM received - (start + %d-%d ms timeout), %d round(s) x %d sample(s)\n",
       base_timeout_ms, base_timeout_ms + 9,
       rounds, samples);
  note("  %-42s median %8.1f us  p90 %8.1f us  max %8.1f us\n", "jobwarden (timerfd in event_fd)",
       median(all[jw]), percentile(all[jw], 90), jwbench::max_of(all[jw]));
  note("  %-42s median %8.1f us  p90 %8.1f us  max %8.1f us\n", "10 ms polling loop (by hand)", median(all[polling]),
       percentile(all[polling], 90), jwbench::max_of(all[polling]));
  figure("timeout.jobwarden_lateness_median", median(all[jw]), "us");
  figure("timeout.jobwarden_lateness_p90", percentile(all[jw], 90), "us");
  figure("timeout.jobwarden_lateness_max", jwbench::max_of(all[jw]), "us");
  figure("timeout.poll10ms_lateness_median", median(all[polling]), "us");
  figure("timeout.poll10ms_over_jobwarden", median(ratio), "x");
  return 0;
}

// ---- stopping a tree ---------------------------------------------------------

constexpr int grandchildren = 50;

std::vector<std::string> tree_argv(bool ignore_term) {
  std::string script = std::string(ignore_term ? "trap '' TERM; " : "") + "i=0; while [ $i -lt " +
                       std::to_string(grandchildren) + " ]; do \"$0\" " + (ignore_term ? "ignore-term" : "sleep") +
                       " & i=$((i+1)); done; wait";
  return {"/bin/sh", "-c", script, worker};
}

/// The FIFO the tree's grandchildren announce themselves on (see
/// bench_worker.cpp); its read end stays open for the whole run.
int ready_fd = -1;

/// Opens the readiness FIFO in `dir` and names it in the environment, which
/// the workers (and their grandchildren) inherit.
void open_ready_fifo(const std::string& dir) {
  const std::string path = dir + "/ready.fifo";
  if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("cannot create " + path);
  ready_fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (ready_fd < 0) throw std::runtime_error("cannot open " + path);
  // A write end of our own, never written: without it, poll() would report
  // POLLHUP whenever no grandchild has the FIFO open, and the wait would spin.
  if (::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC) < 0) throw std::runtime_error("cannot open " + path);
  ::setenv("JOBWARDEN_BENCH_READY", path.c_str(), 1);
}

/// Waits until all 50 grandchildren of a tree have said they are ready (one
/// byte each into the FIFO): an event, not a /proc scan that a busy machine
/// can make miss its deadline. Bounded by 60 s for a tree that never starts.
void wait_for_tree(int pgid) {
  if (pgid <= 0) throw std::runtime_error("the tree's leader has no pid (it was not started)");
  const long long give_up = now_ns() + 60'000'000'000LL;
  int ready = 0;
  while (ready < grandchildren) {
    const long long left_ms = (give_up - now_ns()) / 1'000'000;
    if (left_ms <= 0) {
      throw std::runtime_error("the tree did not start: " + std::to_string(ready) + " of " +
                               std::to_string(grandchildren) + " grandchildren ready after 60 s");
    }
    pollfd pfd{ready_fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left_ms, 1000)));
    char bytes[64];
    const ssize_t got = ::read(ready_fd, bytes, std::min<std::size_t>(sizeof bytes, grandchildren - ready));
    if (got > 0) ready += static_cast<int>(got);
  }
}

/// Waits (bounded) until every process of the group is dead; returns when
/// that was. A killed grandchild is reparented to init and stays a zombie
/// until init reaps it (this machine's init takes up to seconds), so a zombie
/// counts as dead: it runs nothing. Polls /proc: there is no event for a
/// grandchild's death.
long long wait_group_dead(int pgid) {
  long long give_up = now_ns() + 5'000'000'000LL;
  for (;;) {
    bool any_alive = false;
    for (const auto& p : jwbench::processes_in_groups({pgid})) any_alive = any_alive || p.state != 'Z';
    if (!any_alive) return now_ns();
    if (now_ns() > give_up) throw std::runtime_error("processes of a stopped tree survived");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

int tree_stop(int rounds, int samples, std::set<int>& groups) {
  enum Method { jw, floor_method, method_count };
  Host host;
  std::vector<double> reaped[method_count], gone[method_count], ratio;
  for (int round = 0; round < rounds; ++round) {
    std::vector<double> per_round[method_count];
    for (int sample = 0; sample < samples; ++sample) {
      for (int m : jwbench::round_order(method_count, round * samples + sample)) {
        long long t0 = 0, t_reaped = 0;
        int pgid = 0;
        if (m == jw) {
          jobwarden::WorkerSpec spec;
          spec.argv = tree_argv(false);
          std::string id = host.supervisor().submit(spec);
          pgid = host.supervisor().info(id).pid;
          groups.insert(pgid);
          wait_for_tree(pgid);
          t0 = now_ns();
          host.supervisor().cancel(id);
          auto info = host.wait_exit(id, t_reaped);
          if (info.state != jobwarden::WorkerState::cancelled) throw std::runtime_error("expected cancelled");
        } else {
          jwbench::ChildGuard guard;
          pid_t pid = spawn_plain(tree_argv(false), true);
          guard.add(pid, true);
          pgid = pid;
          groups.insert(pgid);
          wait_for_tree(pgid);
          t0 = now_ns();
          ::kill(-pid, SIGTERM);
          while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
          }
          ::kill(-pid, SIGKILL);  // whatever is left; the group id is free again after this
          t_reaped = now_ns();
          guard.reaped(pid);
        }
        long long t_gone = wait_group_dead(pgid);
        reaped[m].push_back((t_reaped - t0) / 1e6);
        gone[m].push_back((t_gone - t0) / 1e6);
        per_round[m].push_back((t_reaped - t0) / 1e6);
      }
    }
    ratio.push_back(median(per_round[jw]) / median(per_round[floor_method]));
  }
  note("stopping sh + %d grandchildren (SIGTERM to the group), %d round(s) x %d sample(s)\n", grandchildren, rounds,
       samples);
  note("  %-42s leader reaped: median %7.2f ms; whole group dead: median %7.2f ms\n",
       "jobwarden cancel() -> exited event", median(reaped[jw]), median(gone[jw]));
  note("  %-42s leader reaped: median %7.2f ms; whole group dead: median %7.2f ms\n",
       "floor: kill(-pg,TERM) waitpid kill(-pg,KILL)", median(reaped[floor_method]), median(gone[floor_method]));
  figure("stop.tree50_jobwarden_reaped", median(reaped[jw]), "ms");
  figure("stop.tree50_jobwarden_all_dead", median(gone[jw]), "ms");
  figure("stop.tree50_floor_reaped", median(reaped[floor_method]), "ms");
  figure("stop.tree50_jobwarden_over_floor", median(ratio), "x");
  return 0;
}

int grace_accuracy(int samples, std::set<int>& groups) {
  Host host;
  const int grace_ms = 100;
  std::vector<double> over;
  for (int sample = 0; sample < samples; ++sample) {
    jobwarden::WorkerSpec spec;
    spec.argv = tree_argv(true);
    spec.grace_period = std::chrono::milliseconds(grace_ms);
    std::string id = host.supervisor().submit(spec);
    int pgid = host.supervisor().info(id).pid;
    groups.insert(pgid);
    wait_for_tree(pgid);
    long long t0 = now_ns(), t_reaped = 0;
    host.supervisor().cancel(id);
    auto info = host.wait_exit(id, t_reaped);
    if (info.state != jobwarden::WorkerState::cancelled) throw std::runtime_error("expected cancelled");
    wait_group_dead(pgid);
    over.push_back((t_reaped - t0) / 1e6 - grace_ms);
  }
  note("SIGTERM-ignoring tree, grace %d ms: reaped %.2f ms after the grace period (median of %d)\n", grace_ms,
       median(over), samples);
  figure("stop.grace100_tree50_overshoot", median(over), "ms");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::set<int> groups;
  int rc = 0;
  try {
    jwbench::Args args(argc, argv);
    bool smoke = args.has("smoke");
    int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 5));
    int samples = static_cast<int>(args.num("samples", smoke ? 3 : 20));
    int tree_samples = static_cast<int>(args.num("tree-samples", smoke ? 1 : 3));
    int timeout_ms = static_cast<int>(args.num("timeout-ms", 50));
    jwbench::TempDir dir(jwbench::tmpfs_or_tmp());
    open_ready_fifo(dir.path());
    exit_detection(rounds, samples, dir.path());
    timeout_accuracy(rounds, std::max(1, samples / 2), timeout_ms, dir.path());
    tree_stop(rounds, tree_samples, groups);
    grace_accuracy(std::max(1, tree_samples), groups);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_latency: %s\n", e.what());
    rc = 1;
  }
  if (!jwbench::check_nothing_left(groups)) return 1;
  note("nothing left behind: ok\n");
  return rc;
}
