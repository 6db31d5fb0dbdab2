// The supervisor's side of the job directory: its journal's records, the
// environment a worker reports through, logs, the final job state, stall
// detection.
#include <sys/wait.h>

#include <fstream>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobState;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
jobwarden::detail::JobLayout layout_of(const jwtest::TempDir& dir, const std::string& job = "job-1") {
  return {dir.path(), job};
}

jobwarden::SupervisorOptions in(const jwtest::TempDir& dir, const std::string& job = "job-1") {
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = job;
  return options;
}
}  // namespace

TEST_CASE("a worker's reports and result reach the job status through the directory") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec spec;
  spec.id = "scan";
  spec.argv = {jwtest::test_worker(), "report", "5", "1"};
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  supervisor.finish();
  supervisor.poll();
  auto status = supervisor.status();
  REQUIRE(status.workers.size() == 1);
  const auto& worker = status.workers[0];
  CHECK(worker.state == WorkerState::succeeded);
  REQUIRE(worker.progress);
  CHECK((*worker.progress)["done"] == 5);
  CHECK((*worker.progress)["total"] == 5);
  CHECK(worker.message == "step 5");
  CHECK(worker.result == nlohmann::json{{"count", 5}});
  CHECK(status.state == JobState::succeeded);
  auto json = status.to_json();
  CHECK(json["summary"]["succeeded"] == 1);
  CHECK(json["completed"] == nlohmann::json::array({"scan"}));
}

TEST_CASE("the job directory holds the supervisor's journal and the worker's logs") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec spec;
  spec.id = "w";
  spec.argv = {"/bin/sh", "-c", "echo to-out; echo to-err >&2; echo $JOBWARDEN_STATUS_FILE"};
  REQUIRE(supervisor.wait(supervisor.submit(spec), 30s));
  const auto layout = layout_of(dir);
  CHECK(jwtest::read_file(layout.stdout_file("w")) == "to-out\n" + layout.status_file("w") + "\n");
  CHECK(jwtest::read_file(layout.stderr_file("w")) == "to-err\n");
  CHECK(layout.status_file("w") == dir / "job-1/workers/w.status.json");
  auto fold = jwjournal::fold_of(layout);
  CHECK(fold.header_seen());
  CHECK(fold.schema_version() == 2);
  CHECK(fold.job_id() == "job-1");
  CHECK(fold.problems().empty());
  const auto process = jwjournal::worker_record(layout, "w");
  CHECK(process.state == WorkerState::succeeded);
  CHECK(process.pid == supervisor.info("w").pid);
  CHECK(process.exit_code == 0);
  auto job = jwjournal::job_record(layout);
  CHECK(job.supervisor_pid == ::getpid());
  CHECK(job.state == JobState::idle);  // nothing to do now, but the host may still submit work
  supervisor.finish();
  supervisor.poll();
  job = jwjournal::job_record(layout);
  CHECK(job.state == JobState::succeeded);
  CHECK(job.ended_at.has_value());
}

TEST_CASE("a second supervisor on a job with a live supervisor is refused and changes nothing") {
  jwtest::TempDir dir;
  JobSupervisor<> first(in(dir));
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  first.submit(spec);
  REQUIRE(first.wait_all(30s));
  std::string before = jwtest::read_file(layout_of(dir).journal_file());
  std::error_code ec;
  JobSupervisor<> second(in(dir), ec);
  CHECK(ec == jobwarden::errc::job_locked);
  CHECK_THROWS_WITH(JobSupervisor<>(in(dir)), Catch::Contains("live supervisor"));
  CHECK(jwtest::read_file(layout_of(dir).journal_file()) == before);
}

