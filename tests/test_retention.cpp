// Removing old finished jobs (clean_jobs, and StatusAggregator::clean, kept
// for compatibility, with the aggregator's clock) and never a live one.
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/job_cleanup.hpp>
#include <jobwarden/status_aggregator.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "catch.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::StatusAggregator;
using jwstatus::json;

namespace {

bool exists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

/// A finished job that ended `age` ago, written by hand, with one worker.
jwstatus::CraftedJob finished_job(const std::string& root, const std::string& id, std::chrono::milliseconds age,
                                  const std::string& state = "succeeded") {
  jwstatus::CraftedJob job(root, id);
  job.write_job(jwstatus::job_document(id, state, 999999, 1, jwstatus::ago(age + 1h), jwstatus::ago(age)));
  job.write_process("1", jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0));
  return job;
}

std::vector<std::string> kept_ids(const jobwarden::CleanReport& report) {
  std::vector<std::string> ids;
  for (const auto& kept : report.kept) ids.push_back(kept.job_id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

TEST_CASE("clean removes finished jobs older than the age and keeps recent ones") {
  jwtest::TempDir dir;
  finished_job(dir.path(), "old", 48h);
  finished_job(dir.path(), "old-failed", 30h, "failed");
  finished_job(dir.path(), "recent", 1h);
  const auto report = jobwarden::clean_jobs(dir.path(), 24h);
  CHECK(report.removed == std::vector<std::string>{"old", "old-failed"});
  CHECK(kept_ids(report) == std::vector<std::string>{"recent"});
  CHECK(report.kept[0].reason == "too recent");
  CHECK_FALSE(exists(dir / "old"));
  CHECK_FALSE(exists(dir / "old-failed"));
  CHECK(exists(dir / "recent/journal.jsonl"));
  CHECK(report.errors.empty());
  // Nothing of the removal is left behind (no hidden tombstones).
  std::error_code ec;
  auto root = jobwarden::detail::open_directory(dir.path(), ec);
  CHECK(jobwarden::detail::list_directory(root.get(), ec).size() == 1);
}

TEST_CASE("clean never removes a job whose supervisor holds the lock") {
  jwtest::TempDir dir;
  auto job = finished_job(dir.path(), "held", 48h);
  const jobwarden::detail::OwnedFd lock(::open(job.layout.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  REQUIRE(::flock(lock.get(), LOCK_EX) == 0);
  const auto report = jobwarden::clean_jobs(dir.path(), 1h);
  CHECK(report.removed.empty());
  REQUIRE(report.kept.size() == 1);
  CHECK(report.kept[0].reason == "supervisor alive");
  CHECK(exists(dir / "held/journal.jsonl"));
}

TEST_CASE("clean keeps a live job written by a JobRecorder") {
  jwtest::TempDir dir;
  jobwarden::detail::JobRecorder recorder(jobwarden::detail::JobLayout{dir.path(), "live"});
  recorder.open();
  jobwarden::StatusAggregatorOptions options;
  options.now = [] { return std::chrono::system_clock::now() + 1000h; };
  StatusAggregator<> aggregator(dir.path(), options);
  const auto report = aggregator.clean(1h);
  CHECK(report.removed.empty());
  CHECK(kept_ids(report) == std::vector<std::string>{"live"});
  CHECK(exists(dir / "live/journal.jsonl"));
}

TEST_CASE("clean keeps a lost job while one of its workers still runs, and removes it once none does") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "orphan");
  job.write_job(jwstatus::job_document("orphan", "running", 999999, 1, jwstatus::ago(100h)));
  const auto our_start = jobwarden::detail::process_start_time(::getpid()).value_or(0);
  job.write_process("1", jwstatus::process_document("1", "running", ::getpid(), our_start));
  jobwarden::StatusAggregatorOptions options;
  options.now = [] { return std::chrono::system_clock::now() + 100h; };
  StatusAggregator<> aggregator(dir.path(), options);
  auto report = aggregator.clean(1h);
  CHECK(report.removed.empty());
  REQUIRE(report.kept.size() == 1);
  CHECK(report.kept[0].reason == "a worker is still running");

  // The worker's process is gone (a start time that is not ours): lost, removable.
  job.write_process("1", jwstatus::process_document("1", "running", ::getpid(), our_start + 1));
  report = aggregator.clean(1h);
  CHECK(report.removed == std::vector<std::string>{"orphan"});
  CHECK_FALSE(exists(dir / "orphan"));
}

TEST_CASE("a dry run reports what clean would remove and removes nothing") {
  jwtest::TempDir dir;
  finished_job(dir.path(), "old", 48h);
  const auto report = jobwarden::clean_jobs(dir.path(), 24h, /*dry_run=*/true);
  CHECK(report.dry_run);
  CHECK(report.removed == std::vector<std::string>{"old"});
  CHECK(exists(dir / "old/journal.jsonl"));
  CHECK(jobwarden::clean_jobs(dir.path(), 24h).to_json()["removed"] == json{"old"});
}

TEST_CASE("clean never follows a symlink while deleting") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "root");
  jwstatus::make_dir(dir / "precious");
  jwstatus::write_text(dir / "precious/data.txt", "keep me");
  auto job = finished_job(dir / "root", "old", 48h);
  REQUIRE(::symlink((dir / "precious").c_str(), (job.layout.workers_dir() + "/link").c_str()) == 0);
  REQUIRE(::symlink((dir / "precious").c_str(), job.layout.stdout_file("1").c_str()) == 0);
  REQUIRE(::symlink((dir / "precious/data.txt").c_str(), job.layout.status_file("1").c_str()) == 0);
  // A job-looking symlink in the root is not a job: never touched.
  finished_job(dir.path(), "elsewhere", 48h);
  REQUIRE(::symlink((dir / "elsewhere").c_str(), (dir / "root/aliased").c_str()) == 0);

  const auto report = jobwarden::clean_jobs(dir / "root", 24h);
  CHECK(report.removed == std::vector<std::string>{"old"});
  CHECK_FALSE(exists(dir / "root/old"));
  CHECK(jwtest::read_file(dir / "precious/data.txt") == "keep me");
  CHECK(exists(dir / "root/aliased"));
  CHECK(exists(dir / "elsewhere/journal.jsonl"));
}

