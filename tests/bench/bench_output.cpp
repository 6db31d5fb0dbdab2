// Worker output: what each way of carrying a worker's stdout costs.
//
// 1. Throughput: one worker (jobwarden_bench_worker lines) writes --bytes
//    (1 GB) of 100-byte lines in 64 KiB writes, against, in the same round and
//    in rotating order:
//      plain       posix_spawn with stdout on a file, waitpid (no jobwarden)
//      direct      jobwarden, Route::direct: the worker writes its job-dir log
//      splice      Route::supervisor, no tail, no handler: the supervisor
//                  moves the bytes pipe -> log (splice(2) where it can)
//      tail        the same with a 16 KiB tail kept in memory
//      lines       the same with an on_output_line handler (every line counted)
//      head_tail   the same capped at 10 MiB, keeping the head and the tail
//    All files are on --dir; one plain run first is not counted (the first
//    big write of a process is slow). Reports each mode's throughput as a ratio to
//    plain's in the same round (median over rounds), and the supervisor
//    process's own CPU per MB moved (getrusage RUSAGE_SELF, children excluded).
// 2. Small-worker spawn cost: --n /bin/true workers at concurrency 2 with a job
//    directory on --dir: stdout and stderr direct, both supervised (no output:
//    no log file), mixed (stdout direct, stderr supervised with a tail), and
//    without a job directory (direct, supervised); interleaved in chunks of
//    50, one supervisor per variant and round. Reports workers/s and the
//    ratio to the direct variant with a job directory.
//
//   bench_output [--dir /tmp] [--bytes 1000000000] [--rounds 3] [--n 500]
//                [--spawn-rounds 2] [--modes direct,splice,tail,lines,head_tail]
//                [--skip-throughput] [--skip-spawn] [--smoke]
//
// --modes picks the throughput modes (plain, the baseline, always runs).
//
// Every run is checked (exit status, log sizes, line counts, no log files
// where nothing was written); timing is reported, never asserted.
#include <spawn.h>
#include <sys/wait.h>

#include <optional>

#include <jobwarden/jobwarden.hpp>

#include "bench_common.hpp"

extern char** environ;

namespace {
using jwbench::figure;
using jwbench::median;
using jwbench::note;
using jwbench::now_ns;
using jwbench::seconds_since;

constexpr std::uint64_t line_bytes = 100;
constexpr std::uint64_t cap_bytes = 10ull << 20;
constexpr std::size_t tail_bytes = 16 * 1024;

std::uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

/// "tmpfs" or "disk": the figures' names say where the files were.
std::string place(const std::string& dir) { return jwbench::filesystem_name(dir) == "tmpfs" ? "tmpfs" : "disk"; }

/// What one run moved and what it cost.
struct Run {
  double seconds = 0;
  double host_cpu = 0;  ///< this process's user+sys CPU during the run
};

// ---- throughput ---------------------------------------------------------------

enum Mode { plain, direct, splice, tail, lines, head_tail, mode_count };
const char* const mode_keys[mode_count] = {"plain", "direct", "splice", "tail", "lines", "head_tail"};
const char* const mode_names[mode_count] = {
    "plain posix_spawn, stdout on a file", "jobwarden direct (worker writes its log)",
    "jobwarden supervisor, no tail (splice)", "jobwarden supervisor, 16 KiB tail",
    "jobwarden supervisor, line handler", "jobwarden supervisor, 10 MiB head+tail cap"};

/// The floor: the writer with its stdout on a file, started and waited for
/// with nothing in between.
Run plain_run(const std::string& dir, std::uint64_t bytes) {
  std::string path = dir + "/plain.out";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  std::string program = JOBWARDEN_BENCH_WORKER, mode = "lines", count = std::to_string(bytes);
  char* argv[] = {program.data(), mode.data(), count.data(), nullptr};
  jwbench::ChildGuard guard;
  Run run;
  double cpu0 = jwbench::self_cpu_seconds();
  long long start = now_ns();
  pid_t pid;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fd);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  guard.add(pid);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  guard.reaped(pid);
  run.seconds = seconds_since(start);
  run.host_cpu = jwbench::self_cpu_seconds() - cpu0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("plain: the writer failed");
  if (file_size(path) != bytes) throw std::runtime_error("plain: the file does not hold every byte");
  ::unlink(path.c_str());
  return run;
}

