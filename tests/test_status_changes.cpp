// StatusAggregator sees every change made between two reads, with and
// without watching the job directory (inotify on Linux), and watching
// releases what it holds.
#include <jobwarden/detail/atomic_file.hpp>
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/status_aggregator.hpp>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "catch.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::StatusAggregator;
using jobwarden::StatusAggregatorOptions;
using jwstatus::errors_of;
using jwstatus::json;

namespace {

json progress_of(const jobwarden::JobStatus<>& status, const std::string& id) {
  const auto* worker = status.find_worker(id);
  if (worker == nullptr || !worker->progress) return nullptr;
  return *worker->progress;
}

void replace_status(const jwstatus::CraftedJob& job, const std::string& id, int done) {
  REQUIRE_FALSE(jobwarden::detail::write_file_atomically(
      job.layout.status_file(id), jwstatus::status_document("running", json{{"done", done}}).dump()));
}

#if JOBWARDEN_STATUS_INOTIFY
/// inotify instances this process holds.
int inotify_instances() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (const dirent* entry = ::readdir(dir)) {
    char target[256] = {};
    const std::string path = std::string("/proc/self/fd/") + entry->d_name;
    const ssize_t length = ::readlink(path.c_str(), target, sizeof target - 1);
    if (length > 0 && std::string(target, static_cast<std::size_t>(length)) == "anon_inode:inotify") ++count;
  }
  ::closedir(dir);
  return count;
}

long read_number(const char* path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}
#endif

}  // namespace

TEST_CASE("every change made after a read is seen by the next read") {
  const bool watch = GENERATE(true, false);
  CAPTURE(watch);
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "changes");
  job.write_job(jwstatus::job_document("changes", "running", 0, 0));
  for (int i = 1; i <= 3; ++i) replace_status(job, std::to_string(i), 0);
  StatusAggregatorOptions options;
  options.watch_for_changes = watch;
  StatusAggregator<> aggregator(dir.path(), options);
  auto status = aggregator.read("changes");
  REQUIRE(status.summary.total == 3);
  REQUIRE(status.errors.empty());

  // A new worker.
  replace_status(job, "4", 4);
  status = aggregator.read("changes");
  CHECK(status.summary.total == 4);
  CHECK(progress_of(status, "4") == json{{"done", 4}});

  // A removed worker.
  REQUIRE(::unlink(job.layout.status_file("2").c_str()) == 0);
  status = aggregator.read("changes");
  CHECK(status.summary.total == 3);
  CHECK(status.find_worker("2") == nullptr);

  // status.json replaced, then rewritten in place.
  replace_status(job, "1", 10);
  status = aggregator.read("changes");
  CHECK(progress_of(status, "1") == json{{"done", 10}});
  jwstatus::write_text(job.layout.status_file("1"), jwstatus::status_document("running", json{{"done", 11}}).dump());
  status = aggregator.read("changes");
  CHECK(progress_of(status, "1") == json{{"done", 11}});

  // A corrupt file, then a good one again.
  jwstatus::write_text(job.layout.status_file("3"), "{\"state\": ");
  status = aggregator.read("changes");
  CHECK(errors_of(status).at("workers/3.status.json") == "not valid JSON");
  replace_status(job, "3", 3);
  status = aggregator.read("changes");
  CHECK(errors_of(status).count("workers/3.status.json") == 0);
  CHECK(progress_of(status, "3") == json{{"done", 3}});

  // A status file replaced by a symlink to a file elsewhere.
  jwstatus::write_text(dir / "elsewhere.json", jwstatus::status_document("running", json{{"secret", 1}}).dump());
  REQUIRE(::unlink(job.layout.status_file("4").c_str()) == 0);
  REQUIRE(::symlink((dir / "elsewhere.json").c_str(), job.layout.status_file("4").c_str()) == 0);
  status = aggregator.read("changes");
  CHECK(errors_of(status).at("workers/4.status.json") == "symbolic link not followed");
  REQUIRE(status.find_worker("4") != nullptr);
  CHECK_FALSE(status.find_worker("4")->progress);

  // And back to a file.
  REQUIRE(::unlink(job.layout.status_file("4").c_str()) == 0);
  replace_status(job, "4", 44);
  status = aggregator.read("changes");
  CHECK(errors_of(status).count("workers/4.status.json") == 0);
  CHECK(progress_of(status, "4") == json{{"done", 44}});

  // The journal: a new line, then a line written in two halves.
  job.write_process("1", jwstatus::process_document("1", "running"));
  status = aggregator.read("changes");
  CHECK(status.find_worker("1")->attempt == 1);
  json done = jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0);
  done["id"] = "1";
  const std::string line = jwstatus::journal_line("worker", done);
  job.write_journal_text(line.substr(0, 30));
  status = aggregator.read("changes");
  CHECK(status.find_worker("1")->state != jobwarden::WorkerState::succeeded);  // half a line is not read
  job.write_journal_text(line.substr(30));
  status = aggregator.read("changes");
  CHECK(status.find_worker("1")->state == jobwarden::WorkerState::succeeded);
  CHECK(status.errors.empty());

  // The whole workers/ directory replaced by another one.
  REQUIRE(::rename(job.layout.workers_dir().c_str(), (job.layout.job_dir() + "/old-workers").c_str()) == 0);
  jwstatus::make_dir(job.layout.workers_dir());
  replace_status(job, "7", 7);
  status = aggregator.read("changes");
  CHECK(status.summary.total == 2);  // 1 (by its journal line) and 7
  CHECK(progress_of(status, "1") == nullptr);
  CHECK(progress_of(status, "7") == json{{"done", 7}});
  CHECK(status.errors.empty());
}