TEST_CASE("clean of a root that does not exist removes nothing and is no error") {
  jwtest::TempDir dir;
  std::error_code ec;
  const auto report = jobwarden::clean_jobs(dir / "none", 1h, false, ec);
  CHECK_FALSE(ec);
  CHECK(report.removed.empty());
  StatusAggregator<> aggregator(dir / "none");
  CHECK(aggregator.clean(1h, false, ec).removed.empty());
  CHECK_FALSE(ec);
}

TEST_CASE("StatusAggregator::clean removes what clean_jobs removes, and forgets it") {
  jwtest::TempDir dir;
  finished_job(dir.path(), "old", 48h);
  finished_job(dir.path(), "recent", 1h);
  StatusAggregator<> aggregator(dir.path());
  REQUIRE(aggregator.read("old").state == jobwarden::JobState::succeeded);
  const auto report = aggregator.clean(24h);
  CHECK(report.removed == std::vector<std::string>{"old"});
  CHECK(kept_ids(report) == std::vector<std::string>{"recent"});
  std::error_code ec;
  (void)aggregator.read("old", ec);
  CHECK(ec == jobwarden::errc::unknown_job);
}

namespace {
/// A schema 1 job directory (job.json, a directory per worker) last changed `age` ago.
void legacy_job(const std::string& root, const std::string& id, std::chrono::hours age) {
  const std::string job_dir = root + "/" + id;
  jwstatus::make_dir(job_dir);
  jwstatus::make_dir(job_dir + "/workers");
  jwstatus::make_dir(job_dir + "/workers/1");
  jwstatus::write_text(job_dir + "/workers/1/process.json", "{\"schema_version\":1,\"id\":\"1\"}");
  jwstatus::write_text(job_dir + "/job.json", "{\"schema_version\":1,\"state\":\"succeeded\"}");
  jwstatus::write_text(job_dir + "/supervisor.lock", "");
  const auto when = std::chrono::system_clock::now() - age;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(when.time_since_epoch()).count();
  const timespec times[2] = {{static_cast<time_t>(seconds), 0}, {static_cast<time_t>(seconds), 0}};
  REQUIRE(::utimensat(AT_FDCWD, job_dir.c_str(), times, 0) == 0);
}
}  // namespace

TEST_CASE("clean removes an old schema 1 job once its lock is free, and keeps a recent or held one") {
  jwtest::TempDir dir;
  legacy_job(dir.path(), "old-layout", 48h);
  legacy_job(dir.path(), "recent-layout", 1h);
  legacy_job(dir.path(), "held-layout", 48h);
  const jobwarden::detail::OwnedFd lock(
      ::open((dir / "held-layout/supervisor.lock").c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(::flock(lock.get(), LOCK_EX) == 0);

  const auto dry = jobwarden::clean_jobs(dir.path(), 24h, /*dry_run=*/true);
  CHECK(dry.removed == std::vector<std::string>{"old-layout"});
  CHECK(exists(dir / "old-layout/job.json"));

  const auto report = jobwarden::clean_jobs(dir.path(), 24h);
  CHECK(report.removed == std::vector<std::string>{"old-layout"});
  CHECK_FALSE(exists(dir / "old-layout"));
  CHECK(exists(dir / "recent-layout/job.json"));
  CHECK(exists(dir / "held-layout/job.json"));
  std::map<std::string, std::string> reasons;
  for (const auto& kept : report.kept) reasons[kept.job_id] = kept.reason;
  CHECK(reasons == std::map<std::string, std::string>{{"held-layout", "supervisor alive"},
                                                      {"recent-layout", "older layout, too recent"}});
  CHECK(report.errors.empty());
}
