// Spawn throughput (benchmarks 1 and 2 of issue 6).
//
// N short workers (/bin/true) at concurrency 1 and 2 under full supervision
// (own process group and cgroup, pidfd, orphan guard; status records under
// `root` on disk and on tmpfs, and without a root) against, in the same
// process and alternating within each round:
//   - a plain posix_spawn + waitpid loop (the floor),
//   - Boost.Process v1 (when built with Boost: bp::child + wait),
//   - Python asyncio.create_subprocess_exec with a semaphore and an atomic
//     JSON status file per job (python_asyncio_baseline.py --serve, a child
//     that times its own event loop, never its interpreter's start-up).
// The durable pair: jobwarden with `durable = true` (one fdatasync of the
// journal per poll batch), root on disk, against the Python design with an
// fsync of every status file before its rename (python_fsync).
// Each round runs N workers per variant, interleaved in chunks of 50 (the
// order rotating every chunk), so all variants meet the same neighbours;
// each jobwarden variant keeps one supervisor for the round. Prints the
// median over rounds of each per-round throughput ratio.
//
// With --big-host the process holds --host-mib of touched memory in alternate
// phases of each round (jobwarden: one supervisor per run, construction timed,
// records on tmpfs) and reports each library's throughput with/without it
// (fork copies page tables: ~37 ms per GiB here; vfork-style spawns do not),
// the supervisor's construction time with/without it, and what the orphan
// guard (a fork of the host) costs a host that rewrites its memory.
//
//   bench_spawn [--n 1000] [--rounds 5] [--concurrency 1,2] [--disk-dir /tmp]
//               [--tmpfs-dir /dev/shm] [--no-python] [--python python3]
//               [--python-script PATH] [--variants LIST] [--big-host [--host-mib 1024]] [--smoke]
//
// --variants picks among plain, jobwarden, jobwarden_disk, jobwarden_tmpfs,
// jobwarden_durable, boost, python, python_fsync, python_nostatus (the
// default set) and jobwarden_noguard, jobwarden_nocgroups (what the orphan
// guard and per-worker cgroups cost), jobwarden_disk_discard (records on
// disk, both output streams discarded: the journal without the log pipes).
// --big-host runs 200 workers unless --n says otherwise.
#include <spawn.h>
#include <sys/wait.h>

#include <deque>
#include <optional>

#if JOBWARDEN_BENCH_BOOST
#include <boost/process.hpp>
#endif

#include <jobwarden/job_supervisor.hpp>

#include "bench_common.hpp"

extern char** environ;

