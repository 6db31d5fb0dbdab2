// The status protocol, jobwarden and baselines alternating within each round.
//
//   - WorkerStatusWriter per update, on disk and on tmpfs: throttled (the
//     update is held back: what a tight progress loop pays) and forced
//     (progress + flush: one atomic file write each), against the floor of an
//     atomic write of the same bytes (open O_EXCL temp, write, close, rename).
//   - JobRecorder, the supervisor's side, per worker life cycle: three journal
//     lines (pending -> running -> succeeded) and a job line: what status
//     records add to each spawn.
//   - StatusAggregator over a job of 1,000 and 10,000 workers (journal lines
//     by JobRecorder, <id>.status.json by WorkerStatusWriter; the recorder
//     holds the job's lock, so the supervisor reads as alive): cold (a fresh
//     cache; the OS page cache is warm), and re-read after 10 workers
//     reported and 10 journal lines were appended, against a floor that reads
//     the journal and every status file and parses every line and file, and
//     merges nothing.
//
//   bench_status [--rounds 5] [--updates 2000] [--throttled-updates 200000]
//                [--workers 1000,10000] [--changed 10] [--lifecycles 1000] [--smoke]
#include <jobwarden/status_aggregator.hpp>
#include <jobwarden/worker_status_writer.hpp>
#include <jobwarden/detail/job_recorder.hpp>

#include <sstream>

#include "bench_common.hpp"

namespace {
using jwbench::figure;
using jwbench::median;
using jwbench::note;
using jwbench::now_ns;
using jwbench::seconds_since;

/// The floor of one atomic status write: the same bytes, the same steps, no JSON.
void plain_atomic_write(const std::string& dir, const std::string& content, int serial) {
  std::string tmp = dir + "/.floor." + std::to_string(serial) + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + tmp + ": " + std::strerror(errno));
  if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    throw std::runtime_error("short write");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), (dir + "/floor.json").c_str()) != 0) throw std::runtime_error("rename");
}

jobwarden::WorkerStatusWriterOptions<> writer_options(const std::string& worker_id) {
  jobwarden::WorkerStatusWriterOptions<> options;
  options.job_id = "bench";
  options.worker_id = worker_id;
  return options;
}

void writer_costs(int rounds, int updates, int throttled_updates) {
  struct Place {
    std::string name, base;
  };
  std::vector<Place> places = {{"disk", jwbench::disk_tmp()}, {"tmpfs", jwbench::tmpfs_or_tmp()}};
  for (const Place& place : places) {
    jwbench::TempDir dir(place.base);
    std::vector<double> forced_us, floor_us, throttled_ns, ratio;
    std::string sample_content;
    for (int round = 0; round < rounds; ++round) {
      double forced = 0, floor = 0;
      for (int v : jwbench::round_order(2, round)) {
        if (v == 0) {
          jobwarden::WorkerStatusWriter<> writer(dir.path() + "/status.json", writer_options("1"));
          long long start = now_ns();
          for (int i = 0; i < updates; ++i) {
            writer.progress(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(updates));
            if (auto ec = writer.flush()) throw std::runtime_error("flush: " + ec.message());
          }
          forced = (now_ns() - start) / 1e3 / updates;
          if (writer.write_count() < static_cast<std::uint64_t>(updates)) throw std::runtime_error("writes missing");
          sample_content = jwbench::read_text(dir.path() + "/status.json");
        } else {
          std::string content = sample_content.empty() ? std::string(300, 'x') : sample_content;
          long long start = now_ns();
          for (int i = 0; i < updates; ++i) plain_atomic_write(dir.path(), content, i);
          floor = (now_ns() - start) / 1e3 / updates;
        }
      }
      forced_us.push_back(forced);
      floor_us.push_back(floor);
      ratio.push_back(forced / floor);
      // Throttled: the first call writes, the rest are held back (1 s interval).
      jobwarden::WorkerStatusWriter<> writer(dir.path() + "/throttled.json", writer_options("2"));
      writer.progress(0, 1);
      long long start = now_ns();
      for (int i = 0; i < throttled_updates; ++i) {
        writer.progress(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(throttled_updates));
      }
      throttled_ns.push_back(static_cast<double>(now_ns() - start) / throttled_updates);
    }
    note("WorkerStatusWriter on %s (%s), %d round(s): forced %.1f us/update (floor: atomic write of the same "
         "%zu bytes %.1f us), throttled %.0f ns/update\n",
         place.name.c_str(), jwbench::filesystem_name(dir.path()).c_str(), rounds, median(forced_us),
         sample_content.size(), median(floor_us), median(throttled_ns));
    figure("status.writer_forced_" + place.name, median(forced_us), "us");
    figure("status.writer_forced_over_floor_" + place.name, median(ratio), "x");
    figure("status.writer_throttled_" + place.name, median(throttled_ns), "ns");
  }
}

