// Reading a job directory from any process (StatusAggregator) and writing the
// supervisor's records (JobRecorder).
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/status_aggregator.hpp>
#include <jobwarden/worker_status_writer.hpp>

#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "catch.hpp"
#include "status_support.hpp"
#include "live_job.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobState;
using jobwarden::StatusAggregator;
using jobwarden::WorkerInfo;
using jobwarden::WorkerState;
using jobwarden::detail::JobLayout;
using jobwarden::detail::JobRecorder;
using jwstatus::errors_of;
using jwstatus::json;
using jwstatus::LiveJob;
using jwstatus::worker_info;

namespace {
/// The last line of `type` in the journal at `path`, parsed.
json last_line(const std::string& path, const std::string& type) {
  std::istringstream lines(jwtest::read_file(path));
  json last;
  for (std::string line; std::getline(lines, line);) {
    json document = json::parse(line);
    if (document["type"] == type) last = std::move(document);
  }
  return last;
}
}  // namespace

TEST_CASE("the aggregated JSON of a live job has the contract's keys, counts and lists") {
  LiveJob job;
  job.add(worker_info("1", WorkerState::succeeded));
  job.add(worker_info("2", WorkerState::succeeded));
  WorkerInfo running = worker_info("3", WorkerState::running);
  running.pid = ::getpid();
  running.process_start_time = jobwarden::detail::process_start_time(::getpid()).value_or(0);
  job.add(running);
  WorkerInfo failed = worker_info("4", WorkerState::failed);
  failed.exit_code = 3;
  job.add(failed);
  WorkerInfo crashed = worker_info("10", WorkerState::crashed);
  crashed.signal = SIGSEGV;
  crashed.core_dumped = true;
  job.add(crashed);
  job.add(worker_info("7", WorkerState::pending));
  {
    jobwarden::WorkerStatusWriter<> writer(job.recorder.status_file("3"));
    REQUIRE_FALSE(writer.progress(40, 120));
    REQUIRE_FALSE(writer.message("scanning src/"));
    REQUIRE_FALSE(writer.flush());
  }

  StatusAggregator<> aggregator(job.dir.path());
  const json status = aggregator.read("scan-42").to_json();
  for (const char* key : {"schema_version", "job_id", "state", "summary", "elapsed_seconds", "last_update",
                          "supervisor", "workers", "running", "pending", "completed", "failed", "errors"}) {
    CHECK(status.contains(key));
  }
  CHECK(status["schema_version"] == 1);
  CHECK(status["job_id"] == "scan-42");
  CHECK(status["state"] == "running");
  CHECK(status["summary"] ==
        json{{"total", 6}, {"pending", 1}, {"running", 1}, {"succeeded", 2}, {"failed", 2}, {"done", 4}});
  CHECK(status["supervisor"]["pid"] == ::getpid());
  CHECK(status["supervisor"]["alive"] == true);
  CHECK(status["running"] == json{"3"});
  CHECK(status["pending"] == json{"7"});
  CHECK(status["completed"] == json{"1", "2"});
  CHECK(status["failed"] == json{"4", "10"});  // natural order: 4 before 10
  CHECK(status["errors"].empty());
  CHECK(status["elapsed_seconds"].is_number());
  REQUIRE(status["workers"].size() == 6);
  const json& worker = status["workers"][2];
  for (const char* key : {"id", "state", "pid", "attempt", "exit_code", "signal", "core_dumped", "progress",
                          "message", "result", "error", "started_at", "ended_at", "last_update", "stale"}) {
    CHECK(worker.contains(key));
  }
  CHECK(worker["id"] == "3");
  CHECK(worker["state"] == "running");
  CHECK(worker["progress"] == json{{"done", 40}, {"total", 120}});
  CHECK(worker["message"] == "scanning src/");
  CHECK(worker["stale"] == false);
  CHECK(worker["exit_code"].is_null());
  const json& crashed_json = status["workers"][5];
  CHECK(crashed_json["id"] == "10");
  CHECK(crashed_json["signal"] == "SIGSEGV");
  CHECK(crashed_json["core_dumped"] == true);
  CHECK(status["workers"][3]["exit_code"] == 3);
}

TEST_CASE("the supervisor's record decides how a worker ended, whatever the worker reported") {
  LiveJob job;
  WorkerInfo info = worker_info("1", WorkerState::succeeded);
  info.exit_code = 0;
  job.add(info);
  {
    jobwarden::WorkerStatusWriter<> writer(job.recorder.status_file("1"));
    REQUIRE_FALSE(writer.set_error("could not parse one file"));
    REQUIRE_FALSE(writer.set_state("failed"));
  }
  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  const auto* worker = status.find_worker("1");
  REQUIRE(worker);
  CHECK(worker->state == WorkerState::succeeded);
  REQUIRE(worker->reported_state);
  CHECK(*worker->reported_state == WorkerState::failed);
  CHECK(worker->error == std::optional<std::string>("could not parse one file"));
}

