// Cost of the records written most often, per record: a worker's journal
// line (`worker_line_text`, three per worker: pending, running, its end) and
// a worker's status.json text, each built in memory; then the supervisor's
// writer itself, `JobRecorder::write_worker` (one O_APPEND write of that line
// to journal.jsonl), on tmpfs and on the disk under $TMPDIR (or /tmp).
// `bench_records [N] [--no-disk]` prints one FIGURE line per record kind, the
// best of five rounds of N records. Used to check that a change to the
// hand-written JSON text (detail/json_text.hpp) or to the journal writer
// (detail/journal.hpp, detail/job_recorder.hpp) does not make it slower.
#include <jobwarden/detail/job_format.hpp>
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/worker_spec.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace {

template <class Make>
double best_ns_per_record(long n, Make&& make) {
  double best = 1e30;
  std::size_t sink = 0;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) sink += make(i).size();
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / static_cast<double>(n));
  }
  if (sink == 0) std::puts("");
  return best;
}

/// Per appended worker line: a recorder on a fresh job under `base`, each
/// worker written three times (pending, running, succeeded) as the engine
/// does; the best of five rounds of `n` lines. 0 when `base` is unusable.
double best_ns_per_append(const std::string& base, long n, jobwarden::WorkerInfo info) {
  std::string pattern = base + "/jwbench-records-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return 0;
  const std::string root = pattern;
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    jobwarden::detail::JobRecorder recorder({root, "records-" + std::to_string(round)});
    recorder.open();
    const jobwarden::WorkerState states[3] = {jobwarden::WorkerState::pending, jobwarden::WorkerState::running,
                                              jobwarden::WorkerState::succeeded};
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
      info.id = std::to_string(i / 3 + 1);
      info.state = states[i % 3];
      recorder.write_worker(info);
    }
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / static_cast<double>(n));
  }
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 && argv[1][0] != '-' ? std::atol(argv[1]) : 200000;
  bool disk = true;
  for (int i = 1; i < argc; ++i) disk = disk && std::string(argv[i]) != "--no-disk";
  const auto now = std::chrono::system_clock::now();

  jobwarden::WorkerInfo info;
  info.id = "worker-0042";
  info.state = jobwarden::WorkerState::failed;
  info.attempt = 1;
  info.pid = 123456;
  info.process_start_time = 987654321;
  info.argv = {"/usr/bin/scanner", "--repo", "/srv/repos/caf\xc3\xa9-project", "--depth", "3"};
  info.exit_code = 3;
  info.error = "exited with status 3";
  info.started_at = now - std::chrono::seconds(12);
  info.ended_at = now;
  info.usage.user_cpu = std::chrono::microseconds(1'234'567);
  info.usage.system_cpu = std::chrono::microseconds(89'012);
  info.usage.max_rss_kib = 45678;
  const double line_ns =
      best_ns_per_record(n, [&](long) { return jobwarden::detail::worker_line_text(info, now); });
  std::printf("FIGURE worker_line_text_ns %.0f\n", line_ns);

  // The writer: text and one append per line (no fsync: durable is off).
  info.exit_code = 0;
  info.error.clear();
  const long appends = std::max(3L, n / 10);
  const char* tmpdir = std::getenv("TMPDIR");
  const std::string disk_dir = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  if (::access("/dev/shm", W_OK) == 0) {
    std::printf("FIGURE write_worker_append_tmpfs_ns %.0f\n", best_ns_per_append("/dev/shm", appends, info));
  }
  if (disk) std::printf("FIGURE write_worker_append_disk_ns %.0f\n", best_ns_per_append(disk_dir, appends, info));

#ifdef JOBWARDEN_BENCH_STATUS_TEXT
  jobwarden::detail::StatusRecordText status;
  status.job_id = "scan-42";
  status.worker_id = "worker-0042";
  status.attempt = 2;
  status.pid = 123456;
  status.process_start_time = 987654321;
  status.state = jobwarden::WorkerState::running;
  status.progress = "{\"done\":1234,\"total\":10000}";
  status.message = "scanning /srv/repos/caf\xc3\xa9-project/src/main.c";
  status.seq = 77;
  status.updated_at = now;
  const double status_ns = best_ns_per_record(n, [&](long) { return jobwarden::detail::status_text(status); });
  std::printf("FIGURE status_json_text_ns %.0f\n", status_ns);
  // The same record through nlohmann, as the status writer wrote it before.
  jobwarden::detail::StatusRecord typed;
  typed.job_id = status.job_id;
  typed.worker_id = status.worker_id;
  typed.attempt = status.attempt;
  typed.pid = status.pid;
  typed.process_start_time = status.process_start_time;
  typed.state = status.state;
  typed.progress = nlohmann::json{{"done", 1234}, {"total", 10000}};
  typed.message = status.message;
  typed.seq = status.seq;
  typed.updated_at = status.updated_at;
  const double nlohmann_ns = best_ns_per_record(
      n, [&](long) { return jobwarden::detail::dump_json(jobwarden::detail::status_record_to_json(typed)); });
  std::printf("FIGURE status_json_nlohmann_ns %.0f\n", nlohmann_ns);
#endif
  return 0;
}
