// What a reader of a job directory says about workers' log files: their
// paths, and the end of the stderr log of a worker that did not succeed
// (`stderr_tail`): bounded, cut at a line, valid UTF-8, read safely.
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/detail/log_tail.hpp>
#include <jobwarden/status_aggregator.hpp>

#include <unistd.h>

#include <string>

#include "catch.hpp"
#include "status_support.hpp"
#include "live_job.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::StatusAggregator;
using jobwarden::StatusAggregatorOptions;
using jobwarden::WorkerInfo;
using jobwarden::WorkerState;
using jobwarden::detail::JobLayout;
using jobwarden::detail::JobRecorder;
using jwstatus::errors_of;
using jwstatus::json;
using jwstatus::LiveJob;

namespace {

WorkerInfo ended_worker(const std::string& id, WorkerState state) {
  WorkerInfo info = jwstatus::worker_info(id, state);
  if (state == WorkerState::failed) info.exit_code = 3;
  if (state == WorkerState::succeeded) info.exit_code = 0;
  return info;
}

bool is_valid_utf8(const std::string& text) {
  return jobwarden::detail::valid_utf8(text) == text;
}

}  // namespace

TEST_CASE("a failed worker's stderr tail and every worker's log paths are in the aggregated JSON") {
  LiveJob job;
  job.add(ended_worker("1", WorkerState::succeeded));
  job.add(ended_worker("2", WorkerState::failed));
  job.add(ended_worker("3", WorkerState::crashed));
  job.write_stdout("1", "all good\n");
  job.write_stderr("1", "a warning\n");
  job.write_stderr("2", "reading input\nboom: no such table\n");
  // Worker 3 printed nothing: no log files at all.

  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  CHECK(status.errors.empty());
  const auto* ok = status.find_worker("1");
  const auto* failed = status.find_worker("2");
  const auto* silent = status.find_worker("3");
  REQUIRE(ok != nullptr);
  REQUIRE(failed != nullptr);
  REQUIRE(silent != nullptr);
  CHECK(ok->stdout_log == job.layout.stdout_file("1"));
  CHECK(ok->stderr_log == job.layout.stderr_file("1"));
  CHECK_FALSE(ok->stderr_tail.has_value());  // it succeeded
  CHECK_FALSE(failed->stdout_log.has_value());
  CHECK(failed->stderr_log == job.layout.stderr_file("2"));
  CHECK(failed->stderr_tail == std::string("reading input\nboom: no such table\n"));
  CHECK_FALSE(silent->stdout_log.has_value());
  CHECK_FALSE(silent->stderr_log.has_value());
  CHECK_FALSE(silent->stderr_tail.has_value());

  const json document = status.to_json();
  const json& workers = document["workers"];
  REQUIRE(workers.size() == 3);
  for (const json& worker : workers) {
    CHECK(worker.contains("stdout_log"));
    CHECK(worker.contains("stderr_log"));
    CHECK(worker.contains("stderr_tail"));
  }
  CHECK(workers[0]["stderr_tail"].is_null());
  CHECK(workers[1]["stderr_tail"] == "reading input\nboom: no such table\n");
  CHECK(workers[1]["stdout_log"].is_null());
  CHECK(workers[2]["stderr_log"].is_null());

  // Typed readers get the same fields.
  StatusAggregator<json> typed(job.dir.path());
  const auto again = typed.read("scan-42");
  REQUIRE(again.find_worker("2") != nullptr);
  CHECK(again.find_worker("2")->stderr_tail == failed->stderr_tail);
}