TEST_CASE("a worker's running report refines a pending record") {
  LiveJob job;
  job.add(worker_info("1", WorkerState::pending));
  {
    jobwarden::WorkerStatusWriter<> writer(job.recorder.status_file("1"));
    REQUIRE_FALSE(writer.set_state("running"));
  }
  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  CHECK(status.find_worker("1")->state == WorkerState::running);
  CHECK(status.state == JobState::running);
}

TEST_CASE("a job whose workers have not started reads pending") {
  LiveJob job;
  job.add(worker_info("1", WorkerState::pending));
  StatusAggregator<> aggregator(job.dir.path());
  CHECK(aggregator.read("scan-42").state == JobState::pending);
}

TEST_CASE("a finished job reads the state its supervisor wrote") {
  LiveJob job;
  job.add(worker_info("1", WorkerState::succeeded));
  job.add(worker_info("2", WorkerState::cancelled));
  jobwarden::JobSummary summary;
  summary.add(WorkerState::succeeded);
  summary.add(WorkerState::cancelled);
  job.recorder.write_job(jobwarden::job_state_from_workers(summary), summary);
  job.recorder.close();
  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  CHECK(status.state == JobState::cancelled);
  CHECK_FALSE(status.supervisor.alive);
  CHECK(status.ended_at);
  CHECK(status.to_json()["summary"]["failed"] == 1);
}

TEST_CASE("corrupt, truncated, non-JSON, wrongly shaped and oversized files become errors and the rest reads") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "hostile");
  job.write_job(jwstatus::job_document("hostile", "running", 0, 0));
  job.write_process("1", jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0));
  job.write_status_text("2", "{\"schema_version\": 1, \"progress\": {\"done\": 4");  // truncated
  job.write_status_text("3", "definitely not json");
  job.write_status_text("4", "");
  job.write_status("5", json{{"schema_version", 1}, {"message", 42}});                // wrong type
  job.write_status("6", json::array({1, 2, 3}));                                      // not an object
  job.write_status("7", json{{"schema_version", 99}});                                 // unknown version
  job.write_status_text("8", std::string(2 * 1024 * 1024, ' '));                      // oversized
  job.write_process("9", json{{"state", "exploded"}});
  job.write_status("10", jwstatus::status_document("running", json{{"done", 1}, {"total", 2}}));
  jwstatus::write_text(job.layout.workers_dir() + "/not valid.status.json", "");      // not a worker id
  jwstatus::write_text(job.layout.workers_dir() + "/notes.txt", "");                  // not a worker file

  StatusAggregator<> aggregator(dir.path());
  std::error_code ec;
  const auto status = aggregator.read("hostile", ec);
  REQUIRE_FALSE(ec);
  const auto errors = errors_of(status);
  CHECK(errors.at("workers/2.status.json") == "not valid JSON");
  CHECK(errors.at("workers/3.status.json") == "not valid JSON");
  CHECK(errors.at("workers/4.status.json") == "not valid JSON");
  CHECK(errors.at("workers/5.status.json") == "wrong shape");
  CHECK(errors.at("workers/6.status.json") == "wrong shape");
  CHECK(errors.at("workers/7.status.json") == "wrong shape");
  CHECK(errors.at("workers/8.status.json") == "oversized");
  CHECK(errors.at("journal.jsonl") == "wrong shape");  // worker 9's line
  CHECK(errors.at("workers/not valid.status.json") == "not a worker file");
  CHECK(errors.at("workers/notes.txt") == "not a worker file");
  CHECK(errors.size() == 10);
  CHECK(status.workers.size() == 10);
  CHECK(status.find_worker("1")->state == WorkerState::succeeded);
  CHECK(status.find_worker("10")->progress == json{{"done", 1}, {"total", 2}});
  CHECK(status.to_json()["errors"][0].contains("path"));
}

TEST_CASE("a corrupt job line is an error and the workers still read") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "broken");
  job.write_journal_text("{\"type\":\"job\",\"sta\n");
  job.write_process("1", jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0));
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("broken");
  REQUIRE(status.errors.size() == 1);
  CHECK(status.errors[0].path == "journal.jsonl");
  CHECK(status.errors[0].error == "not valid JSON");
  CHECK(status.errors[0].detail.find("line at byte ") == 0);
  CHECK(status.workers.size() == 1);
  CHECK(status.state == JobState::succeeded);  // no live supervisor, every worker done
}