jobwarden::WorkerInfo make_info(const std::string& id, jobwarden::WorkerState state) {
  jobwarden::WorkerInfo info;
  info.id = id;
  info.state = state;
  info.argv = {"/usr/bin/scan", "--shard", id};
  if (state != jobwarden::WorkerState::pending) {
    info.attempt = 1;
    info.pid = static_cast<int>(::getpid());
    info.process_start_time = 12345;
    info.started_at = std::chrono::system_clock::now();
  }
  if (jobwarden::is_terminal(state)) {
    info.exit_code = 0;
    info.ended_at = std::chrono::system_clock::now();
  }
  return info;
}

void check(const std::error_code& ec, const char* what) {
  if (ec) throw std::runtime_error(std::string(what) + ": " + ec.message());
}

void recorder_costs(int rounds, int lifecycles) {
  for (const auto& [name, base] : std::vector<std::pair<std::string, std::string>>{
           {"disk", jwbench::disk_tmp()}, {"tmpfs", jwbench::tmpfs_or_tmp()}}) {
    std::vector<double> per_worker;
    for (int round = 0; round < rounds; ++round) {
      jwbench::TempDir root(base);
      jobwarden::detail::JobRecorder recorder({root.path(), "lifecycle"});
      std::error_code ec;
      recorder.open(ec);
      check(ec, "recorder.open");
      jobwarden::JobSummary summary;
      long long start = now_ns();
      for (int i = 0; i < lifecycles; ++i) {
        std::string id = std::to_string(i + 1);
        for (auto state : {jobwarden::WorkerState::pending, jobwarden::WorkerState::running,
                           jobwarden::WorkerState::succeeded}) {
          recorder.write_worker(make_info(id, state), ec);
          check(ec, "write_worker");
        }
        summary.add(jobwarden::WorkerState::succeeded);
        recorder.write_job(jobwarden::JobState::running, summary, ec);
        check(ec, "write_job");
      }
      per_worker.push_back((now_ns() - start) / 1e3 / lifecycles);
    }
    note("JobRecorder on %s: %.1f us per worker life cycle (3 worker lines + a job line)\n", name.c_str(),
         median(per_worker));
    figure("status.recorder_lifecycle_" + name, median(per_worker), "us");
  }
}