TEST_CASE("a job whose worker failed ends failed and a shut down job ends cancelled") {
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir, "fails"));
    WorkerSpec spec;
    spec.argv = {"/bin/sh", "-c", "exit 2"};
    supervisor.submit(spec);
    supervisor.wait_all(30s);
    supervisor.finish();
    supervisor.poll();
  }
  {
    JobSupervisor<> supervisor(in(dir, "stopped"));
    WorkerSpec spec;
    spec.argv = {"sleep", "100"};
    supervisor.submit(spec);
    supervisor.shutdown();
  }
  CHECK(jwjournal::job_record(layout_of(dir, "fails")).state == JobState::failed);
  CHECK(jwjournal::job_record(layout_of(dir, "stopped")).state == JobState::cancelled);
  jobwarden::StatusAggregator<> reader(dir.path());
  CHECK(reader.read("stopped").workers.at(0).state == WorkerState::cancelled);
}

TEST_CASE("a worker that stops reporting is stopped and ends stalled") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec silent;
  silent.id = "silent";
  silent.argv = {"sleep", "100"};
  silent.stall_timeout = 300ms;
  silent.grace_period = 5s;
  WorkerSpec chatty;
  chatty.id = "chatty";
  chatty.argv = {jwtest::test_worker(), "report", "12", "100"};  // a report every 100 ms
  chatty.stall_timeout = 1000ms;
  supervisor.submit(silent);
  supervisor.submit(chatty);
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info("silent").state == WorkerState::stalled);
  CHECK(supervisor.info("silent").error.find("stalled") != std::string::npos);
  CHECK(supervisor.info("chatty").state == WorkerState::succeeded);
}

TEST_CASE("stall detection without a job directory is refused") {
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.stall_timeout = 1s;
  std::error_code ec;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
}

TEST_CASE("an invalid job id is rejected before anything is created on disk") {
  jwtest::TempDir dir;
  auto options = in(dir, "../escape");
  std::error_code ec;
  JobSupervisor<> supervisor(options, ec);
  CHECK(ec == jobwarden::errc::invalid_id);
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("a stop request in the job directory makes the live supervisor stop everything") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec spec;
  spec.argv = {"sleep", "100"};
  spec.grace_period = 60s;  // the request's grace replaces it
  auto running = supervisor.submit(spec);
  supervisor.poll();
  {
    std::ofstream request(dir / "job-1/stop.request.tmp");
    request << R"({"grace_ms": 100})";
  }
  std::filesystem::rename(dir / "job-1/stop.request.tmp", dir / "job-1/stop.request");
  REQUIRE(supervisor.wait(running, 30s));
  CHECK(supervisor.stop_requested());
  CHECK(supervisor.info(running).state == WorkerState::cancelled);
  std::error_code ec;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::supervisor_shut_down);
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir)).state == JobState::cancelled);
}

TEST_CASE("a new supervisor stops the workers a dead supervisor left and marks them lost") {
  jwtest::TempDir dir;
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      auto options = in(dir, "abandoned");
      options.orphan_guard = false;  // as if the guard had been killed too
      options.use_cgroups = false;
      JobSupervisor<> supervisor(options);
      WorkerSpec spec;
      spec.id = "left";
      spec.argv = {"/bin/sh", "-c", "echo $$ > " + (dir / "left.pid") + "; exec sleep 100"};
      spec.stdout_spec = jobwarden::OutputSpec::discard();
      supervisor.on_event([&](const jobwarden::WorkerEvent& e) {
        if (e.kind == jobwarden::EventKind::started) std::ofstream(dir / "recorded") << "yes\n";
      });
      supervisor.submit(spec);
      supervisor.wait_all();
    } catch (...) {
    }
    ::_exit(3);
  }
  REQUIRE(jwtest::wait_for_line(dir / "recorded"));  // its worker line names the pid
  int left = jwtest::read_pid_file(dir / "left.pid");
  jwtest::KillOnExit guard;
  guard.watch(left);
  REQUIRE(left > 0);
  REQUIRE(::kill(host, SIGKILL) == 0);
  REQUIRE(::waitpid(host, nullptr, 0) == host);
  REQUIRE_FALSE(jwtest::process_gone(left));  // nothing stopped it yet

  auto options = in(dir, "abandoned");
  options.replace_finished_job = true;
  options.recovery_grace = 2s;
  JobSupervisor<> successor(options);
  CHECK(jwtest::wait_gone(left));
  const auto& report = successor.recovery_report();
  CHECK(report.job_was_abandoned);
  CHECK(report.stopped == std::vector<std::string>{"left"});
  CHECK(report.marked_lost == std::vector<std::string>{"left"});
}

