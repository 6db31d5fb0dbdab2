// Cost of the records written most often, per record: process.json's text
// (three per worker) and a worker's status.json text, each built in memory
// (no disk). `bench_records [N]` prints one FIGURE line per record kind, the
// best of five rounds of N records. Used to check that a change to the
// hand-written JSON text (detail/json_text.hpp) does not make it slower.
#include <jobwarden/detail/job_format.hpp>
#include <jobwarden/worker_spec.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

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

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 200000;
  const auto now = std::chrono::system_clock::now();

  jobwarden::WorkerInfo info;
  info.id = "worker-0042";
  info.state = jobwarden::WorkerState::failed;
  info.attempt = 2;
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
  const double process_ns =
      best_ns_per_record(n, [&](long) { return jobwarden::detail::process_record_text(info, now); });
  std::printf("FIGURE process_json_text_ns %.0f\n", process_ns);

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