#if JOBWARDEN_STATUS_INOTIFY

TEST_CASE("watched, a read re-reads only the workers that changed") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "few");
  job.write_job(jwstatus::job_document("few", "running", 0, 0));
  for (int i = 1; i <= 20; ++i) {
    job.write_process(std::to_string(i), jwstatus::process_document(std::to_string(i), "running"));
    replace_status(job, std::to_string(i), 0);
  }
  StatusAggregatorOptions options;
  options.recent_change_window = 0ms;  // trust fresh stamps: this test writes and reads within one tick
  StatusAggregator<> aggregator(dir.path(), options);
  (void)aggregator.read("few");
  auto before = aggregator.cache_statistics();
  CHECK(before.files_read == 21);  // the journal and 20 status files
  CHECK(before.full_checks == 1);
  CHECK(before.watched_directories == 1);  // workers/ only

  (void)aggregator.read("few");
  auto after = aggregator.cache_statistics();
  CHECK(after.files_read == before.files_read);  // nothing changed: nothing read
  CHECK(after.files_reused == before.files_reused + 21);

  replace_status(job, "7", 70);
  auto status = aggregator.read("few");
  CHECK(progress_of(status, "7") == json{{"done", 70}});
  CHECK(aggregator.cache_statistics().files_read == before.files_read + 1);  // its status file only
  CHECK(aggregator.cache_statistics().full_checks == 1);

  job.write_process("8", jwstatus::process_document("8", "succeeded", nullptr, nullptr, 0));
  status = aggregator.read("few");
  CHECK(status.find_worker("8")->state == jobwarden::WorkerState::succeeded);
  CHECK(aggregator.cache_statistics().files_read == before.files_read + 2);  // the journal's new line only
}

TEST_CASE("watched, a rewrite in place within one timestamp tick is seen at once") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "inplace");
  job.write_job(jwstatus::job_document("inplace", "running", 0, 0));
  replace_status(job, "1", 0);
  StatusAggregatorOptions options;
  options.recent_change_window = 0ms;                 // trust every stamp...
  options.in_place_write_check_interval = std::chrono::hours(1);  // ...and never check files by themselves
  StatusAggregator<> aggregator(dir.path(), options);
  (void)aggregator.read("inplace");
  for (int done = 1; done <= 5; ++done) {
    // Same size, same inode, likely the same timestamp tick: only the event tells.
    jwstatus::write_text(job.layout.status_file("1"),
                         jwstatus::status_document("running", json{{"done", done}}, "2026-01-01T00:00:00.000Z").dump());
    CHECK(progress_of(aggregator.read("inplace"), "1") == json{{"done", done}});
  }
}

TEST_CASE("watches are released with the cache, on eviction and on destruction") {
  jwtest::TempDir dir;
  for (const char* id : {"a", "b"}) {
    jwstatus::CraftedJob job(dir.path(), id);
    job.write_job(jwstatus::job_document(id, "running", 0, 0));
    for (int i = 1; i <= 5; ++i) replace_status(job, std::to_string(i), 0);
  }
  const int instances_before = inotify_instances();
  {
    StatusAggregatorOptions options;
    options.max_cached_jobs = 1;
    StatusAggregator<> aggregator(dir.path(), options);
    (void)aggregator.read("a");
    CHECK(aggregator.cache_statistics().watched_directories == 1);
    CHECK(inotify_instances() == instances_before + 1);
    (void)aggregator.read("b");  // evicts a
    CHECK(aggregator.cache_statistics().watched_directories == 1);
    CHECK(inotify_instances() == instances_before + 1);
    aggregator.clear_cache();
    CHECK(aggregator.cache_statistics().watched_directories == 0);
    CHECK(inotify_instances() == instances_before);
    (void)aggregator.read("a");
    CHECK(inotify_instances() == instances_before + 1);
  }
  CHECK(inotify_instances() == instances_before);

  StatusAggregatorOptions off;
  off.watch_for_changes = false;
  StatusAggregator<> unwatched(dir.path(), off);
  const auto status = unwatched.read("a");
  CHECK(status.summary.total == 5);
  CHECK(unwatched.cache_statistics().watched_directories == 0);
  CHECK(inotify_instances() == instances_before);
}

