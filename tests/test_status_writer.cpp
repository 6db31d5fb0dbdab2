// A worker reporting into its status file (WorkerStatusWriter), and the
// timestamps every status file carries.
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/status_aggregator.hpp>
#include <jobwarden/worker_status_writer.hpp>
#include <jobwarden/worker_status_writer_base.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "catch.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::WorkerState;
using nlohmann::json;

namespace {

/// A steady clock the test moves by hand: throttling is tested without sleeping.
struct FakeClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  void advance(std::chrono::milliseconds by) { now += by; }
};

using Writer = jobwarden::WorkerStatusWriter<>;

Writer::Options fake_clock_options(FakeClock& clock, std::chrono::milliseconds interval = 1s) {
  Writer::Options options;
  options.throttle_interval = interval;
  options.now = [&clock] { return clock.now; };
  options.job_id = "scan-42";
  options.worker_id = "3";
  options.attempt = 1;
  return options;
}

json read_json(const std::string& path) { return json::parse(jwtest::read_file(path)); }

/// Sets an environment variable for one scope, restoring it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = std::string(old);
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// A user-defined progress payload.
struct ScanProgress {
  int files_done = 0;
  int files_total = 0;
  std::string current;
};
void to_json(json& j, const ScanProgress& p) {
  j = json{{"files_done", p.files_done}, {"files_total", p.files_total}, {"current", p.current}};
}
void from_json(const json& j, ScanProgress& p) {
  j.at("files_done").get_to(p.files_done);
  j.at("files_total").get_to(p.files_total);
  j.at("current").get_to(p.current);
}

}  // namespace

TEST_CASE("timestamps are RFC 3339 UTC with milliseconds and parse back") {
  using jobwarden::detail::format_rfc3339;
  using jobwarden::detail::parse_rfc3339;
  const auto time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795255200123));
  CHECK(format_rfc3339(time) == "2026-11-21T10:00:00.123Z");
  CHECK(parse_rfc3339("2026-11-21T10:00:00.123Z") == time);
  CHECK(parse_rfc3339("2026-11-21T11:00:00.123+01:00") == time);
  CHECK(parse_rfc3339("2026-11-21t10:00:00.123456z") == time + std::chrono::microseconds(456));
  CHECK(format_rfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(-1))) ==
        "1969-12-31T23:59:59.999Z");
  CHECK(format_rfc3339(std::chrono::system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(parse_rfc3339("2024-02-29T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2023-02-29T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-13-01T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-11-21T10:00:00"));
  CHECK_FALSE(parse_rfc3339("2026-11-21T10:00:00.Z"));
  CHECK_FALSE(parse_rfc3339("yesterday"));
  CHECK_FALSE(parse_rfc3339(""));
}

TEST_CASE("a process outside jobwarden gets a disabled writer whose calls do nothing") {
  ScopedEnv no_file("JOBWARDEN_STATUS_FILE", nullptr);
  std::error_code ec;
  Writer writer = Writer::from_environment(ec);
  CHECK(ec == jobwarden::errc::no_status_file);
  CHECK_FALSE(writer.enabled());
  CHECK_FALSE(writer.progress(1, 2));
  CHECK_FALSE(writer.set_state("succeeded"));
  CHECK_FALSE(writer.result(json{{"ok", true}}));
  CHECK_THROWS_AS(Writer::from_environment(), std::system_error);
}

TEST_CASE("from_environment takes the status file and the worker's identity from the environment") {
  jwtest::TempDir dir;
  const std::string path = dir / "status.json";
  ScopedEnv file("JOBWARDEN_STATUS_FILE", path.c_str());
  ScopedEnv job("JOBWARDEN_JOB_ID", "scan-42");
  ScopedEnv worker("JOBWARDEN_WORKER_ID", "7");
  ScopedEnv attempt("JOBWARDEN_ATTEMPT", "2");
  {
    Writer writer = Writer::from_environment();
    REQUIRE(writer.enabled());
    REQUIRE_FALSE(writer.set_state("running"));
  }
  const json status = read_json(path);
  CHECK(status["schema_version"] == 1);
  CHECK(status["job_id"] == "scan-42");
  CHECK(status["worker_id"] == "7");
  CHECK(status["attempt"] == 2);
  CHECK(status["pid"] == ::getpid());
  CHECK(status["state"] == "running");
}

TEST_CASE("every write carries identity, state, seq, pid and an RFC 3339 UTC timestamp") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.set_state(WorkerState::running));
  REQUIRE_FALSE(writer.result(json{{"found", 3}}));
  const json status = read_json(dir / "status.json");
  for (const char* key : {"schema_version", "job_id", "worker_id", "attempt", "state", "progress", "message",
                          "result", "error", "seq", "updated_at", "pid", "process_start_time"}) {
    CHECK(status.contains(key));
  }
  CHECK(status["seq"] == 2);
  CHECK(status["result"] == json{{"found", 3}});
  const std::string updated_at = status["updated_at"];
  CHECK(updated_at.size() == 24);
  CHECK(updated_at.back() == 'Z');
  auto parsed = jobwarden::detail::parse_rfc3339(updated_at);
  REQUIRE(parsed);
  CHECK(std::chrono::abs(std::chrono::system_clock::now() - *parsed) < 1min);
}