namespace {
using jwbench::figure;
using jwbench::median;
using jwbench::note;
using jwbench::now_ns;
using jwbench::seconds_since;

constexpr const char* program = "/bin/true";

/// The floor: posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) and waitpid
/// for the oldest child, like a careful host that waits on specific pids.
double plain_loop(int n, int concurrency) {
  jwbench::ChildGuard guard;
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  std::deque<pid_t> running;
  int started = 0;
  long long start = now_ns();
  while (started < n || !running.empty()) {
    while (started < n && static_cast<int>(running.size()) < concurrency) {
      pid_t pid;
      int rc = posix_spawn(&pid, program, nullptr, nullptr, argv, environ);
      if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
      guard.add(pid);
      running.push_back(pid);
      ++started;
    }
    pid_t pid = running.front();
    running.pop_front();
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    guard.reaped(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("plain: /bin/true failed");
  }
  return seconds_since(start);
}

#if JOBWARDEN_BENCH_BOOST
/// Boost.Process v1: fork + exec with an error pipe; waits for the oldest.
double boost_loop(int n, int concurrency) {
  namespace bp = boost::process;
  std::deque<bp::child> running;  // a bp::child still running when destroyed is killed
  int started = 0;
  long long start = now_ns();
  while (started < n || !running.empty()) {
    while (started < n && static_cast<int>(running.size()) < concurrency) {
      running.emplace_back(bp::exe = program, bp::std_in < bp::null);
      ++started;
    }
    running.front().wait();
    if (running.front().exit_code() != 0) throw std::runtime_error("boost: /bin/true failed");
    running.pop_front();
  }
  return seconds_since(start);
}
#endif

struct SupervisedRun {
  double seconds = 0;
  double construct_seconds = 0;
  bool records = false;  ///< the supervisor wrote <root>/<job>/journal.jsonl
  bool cgroups = false;  ///< workers ran in their own cgroups
  std::string no_cgroups_reason;
};

/// jobwarden: construct a supervisor (orphan guard on), submit N, wait_all,
/// destroy it (guard reaped). All of it is timed: it is what a job costs.
/// What a supervised run turns off (only for measuring what each part costs).
struct Without {
  bool guard = false;
  bool cgroups = false;
};

/// How a supervised run writes its records (with a root).
struct Records {
  bool durable = false;
  /// Both streams `OutputSpec::discard()`: no pipes and no log files, only
  /// the journal (what the records cost apart from the output routing).
  bool discard_output = false;
};

struct PythonSetup {
  std::string interpreter;
  std::string script;
};

bool python_works(const PythonSetup& py) {
  if (py.script.empty() || ::access(py.script.c_str(), R_OK) != 0) return false;
  std::string cmd = py.interpreter + " -c 'import asyncio' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

/// A supervisor kept for a whole round and fed chunk by chunk (the
/// throughput suite interleaves variants in small chunks, so every variant
/// meets the same neighbours on a shared machine). Construction and the final
/// job record are not timed here; the big-host suite times them.
class SupervisedSeries {
 public:
  SupervisedSeries(int concurrency, const std::string& root_base, std::string job_id, Without without,
                   Records records = {})
      : job_id_(std::move(job_id)), discard_output_(records.discard_output) {
    if (!root_base.empty()) root_.emplace(root_base, "jwbench-root");
    jobwarden::SupervisorOptions options;
    options.job_id = job_id_;
    options.root = root_ ? root_->path() : std::string();
    options.max_concurrency = static_cast<std::size_t>(concurrency);
    options.orphan_guard = !without.guard;
    options.use_cgroups = !without.cgroups;
    options.durable = records.durable;
    supervisor_ = std::make_unique<jobwarden::JobSupervisor<>>(options);
    if (supervisor_->guard_active() == without.guard) throw std::runtime_error("the orphan guard did not start");
    cgroups_ = supervisor_->cgroups_active();
    if (!cgroups_) no_cgroups_reason_ = supervisor_->cgroups_unavailable_reason();
  }

  /// Runs `count` workers to completion; returns the seconds it took.
  double run_chunk(int count) {
    jobwarden::WorkerSpec spec;
    spec.argv = {program};
    if (discard_output_) {
      spec.stdout_spec = jobwarden::OutputSpec::discard();
      spec.stderr_spec = jobwarden::OutputSpec::discard();
    }
    long long start = now_ns();
    for (int i = 0; i < count; ++i) supervisor_->submit(spec);
    if (!supervisor_->wait_all(std::chrono::milliseconds(std::max(60'000LL, 50LL * count)))) {
      throw std::runtime_error("jobwarden: wait_all timed out");
    }
    return seconds_since(start);
  }

  /// Ends the job (final record), checks every worker succeeded, reaps the guard.
  SupervisedRun finish() {
    supervisor_->finish();
    supervisor_->wait_all(std::chrono::milliseconds(60'000));
    for (const auto& worker : supervisor_->workers()) {
      if (worker.state != jobwarden::WorkerState::succeeded) {
        throw std::runtime_error("jobwarden: worker " + worker.id + " ended " +
                                 std::string(jobwarden::to_string(worker.state)) + " " + worker.error);
      }
    }
    supervisor_.reset();
    SupervisedRun run;
    run.cgroups = cgroups_;
    run.no_cgroups_reason = no_cgroups_reason_;
    if (root_) {
      // The journal's last line is the final job line (docs/job-directory.md).
      std::string journal = jwbench::read_text(root_->path() + "/" + job_id_ + "/journal.jsonl");
      run.records = !journal.empty();
      if (run.records) {
        std::size_t end = journal.size() - 1;  // the last line's newline
        std::size_t begin = journal.rfind('\n', end == 0 ? 0 : end - 1);
        std::string last = journal.substr(begin == std::string::npos ? 0 : begin + 1);
        if (last.find("\"type\":\"job\"") == std::string::npos ||
            last.find("\"state\":\"succeeded\"") == std::string::npos) {
          throw std::runtime_error("journal.jsonl does not end with a succeeded job: " + last.substr(0, 200));
        }
      }
    }
    return run;
  }

 private:
  std::string job_id_;
  bool discard_output_ = false;
  std::optional<jwbench::TempDir> root_;
  std::unique_ptr<jobwarden::JobSupervisor<>> supervisor_;
  bool cgroups_ = false;
  std::string no_cgroups_reason_;
};

/// One supervisor for `n` workers, construction to destruction, timed as a
/// whole (the big-host suite: construction forks the orphan guard).
SupervisedRun supervised(int n, int concurrency, const std::string& root_base, const std::string& job_id,
                         Without without = {}) {
  long long start = now_ns();
  SupervisedSeries series(concurrency, root_base, job_id, without);
  const double construct_seconds = seconds_since(start);
  series.run_chunk(n);
  SupervisedRun run = series.finish();
  run.seconds = seconds_since(start);
  run.construct_seconds = construct_seconds;
  return run;
}

/// The Python baseline as a long-lived child (`--serve`): one request line
/// per chunk, one JSON answer with the seconds its event loop took, so the
/// interpreter's start-up is paid once and never timed.
class PythonServer {
 public:
  explicit PythonServer(const PythonSetup& py) {
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    std::string script = py.script, serve = "--serve";
    std::vector<char*> argv = {const_cast<char*>(py.interpreter.c_str()), script.data(), serve.data(), nullptr};
    int rc = posix_spawnp(&pid_, py.interpreter.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(to_child[0]);
    ::close(from_child[1]);
    if (rc != 0) {
      ::close(to_child[1]);
      ::close(from_child[0]);
      throw std::runtime_error(std::string("cannot start python: ") + std::strerror(rc));
    }
    to_ = ::fdopen(to_child[1], "w");
    from_ = ::fdopen(from_child[0], "r");
  }
  ~PythonServer() {
    if (to_ != nullptr) std::fclose(to_);  // EOF: the server exits
    if (from_ != nullptr) std::fclose(from_);
    if (pid_ > 0) {
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  PythonServer(const PythonServer&) = delete;
  PythonServer& operator=(const PythonServer&) = delete;

  /// Runs `count` jobs (ids from `first_id`), status files in `status_dir`
  /// (empty: none), each fsync'ed before its rename when `fsync`.
  double run_chunk(int count, int concurrency, const std::string& status_dir, int first_id, bool fsync = false) {
    std::fprintf(to_, "%d %d %s %d%s\n", count, concurrency, status_dir.empty() ? "-" : status_dir.c_str(), first_id,
                 fsync ? " fsync" : "");
    std::fflush(to_);
    char line[1024];
    if (std::fgets(line, sizeof line, from_) == nullptr) throw std::runtime_error("python server died");
    auto json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_discarded() || json.value("failed", 1) != 0) throw std::runtime_error(std::string("python: ") + line);
    return json["elapsed_seconds"].get<double>();
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

void print_machine() {
  const auto& f = jobwarden::detail::features();
  note("machine: %ld CPUs, pidfd %s, close_range %s, vfork spawn %s\n", ::sysconf(_SC_NPROCESSORS_ONLN),
       f.pidfd ? "yes" : "no", f.close_range ? "yes" : "no", f.vfork_spawn ? "yes" : "no");
}

// ---------------------------------------------------------------------------

int throughput_suite(const jwbench::Args& args, int n, int rounds, const std::vector<int>& concurrencies,
                     const std::string& disk_dir, const std::string& tmpfs_dir) {
  const int chunk = std::max(1, static_cast<int>(args.num("chunk", args.has("smoke") ? 10 : 50)));
  PythonSetup py{args.str("python", "python3"), args.str("python-script", JOBWARDEN_BENCH_PYTHON_SCRIPT)};
  std::string requested = args.str("variants", "python");
  bool have_python = !args.has("no-python") && requested.find("python") != std::string::npos && python_works(py);
  bool have_boost = JOBWARDEN_BENCH_BOOST != 0;
  note("spawn throughput: %d x %s per variant and round, interleaved in chunks of %d, %d round(s); status dirs: "
       "disk %s (%s), tmpfs %s (%s)\n",
       n, program, chunk, rounds, disk_dir.c_str(), jwbench::filesystem_name(disk_dir).c_str(), tmpfs_dir.c_str(),
       jwbench::filesystem_name(tmpfs_dir).c_str());
  if (!have_boost) note("Boost.Process baseline: not built (Boost 1.74 not found at configure time)\n");
  if (!have_python) note("Python baseline: skipped (no python3 with asyncio, or --no-python)\n");

  enum Variant {
    plain, jw_bare, jw_disk, jw_tmpfs, boost, py_status, py_bare, jw_noguard, jw_nocgroups, jw_durable, py_fsync,
    jw_disk_discard, variant_count
  };
  const char* names[variant_count] = {"plain posix_spawn+waitpid",     "jobwarden, no root",
                                      "jobwarden, root on disk",       "jobwarden, root on tmpfs",
                                      "Boost.Process v1",              "Python asyncio + status files",
                                      "Python asyncio, no status",     "jobwarden, no root, no guard",
                                      "jobwarden, no root, no cgroups", "jobwarden, disk, durable",
                                      "Python asyncio + fsync'ed status", "jobwarden, disk, output discarded"};
  const char* keys[variant_count] = {"plain",  "jobwarden",       "jobwarden_disk",     "jobwarden_tmpfs",
                                     "boost",  "python",          "python_nostatus",    "jobwarden_noguard",
                                     "jobwarden_nocgroups", "jobwarden_durable", "python_fsync",
                                     "jobwarden_disk_discard"};
  // --variants plain,jobwarden,... picks variants (to profile one path, or to
  // price the guard and the cgroups: jobwarden_noguard, jobwarden_nocgroups).
  std::string wanted = "," + args.str("variants", "plain,jobwarden,jobwarden_disk,jobwarden_tmpfs,jobwarden_durable,"
                                                  "boost,python,python_fsync,python_nostatus") + ",";
  auto enabled = [&](int v) {
    if (v == boost && !have_boost) return false;
    if ((v == py_status || v == py_bare || v == py_fsync) && !have_python) return false;
    return wanted.find(std::string(",") + keys[v] + ",") != std::string::npos;
  };
  std::string cgroups_note;
  bool records_seen = false, records_missing = false;
  for (int concurrency : concurrencies) {
    std::vector<double> times[variant_count], host_cpu[variant_count];
    std::vector<double> r_disk, r_tmpfs, r_bare, r_py, r_py_bare, r_boost, r_noguard, r_nocgroups, r_durable_py,
        r_durable, r_disk_vs_bare;
    std::optional<PythonServer> python_server;
    if (have_python) python_server.emplace(py);
    for (int round = 0; round < rounds; ++round) {
      double t[variant_count] = {};
      double cpu[variant_count] = {};
      std::string job = "spawn-c" + std::to_string(concurrency) + "-r" + std::to_string(round);
      std::optional<SupervisedSeries> series[variant_count];
      std::optional<jwbench::TempDir> py_dir, py_fsync_dir;
      for (int v = 0; v < variant_count; ++v) {
        if (!enabled(v)) continue;
        switch (v) {
          case jw_bare: series[v].emplace(concurrency, "", job, Without{}); break;
          case jw_disk: series[v].emplace(concurrency, disk_dir, job, Without{}); break;
          case jw_tmpfs: series[v].emplace(concurrency, tmpfs_dir, job, Without{}); break;
          case jw_noguard: series[v].emplace(concurrency, "", job, Without{true, false}); break;
          case jw_nocgroups: series[v].emplace(concurrency, "", job, Without{false, true}); break;
          case jw_durable: series[v].emplace(concurrency, disk_dir, job, Without{}, Records{true, false}); break;
          case jw_disk_discard: series[v].emplace(concurrency, disk_dir, job, Without{}, Records{false, true}); break;
          case py_status: py_dir.emplace(disk_dir, "jwbench-py"); break;
          case py_fsync: py_fsync_dir.emplace(disk_dir, "jwbench-pyfsync"); break;
          default: break;
        }
      }
      int chunks = (n + chunk - 1) / chunk;
      for (int k = 0; k < chunks; ++k) {
        int count = std::min(chunk, n - k * chunk);
        for (int v : jwbench::round_order(variant_count, round * chunks + k)) {
          if (!enabled(v)) continue;
          double cpu0 = jwbench::self_cpu_seconds();
          double seconds = 0;
          switch (v) {
            case plain: seconds = plain_loop(count, concurrency); break;
            case boost:
#if JOBWARDEN_BENCH_BOOST
              seconds = boost_loop(count, concurrency);
#endif
              break;
            case py_status: seconds = python_server->run_chunk(count, concurrency, py_dir->path(), k * chunk + 1); break;
            case py_bare: seconds = python_server->run_chunk(count, concurrency, "", k * chunk + 1); break;
            case py_fsync:
              seconds = python_server->run_chunk(count, concurrency, py_fsync_dir->path(), k * chunk + 1, true);
              break;
            default: seconds = series[v]->run_chunk(count); break;
          }
          t[v] += seconds;
          cpu[v] += jwbench::self_cpu_seconds() - cpu0;
        }
      }
      for (int v = 0; v < variant_count; ++v) {
        if (!series[v]) continue;
        SupervisedRun run = series[v]->finish();
        if (v == jw_bare) {
          cgroups_note = run.cgroups ? "each worker in its own cgroup v2" : "no cgroups: " + run.no_cgroups_reason;
        }
        if (v == jw_disk || v == jw_tmpfs || v == jw_durable || v == jw_disk_discard) (run.records ? records_seen : records_missing) = true;
      }
      for (int v = 0; v < variant_count; ++v) {
        if (enabled(v)) host_cpu[v].push_back(cpu[v]);
      }
      for (int v = 0; v < variant_count; ++v) times[v].push_back(t[v]);
      auto ratio = [&](std::vector<double>& into, int numerator, int denominator) {
        if (enabled(numerator) && enabled(denominator)) into.push_back(t[numerator] / t[denominator]);
      };
      ratio(r_disk, plain, jw_disk);
      ratio(r_tmpfs, plain, jw_tmpfs);
      ratio(r_bare, plain, jw_bare);
      ratio(r_boost, boost, jw_disk);
      ratio(r_py, py_status, jw_disk);
      ratio(r_py_bare, py_bare, jw_bare);
      ratio(r_noguard, plain, jw_noguard);
      ratio(r_nocgroups, plain, jw_nocgroups);
      ratio(r_durable_py, py_fsync, jw_durable);
      ratio(r_durable, plain, jw_durable);
      ratio(r_disk_vs_bare, jw_bare, jw_disk);
    }
    note("\nconcurrency %d, median throughput over %d round(s) (host CPU: this process only):\n", concurrency,
         rounds);
    for (int v = 0; v < variant_count; ++v) {
      if (!enabled(v)) continue;
      bool python = v == py_status || v == py_bare || v == py_fsync;
      note("  %-32s %9.0f workers/s  (%7.1f us/worker", names[v], n / median(times[v]), median(times[v]) / n * 1e6);
      if (python) note(")\n");
      else note(", host CPU %6.1f us/worker)\n", median(host_cpu[v]) / n * 1e6);
    }
    std::string c = "spawn.c" + std::to_string(concurrency);
    auto report = [&](const std::string& name, std::vector<double>& r, const char* target, double limit) {
      if (r.empty()) return;
      if (target == nullptr) figure(c + "." + name, median(r), "x");
      else figure(c + "." + name, median(r), "x", target, median(r) >= limit);
    };
    report("jobwarden_disk_vs_plain", r_disk, ">= 0.85", 0.85);
    report("jobwarden_disk_vs_noroot", r_disk_vs_bare, nullptr, 0);
    report("jobwarden_tmpfs_vs_plain", r_tmpfs, ">= 0.90", 0.90);
    report("jobwarden_noroot_vs_plain", r_bare, nullptr, 0);
    report("jobwarden_disk_vs_python_status", r_py, ">= 1.4", 1.4);
    report("jobwarden_noroot_vs_python_nostatus", r_py_bare, nullptr, 0);
    report("jobwarden_disk_vs_boost", r_boost, nullptr, 0);
    report("jobwarden_noguard_vs_plain", r_noguard, nullptr, 0);
    report("jobwarden_nocgroups_vs_plain", r_nocgroups, nullptr, 0);
    report("jobwarden_durable_vs_python_fsync", r_durable_py, nullptr, 0);
    report("jobwarden_durable_vs_plain", r_durable, nullptr, 0);
    for (int v : {plain, jw_bare, jw_disk, jw_tmpfs, jw_durable, boost, jw_noguard, jw_nocgroups, jw_disk_discard}) {
      if (!enabled(v)) continue;
      figure(c + "." + keys[v] + "_us_per_worker", median(times[v]) / n * 1e6, "us");
      const double cpu_us = median(host_cpu[v]) / n * 1e6;
      if (v == jw_disk) {
        figure(c + "." + keys[v] + "_host_cpu_us_per_worker", cpu_us, "us", "<= 300", cpu_us <= 300);
      } else {
        figure(c + "." + keys[v] + "_host_cpu_us_per_worker", cpu_us, "us");
      }
    }
  }
  if (!cgroups_note.empty()) note("\njobwarden workers: %s\n", cgroups_note.c_str());
  if (records_missing) {
    note("\nNOTE: the supervisor wrote no status records under `root` (no <root>/<job>/journal.jsonl):\n"
         "      this tree's JobSupervisor does not use SupervisorOptions::root yet, so every\n"
         "      jobwarden figure above is WITHOUT status records on disk.\n");
  } else if (records_seen) {
    note("\nstatus records: written by the supervisor under root (journal.jsonl's final job line checked)\n");
  }
  return 0;
}

/// Finds the orphan guard of a live supervisor of ours (comm "jobwarden-guard").
int find_guard_pid() {
  auto guards = jwbench::our_children(/*include_guards=*/true);
  for (const auto& p : guards) {
    if (p.comm == "jobwarden-guard") return p.pid;
  }
  return 0;
}

long long smaps_rollup_kib(int pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + key.size());
  }
  return -1;
}

int big_host_suite(const jwbench::Args& args, int n, int rounds, const std::vector<int>& concurrencies,
                   const std::string& status_dir) {
  std::size_t host_bytes = static_cast<std::size_t>(args.num("host-mib", args.has("smoke") ? 64 : 1024)) << 20;
  bool have_boost = JOBWARDEN_BENCH_BOOST != 0;
  note("big host: %d x %s, %d round(s), host memory %zu MiB touched in alternate phases\n", n, program, rounds,
       host_bytes >> 20);
  if (!have_boost) note("Boost.Process baseline: not built (Boost 1.74 not found at configure time)\n");
  enum Variant { plain, jw, boost, variant_count };
  const char* names[variant_count] = {"plain posix_spawn", "jobwarden (root on tmpfs)", "Boost.Process v1 (fork)"};
  std::vector<double> construct_small, construct_big;
  for (int concurrency : concurrencies) {
    std::vector<double> ratio[variant_count];
    std::vector<double> small_t[variant_count], big_t[variant_count];
    for (int round = 0; round < rounds; ++round) {
      double t[2][variant_count] = {};
      for (int phase_index = 0; phase_index < 2; ++phase_index) {
        int phase = (phase_index + round) % 2;  // 0: small host, 1: big host; alternate which is first
        jwbench::TouchedMemory memory(phase == 1 ? host_bytes : 0);
        for (int v : jwbench::round_order(variant_count, round)) {
          std::string job = "big-c" + std::to_string(concurrency) + "-r" + std::to_string(round) + "-p" +
                            std::to_string(phase);
          switch (v) {
            case plain: t[phase][v] = plain_loop(n, concurrency); break;
            case jw: {
              // Records on tmpfs: this figure is about the host's size, and
              // a slow disk's noise would drown it (see the throughput suite).
              SupervisedRun run = supervised(n, concurrency, status_dir, job);
              t[phase][v] = run.seconds;
              (phase == 1 ? construct_big : construct_small).push_back(run.construct_seconds);
              break;
            }
            case boost:
#if JOBWARDEN_BENCH_BOOST
              t[phase][v] = boost_loop(n, concurrency);
#endif
              break;
          }
        }
      }
      for (int v = 0; v < variant_count; ++v) {
        small_t[v].push_back(t[0][v]);
        big_t[v].push_back(t[1][v]);
        if (t[1][v] > 0) ratio[v].push_back(t[0][v] / t[1][v]);
      }
    }
    note("\nconcurrency %d, median us/worker without -> with %zu MiB host:\n", concurrency, host_bytes >> 20);
    for (int v = 0; v < variant_count; ++v) {
      if (v == boost && !have_boost) continue;
      note("  %-26s %8.1f -> %8.1f us/worker   throughput with/without %.3f\n", names[v],
           median(small_t[v]) / n * 1e6, median(big_t[v]) / n * 1e6, median(ratio[v]));
    }
    std::string c = "bighost.c" + std::to_string(concurrency);
    figure(c + ".jobwarden_with_vs_without", median(ratio[jw]), "x", ">= 0.90", median(ratio[jw]) >= 0.90);
    figure(c + ".plain_with_vs_without", median(ratio[plain]), "x");
    if (have_boost) figure(c + ".boost_with_vs_without", median(ratio[boost]), "x");
  }
  figure("bighost.supervisor_construct_small_host", median(construct_small) * 1e3, "ms");
  figure("bighost.supervisor_construct_big_host", median(construct_big) * 1e3, "ms");

  // What the orphan guard (a fork of the host that lives as long as the
  // supervisor) costs a host that keeps writing its memory: every page it
  // writes is copied once, and the guard keeps the original.
  std::vector<double> rewrite_alone, rewrite_guarded, rewrite_unguarded;
  long long guard_pss = -1, guard_private = -1;
  jwbench::TouchedMemory memory(host_bytes);
  for (int round = 0; round < rounds; ++round) {
    long long t0 = now_ns();
    memory.touch(static_cast<unsigned char>(round + 2));
    rewrite_alone.push_back(seconds_since(t0));
    for (bool guard : {true, false}) {
      jobwarden::SupervisorOptions options;
      options.orphan_guard = guard;
      jobwarden::JobSupervisor<> supervisor(options);
      long long t1 = now_ns();
      memory.touch(static_cast<unsigned char>(round + 3));
      (guard ? rewrite_guarded : rewrite_unguarded).push_back(seconds_since(t1));
      if (guard) {
        if (int pid = find_guard_pid()) {
          guard_pss = smaps_rollup_kib(pid, "Pss");
          guard_private = smaps_rollup_kib(pid, "Private_Dirty");
        }
      }
    }
  }
  note("\nhost rewrites its %zu MiB (one byte per page), median over %d round(s):\n", host_bytes >> 20, rounds);
  note("  no supervisor: %.1f ms; supervisor without guard: %.1f ms; supervisor with guard: %.1f ms\n",
       median(rewrite_alone) * 1e3, median(rewrite_unguarded) * 1e3, median(rewrite_guarded) * 1e3);
  note("  the guard process then holds Pss %lld KiB, Private_Dirty %lld KiB (the pages the host rewrote)\n",
       guard_pss, guard_private);
  figure("bighost.rewrite_tax_with_guard", (median(rewrite_guarded) - median(rewrite_alone)) * 1e3, "ms");
  figure("bighost.guard_private_dirty", static_cast<double>(guard_private) / 1024.0, "MiB");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    jwbench::Args args(argc, argv);
    bool smoke = args.has("smoke");
    // Big host: 200 workers, since a fork-based spawn of a 1 GiB host takes ~60 ms here.
    int n = static_cast<int>(args.num("n", smoke ? 20 : args.has("big-host") ? 200 : 1000));
    int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 5));
    std::vector<int> concurrencies = args.list("concurrency", "1,2");
    const char* tmpdir = std::getenv("TMPDIR");
    std::string disk_dir = args.str("disk-dir", tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp");
    std::string tmpfs_dir = args.str("tmpfs-dir", "/dev/shm");
    if (::access(tmpfs_dir.c_str(), W_OK) != 0) tmpfs_dir = disk_dir;
    print_machine();
    int rc;
    if (args.has("big-host")) {
      rc = big_host_suite(args, n, rounds, concurrencies, tmpfs_dir);
    } else {
      rc = throughput_suite(args, n, rounds, concurrencies, disk_dir, tmpfs_dir);
    }
    if (!jwbench::check_nothing_left()) return 1;
    note("nothing left behind: ok\n");
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_spawn: %s\n", e.what());
    return 1;
  }
}