TEST_CASE("hostile journal lines become errors with their offset, the good lines still read") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "journal");
  job.write_job(jwstatus::job_document("journal", "running", 0, 0));
  const auto size_before = [&] { return std::to_string(jwtest::read_file(job.layout.journal_file()).size()); };
  const std::string not_json_at = size_before();
  job.write_journal_text("this is not json\n");
  const std::string shape_at = size_before();
  job.write_journal_text("[1,2,3]\n");
  job.write_journal_text("{\"no_type\":1}\n");
  job.write_journal_text("{\"type\":\"worker\",\"id\":\"../x\",\"state\":\"running\"}\n");
  job.write_journal_text("{\"type\":\"later-version-record\",\"x\":1}\n");  // skipped, no error
  const std::string oversized_at = size_before();
  job.write_journal_text("{\"type\":\"worker\",\"id\":\"7\",\"argv\":[\"" + std::string(2 << 20, 'a') + "\"]}\n");
  job.write_process("1", jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0));
  job.write_process("2", jwstatus::process_document("2", "running"));
  job.write_journal_text("{\"type\":\"worker\",\"id\":\"2\",\"state\":\"succ");  // torn: being written
  StatusAggregator<> aggregator(dir.path());
  auto status = aggregator.read("journal");
  std::vector<std::string> seen;
  for (const auto& error : status.errors) {
    CHECK(error.path == "journal.jsonl");
    seen.push_back(error.error + " @" + error.detail.substr(0, error.detail.find(':')));
  }
  CHECK(std::count(seen.begin(), seen.end(), "not valid JSON @line at byte " + not_json_at) == 1);
  CHECK(std::count(seen.begin(), seen.end(), "not valid JSON @line at byte " + shape_at) == 1);
  CHECK(std::count(seen.begin(), seen.end(), "oversized line @line at byte " + oversized_at) == 1);
  CHECK(status.errors.size() == 5);  // not JSON, not an object, no type, bad id, oversized
  CHECK(status.workers.size() == 2);
  CHECK(status.find_worker("7") == nullptr);
  CHECK(status.find_worker("1")->state == WorkerState::succeeded);
  CHECK(status.find_worker("2")->state == WorkerState::lost);  // the torn line is not read yet

  // The torn line completed: read once it has its newline.
  job.write_journal_text("eeded\",\"attempt\":1,\"exit_code\":0}\n");
  status = aggregator.read("journal");
  CHECK(status.find_worker("2")->state == WorkerState::succeeded);
  CHECK(status.errors.size() == 5);
}

TEST_CASE("a symlinked journal is refused") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob real(dir.path(), "real");
  real.write_job(jwstatus::job_document("real", "running", 0, 0));
  real.write_process("1", jwstatus::process_document("1", "succeeded", nullptr, nullptr, 0));
  jwstatus::CraftedJob job(dir.path(), "links");
  REQUIRE(::unlink(job.layout.journal_file().c_str()) == 0);
  REQUIRE(::symlink(real.layout.journal_file().c_str(), job.layout.journal_file().c_str()) == 0);
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("links");
  CHECK(errors_of(status).at("journal.jsonl") == "symbolic link not followed");
  CHECK(status.workers.empty());
}

TEST_CASE("a schema 1 job directory is refused with a clear error, and listing skips it") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "old");
  jwstatus::make_dir(dir / "old/workers");
  jwstatus::make_dir(dir / "old/workers/1");
  jwstatus::write_text(dir / "old/job.json", "{\"schema_version\":1,\"job_id\":\"old\",\"state\":\"running\"}");
  jwstatus::write_text(dir / "old/workers/1/process.json", "{\"schema_version\":1,\"id\":\"1\"}");
  jwstatus::CraftedJob job(dir.path(), "new");
  job.write_job(jwstatus::job_document("new", "running", 0, 0));
  StatusAggregator<> aggregator(dir.path());
  std::error_code ec;
  (void)aggregator.read("old", ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  CHECK_THROWS_AS(aggregator.read("old"), std::system_error);
  const auto list = aggregator.list_jobs();
  REQUIRE(list.jobs.size() == 1);
  CHECK(list.jobs[0].job_id == "new");
  REQUIRE(list.errors.size() == 1);
  CHECK(list.errors[0].path == "old/journal.jsonl");
  CHECK(list.errors[0].error == "unsupported layout");
}