/// One supervisor, one writer, carried the way `mode` says; checked, timed
/// from submit to the worker's end (construction and teardown excluded).
Run supervised_run(Mode mode, const std::string& dir, std::uint64_t bytes, int round) {
  jwbench::TempDir root(dir, "jwbench-output");
  jobwarden::SupervisorOptions options;
  options.job_id = std::string("output-") + mode_keys[mode] + "-" + std::to_string(round);
  options.root = root.path();
  options.max_concurrency = 1;
  jobwarden::JobSupervisor<> supervisor(options);

  std::uint64_t lines_seen = 0, line_text_bytes = 0, partial_lines = 0;
  if (mode == lines) {
    supervisor.on_output_line([&](const jobwarden::OutputLine& line) {
      ++lines_seen;
      line_text_bytes += line.text.size();
      if (line.partial) ++partial_lines;
    });
  }
  jobwarden::WorkerSpec spec;
  spec.id = "writer";
  spec.argv = {JOBWARDEN_BENCH_WORKER, "lines", std::to_string(bytes)};
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  spec.stderr_spec.route = jobwarden::OutputSpec::Route::direct;
  if (mode == direct) {
    spec.stdout_spec.route = jobwarden::OutputSpec::Route::direct;
  } else {
    spec.stdout_spec = jobwarden::OutputSpec::supervised();
    spec.stdout_spec.tail_bytes = mode == tail ? tail_bytes : 0;
    if (mode == head_tail) {
      spec.stdout_spec.max_bytes = cap_bytes;
      spec.stdout_spec.keep = jobwarden::OutputSpec::Keep::head_and_tail;
    }
  }
  Run run;
  double cpu0 = jwbench::self_cpu_seconds();
  long long start = now_ns();
  supervisor.submit(spec);
  if (!supervisor.wait_all(std::chrono::minutes(5))) throw std::runtime_error("the writer did not end in 5 min");
  run.seconds = seconds_since(start);
  run.host_cpu = jwbench::self_cpu_seconds() - cpu0;

  const jobwarden::WorkerInfo info = supervisor.info("writer");
  const std::string what = std::string(mode_keys[mode]) + ": ";
  if (info.state != jobwarden::WorkerState::succeeded) {
    throw std::runtime_error(what + "the writer ended " + std::string(jobwarden::to_string(info.state)) + " " +
                             info.error + info.output_error);
  }
  std::string log = !info.stdout_log.empty() ? info.stdout_log
                                             : supervisor.job_dir() + "/workers/writer.stdout.log";
  std::uint64_t size = file_size(log);
  if (mode == head_tail) {
    if (size < cap_bytes || size > cap_bytes + 64 * 1024 || info.stdout_dropped_bytes + cap_bytes < bytes ||
        info.stdout_dropped_bytes > bytes) {
      throw std::runtime_error(what + "the capped log holds " + std::to_string(size) + " bytes, " +
                               std::to_string(info.stdout_dropped_bytes) + " dropped");
    }
  } else if (size != bytes) {
    throw std::runtime_error(what + "the log " + log + " holds " + std::to_string(size) + " of " +
                             std::to_string(bytes) + " bytes " + info.output_error);
  }
  if (mode == tail && info.stdout_tail.size() != std::min<std::uint64_t>(tail_bytes, bytes)) {
    throw std::runtime_error(what + "the tail holds " + std::to_string(info.stdout_tail.size()) + " bytes");
  }
  if (mode == lines && (lines_seen != bytes / line_bytes || line_text_bytes != lines_seen * (line_bytes - 1) ||
                        partial_lines != 0)) {
    throw std::runtime_error(what + "the handler saw " + std::to_string(lines_seen) + " lines (" +
                             std::to_string(partial_lines) + " partial), " + std::to_string(line_text_bytes) +
                             " bytes of text");
  }
  return run;
}