TEST_CASE("a job left by a dead supervisor is not silently reused without replace") {
  jwtest::TempDir dir;
  pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    try {
      JobSupervisor<> supervisor(in(dir, "abandoned"));
      WorkerSpec spec;
      spec.argv = {"sleep", "100"};
      spec.stdout_spec = jobwarden::OutputSpec::discard();
      supervisor.submit(spec);
      std::ofstream(dir / "ready") << "yes\n";
      supervisor.wait_all();
    } catch (...) {
    }
    ::_exit(3);
  }
  REQUIRE(jwtest::wait_for_line(dir / "ready"));
  REQUIRE(::kill(host, SIGKILL) == 0);
  REQUIRE(::waitpid(host, nullptr, 0) == host);
  std::error_code ec;
  JobSupervisor<> successor(in(dir, "abandoned"), ec);
  CHECK(ec == jobwarden::errc::job_exists);
  jobwarden::StatusAggregator<> reader(dir.path());
  CHECK(reader.read("abandoned").state == JobState::lost);
}

TEST_CASE("a schema 1 job directory is not reused without replace, and is replaced with it") {
  jwtest::TempDir dir;
  const std::string job_dir = dir / "old";
  std::filesystem::create_directories(job_dir + "/workers/1");
  std::ofstream(job_dir + "/job.json") << R"({"schema_version":1,"job_id":"old","state":"succeeded"})";
  std::ofstream(job_dir + "/workers/1/process.json") << R"({"schema_version":1,"id":"1","state":"succeeded"})";
  std::error_code ec;
  JobSupervisor<> refused(in(dir, "old"), ec);
  CHECK(ec == jobwarden::errc::job_exists);
  CHECK_THROWS_WITH(JobSupervisor<>(in(dir, "old")), Catch::Contains("schema 1"));
  CHECK(std::filesystem::exists(job_dir + "/job.json"));

  auto options = in(dir, "old");
  options.replace_finished_job = true;
  JobSupervisor<> supervisor(options);
  CHECK(supervisor.recovery_report().problems.size() == 1);  // the old layout, named
  CHECK_FALSE(std::filesystem::exists(job_dir + "/job.json"));
  CHECK_FALSE(std::filesystem::exists(job_dir + "/workers/1"));
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(30s));
  supervisor.finish();
  supervisor.poll();
  CHECK(jwjournal::job_record(layout_of(dir, "old")).state == JobState::succeeded);
}

TEST_CASE("a schema 1 job that never finished, or a journal of another version, is not replaced even with replace") {
  jwtest::TempDir dir;
  const std::string running = dir / "running";
  std::filesystem::create_directories(running + "/workers/1");
  const std::string job_text = R"({"schema_version":1,"job_id":"running","state":"running"})";
  std::ofstream(running + "/job.json") << job_text;
  std::ofstream(running + "/workers/1/process.json") << R"({"schema_version":1,"id":"1","state":"running"})";
  const std::string future = dir / "future";
  std::filesystem::create_directories(future + "/workers");
  const std::string journal_text =
      "{\"type\":\"journal\",\"schema_version\":3,\"job_id\":\"future\",\"generation\":1}\n";
  std::ofstream(future + "/journal.jsonl") << journal_text;
  std::ofstream(future + "/supervisor.lock");  // its (dead) supervisor's lock file
  for (const char* id : {"running", "future"}) {
    auto options = in(dir, id);
    options.replace_finished_job = true;
    std::error_code ec;
    JobSupervisor<> refused(options, ec);
    CHECK(ec == jobwarden::errc::job_exists);
    CHECK_THROWS_WITH(JobSupervisor<>(options), Catch::Contains("cannot be shown to have finished"));
  }
  CHECK(jwtest::read_file(running + "/job.json") == job_text);
  CHECK(std::filesystem::exists(running + "/workers/1/process.json"));
  CHECK(jwtest::read_file(future + "/journal.jsonl") == journal_text);
}