TEST_CASE("progress updates within the interval are coalesced and the latest value wins") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.progress(1, 100));  // the first update is written at once
  CHECK(writer.write_count() == 1);
  for (int done = 2; done <= 50; ++done) {
    clock.advance(10ms);
    REQUIRE_FALSE(writer.progress(static_cast<std::uint64_t>(done), 100));
  }
  CHECK(writer.write_count() == 1);  // 490 ms of updates: held back
  CHECK(writer.has_pending_update());
  CHECK(read_json(dir / "status.json")["progress"] == json{{"done", 1}, {"total", 100}});

  clock.advance(600ms);  // the interval has passed: the next call writes
  REQUIRE_FALSE(writer.progress(51, 100));
  CHECK(writer.write_count() == 2);
  CHECK(read_json(dir / "status.json")["progress"] == json{{"done", 51}, {"total", 100}});
  CHECK_FALSE(writer.has_pending_update());
}

TEST_CASE("a batch of updates is written once, whatever the throttle says") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.batch([&] {
    CHECK_FALSE(writer.progress(3, 9));  // would be written at once outside a batch
    CHECK_FALSE(writer.message("scanning"));
    CHECK_FALSE(writer.set_error("slow disk"));  // written at once outside a batch
    CHECK_FALSE(writer.result(json{{"found", 1}}));
    CHECK_FALSE(writer.set_state(WorkerState::succeeded));
    CHECK(writer.set_state(WorkerState::running) == jobwarden::errc::invalid_state_transition);
  }));
  CHECK(writer.write_count() == 1);
  const json status = read_json(dir / "status.json");
  CHECK(status["seq"] == 1);
  CHECK(status["progress"] == json{{"done", 3}, {"total", 9}});
  CHECK(status["message"] == "scanning");
  CHECK(status["error"] == "slow disk");
  CHECK(status["state"] == "succeeded");
  CHECK_FALSE(writer.has_pending_update());
  // A batch that changes nothing writes nothing; one with a heartbeat writes once.
  REQUIRE_FALSE(writer.batch([] {}));
  CHECK(writer.write_count() == 1);
  REQUIRE_FALSE(writer.batch([&] { writer.heartbeat(); }));
  CHECK(writer.write_count() == 2);
}

TEST_CASE("messages are throttled together with progress") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.message("starting"));
  clock.advance(100ms);
  REQUIRE_FALSE(writer.message("scanning src/"));
  REQUIRE_FALSE(writer.progress(4, 10));
  CHECK(read_json(dir / "status.json")["message"] == "starting");
  clock.advance(1s);
  REQUIRE_FALSE(writer.heartbeat());
  const json status = read_json(dir / "status.json");
  CHECK(status["message"] == "scanning src/");
  CHECK(status["progress"] == json{{"done", 4}, {"total", 10}});
}