int throughput_suite(const std::string& dir, std::uint64_t bytes, int rounds, const std::string& modes) {
  const double mb = static_cast<double>(bytes) / 1e6;
  bool enabled[mode_count];
  for (int m = 0; m < mode_count; ++m) {
    enabled[m] = m == plain || ("," + modes + ",").find(std::string(",") + mode_keys[m] + ",") != std::string::npos;
  }
  note("output throughput: one worker writes %.0f MB of 100-byte lines in 64 KiB writes, %d round(s); "
       "files on %s (%s)\n",
       mb, rounds, dir.c_str(), jwbench::filesystem_name(dir).c_str());
  std::vector<double> times[mode_count], cpu[mode_count], ratio[mode_count];
  plain_run(dir, bytes);  // not counted: the first big write of a run is slow (allocation, cache)
  for (int round = 0; round < rounds; ++round) {
    double t[mode_count] = {};
    for (int m : jwbench::round_order(mode_count, round)) {
      if (!enabled[m]) continue;
      Run run = m == plain ? plain_run(dir, bytes) : supervised_run(static_cast<Mode>(m), dir, bytes, round);
      t[m] = run.seconds;
      times[m].push_back(run.seconds);
      cpu[m].push_back(run.host_cpu);
    }
    note("  round %d:", round + 1);
    for (int m = 0; m < mode_count; ++m) {
      if (!enabled[m]) continue;
      ratio[m].push_back(t[plain] / t[m]);
      note(" %s %.2fs", mode_keys[m], t[m]);
    }
    note("\n");
  }
  note("\nmedian over %d round(s); throughput ratio = plain's time / the mode's (1: as fast as plain)\n", rounds);
  note("  %-44s %9s %8s %16s\n", "mode", "MB/s", "ratio", "host CPU us/MB");
  for (int m = 0; m < mode_count; ++m) {
    if (!enabled[m]) continue;
    note("  %-44s %9.0f %8.3f %16.2f\n", mode_names[m], mb / median(times[m]), median(ratio[m]),
         median(cpu[m]) / mb * 1e6);
  }
  for (int m = 0; m < mode_count; ++m) {
    if (!enabled[m]) continue;
    std::string key = "output." + place(dir) + "." + mode_keys[m];
    if (m != plain) figure(key + "_vs_plain", median(ratio[m]), "x");
    figure(key + "_host_cpu_per_mb", median(cpu[m]) / mb * 1e6, "us");
    figure(key + "_mb_per_s", mb / median(times[m]), "MB/s");
  }
  return 0;
}

// ---- small-worker spawn cost ---------------------------------------------------

enum Variant { sp_direct, sp_supervised, sp_mixed, sp_direct_noroot, sp_supervised_noroot, variant_count };
const char* const variant_keys[variant_count] = {"direct", "supervised", "mixed", "direct_noroot",
                                                 "supervised_noroot"};
const char* const variant_names[variant_count] = {
    "job dir, stdout+stderr direct", "job dir, stdout+stderr supervised",
    "job dir, stdout direct, stderr supervised+tail", "no job dir, direct", "no job dir, supervised"};

jobwarden::WorkerSpec true_spec(Variant v) {
  jobwarden::WorkerSpec spec;
  spec.argv = {"/bin/true"};
  auto direct_route = [] {
    jobwarden::OutputSpec out;
    out.route = jobwarden::OutputSpec::Route::direct;
    return out;
  };
  switch (v) {
    case sp_direct:
    case sp_direct_noroot:
      spec.stdout_spec = direct_route();
      spec.stderr_spec = direct_route();
      break;
    case sp_supervised:
    case sp_supervised_noroot:
      spec.stdout_spec = jobwarden::OutputSpec::supervised();
      spec.stdout_spec.tail_bytes = 0;
      spec.stderr_spec = jobwarden::OutputSpec::supervised();
      spec.stderr_spec.tail_bytes = 0;
      break;
    case sp_mixed:
      spec.stdout_spec = direct_route();
      spec.stderr_spec = jobwarden::OutputSpec::supervised();
      spec.stderr_spec.tail_bytes = tail_bytes;
      break;
    default: break;
  }
  return spec;
}

/// How many logs (workers/<id>.stdout.log, <id>.stderr.log) the job's workers have.
int count_logs(const std::string& job_dir) {
  int count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(job_dir + "/workers", ec)) {
    std::string id;
    const auto kind = jobwarden::detail::classify_worker_file(entry.path().filename().string(), id);
    if (kind == jobwarden::detail::WorkerFileKind::stdout_log || kind == jobwarden::detail::WorkerFileKind::stderr_log) ++count;
  }
  return count;
}