TEST_CASE("finish lets queued workers and restarts run and then writes the final state") {
  jwtest::TempDir dir;
  auto options = in(dir);
  options.max_concurrency = 2;
  JobSupervisor<> supervisor(options);
  WorkerSpec spec;
  spec.argv = {"sleep", "0.1"};
  for (int i = 0; i < 4; ++i) supervisor.submit(spec);
  WorkerSpec flaky;
  flaky.id = "flaky";
  flaky.argv = {"/bin/sh", "-c", "[ \"$JOBWARDEN_ATTEMPT\" = 2 ]"};  // fails once
  flaky.restart.policy = jobwarden::RestartPolicy::on_failure;
  flaky.restart.initial_backoff = 0ms;
  supervisor.submit(flaky);
  supervisor.finish();
  REQUIRE(supervisor.wait_all(60s));
  for (const auto& w : supervisor.workers()) CHECK(w.state == WorkerState::succeeded);
  CHECK(supervisor.info("flaky").attempt == 2);
  const auto job = jwjournal::job_record(layout_of(dir));
  CHECK(job.state == JobState::succeeded);
  REQUIRE(job.summary.has_value());
  CHECK(job.summary->succeeded == 5);
  // Every record of flaky's two attempts is a line of its own.
  CHECK(jwjournal::worker_line_count(layout_of(dir), "flaky") >= 4);
}

namespace {
/// What nlohmann's own serializer makes of `text` (invalid UTF-8 replaced).
nlohmann::json as_dumped(const std::string& text) {
  return nlohmann::json::parse(jobwarden::detail::dump_json(nlohmann::json(text)));
}
}  // namespace