TEST_CASE("state changes, errors and results are written at once, with any held-back progress") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.progress(1, 3));
  clock.advance(1ms);
  REQUIRE_FALSE(writer.progress(3, 3));  // held back
  CHECK(writer.write_count() == 1);
  clock.advance(1ms);
  REQUIRE_FALSE(writer.result(json{{"dependencies", 12}}));
  CHECK(writer.write_count() == 2);
  json status = read_json(dir / "status.json");
  CHECK(status["result"] == json{{"dependencies", 12}});
  CHECK(status["progress"] == json{{"done", 3}, {"total", 3}});

  clock.advance(1ms);
  REQUIRE_FALSE(writer.set_error("repository not found"));
  clock.advance(1ms);
  REQUIRE_FALSE(writer.set_state("failed"));
  CHECK(writer.write_count() == 4);
  status = read_json(dir / "status.json");
  CHECK(status["state"] == "failed");
  CHECK(status["error"] == "repository not found");
}

TEST_CASE("a held-back update is written by flush and by the destructor") {
  jwtest::TempDir dir;
  FakeClock clock;
  {
    Writer writer(dir / "status.json", fake_clock_options(clock));
    REQUIRE_FALSE(writer.progress(1, 10));
    clock.advance(1ms);
    REQUIRE_FALSE(writer.progress(2, 10));
    REQUIRE_FALSE(writer.flush());
    CHECK(read_json(dir / "status.json")["progress"] == json{{"done", 2}, {"total", 10}});
    CHECK_FALSE(writer.flush());  // nothing pending: nothing written
    CHECK(writer.write_count() == 2);
    clock.advance(1ms);
    REQUIRE_FALSE(writer.progress(3, 10));
    CHECK(writer.has_pending_update());
  }
  CHECK(read_json(dir / "status.json")["progress"] == json{{"done", 3}, {"total", 10}});
}

TEST_CASE("heartbeat writes only once the interval has passed") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock, 5s));
  REQUIRE_FALSE(writer.heartbeat());
  CHECK(writer.write_count() == 1);
  clock.advance(4s);
  REQUIRE_FALSE(writer.heartbeat());
  CHECK(writer.write_count() == 1);
  clock.advance(1s);
  REQUIRE_FALSE(writer.heartbeat());
  CHECK(writer.write_count() == 2);
  CHECK(read_json(dir / "status.json")["seq"] == 2);
}

TEST_CASE("a worker cannot move out of a terminal state") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.set_state("succeeded"));
  CHECK(writer.set_state("running") == jobwarden::errc::invalid_state_transition);
  CHECK(writer.set_state("no-such-state") == jobwarden::errc::invalid_argument);
  CHECK(read_json(dir / "status.json")["state"] == "succeeded");
  CHECK(writer.state() == WorkerState::succeeded);
}

TEST_CASE("a write into a directory that does not exist is returned and counted, never thrown") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "gone/status.json", fake_clock_options(clock));
  std::error_code ec;
  CHECK_NOTHROW(ec = writer.result(json{{"files", 1}}));
  CHECK(ec == std::errc::no_such_file_or_directory);
  CHECK(writer.write_failures() == 1);
  CHECK(writer.last_error() == std::errc::no_such_file_or_directory);
  CHECK(writer.has_pending_update());
  // The retry is throttled like progress, so a broken disk is not hammered.
  CHECK_FALSE(writer.progress(1, 2));
  CHECK(writer.write_failures() == 1);
}

TEST_CASE("a failed write keeps the last good status file and the update stays pending") {
  jwtest::TempDir dir;
  const std::string path = dir / "status.json";
  const int child_result = jwstatus::run_in_child([&] {
    FakeClock clock;
    Writer writer(path, fake_clock_options(clock));
    if (writer.set_state("running")) return 10;
    const std::string good = jwtest::read_file(path);
    // Lower the file size limit below the next status, as a full disk would.
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {};
    limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(good.size() + 10);
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 11;
    if (writer.result(json{{"big", std::string(4096, 'x')}}) != std::errc::file_too_large) return 12;
    if (writer.write_failures() != 1 || !writer.has_pending_update()) return 13;
    if (jwtest::read_file(path) != good) return 14;
    return 0;
  });
  CHECK(child_result == 0);
  CHECK(json::parse(jwtest::read_file(path))["result"].is_null());
}

TEST_CASE("a status larger than the size limit is refused before it is written") {
  jwtest::TempDir dir;
  FakeClock clock;
  auto options = fake_clock_options(clock);
  options.max_file_size = 512;
  Writer writer(dir / "status.json", options);
  REQUIRE_FALSE(writer.set_state("running"));
  CHECK(writer.result(std::string(1000, 'x')) == jobwarden::errc::oversized_file);
  CHECK(read_json(dir / "status.json")["result"].is_null());
}