TEST_CASE("a journal naming another schema version is refused like a schema 1 directory") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "future");
  jwstatus::make_dir(dir / "future/workers");
  jwstatus::write_text(dir / "future/journal.jsonl",
                       "{\"type\":\"journal\",\"schema_version\":3,\"job_id\":\"future\",\"generation\":1}\n" +
                           jwstatus::journal_line("job", jwstatus::job_document("future", "succeeded", 1, 1)));
  StatusAggregator<> aggregator(dir.path());
  std::error_code ec;
  (void)aggregator.read("future", ec);
  CHECK(ec == jobwarden::errc::unsupported_layout);
  const auto list = aggregator.list_jobs();
  CHECK(list.jobs.empty());
  REQUIRE(list.errors.size() == 1);
  CHECK(list.errors[0].error == "unsupported layout");
  CHECK(list.errors[0].detail.find("schema_version 3") != std::string::npos);
}

TEST_CASE("a symlinked status file is not followed") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "links");
  job.write_job(jwstatus::job_document("links", "running", 0, 0));
  jwstatus::write_text(dir / "secret.json", jwstatus::status_document("running", json{{"secret", 1}}).dump());
  REQUIRE(::symlink((dir / "secret.json").c_str(), job.layout.status_file("1").c_str()) == 0);
  job.write_status("2", jwstatus::status_document("running"));
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("links");
  CHECK(errors_of(status).at("workers/1.status.json") == "symbolic link not followed");
  CHECK_FALSE(status.find_worker("1")->progress);
  CHECK(status.find_worker("2") != nullptr);
}

TEST_CASE("a directory under a status file's name is an error, not a worker's files") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "links");
  job.write_job(jwstatus::job_document("links", "running", 0, 0));
  jwstatus::make_dir(job.layout.status_file("1"));
  jwstatus::write_text(job.layout.status_file("1") + "/x", jwstatus::status_document("running").dump());
  job.write_status("2", jwstatus::status_document("running"));
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("links");
  CHECK(errors_of(status).at("workers/1.status.json") == "not a regular file");
  CHECK(status.find_worker("2") != nullptr);
}

TEST_CASE("a symlinked workers directory is not followed") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "root");
  jwstatus::CraftedJob job(dir / "root", "links");
  job.write_job(jwstatus::job_document("links", "running", 0, 0));
  jwstatus::make_dir(dir / "elsewhere");
  jwstatus::write_text(dir / "elsewhere/1.status.json", jwstatus::status_document("running").dump());
  REQUIRE(::rmdir(job.layout.workers_dir().c_str()) == 0);
  REQUIRE(::symlink((dir / "elsewhere").c_str(), job.layout.workers_dir().c_str()) == 0);
  StatusAggregator<> aggregator(dir / "root");
  const auto status = aggregator.read("links");
  CHECK(errors_of(status).at("workers") == "symbolic link not followed");
  CHECK(status.workers.empty());
}

TEST_CASE("a symlinked job directory is refused as a whole") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "root");
  jwstatus::CraftedJob real(dir.path(), "real");
  real.write_job(jwstatus::job_document("real", "running", 0, 0));
  REQUIRE(::symlink((dir / "real").c_str(), (dir / "root/alias").c_str()) == 0);
  StatusAggregator<> aggregator(dir / "root");
  std::error_code ec;
  (void)aggregator.read("alias", ec);
  CHECK(ec == std::errc::too_many_symbolic_link_levels);
  CHECK_THROWS_AS(aggregator.read("alias"), std::system_error);
}

TEST_CASE("a FIFO in place of a status file is an error, not a hang") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "fifo");
  job.write_job(jwstatus::job_document("fifo", "running", 0, 0));
  REQUIRE(::mkfifo(job.layout.status_file("1").c_str(), 0644) == 0);
  REQUIRE(::mkfifo(job.layout.journal_file().c_str(), 0644) != 0);  // the journal exists: see below
  StatusAggregator<> aggregator(dir.path());
  CHECK(errors_of(aggregator.read("fifo")).at("workers/1.status.json") == "not a regular file");

  jwstatus::CraftedJob piped(dir.path(), "piped");
  REQUIRE(::unlink(piped.layout.journal_file().c_str()) == 0);
  REQUIRE(::mkfifo(piped.layout.journal_file().c_str(), 0644) == 0);
  CHECK(errors_of(aggregator.read("piped")).at("journal.jsonl") == "not a regular file");
}

TEST_CASE("progress that does not fit the Progress type is an error, not an exception") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "typed");
  job.write_job(jwstatus::job_document("typed", "running", 0, 0));
  job.write_status("1", jwstatus::status_document("running", json{{"done", "forty"}}));
  job.write_status("2", jwstatus::status_document("running", json{{"done", 40}}));
  StatusAggregator<std::map<std::string, int>> aggregator(dir.path());
  std::error_code ec;
  const auto status = aggregator.read("typed", ec);
  REQUIRE_FALSE(ec);
  REQUIRE(status.errors.size() == 1);
  CHECK(status.errors[0].path == "workers/1.status.json");
  CHECK(status.errors[0].error == "wrong shape");
  CHECK_FALSE(status.find_worker("1")->progress);
  CHECK(status.find_worker("2")->progress->at("done") == 40);
}