TEST_CASE("an overflowing event queue makes the next read check every worker") {
  const long queue = read_number("/proc/sys/fs/inotify/max_queued_events");
  if (queue <= 0 || queue > 100000) {
    std::printf("SKIPPED: inotify queue of %ld events is too long to overflow in a test\n", queue);
    return;
  }
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "flood");
  job.write_job(jwstatus::job_document("flood", "running", 0, 0));
  for (int i = 1; i <= 3; ++i) replace_status(job, std::to_string(i), 0);
  StatusAggregator<> aggregator(dir.path());
  (void)aggregator.read("flood");
  REQUIRE(aggregator.cache_statistics().full_checks == 1);
  // Every atomic write queues at least 4 events (create, modify, moved from, moved to).
  const int writes = static_cast<int>(queue / 4 + 100);
  for (int i = 1; i <= writes; ++i) replace_status(job, "1", i);
  replace_status(job, "3", 33);
  replace_status(job, "5", 5);
  auto status = aggregator.read("flood");
  CHECK(aggregator.cache_statistics().full_checks == 2);
  CHECK(progress_of(status, "1") == json{{"done", writes}});
  CHECK(progress_of(status, "3") == json{{"done", 33}});
  CHECK(progress_of(status, "5") == json{{"done", 5}});
  // Watching again afterwards.
  replace_status(job, "2", 22);
  status = aggregator.read("flood");
  CHECK(aggregator.cache_statistics().full_checks == 2);
  CHECK(progress_of(status, "2") == json{{"done", 22}});
}

#endif

TEST_CASE("a live aggregator loses nothing across journal compactions") {
  const bool watch = GENERATE(true, false);
  CAPTURE(watch);
  jwtest::TempDir dir;
  jobwarden::detail::JobRecorderOptions recorder_options;
  recorder_options.compact_bytes = 4096;  // compact often
  jobwarden::detail::JobRecorder recorder({dir.path(), "compacting"}, recorder_options);
  recorder.open();
  StatusAggregatorOptions options;
  options.watch_for_changes = watch;
  StatusAggregator<> aggregator(dir.path(), options);
  const std::uint64_t first_generation = recorder.journal_generation();
  jobwarden::JobSummary summary;
  for (int round = 0; round < 60; ++round) {
    // Worker ids 1..5 restart every round; worker "r<round>" appears and finishes.
    for (int k = 1; k <= 5; ++k) {
      jobwarden::WorkerInfo info;
      info.id = std::to_string(k);
      info.attempt = round + 1;
      info.state = jobwarden::WorkerState::running;
      info.argv = {"scan", info.id};
      recorder.write_worker(info);
    }
    jobwarden::WorkerInfo finished;
    finished.id = "r" + std::to_string(round);
    finished.attempt = 1;
    finished.state = jobwarden::WorkerState::succeeded;
    finished.exit_code = 0;
    recorder.write_worker(finished);
    summary.add(jobwarden::WorkerState::succeeded);
    recorder.write_job(jobwarden::JobState::running, summary);
    std::error_code ec;
    recorder.compact_if_due(ec);
    REQUIRE_FALSE(ec);
    if (round % 3 != 2) continue;  // reads between some of the writes only
    const auto status = aggregator.read("compacting");
    CAPTURE(round);
    CHECK(status.errors.empty());
    CHECK(status.summary.total == static_cast<std::size_t>(5 + round + 1));
    for (int k = 1; k <= 5; ++k) CHECK(status.find_worker(std::to_string(k))->attempt == round + 1);
    for (int r = 0; r <= round; ++r) {
      const auto* worker = status.find_worker("r" + std::to_string(r));
      REQUIRE(worker != nullptr);
      CHECK(worker->state == jobwarden::WorkerState::succeeded);
    }
  }
  CHECK(recorder.journal_generation() > first_generation + 2);  // the journal was compacted several times
}

TEST_CASE("many workers are read on several threads with the same result as on one") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "many");
  job.write_job(jwstatus::job_document("many", "running", 0, 0));
  for (int i = 1; i <= 1200; ++i) {
    if (i % 100 == 7) job.write_status_text(std::to_string(i), "not json");
    else replace_status(job, std::to_string(i), i);
  }
  StatusAggregatorOptions one;
  one.read_threads = 1;
  StatusAggregatorOptions several;
  several.read_threads = 4;
  StatusAggregator<> single(dir.path(), one);
  StatusAggregator<> parallel(dir.path(), several);
  const auto a = single.read("many");
  const auto b = parallel.read("many");
  CHECK(a.to_json()["workers"] == b.to_json()["workers"]);
  CHECK(a.to_json()["errors"] == b.to_json()["errors"]);
  CHECK(a.summary.total == 1200);
  CHECK(a.errors.size() == 12);
}