TEST_CASE("a message that is not valid UTF-8 is written with replacement characters") {
  jwtest::TempDir dir;
  FakeClock clock;
  Writer writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.message(std::string("scanning caf\xe9.txt")));
  const std::string message = read_json(dir / "status.json")["message"];
  CHECK(message == "scanning caf\xef\xbf\xbd.txt");
}

TEST_CASE("a user-defined progress type round-trips through the writer and the aggregator") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "scan");
  job.write_job(jwstatus::job_document("scan", "running", 0, 0));
  {
    FakeClock clock;
    jobwarden::WorkerStatusWriter<ScanProgress, std::chrono::steady_clock>::Options options;
    options.now = [&clock] { return clock.now; };
    jobwarden::WorkerStatusWriter<ScanProgress> writer(job.layout.status_file("1"), options);
    REQUIRE_FALSE(writer.progress(ScanProgress{40, 120, "src/main.c"}));
  }
  jobwarden::StatusAggregator<ScanProgress> aggregator(dir.path());
  const auto status = aggregator.read("scan");
  CHECK(status.errors.empty());
  const auto* worker = status.find_worker("1");
  REQUIRE(worker);
  REQUIRE(worker->progress);
  CHECK(worker->progress->files_done == 40);
  CHECK(worker->progress->files_total == 120);
  CHECK(worker->progress->current == "src/main.c");
  CHECK(status.to_json()["workers"][0]["progress"] ==
        json{{"files_done", 40}, {"files_total", 120}, {"current", "src/main.c"}});
}

TEST_CASE("a forked worker rewriting its status thousands of times is always readable by the aggregator") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "busy");
  job.write_job(jwstatus::job_document("busy", "running", 0, 0));
  const std::string status_file = job.layout.status_file("1");
  {
    Writer first(status_file);
    REQUIRE_FALSE(first.progress(0, 20000));
  }
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    Writer::Options options;
    options.throttle_interval = std::chrono::milliseconds(0);  // every update is a write
    Writer writer(status_file, options);
    int failures = 0;
    for (std::uint64_t done = 1; done <= 20000; ++done) {
      if (writer.progress(done, 20000)) ++failures;
      if (done % 2 == 0) writer.message(std::string(done % 7 * 300, 'm'));
    }
    ::_exit(failures == 0 ? 0 : 1);
  }
  jobwarden::StatusAggregator<> aggregator(dir.path());
  long reads = 0, errors = 0, went_back = 0;
  std::uint64_t last_done = 0;
  int child_status = 0;
  for (;;) {
    const pid_t reaped = ::waitpid(child, &child_status, WNOHANG);
    const auto status = aggregator.read("busy");
    ++reads;
    errors += static_cast<long>(status.errors.size());
    const auto* worker = status.find_worker("1");
    if (worker && worker->progress) {
      const auto done = (*worker->progress)["done"].get<std::uint64_t>();
      if (done < last_done) ++went_back;
      last_done = done;
    }
    if (reaped == child) break;
  }
  REQUIRE(WIFEXITED(child_status));
  CHECK(WEXITSTATUS(child_status) == 0);
  CHECK(errors == 0);
  CHECK(went_back == 0);
  CHECK(last_done == 20000);
  CHECK(reads > 1);
}