TEST_CASE("a running worker that has been silent longer than the threshold is stale") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "quiet");
  job.write_job(jwstatus::job_document("quiet", "running", 0, 0));
  json quiet = jwstatus::process_document("1", "running");
  quiet["started_at"] = jwstatus::ago(10min);
  job.write_process("1", quiet);
  job.write_status("1", jwstatus::status_document("running", nullptr, jwstatus::ago(2min)));
  json chatty = jwstatus::process_document("2", "running");
  chatty["started_at"] = jwstatus::ago(10min);
  job.write_process("2", chatty);
  job.write_status("2", jwstatus::status_document("running", nullptr, jwstatus::ago(1s)));
  json skewed = jwstatus::process_document("3", "running");
  skewed["started_at"] = jwstatus::ago(10min);
  job.write_process("3", skewed);  // its writer's clock runs ahead: a future heartbeat
  job.write_status("3", jwstatus::status_document("running", nullptr, jwstatus::ago(-5min)));
  job.write_process("4", jwstatus::process_document("4", "pending"));
  // A live supervisor, so that nothing reads lost.
  const jobwarden::detail::OwnedFd lock(::open(job.layout.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  REQUIRE(::flock(lock.get(), LOCK_EX) == 0);

  jobwarden::StatusAggregatorOptions options;
  options.stale_after = 30s;
  StatusAggregator<> aggregator(dir.path(), options);
  const auto status = aggregator.read("quiet");
  CHECK(status.find_worker("1")->stale);
  CHECK_FALSE(status.find_worker("2")->stale);
  CHECK_FALSE(status.find_worker("3")->stale);
  CHECK_FALSE(status.find_worker("4")->stale);
  CHECK(status.find_worker("1")->state == WorkerState::running);

  // The same job a minute later, by the aggregator's clock: 2 is stale too.
  options.now = [] { return std::chrono::system_clock::now() + 1min; };
  StatusAggregator<> later(dir.path(), options);
  CHECK(later.read("quiet").find_worker("2")->stale);
}

TEST_CASE("a job whose supervisor exited while workers were running reads lost") {
  jwtest::TempDir dir;
  // The supervisor is a forked child that records a running worker (itself)
  // and dies without finishing the job; run_in_child reaps it.
  const int exit_code = jwstatus::run_in_child([&] {
    JobRecorder recorder(JobLayout{dir.path(), "doomed"});
    std::error_code ec;
    recorder.open(ec);
    if (ec) return 10;
    WorkerInfo info = worker_info("1", WorkerState::running);
    info.pid = ::getpid();
    info.process_start_time = jobwarden::detail::process_start_time(info.pid).value_or(0);
    recorder.write_worker(info, ec);
    if (ec) return 11;
    recorder.write_worker(worker_info("2", WorkerState::pending), ec);
    recorder.write_worker(worker_info("3", WorkerState::succeeded), ec);
    if (ec) return 12;
    std::_Exit(0);  // no destructors: the kernel drops the lock, as in a crash
  });
  REQUIRE(exit_code == 0);
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("doomed");
  CHECK(status.state == JobState::lost);
  CHECK_FALSE(status.supervisor.alive);
  CHECK(status.find_worker("1")->state == WorkerState::lost);
  CHECK(status.find_worker("2")->state == WorkerState::lost);
  CHECK(status.find_worker("3")->state == WorkerState::succeeded);
  CHECK(status.to_json()["failed"] == json{"1", "2"});
}

TEST_CASE("a supervisor pid reused by another process does not keep a job alive") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "reused");
  // No lock file to probe, so the pid is the witness: it exists (it is ours)
  // but its start time is not the recorded one.
  const auto our_start = jobwarden::detail::process_start_time(::getpid()).value_or(0);
  REQUIRE(our_start > 0);
  job.write_job(jwstatus::job_document("reused", "running", ::getpid(), our_start + 1));
  job.write_process("1", jwstatus::process_document("1", "running", ::getpid(), our_start + 1));
  StatusAggregator<> aggregator(dir.path());
  auto status = aggregator.read("reused");
  CHECK_FALSE(status.supervisor.alive);
  CHECK(status.state == JobState::lost);
  CHECK(status.find_worker("1")->state == WorkerState::lost);

  // With the right start time the same record is alive.
  job.write_job(jwstatus::job_document("reused", "running", ::getpid(), our_start));
  status = aggregator.read("reused");
  CHECK(status.supervisor.alive);
  CHECK(status.state == JobState::running);
}