TEST_CASE("the stderr tail is at most 2 KiB of the log's end and starts at a line") {
  LiveJob job;
  job.add(ended_worker("1", WorkerState::failed));
  job.add(ended_worker("2", WorkerState::failed));
  std::string text;
  for (int line = 0; text.size() < 100'000; ++line) text += "line " + std::to_string(line) + " of the log\n";
  text += "the last words";  // no newline at the end
  job.write_stderr("1", text);
  // A single line longer than the tail: cut, but never in a character.
  std::string long_line;
  while (long_line.size() < 5000) long_line += "\xC3\xA9";  // é
  job.write_stderr("2", long_line);

  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  const auto tail = status.find_worker("1")->stderr_tail.value_or("");
  CHECK(tail.size() <= jobwarden::detail::stderr_tail_bytes);
  CHECK(tail.size() > jobwarden::detail::stderr_tail_bytes - 100);  // not much less either
  REQUIRE(text.size() > tail.size());
  CHECK(text.compare(text.size() - tail.size(), tail.size(), tail) == 0);  // the end of the log
  CHECK(text[text.size() - tail.size() - 1] == '\n');                     // from a line start
  CHECK(tail.rfind("the last words") != std::string::npos);

  const auto cut = status.find_worker("2")->stderr_tail.value_or("");
  CHECK(cut.size() <= jobwarden::detail::stderr_tail_bytes);
  CHECK(cut.size() >= jobwarden::detail::stderr_tail_bytes - 2);
  CHECK(cut.find("\xEF\xBF\xBD") == std::string::npos);  // no half character replaced
  CHECK(is_valid_utf8(cut));
}

TEST_CASE("invalid UTF-8 in a stderr log is replaced, and the JSON can be written") {
  LiveJob job;
  job.add(ended_worker("1", WorkerState::failed));
  job.write_stderr("1", std::string("bad \xFF\xFE bytes\nan overlong \xC0\xAF slash\nsurrogate \xED\xA0\x80 end\n") +
                            "cut \xE2\x82");
  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");
  const std::string tail = status.find_worker("1")->stderr_tail.value_or("");
  CHECK(is_valid_utf8(tail));
  CHECK(tail.find("bad \xEF\xBF\xBD\xEF\xBF\xBD bytes\n") == 0);
  CHECK(tail.find("surrogate \xEF\xBF\xBD") != std::string::npos);
  CHECK(tail.find("cut \xEF\xBF\xBD") != std::string::npos);
  CHECK_NOTHROW(status.to_json().dump());
}

TEST_CASE("valid UTF-8 passes through, each ill-formed sequence becomes one U+FFFD") {
  using jobwarden::detail::valid_utf8;
  const std::string good = "ascii, \xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80";
  CHECK(valid_utf8(good) == good);
  CHECK(valid_utf8("\x80") == "\xEF\xBF\xBD");
  CHECK(valid_utf8("\xF0\x9F\x98") == "\xEF\xBF\xBD");  // a truncated 4-byte sequence
  CHECK(valid_utf8("\xF4\x90\x80\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // past U+10FFFF
  CHECK(valid_utf8(std::string("a\0b", 3)) == std::string("a\0b", 3));
}

TEST_CASE("a symlinked or special stderr log is refused, never followed") {
  LiveJob job;
  job.add(ended_worker("1", WorkerState::failed));
  job.add(ended_worker("2", WorkerState::failed));
  const std::string secret = job.dir.path() + "/secret";
  jwstatus::write_text(secret, "the secret\n");
  REQUIRE(::symlink(secret.c_str(), job.layout.stderr_file("1").c_str()) == 0);
  REQUIRE(::mkfifo(job.layout.stderr_file("2").c_str(), 0600) == 0);

  StatusAggregator<> aggregator(job.dir.path());
  const auto status = aggregator.read("scan-42");  // a FIFO would hang a careless reader
  const auto* linked = status.find_worker("1");
  REQUIRE(linked != nullptr);
  CHECK_FALSE(linked->stderr_tail.has_value());
  CHECK_FALSE(linked->stderr_log.has_value());
  CHECK(status.to_json().dump().find("the secret") == std::string::npos);
  const auto errors = errors_of(status);
  CHECK(errors.at("workers/1.stderr.log") == "symbolic link not followed");
  CHECK(errors.at("workers/2.stderr.log") == "not a regular file");
  CHECK(status.find_worker("2")->state == WorkerState::failed);  // the rest still reads
}

TEST_CASE("a stderr log that changes after the worker ended is read again") {
  const bool watch = GENERATE(true, false);
  CAPTURE(watch);
  LiveJob job;
  job.add(ended_worker("1", WorkerState::failed));
  job.write_stderr("1", "first\n");
  StatusAggregatorOptions options;
  options.watch_for_changes = watch;
  options.in_place_write_check_interval = 0ms;  // unwatched: files are checked on every read
  options.recent_change_window = 0ms;           // trusted at once: only a change shows
  StatusAggregator<> aggregator(job.dir.path(), options);
  CHECK(aggregator.read("scan-42").find_worker("1")->stderr_tail == std::string("first\n"));
  CHECK(aggregator.read("scan-42").find_worker("1")->stderr_tail == std::string("first\n"));  // from the cache
  {
    std::ofstream out(job.layout.stderr_file("1"), std::ios::app);
    out << "second\n";
  }
  CHECK(aggregator.read("scan-42").find_worker("1")->stderr_tail == std::string("first\nsecond\n"));
}

TEST_CASE("a worker found lost when its supervisor died gets its stderr tail") {
  jwtest::TempDir dir;
  jwstatus::CraftedJob job(dir.path(), "dead");
  // A supervisor and a worker that no longer run (start time 1: never alive).
  job.write_job(jwstatus::job_document("dead", "running", 999999, 1));
  job.write_process("1", jwstatus::process_document("1", "running", 999998, 1));
  jwstatus::write_text(job.layout.stderr_file("1"), "killed mid-way\n");
  StatusAggregator<> aggregator(dir.path());
  const auto status = aggregator.read("dead");
  CHECK(status.state == jobwarden::JobState::lost);
  REQUIRE(status.find_worker("1") != nullptr);
  CHECK(status.find_worker("1")->state == WorkerState::lost);
  CHECK(status.find_worker("1")->stderr_tail == std::string("killed mid-way\n"));
}