TEST_CASE("a forked supervisor appending to and compacting its journal is always readable by the aggregator") {
  jwtest::TempDir dir;
  const jobwarden::detail::JobLayout layout{dir.path(), "appending"};
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    jobwarden::detail::JobRecorderOptions options;
    options.compact_bytes = 64 * 1024;  // compacts every few hundred lines
    jobwarden::detail::JobRecorder recorder(layout, options);
    std::error_code ec;
    recorder.open(ec);
    const char byte = ec ? 'x' : 'k';
    (void)!::write(ready[1], &byte, 1);
    ::close(ready[1]);
    if (ec) ::_exit(2);
    int failures = 0;
    for (int attempt = 1; attempt <= 3000; ++attempt) {
      for (int k = 1; k <= 4; ++k) {
        jobwarden::WorkerInfo info;
        info.id = std::to_string(k);
        info.attempt = attempt;
        info.state = jobwarden::WorkerState::running;
        info.argv = {"scan", std::string(static_cast<std::size_t>(attempt % 13) * 20, 'a')};
        recorder.write_worker(info, ec);
        if (ec) ++failures;
      }
      recorder.compact_if_due(ec);
      if (ec) ++failures;
    }
    ::_exit(failures == 0 && recorder.journal_generation() > 3 ? 0 : 1);
  }
  ::close(ready[1]);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  jobwarden::StatusAggregator<> aggregator(dir.path());
  long reads = 0, errors = 0, went_back = 0;
  int last_attempt = 0;
  int child_status = 0;
  for (;;) {
    const pid_t reaped = ::waitpid(child, &child_status, WNOHANG);
    const auto status = aggregator.read("appending");
    ++reads;
    errors += static_cast<long>(status.errors.size());
    if (const auto* worker = status.find_worker("4")) {
      if (worker->attempt < last_attempt) ++went_back;
      last_attempt = worker->attempt;
    }
    if (reaped == child) break;
  }
  CHECK(byte == 'k');
  REQUIRE(WIFEXITED(child_status));
  CHECK(WEXITSTATUS(child_status) == 0);
  CHECK(errors == 0);
  CHECK(went_back == 0);
  CHECK(last_attempt == 3000);
  CHECK(reads > 1);
}

TEST_CASE("a writer that continues an existing status keeps the fields it does not change") {
  jwtest::TempDir dir;
  const std::string path = dir / "status.json";
  {
    Writer first(path);
    REQUIRE_FALSE(first.message("scanning src/"));
    REQUIRE_FALSE(first.result(json{{"found", 2}}));
  }
  Writer::Options options;
  options.continue_existing = true;
  {
    Writer report(path, options);  // what `jobwarden report --done 5 --total 9` does
    REQUIRE_FALSE(report.progress(5, 9));
    REQUIRE_FALSE(report.flush());
  }
  const json status = read_json(path);
  CHECK(status["message"] == "scanning src/");
  CHECK(status["result"] == json{{"found", 2}});
  CHECK(status["progress"] == json{{"done", 5}, {"total", 9}});
  CHECK(status["seq"] == 3);
}

// --- The hand-written JSON text of the worker-side writer (json_text.hpp,
// status_text.hpp) against nlohmann's serializer and parser.

namespace {

/// Awkward strings: escapes, control characters, and every kind of invalid UTF-8.
const std::vector<std::string>& awkward_strings() {
  static const std::vector<std::string> strings = {
      "", "plain", "quote \" and back\\slash", "tab\tnew\nline\rcr\bbs\fff", std::string("nul\0byte", 8),
      "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "bad \xff byte", "overlong \xc0\xaf",
      "surrogate \xed\xa0\x80", "cut \xe2\x82", "\xe2\x82", "\xf0\x9f\x98", "\xf0\x9f\x98x", "\xe2(\xa1",
      "\x80\x80\x80", "\xf4\x90\x80\x80 above U+10FFFF", "\xf5\xf8\xfe\xff", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
      "/slash/ and unicode \xe2\x80\xa8", "\xc2", "a\xc2", "\xed\x9f\xbf ok \xee\x80\x80 ok"};
  return strings;
}

/// `count` strings of random bytes, biased toward UTF-8 lead and continuation bytes.
std::vector<std::string> random_byte_strings(std::size_t count, unsigned seed) {
  std::mt19937 random(seed);
  static const unsigned char interesting[] = {0x00, 0x1f, 0x22, 0x5c, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0,
                                              0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90, 'a'};
  std::vector<std::string> strings;
  for (std::size_t i = 0; i < count; ++i) {
    std::string text;
    const std::size_t length = random() % 12;
    for (std::size_t k = 0; k < length; ++k) {
      text += static_cast<char>(random() % 2 ? interesting[random() % sizeof interesting] : random() % 256);
    }
    strings.push_back(std::move(text));
  }
  return strings;
}

}  // namespace