TEST_CASE("a worker that still runs after its supervisor died reads running in a lost job") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "orphan");
  job.write_job(jwstatus::job_document("orphan", "running", 999999, 1));
  const auto our_start = jobwarden::detail::process_start_time(::getpid()).value_or(0);
  job.write_process("1", jwstatus::process_document("1", "running", ::getpid(), our_start));
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("orphan");
  CHECK(status.state == JobState::lost);
  CHECK(status.find_worker("1")->state == WorkerState::running);
}

TEST_CASE("an unchanged file is served from the cache and a replaced one is re-read") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "cached");
  job.write_job(jwstatus::job_document("cached", "running", 0, 0));
  for (int i = 1; i <= 5; ++i) job.write_status(std::to_string(i), jwstatus::status_document("running"));
  jobwarden::StatusAggregatorOptions options;
  options.recent_change_window = 0ms;  // trust fresh stamps: this test writes and reads within one tick
  StatusAggregator<> aggregator(dir.path(), options);
  (void)aggregator.read("cached");
  const auto cold = aggregator.cache_statistics();
  CHECK(cold.files_read == 6);
  (void)aggregator.read("cached");
  auto warm = aggregator.cache_statistics();
  CHECK(warm.files_read == 6);
  CHECK(warm.files_reused == 6);

  REQUIRE_FALSE(jobwarden::detail::write_file_atomically(
      job.layout.status_file("3"), jwstatus::status_document("running", json{{"done", 9}}).dump()));
  const auto status = aggregator.read("cached");
  warm = aggregator.cache_statistics();
  CHECK(warm.files_read == 7);
  CHECK(status.find_worker("3")->progress == json{{"done", 9}});
}

TEST_CASE("invalid ids are rejected before anything touches the disk") {
  jwtest::TempDir dir;
  const std::string root = dir / "never-created";
  const std::vector<std::string> bad_ids = {"",       "..", ".hidden", "a/b", "../etc", std::string("nul\0x", 5),
                                            std::string(129, 'a')};
  for (const std::string& bad : bad_ids) {
    StatusAggregator<> aggregator(root);
    std::error_code ec;
    (void)aggregator.read(bad, ec);
    CHECK(ec == jobwarden::errc::invalid_id);
    CHECK_THROWS_AS(aggregator.read(bad), std::system_error);

    JobRecorder recorder(JobLayout{root, bad});
    recorder.open(ec);
    CHECK(ec == jobwarden::errc::invalid_id);
  }
  struct stat info {};
  CHECK(::lstat(root.c_str(), &info) != 0);

  LiveJob job;
  std::error_code ec;
  WorkerInfo info_with_bad_id;
  info_with_bad_id.id = "..";
  job.recorder.write_worker(info_with_bad_id, ec);
  CHECK(ec == jobwarden::errc::invalid_id);
  CHECK(::lstat((job.dir / "escape").c_str(), &info) != 0);
}