int spawn_suite(const std::string& dir, int n, int rounds) {
  constexpr int concurrency = 2;
  const int chunk = std::min(50, n);
  note("\nsmall-worker spawn cost: %d x /bin/true per variant and round at concurrency %d, interleaved in chunks "
       "of %d, %d round(s); job roots on %s (%s)\n",
       n, concurrency, chunk, rounds, dir.c_str(), jwbench::filesystem_name(dir).c_str());
  std::vector<double> times[variant_count], cpu[variant_count], ratio[variant_count];
  std::string log_note;
  for (int round = 0; round < rounds; ++round) {
    std::optional<jwbench::TempDir> roots[variant_count];
    std::unique_ptr<jobwarden::JobSupervisor<>> supervisors[variant_count];
    for (int v = 0; v < variant_count; ++v) {
      jobwarden::SupervisorOptions options;
      options.job_id = std::string("spawn-") + variant_keys[v] + "-" + std::to_string(round);
      if (v != sp_direct_noroot && v != sp_supervised_noroot) {
        roots[v].emplace(dir, "jwbench-spawn");
        options.root = roots[v]->path();
      }
      options.max_concurrency = concurrency;
      supervisors[v] = std::make_unique<jobwarden::JobSupervisor<>>(options);
    }
    double t[variant_count] = {}, c[variant_count] = {};
    const int chunks = (n + chunk - 1) / chunk;
    for (int k = 0; k < chunks; ++k) {
      const int count = std::min(chunk, n - k * chunk);
      for (int v : jwbench::round_order(variant_count, round * chunks + k)) {
        const jobwarden::WorkerSpec spec = true_spec(static_cast<Variant>(v));
        double cpu0 = jwbench::self_cpu_seconds();
        long long start = now_ns();
        for (int i = 0; i < count; ++i) supervisors[v]->submit(spec);
        if (!supervisors[v]->wait_all(std::chrono::minutes(2))) throw std::runtime_error("spawn: wait_all timed out");
        t[v] += seconds_since(start);
        c[v] += jwbench::self_cpu_seconds() - cpu0;
      }
    }
    for (int v = 0; v < variant_count; ++v) {
      for (const auto& worker : supervisors[v]->workers()) {
        if (worker.state != jobwarden::WorkerState::succeeded) {
          throw std::runtime_error(std::string("spawn ") + variant_keys[v] + ": worker " + worker.id + " ended " +
                                   std::string(jobwarden::to_string(worker.state)) + " " + worker.error);
        }
      }
      if (roots[v]) {
        // Direct logs exist from the spawn on; a supervised stream that
        // carried nothing leaves no file.
        const int logs = count_logs(supervisors[v]->job_dir());
        const int expected = v == sp_direct ? 2 * n : v == sp_mixed ? n : 0;
        if (logs != expected) {
          throw std::runtime_error(std::string("spawn ") + variant_keys[v] + ": " + std::to_string(logs) +
                                   " log files, expected " + std::to_string(expected));
        }
      }
      supervisors[v].reset();
      times[v].push_back(t[v]);
      cpu[v].push_back(c[v]);
      ratio[v].push_back(t[sp_direct] / t[v]);
    }
  }
  note("\nmedian over %d round(s); ratio = the direct variant's time / this one's (above 1: faster)\n", rounds);
  note("  %-48s %10s %8s %18s\n", "variant", "workers/s", "ratio", "host CPU us/worker");
  for (int v = 0; v < variant_count; ++v) {
    note("  %-48s %10.0f %8.3f %18.1f\n", variant_names[v], n / median(times[v]), median(ratio[v]),
         median(cpu[v]) / n * 1e6);
  }
  for (int v = 0; v < variant_count; ++v) {
    std::string key = "output." + place(dir) + ".spawn_c2." + variant_keys[v];
    if (v != sp_direct) figure(key + "_vs_direct", median(ratio[v]), "x");
    figure(key + "_workers_per_s", n / median(times[v]), "/s");
    figure(key + "_host_cpu_us_per_worker", median(cpu[v]) / n * 1e6, "us");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    jwbench::Args args(argc, argv);
    const bool smoke = args.has("smoke");
    const std::string dir = args.str("dir", jwbench::disk_tmp());
    const auto bytes = static_cast<std::uint64_t>(args.num("bytes", smoke ? 30'000'000 : 1'000'000'000));
    if (bytes % line_bytes != 0 || bytes < 2 * cap_bytes) {
      throw std::runtime_error("--bytes must be a multiple of 100 and at least 20 MiB, not " + std::to_string(bytes));
    }
    const int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 3));
    const int n = static_cast<int>(args.num("n", smoke ? 20 : 500));
    const int spawn_rounds = static_cast<int>(args.num("spawn-rounds", smoke ? 1 : 2));
    if (rounds < 1 || n < 1 || spawn_rounds < 1) throw std::runtime_error("--rounds, --n and --spawn-rounds must be positive");
    note("machine: %ld CPUs\n", ::sysconf(_SC_NPROCESSORS_ONLN));
    const std::string modes = args.str("modes", "direct,splice,tail,lines,head_tail");
    if (!args.has("skip-throughput")) throughput_suite(dir, bytes, rounds, modes);
    if (!args.has("skip-spawn")) spawn_suite(dir, n, spawn_rounds);
    if (!jwbench::check_nothing_left()) return 1;
    note("nothing left behind: ok\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_output: %s\n", e.what());
    return 1;
  }
}