TEST_CASE("JSON strings written by hand are nlohmann's, invalid UTF-8 replaced the same way") {
  std::vector<std::string> strings = awkward_strings();
  for (std::string& text : random_byte_strings(20000, 14)) strings.push_back(std::move(text));
  for (const std::string& text : strings) {
    CAPTURE(text);
    std::string written;
    jobwarden::detail::append_json_string(written, text);
    CHECK(written == jobwarden::detail::dump_json(json(text)));
    CHECK(jobwarden::detail::is_valid_utf8(text) == (written.find("\xEF\xBF\xBD") == std::string::npos ||
                                                     text.find("\xEF\xBF\xBD") != std::string::npos));
  }
}

TEST_CASE("seconds written by hand read back as the microseconds, in nlohmann's form below 100 us") {
  std::vector<long long> micros = {0, 1, 5, 9, 10, 11, 50, 68, 90, 99, 100, 101, 682, 999, 1000, 1'000'000,
                                   12'000'010, 123'456'789, 987'654'321'012};
  for (long long m = 0; m < 3000; ++m) micros.push_back(m);
  const std::size_t positive = micros.size();
  for (std::size_t i = 0; i < positive; ++i) micros.push_back(-micros[i]);
  for (long long m : micros) {
    CAPTURE(m);
    std::string written;
    jobwarden::detail::append_seconds(written, std::chrono::microseconds(m));
    // Exactly the decimal microseconds: the double closest to m / 10^6.
    CHECK(json::parse(written).get<double>() == static_cast<double>(m) / 1e6);
    // Below 100 us, nlohmann's exponent form ("6.8e-05"), as when nlohmann
    // wrote those; above, decimal digits to the microsecond (nlohmann may
    // write a neighbouring double's 17 digits there: "0.0006489999999999999").
    if (m > -100 && m < 100) {
      CHECK(written == jobwarden::detail::dump_json(json(static_cast<double>(m) / 1e6)));
    }
  }
}

TEST_CASE("the JSON text check agrees with nlohmann's parser") {
  std::vector<std::string> texts = {
      "0", "-0", "1", "-1", "01", "1.", ".5", "1.5", "1e5", "1E+5", "1e-5", "1e", "-", "+1", "1e400", "-1e400",
      "1e-400", "123456789012345678901234567890", std::string(400, '9'), "0.000001", "true", "false", "null",
      "tru", "nul", "\"\"", "\"a\"", "\"\\u0041\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"",
      "\"\\ud83dx\"", "\"\\x\"", "\"\\/\"", "\"a\nb\"", "\"\xff\"", "\"caf\xc3\xa9\"", "[]", "{}", "[1,2]", "[1,]",
      "[,1]", "{\"a\":1}", "{\"a\":1,}", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1 \"b\":2}", " [ 1 , { } ] ",
      "[[[[[]]]]]", "[[[[[]]]]", "{\"a\":[{\"b\":null}]}", "", " ", "1 2", "[1] x", "\t{\"done\": 3}\n",
      "{\"x\":{\"y\":{\"z\":[true,false,null,\"\\\"\"]}}}"};
  texts.push_back(std::string(100000, '[') + std::string(100000, ']'));
  // Random mutations of valid documents: a byte changed, removed or repeated.
  std::mt19937 random(7);
  const std::string valid_documents[] = {"{\"done\":3,\"total\":9,\"file\":\"caf\xc3\xa9\"}", "[1.5e3,-0,true,null,\"\\u00e9\"]",
                               "{\"a\":{\"b\":[1,{\"c\":\"\\ud83d\\ude00\"}]}}"};
  const char alphabet[] = "{}[],:\"\\ue.-+0129atfnl \x80\xc3\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string text = valid_documents[random() % 3];
    const int edits = 1 + static_cast<int>(random() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = random() % text.size();
      switch (random() % 3) {
        case 0: text[at] = alphabet[random() % (sizeof alphabet - 1)]; break;
        case 1: text.erase(at, 1); break;
        default: text.insert(at, 1, text[at]); break;
      }
    }
    texts.push_back(std::move(text));
  }
  for (const std::string& text : texts) {
    if (!text.empty() && static_cast<unsigned char>(text[0]) == 0xEF) continue;  // nlohmann skips a BOM
    CAPTURE(text.substr(0, 200));
    CHECK(jobwarden::detail::is_valid_json_text(text) == json::accept(text));
  }
}