TEST_CASE("a worker line's hand-written text is the record's JSON, awkward strings included") {
  using jobwarden::WorkerInfo;
  const auto updated = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'795'000'000'123));
  const std::string updated_text = "2026-11-18T11:06:40.123Z", started_text = "2026-11-18T11:06:38.123Z";
  const std::string awkward[] = {"plain", "quote \" and back\\slash", "tab\tnew\nline\rcr\bbs\fff",
                                 std::string("nul\0byte", 8), "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                                 "bad \xff byte", "overlong \xc0\xaf", "surrogate \xed\xa0\x80", "cut \xe2\x82",
                                 "/slash/ and unicode \xe2\x80\xa8"};
  for (const std::string& text : awkward) {
    CAPTURE(text);
    for (int shape = 0; shape < 3; ++shape) {
      WorkerInfo info;
      info.id = "w-1.x";
      info.state = shape == 0 ? WorkerState::pending : shape == 1 ? WorkerState::running : WorkerState::crashed;
      info.attempt = shape + 1;
      info.argv = {"/bin/prog", text, ""};
      nlohmann::json expected = {{"type", "worker"},
                                 {"id", "w-1.x"},
                                 {"state", std::string(jobwarden::to_string(info.state))},
                                 {"attempt", shape + 1},
                                 {"paused", false},
                                 {"pid", nullptr},
                                 {"process_start_time", nullptr},
                                 {"exit_code", nullptr},
                                 {"signal", nullptr},
                                 {"core_dumped", false},
                                 {"error", nullptr},
                                 {"started_at", nullptr},
                                 {"ended_at", nullptr},
                                 {"updated_at", updated_text},
                                 {"usage", nullptr},
                                 {"argv", {"/bin/prog", as_dumped(text), ""}}};
      if (shape >= 1) {
        info.pid = 4242;
        info.process_start_time = 18446744073709551615ULL;
        info.started_at = updated - std::chrono::seconds(2);
        expected["pid"] = 4242;
        expected["process_start_time"] = 18446744073709551615ULL;
        expected["started_at"] = started_text;
      }
      if (shape == 1) {  // a paused worker is still running: paused is a flag of its line
        info.paused = true;
        expected["paused"] = true;
      }
      if (shape == 2) {
        info.exit_code = -7;
        info.signal = SIGSEGV;
        info.core_dumped = true;
        info.error = text;
        info.ended_at = updated;
        info.usage.user_cpu = std::chrono::microseconds(682);
        info.usage.system_cpu = std::chrono::microseconds(12'000'010);
        info.usage.max_rss_kib = 123456789012LL;
        expected["exit_code"] = -7;
        expected["signal"] = "SIGSEGV";
        expected["core_dumped"] = true;
        expected["error"] = text.empty() ? nlohmann::json(nullptr) : as_dumped(text);
        expected["ended_at"] = updated_text;
        expected["usage"] = {{"user_cpu_seconds", std::chrono::duration<double>(info.usage.user_cpu).count()},
                             {"system_cpu_seconds", std::chrono::duration<double>(info.usage.system_cpu).count()},
                             {"max_rss_kib", 123456789012LL},
                             {"tree_user_cpu_seconds", nullptr},
                             {"tree_system_cpu_seconds", nullptr}};
        // The whole tree's CPU: null without a cgroup (every other text), else seconds.
        static int tree_turn = 0;
        if (++tree_turn % 2 == 0) {
          info.usage.tree_user_cpu = std::chrono::microseconds(4049);
          info.usage.tree_system_cpu = std::chrono::microseconds(12'000'011);
          expected["usage"]["tree_user_cpu_seconds"] = 0.004049;
          expected["usage"]["tree_system_cpu_seconds"] = 12.000011;
        }
      }
      // The CPU seconds: nlohmann writes tiny values in exponent form.
      if (shape == 2) {
        static const long long micros[] = {0, 1, 68, 99, 100, 682, 4049, 1'000'000, 12'000'010, 987'654'321'012};
        static std::size_t next = 0;
        info.usage.system_cpu = std::chrono::microseconds(micros[next++ % (sizeof micros / sizeof micros[0])]);
        expected["usage"]["system_cpu_seconds"] = std::chrono::duration<double>(info.usage.system_cpu).count();
      }
      const std::string written = jobwarden::detail::worker_line_text(info, updated);
      CAPTURE(written);
      // One line: its newline at the end and nowhere else; type and id first.
      REQUIRE(written.back() == '\n');
      CHECK(written.find('\n') == written.size() - 1);
      CHECK(written.rfind("{\"type\":\"worker\",\"id\":\"w-1.x\",", 0) == 0);
      auto parsed = nlohmann::json::parse(written, nullptr, false);
      REQUIRE_FALSE(parsed.is_discarded());
      CHECK(parsed == expected);
      // Compact, like every record jobwarden writes, and read back unchanged.
      CHECK(written.size() == jobwarden::detail::dump_json(parsed).size() + 1);
      WorkerInfo back;
      std::optional<std::chrono::system_clock::time_point> back_updated;
      std::string problem;
      REQUIRE(jobwarden::detail::worker_line_from_json(parsed, back, back_updated, problem));
      CHECK(back.state == info.state);
      CHECK(back.pid == info.pid);
      CHECK(back.paused == info.paused);
      CHECK(back.usage.user_cpu == info.usage.user_cpu);
      CHECK(back.usage.system_cpu == info.usage.system_cpu);
      CHECK(back.usage.tree_user_cpu == info.usage.tree_user_cpu);
      CHECK(back.usage.tree_system_cpu == info.usage.tree_system_cpu);
      CHECK(back_updated == updated);
    }
  }
}