/// The floor of a cold read: the journal read and every line parsed, every
/// status file opened, read and parsed; nothing merged.
std::size_t plain_read_all(const std::string& job_dir) {
  std::size_t parsed = 0;
  {
    std::istringstream lines(jwbench::read_text(job_dir + "/journal.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      auto doc = nlohmann::json::parse(line, nullptr, false);
      if (!doc.is_discarded()) ++parsed;
    }
  }
  const std::string workers_dir = job_dir + "/workers";
  DIR* dir = ::opendir(workers_dir.c_str());
  if (dir == nullptr) throw std::runtime_error("opendir " + workers_dir);
  int dir_fd = ::dirfd(dir);
  std::string buffer(65536, '\0');
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = ::openat(dir_fd, entry->d_name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    ::close(fd);
    if (n <= 0) continue;
    auto doc = nlohmann::json::parse(buffer.data(), buffer.data() + n, nullptr, false);
    if (!doc.is_discarded()) ++parsed;
  }
  ::closedir(dir);
  return parsed;
}

void aggregator_costs(int rounds, const std::vector<int>& sizes, int changed) {
  for (int workers : sizes) {
    jwbench::TempDir root(jwbench::disk_tmp());
    const std::string job = "agg";
    jobwarden::detail::JobRecorder recorder({root.path(), job});
    std::error_code ec;
    recorder.open(ec);
    check(ec, "recorder.open");
    long long generate_start = now_ns();
    jobwarden::JobSummary summary;
    std::vector<std::string> status_files;
    for (int i = 0; i < workers; ++i) {
      std::string id = std::to_string(i + 1);
      // A third finished, a third running, a third waiting for a slot.
      auto state = i % 3 == 0   ? jobwarden::WorkerState::succeeded
                   : i % 3 == 1 ? jobwarden::WorkerState::running
                                : jobwarden::WorkerState::pending;
      recorder.write_worker(make_info(id, state), ec);
      check(ec, "write_worker");
      summary.add(state);
      status_files.push_back(recorder.status_file(id));
      if (state != jobwarden::WorkerState::pending) {
        jobwarden::WorkerStatusWriter<> writer(status_files.back(), writer_options(id));
        writer.progress(40, 120);
        writer.message("scanning src/module-" + id);
        check(writer.flush(), "status flush");
      }
    }
    recorder.write_job(jobwarden::JobState::running, summary, ec);
    check(ec, "write_job");
    double generate_s = seconds_since(generate_start);
    // Files changed within the aggregator's recent-change window (1 s) are
    // re-read on every call by design; let them age past it once.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));

    jobwarden::StatusAggregator<> aggregator(root.path());
    std::vector<double> cold_ms, floor_ms, incremental_ms, json_ms, ratio;
    std::uint64_t incremental_files = 0;
    for (int round = 0; round < rounds; ++round) {
      double cold = 0, floor = 0;
      for (int v : jwbench::round_order(2, round)) {
        if (v == 0) {
          aggregator.clear_cache();
          long long start = now_ns();
          auto status = aggregator.read(job);
          cold = (now_ns() - start) / 1e6;
          if (status.workers.size() != static_cast<std::size_t>(workers) || !status.errors.empty() ||
              !status.supervisor.alive) {
            throw std::runtime_error("aggregator read " + std::to_string(status.workers.size()) + " workers, " +
                                     std::to_string(status.errors.size()) + " errors");
          }
        } else {
          long long start = now_ns();
          std::size_t parsed = plain_read_all(root.path() + "/" + job);
          floor = (now_ns() - start) / 1e6;
          if (parsed == 0) throw std::runtime_error("floor parsed nothing");
        }
      }
      cold_ms.push_back(cold);
      floor_ms.push_back(floor);
      ratio.push_back(cold / floor);
      // `changed` running workers report progress and `changed` pending ones
      // start (a journal line each); the next read re-parses only them.
      for (int k = 0; k < changed; ++k) {
        int index = 2 + 3 * k;  // pending workers
        jobwarden::WorkerInfo started = make_info(std::to_string(index + 1), jobwarden::WorkerState::running);
        started.attempt = 1 + round;
        recorder.write_worker(started, ec);
        check(ec, "write_worker");
      }
      for (int k = 0; k < changed; ++k) {
        int index = 1 + 3 * k;  // running workers
        std::string id = std::to_string(index + 1);
        jobwarden::WorkerStatusWriter<> writer(status_files[static_cast<std::size_t>(index)], writer_options(id));
        writer.progress(static_cast<std::uint64_t>(41 + round), 120);
        check(writer.flush(), "status flush");
      }
      auto before = aggregator.cache_statistics();
      long long start = now_ns();
      auto status = aggregator.read(job);
      incremental_ms.push_back((now_ns() - start) / 1e6);
      incremental_files = aggregator.cache_statistics().files_read - before.files_read;
      const auto* probe = status.find_worker("2");
      if (probe == nullptr || !probe->progress || (*probe->progress)["done"] != 41 + round) {
        throw std::runtime_error("the incremental read missed a change");
      }
      const auto* started = status.find_worker("3");
      if (started == nullptr || started->attempt != 1 + round) {
        throw std::runtime_error("the incremental read missed a journal line");
      }
      long long json_start = now_ns();
      std::string text = status.to_json().dump();
      json_ms.push_back((now_ns() - json_start) / 1e6);
    }
    note("StatusAggregator, %d workers (generated in %.2f s on %s): cold %.2f ms (floor: read+parse every file "
         "%.2f ms), after %d reports + %d journal lines %.3f ms (%llu files re-read), to_json().dump() %.2f ms\n",
         workers, generate_s, jwbench::filesystem_name(root.path()).c_str(), median(cold_ms), median(floor_ms),
         changed, changed, median(incremental_ms), static_cast<unsigned long long>(incremental_files), median(json_ms));
    std::string w = "status.aggregate_" + std::to_string(workers);
    bool big = workers >= 10000;
    if (big) {
      figure(w + "_cold", median(cold_ms), "ms", "< 100", median(cold_ms) < 100);
      figure(w + "_changed" + std::to_string(changed), median(incremental_ms), "ms", "< 2",
             median(incremental_ms) < 2);
    } else {
      figure(w + "_cold", median(cold_ms), "ms");
      figure(w + "_changed" + std::to_string(changed), median(incremental_ms), "ms");
    }
    figure(w + "_cold_over_floor", median(ratio), "x");
    figure(w + "_to_json_dump", median(json_ms), "ms");
  }
}
}  // namespace

int main(int argc, char** argv) {
  try {
    jwbench::Args args(argc, argv);
    bool smoke = args.has("smoke");
    int rounds = static_cast<int>(args.num("rounds", smoke ? 1 : 5));
    int updates = static_cast<int>(args.num("updates", smoke ? 50 : 2000));
    int throttled = static_cast<int>(args.num("throttled-updates", smoke ? 1000 : 200000));
    int lifecycles = static_cast<int>(args.num("lifecycles", smoke ? 20 : 1000));
    int changed = static_cast<int>(args.num("changed", 10));
    std::vector<int> sizes = args.list("workers", smoke ? "100" : "1000,10000");
    writer_costs(rounds, updates, throttled);
    recorder_costs(rounds, lifecycles);
    aggregator_costs(rounds, sizes, changed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_status: %s\n", e.what());
    return 1;
  }
  return 0;
}