TEST_CASE("status.json written by hand is nlohmann's text of the same record") {
  using jobwarden::detail::StatusRecord;
  using jobwarden::detail::StatusRecordText;
  std::vector<std::string> strings = awkward_strings();
  for (std::string& text : random_byte_strings(2000, 21)) strings.push_back(std::move(text));
  std::size_t shape = 0;
  for (const std::string& text : strings) {
    CAPTURE(text);
    ++shape;
    StatusRecord record;
    StatusRecordText light;
    record.job_id = light.job_id = shape % 2 ? "scan-42" : text;
    record.worker_id = light.worker_id = text;
    record.attempt = light.attempt = static_cast<int>(shape % 4);
    record.pid = light.pid = shape % 3 ? 4242 : 0;
    record.process_start_time = light.process_start_time = shape % 5 ? 18446744073709551615ULL : 0;
    if (shape % 7) record.state = light.state = jobwarden::all_worker_states[shape % jobwarden::all_worker_states.size()];
    if (shape % 2) {
      record.progress = json{{"done", shape}, {"total", 9}, {"file", text}};
      light.progress = jobwarden::detail::dump_json(record.progress);
    }
    if (shape % 3) record.message = light.message = text;
    if (shape % 4) {
      record.result = json::array({text, 1.5, nullptr, json::object()});
      light.result = jobwarden::detail::dump_json(record.result);
    }
    if (shape % 5 == 1) record.error = light.error = text;
    record.seq = light.seq = shape * 1000;
    if (shape % 6) {
      record.updated_at = light.updated_at =
          std::chrono::system_clock::time_point(std::chrono::milliseconds(1'795'000'000'123 + static_cast<long long>(shape)));
    }
    CHECK(jobwarden::detail::status_text(light) ==
          jobwarden::detail::dump_json(jobwarden::detail::status_record_to_json(record)));
  }
}

namespace {
/// The file's text with its heartbeat blanked: two writers write at different times.
std::string without_heartbeat(std::string text) {
  const std::string key = "\"updated_at\":\"";
  const std::size_t at = text.find(key);
  if (at != std::string::npos) text.replace(at + key.size(), 24, std::string(24, '-'));
  return text;
}
}  // namespace

TEST_CASE("the worker-side writer writes what the typed writer writes") {
  jwtest::TempDir dir;
  FakeClock typed_clock, light_clock;
  Writer typed(dir / "typed.json", fake_clock_options(typed_clock));
  jobwarden::WorkerStatusWriterBase<> light(dir / "light.json", fake_clock_options(light_clock));
  auto same = [&] { CHECK(without_heartbeat(jwtest::read_file(dir / "typed.json")) ==
                          without_heartbeat(jwtest::read_file(dir / "light.json"))); };
  REQUIRE_FALSE(typed.progress(3, 9));
  REQUIRE_FALSE(light.progress(3, 9));
  same();
  typed_clock.advance(2s);
  light_clock.advance(2s);
  REQUIRE_FALSE(typed.message("scanning \"src\"\t\xff caf\xc3\xa9"));
  REQUIRE_FALSE(light.message("scanning \"src\"\t\xff caf\xc3\xa9"));
  same();
  REQUIRE_FALSE(typed.progress(json{{"done", 4}, {"total", 9}, {"file", "a.c"}}));
  REQUIRE_FALSE(light.progress_json(" {\"done\":4,\"file\":\"a.c\",\"total\":9} "));
  REQUIRE_FALSE(typed.flush());
  REQUIRE_FALSE(light.flush());
  same();
  REQUIRE_FALSE(typed.result(json{{"manifests", {"a", "b"}}, {"ratio", 0.25}}));
  REQUIRE_FALSE(light.result_json("{\"manifests\":[\"a\",\"b\"],\"ratio\":0.25}"));
  same();
  REQUIRE_FALSE(typed.set_error("no \xc0 way"));
  REQUIRE_FALSE(light.set_error("no \xc0 way"));
  REQUIRE_FALSE(typed.set_state(WorkerState::failed));
  REQUIRE_FALSE(light.set_state(WorkerState::failed));
  same();
  CHECK(typed.seq() == light.seq());
}