TEST_CASE("every CPU time in microseconds reads back from a worker line as written") {
  // A double such as 0.004049 is 4048.9999... microseconds; a reader that truncated lost one.
  jobwarden::WorkerInfo info;
  info.id = "w";
  info.state = jobwarden::WorkerState::succeeded;
  const auto now = std::chrono::system_clock::now();
  info.started_at = now;
  info.ended_at = now;
  std::size_t mismatches = 0;
  for (long long micros = 0; micros < 200'000; micros += 7) {
    info.usage.user_cpu = std::chrono::microseconds(micros);
    info.usage.system_cpu = std::chrono::microseconds(micros * 1000 + 49);
    info.usage.tree_user_cpu = std::chrono::microseconds(micros * 3 + 1);
    info.usage.tree_system_cpu = std::chrono::microseconds(micros * 1000 + 4049);
    auto parsed = nlohmann::json::parse(jobwarden::detail::worker_line_text(info, now));
    jobwarden::WorkerInfo back;
    std::optional<std::chrono::system_clock::time_point> updated;
    std::string problem;
    REQUIRE(jobwarden::detail::worker_line_from_json(parsed, back, updated, problem));
    if (back.usage.user_cpu != info.usage.user_cpu || back.usage.system_cpu != info.usage.system_cpu ||
        back.usage.tree_user_cpu != info.usage.tree_user_cpu ||
        back.usage.tree_system_cpu != info.usage.tree_system_cpu) {
      if (++mismatches < 5) UNSCOPED_INFO("differs at " << micros << " us: " << parsed["usage"].dump());
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("a worker line's tree CPU reads back unset when null or absent (older lines), and a bad one is refused") {
  auto read = [](const std::string& usage, jobwarden::WorkerInfo& back, std::string& problem) {
    auto parsed = nlohmann::json::parse(
        R"({"type":"worker","id":"w","attempt":1,"state":"succeeded","ended_at":"2026-11-18T11:06:40.123Z","usage":)" +
        usage + "}");
    std::optional<std::chrono::system_clock::time_point> updated;
    return jobwarden::detail::worker_line_from_json(parsed, back, updated, problem);
  };
  jobwarden::WorkerInfo back;
  std::string problem;
  REQUIRE(read(R"({"max_rss_kib":1,"system_cpu_seconds":0.5,"user_cpu_seconds":0.25})", back, problem));
  CHECK(back.usage.user_cpu == std::chrono::microseconds(250'000));
  CHECK_FALSE(back.usage.tree_user_cpu);
  CHECK_FALSE(back.usage.tree_system_cpu);
  back = {};
  REQUIRE(read(R"({"system_cpu_seconds":0.5,"tree_system_cpu_seconds":null,"tree_user_cpu_seconds":null})", back, problem));
  CHECK_FALSE(back.usage.tree_user_cpu);
  back = {};
  REQUIRE(read(R"({"tree_system_cpu_seconds":0.004049,"tree_user_cpu_seconds":1.5})", back, problem));
  CHECK(back.usage.tree_system_cpu == std::chrono::microseconds(4049));
  CHECK(back.usage.tree_user_cpu == std::chrono::microseconds(1'500'000));
  back = {};
  CHECK_FALSE(read(R"({"tree_user_cpu_seconds":"lots"})", back, problem));
  CHECK(problem.find("tree_user_cpu_seconds") != std::string::npos);
}

TEST_CASE("stop.request's text is the JSON job control always wrote, and its grace reads back") {
  namespace jd = jobwarden::detail;
  using std::chrono::milliseconds;
  for (const std::optional<milliseconds>& grace :
       {std::optional<milliseconds>(), std::optional<milliseconds>(milliseconds(0)),
        std::optional<milliseconds>(milliseconds(5000)), std::optional<milliseconds>(milliseconds(86'400'000'000LL))}) {
    nlohmann::json request = nlohmann::json::object();
    if (grace) request["grace_ms"] = static_cast<std::uint64_t>(grace->count());
    request["requested_by_pid"] = 4242LL;
    const std::string text = jd::stop_request_text(grace, 4242);
    CHECK(text == request.dump() + "\n");
    CHECK(jd::parse_stop_request(text).grace == grace);
  }
  // Anything else is still a request, with each worker's own grace period.
  for (const char* text : {"", "not json", "[1]", "{\"grace_ms\":-5}", "{\"grace_ms\":1.5}", "{\"grace_ms\":\"5\"}",
                           "{\"grace_ms\":null}"}) {
    CAPTURE(text);
    CHECK_FALSE(jd::parse_stop_request(text).grace);
  }
}

TEST_CASE("a job line's summary is every count, and reads back") {
  namespace jd = jobwarden::detail;
  jobwarden::JobSummary summary;
  for (WorkerState state : jobwarden::all_worker_states) summary.add(state, 2);
  summary.add(WorkerState::lost);
  const nlohmann::json object = jd::job_summary_to_json(summary);
  CHECK(jd::dump_json(object) ==
        "{\"cancelled\":2,\"done\":17,\"failed\":15,\"lost\":3,\"pending\":2,\"running\":2,\"succeeded\":2,\"total\":21}");
  jobwarden::JobSummary back;
  std::string problem;
  REQUIRE(jd::job_summary_from_json(object, back, problem));
  CHECK(jd::job_summary_to_json(back) == object);
  CHECK_FALSE(jd::job_summary_from_json(nlohmann::json{{"total", -1}}, back, problem));
  CHECK(problem == "total is not an integer in range");
}

TEST_CASE("the host's exit status is recorded in the final job line, before or after it was written") {
  namespace jd = jobwarden::detail;
  jwtest::TempDir dir;
  {
    JobSupervisor<> supervisor(in(dir, "before"));
    WorkerSpec spec;
    spec.argv = {"/bin/sh", "-c", "exit 2"};
    supervisor.submit(spec);
    REQUIRE(supervisor.wait_all(30s));
    CHECK_FALSE(jwjournal::job_record(layout_of(dir, "before")).supervisor_exit_status.has_value());
    supervisor.set_exit_status(1);
    supervisor.finish();
    supervisor.poll();
    const auto job = jwjournal::job_record(layout_of(dir, "before"));
    CHECK(job.state == JobState::failed);
    CHECK(job.supervisor_exit_status == std::optional<int>(1));
  }
  {
    JobSupervisor<> supervisor(in(dir, "after"));
    WorkerSpec spec;
    spec.argv = {"true"};
    supervisor.submit(spec);
    REQUIRE(supervisor.wait_all(30s));
    supervisor.finish();
    supervisor.poll();
    CHECK(jwjournal::job_record(layout_of(dir, "after")).state == JobState::succeeded);
    CHECK_FALSE(jwjournal::job_record(layout_of(dir, "after")).supervisor_exit_status.has_value());
    supervisor.set_exit_status(7);  // after the final line: the line once more, same state
    supervisor.poll();
    const auto job = jwjournal::job_record(layout_of(dir, "after"));
    CHECK(job.state == JobState::succeeded);
    CHECK(job.supervisor_exit_status == std::optional<int>(7));
    auto job_lines = [&] {
      std::ifstream journal(layout_of(dir, "after").journal_file());
      int count = 0;
      for (std::string line; std::getline(journal, line);) count += line.find("\"type\":\"job\"") != std::string::npos;
      return count;
    };
    const int lines = job_lines();
    supervisor.poll();
    supervisor.poll();
    CHECK(job_lines() == lines);  // written once
  }
  jobwarden::StatusAggregator<> reader(dir.path());
  CHECK(reader.read("before").supervisor.exit_status == std::optional<int>(1));
  CHECK(reader.read("after").supervisor.exit_status == std::optional<int>(7));
  CHECK(reader.read("after").to_json()["supervisor"]["exit_status"] == 7);
  // A job line without the field (or with null) reads none; a wrong one is a bad line.
  jd::JobRecord record;
  std::string problem;
  REQUIRE(jd::job_record_from_json(nlohmann::json::parse(R"({"type":"job","job_id":"x","state":"running",
      "supervisor":{"pid":5,"exit_status":null}})"), record, problem));
  CHECK_FALSE(record.supervisor_exit_status.has_value());
  CHECK_FALSE(jd::job_record_from_json(nlohmann::json::parse(R"({"type":"job","job_id":"x","state":"running",
      "supervisor":{"exit_status":"one"}})"), record, problem));
  CHECK(problem.find("supervisor.exit_status") != std::string::npos);
  record.supervisor_exit_status = -3;
  jd::JobRecord back;
  REQUIRE(jd::job_record_from_json(jd::job_record_to_json(record), back, problem));
  CHECK(back.supervisor_exit_status == std::optional<int>(-3));
}