TEST_CASE("a job that does not exist is an unknown job") {
  jwtest::TempDir dir;
  StatusAggregator<> aggregator(dir.path());
  std::error_code ec;
  (void)aggregator.read("nope", ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  StatusAggregator<> no_root(dir / "missing-root");
  (void)no_root.read("nope", ec);
  CHECK(ec == jobwarden::errc::unknown_job);
}

TEST_CASE("a second supervisor of a live job is refused") {
  LiveJob job;
  JobRecorder second(JobLayout{job.dir.path(), "scan-42"});
  std::error_code ec;
  second.open(ec);
  CHECK(ec == jobwarden::errc::job_locked);
  CHECK_FALSE(second.is_open());
}

TEST_CASE("a finished job is not reopened unless the recorder is told to replace it") {
  jwtest::TempDir dir;
  {
    JobRecorder first(JobLayout{dir.path(), "again"});
    first.open();
    first.write_worker(worker_info("old", WorkerState::succeeded));
    jwstatus::write_text(first.status_file("old"), jwstatus::status_document("succeeded").dump());
    first.write_job(JobState::succeeded, {});
  }
  JobRecorder second(JobLayout{dir.path(), "again"});
  std::error_code ec;
  second.open(ec);
  CHECK(ec == jobwarden::errc::job_exists);
  jobwarden::detail::JobRecorderOptions replace;
  replace.replace_finished = true;
  JobRecorder third(JobLayout{dir.path(), "again"}, replace);
  third.open(ec);
  REQUIRE_FALSE(ec);
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("again");
  CHECK(status.workers.empty());
  CHECK(status.state == JobState::pending);
}

TEST_CASE("a finished job stays finished and a terminal worker record stays terminal") {
  LiveJob job;
  job.add(worker_info("1", WorkerState::failed));
  std::error_code ec;
  job.recorder.write_worker(worker_info("1", WorkerState::running), ec);
  CHECK(ec == jobwarden::errc::invalid_state_transition);
  WorkerInfo restarted = worker_info("1", WorkerState::running);
  restarted.attempt = 2;
  job.recorder.write_worker(restarted, ec);
  CHECK_FALSE(ec);

  job.recorder.write_job(JobState::failed, {}, ec);
  REQUIRE_FALSE(ec);
  job.recorder.write_job(JobState::running, {}, ec);
  CHECK(ec == jobwarden::errc::invalid_state_transition);
  const json record = last_line(job.recorder.layout().journal_file(), "job");
  CHECK(record["state"] == "failed");
  CHECK(record["ended_at"].is_string());
  CHECK(record["supervisor"]["pid"] == ::getpid());
  CHECK(record["supervisor"]["start_time"].is_number_unsigned());
  CHECK_FALSE(record["supervisor"]["hostname"].get<std::string>().empty());
}

TEST_CASE("the supervisor's records carry every field of a worker") {
  LiveJob job;
  WorkerInfo info = worker_info("5", WorkerState::crashed);
  info.signal = SIGSEGV;
  info.core_dumped = true;
  info.usage.user_cpu = 1500ms;
  info.usage.max_rss_kib = 2048;
  job.add(info);
  const json record = last_line(job.recorder.layout().journal_file(), "worker");
  CHECK(record["id"] == "5");
  for (const char* key : {"type", "id", "state", "attempt", "pid", "process_start_time", "exit_code",
                          "signal", "core_dumped", "error", "started_at", "ended_at", "usage", "argv"}) {
    CHECK(record.contains(key));
  }
  CHECK(record["signal"] == "SIGSEGV");
  CHECK(record["usage"]["user_cpu_seconds"] == 1.5);
  CHECK(record["usage"]["max_rss_kib"] == 2048);
  CHECK(record["argv"] == json{"scan", "5"});
}

TEST_CASE("list_jobs lists every job with its state and times") {
  jwtest::TempDir dir;
  {
    JobRecorder done(JobLayout{dir.path(), "done"});
    done.open();
    done.write_job(JobState::succeeded, {});
  }
  JobRecorder running(JobLayout{dir.path(), "running"});
  running.open();
  jwstatus::make_dir(dir / ".hidden");
  jwstatus::write_text(dir / "stray-file", "");
  StatusAggregator<> aggregator(dir.path());
  const auto list = aggregator.list_jobs();
  REQUIRE(list.jobs.size() == 2);
  CHECK(list.jobs[0].job_id == "done");
  CHECK(list.jobs[0].state == JobState::succeeded);
  CHECK(list.jobs[0].ended_at);
  CHECK(list.jobs[1].job_id == "running");
  CHECK(list.jobs[1].supervisor_alive);
  CHECK(list.to_json()["jobs"][1]["state"] == "pending");
  StatusAggregator<> nothing(dir / "no-such-root");
  CHECK(nothing.list_jobs().jobs.empty());
}

namespace {
/// A child that has exited and is left unreaped (a zombie) until scope exit:
/// what the workers of a dead supervisor become under a parent that reaps
/// adopted orphans late or never.
class Zombie {
 public:
  Zombie() {
    pid_ = ::fork();
    if (pid_ == 0) ::_exit(0);
    for (int i = 0; i < 500; ++i) {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_) {
        break;
      }
      ::usleep(2000);
    }
    start_time_ = jobwarden::detail::process_start_time(pid_).value_or(0);
  }
  Zombie(const Zombie&) = delete;
  Zombie& operator=(const Zombie&) = delete;
  ~Zombie() {
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
  }
  int pid() const { return pid_; }
  unsigned long long start_time() const { return start_time_; }

 private:
  int pid_ = -1;
  unsigned long long start_time_ = 0;
};
}  // namespace

TEST_CASE("a zombie is not running: the workers of a dead supervisor read lost, and clean removes the job") {
  jwtest::TempDir dir;
  Zombie supervisor;
  Zombie worker;
  REQUIRE(supervisor.start_time() != 0);
  REQUIRE(worker.start_time() != 0);
  REQUIRE(jobwarden::detail::is_same_process(worker.pid(), worker.start_time()));  // still pinned
  // No lock file: the supervisor's recorded pid is the only witness.
  jwstatus::CraftedJob job(dir.path(), "zombies");
  job.write_job(jwstatus::job_document("zombies", "running", supervisor.pid(), supervisor.start_time(),
                                       jwstatus::ago(60s)));
  job.write_process("1", jwstatus::process_document("1", "running", worker.pid(), worker.start_time()));
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("zombies");
  CHECK_FALSE(status.supervisor.alive);
  REQUIRE(status.workers.size() == 1);
  CHECK(status.workers[0].state == WorkerState::lost);
  CHECK(status.state == JobState::lost);
  CHECK(status.running.empty());
  const auto report = aggregator.clean(1s, false);
  CHECK(report.removed == std::vector<std::string>{"zombies"});
}