TEST_CASE("the worker-side writer refuses JSON text that is not JSON") {
  jwtest::TempDir dir;
  FakeClock clock;
  jobwarden::WorkerStatusWriterBase<> writer(dir / "status.json", fake_clock_options(clock));
  REQUIRE_FALSE(writer.progress_json("{\"done\":1}"));
  const std::string before = jwtest::read_file(dir / "status.json");
  CHECK(writer.progress_json("{\"done\":") == jobwarden::errc::invalid_argument);
  CHECK(writer.result_json("[1,2") == jobwarden::errc::invalid_argument);
  CHECK(writer.result_json("1e999") == jobwarden::errc::invalid_argument);
  CHECK(writer.write_failures() == 3);
  CHECK(jwtest::read_file(dir / "status.json") == before);
  CHECK_FALSE(writer.result_json("\"ok\""));
  CHECK(read_json(dir / "status.json")["result"] == "ok");
  CHECK(read_json(dir / "status.json")["progress"] == json{{"done", 1}});
}

TEST_CASE("the worker-side writer continues an existing file like the typed one") {
  jwtest::TempDir dir;
  FakeClock clock;
  {
    Writer first(dir / "status.json", fake_clock_options(clock));
    REQUIRE_FALSE(first.progress(json{{"done", 3}, {"total", 9}, {"file", "caf\xc3\xa9 \"x\""}}));
    REQUIRE_FALSE(first.message("line\none \\ \xe2\x82\xac \xf0\x9f\x98\x80"));
    REQUIRE_FALSE(first.result(json::array({1, "two", nullptr})));
    REQUIRE_FALSE(first.set_error("bad \u00e9"));
  }
  const std::string original = jwtest::read_file(dir / "status.json");
  Writer::Options options = fake_clock_options(clock);
  options.continue_existing = true;
  std::string typed_text, light_text;
  {
    Writer typed(dir / "status.json", options);
    REQUIRE_FALSE(typed.flush());
    CHECK_FALSE(typed.has_pending_update());
    REQUIRE_FALSE(typed.set_state(WorkerState::succeeded));
    typed_text = without_heartbeat(jwtest::read_file(dir / "status.json"));
  }
  jwstatus::write_text(dir / "status.json", original);
  {
    jobwarden::WorkerStatusWriterBase<> light(dir / "status.json", options);
    REQUIRE_FALSE(light.set_state(WorkerState::succeeded));
    light_text = without_heartbeat(jwtest::read_file(dir / "status.json"));
  }
  CHECK(light_text == typed_text);
  const json status = json::parse(light_text);
  CHECK(status["seq"] == 4);
  CHECK(status["message"] == "line\none \\ \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(status["progress"]["file"] == "caf\xc3\xa9 \"x\"");

  // A file of another attempt, or of the wrong shape, is not continued.
  for (const std::string& content : {std::string("{\"schema_version\":1,\"attempt\":2,\"seq\":40}"),
                                     std::string("{\"schema_version\":2,\"seq\":40}"),
                                     std::string("{\"seq\":40}"),
                                     std::string("{\"schema_version\":1,\"seq\":-1}"),
                                     std::string("{\"schema_version\":1,\"seq\":40,\"state\":\"dreaming\"}"),
                                     std::string("[1]"), std::string("{\"schema_version\":1,\"seq\":40")}) {
    CAPTURE(content);
    jwstatus::write_text(dir / "status.json", content);
    jobwarden::WorkerStatusWriterBase<> light(dir / "status.json", options);
    REQUIRE_FALSE(light.flush());
    REQUIRE_FALSE(light.set_state(WorkerState::running));
    CHECK(light.seq() == 1);
    // The typed writer (nlohmann's parser, status_record_from_json) refuses
    // the same files: the two parsers keep one rule.
    jwstatus::write_text(dir / "status.json", content);
    Writer typed(dir / "status.json", options);
    REQUIRE_FALSE(typed.set_state(WorkerState::running));
    CHECK(typed.seq() == 1);
  }
  jwstatus::write_text(dir / "status.json", "{\"schema_version\":1,\"attempt\":1,\"seq\":40,\"progress\":null}");
  jobwarden::WorkerStatusWriterBase<> light(dir / "status.json", options);
  REQUIRE_FALSE(light.message("on"));
  CHECK(light.seq() == 41);
}