TEST_CASE("a re-read that patches the changed workers gives what a fresh read gives") {
  for (const bool watch : {true, false}) {
    CAPTURE(watch);
    jwtest::TempDir dir;
    jwstatus::CraftedJob job(dir.path(), "patched");
    job.write_job(jwstatus::job_document("patched", "running", 0, 0));
    for (int i = 1; i <= 20; ++i) {
      const std::string id = std::to_string(i);
      job.write_process(id, jwstatus::process_document(id, i % 4 == 0 ? "pending" : "running"));
      if (i % 4 != 0) job.write_status(id, jwstatus::status_document("running", json{{"done", i}}));
    }
    // A live supervisor: the re-reads take the patching path.
    const jobwarden::detail::OwnedFd lock(::open(job.layout.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    REQUIRE(::flock(lock.get(), LOCK_EX) == 0);

    auto clock = std::make_shared<jobwarden::WallTime>(std::chrono::system_clock::now());
    jobwarden::StatusAggregatorOptions options;
    options.watch_for_changes = watch;
    options.now = [clock] { return *clock; };
    StatusAggregator<> warm(dir.path(), options);
    auto same_as_fresh = [&](const char* step) {
      INFO(step);
      const std::string patched = warm.read("patched").to_json().dump();
      StatusAggregator<> fresh(dir.path(), options);
      CHECK(patched == fresh.read("patched").to_json().dump());
    };
    same_as_fresh("first read");
    same_as_fresh("nothing changed");

    job.write_status("3", jwstatus::status_document("running", json{{"done", 99}}));
    same_as_fresh("a changed report");

    job.write_process("4", jwstatus::process_document("4", "running"));
    same_as_fresh("a pending worker started");

    job.write_process("5", jwstatus::process_document("5", "succeeded", nullptr, nullptr, 0));
    same_as_fresh("a worker ended");

    job.write_process("21", jwstatus::process_document("21", "running"));
    job.write_status("21", jwstatus::status_document("running"));
    same_as_fresh("a new worker");
    same_as_fresh("after a new worker");

    const std::string torn = jwstatus::journal_line("worker", [] {
      json document = jwstatus::process_document("6", "failed", nullptr, nullptr, 3);
      document["id"] = "6";
      return document;
    }());
    job.write_journal_text(torn.substr(0, torn.size() / 2));
    same_as_fresh("a torn line");
    job.write_journal_text(torn.substr(torn.size() / 2));
    same_as_fresh("the torn line completed");

    job.write_status_text("7", "{\"state\": \"running\", ");
    same_as_fresh("a status file turned hostile");
    json wrong = jwstatus::process_document("8", "running");
    wrong["state"] = "exploded";
    job.write_process("8", wrong);
    same_as_fresh("a journal line of the wrong shape");
    same_as_fresh("the errors again");

    job.write_status("7", jwstatus::status_document("running", json{{"done", 1}}));
    same_as_fresh("the hostile file repaired");

    *clock += 10min;
    same_as_fresh("running workers went stale");

    // A compaction: the fold written to a new journal renamed over the old one.
    {
      std::string compacted = "{\"type\":\"journal\",\"schema_version\":2,\"job_id\":\"patched\",\"generation\":2}\n";
      compacted += jwstatus::journal_line("job", jwstatus::job_document("patched", "running", 0, 0));
      for (int i = 1; i <= 21; ++i) {
        const std::string id = std::to_string(i);
        json document = jwstatus::process_document(id, i == 9 ? "succeeded" : "running", nullptr, nullptr,
                                                    i == 9 ? json(0) : json(nullptr));
        document["id"] = id;
        compacted += jwstatus::journal_line("worker", std::move(document));
      }
      jwstatus::write_text(job.layout.journal_file() + ".tmp", compacted);
      REQUIRE(::rename((job.layout.journal_file() + ".tmp").c_str(), job.layout.journal_file().c_str()) == 0);
    }
    same_as_fresh("a compacted journal");
    same_as_fresh("after the compaction");

    REQUIRE(::flock(lock.get(), LOCK_UN) == 0);
    same_as_fresh("the supervisor gone");
  }
}
