// A worker's label (`WorkerSpec::label`) and its command (argv): checked at
// submit, recorded in the journal, and shown by every reader (WorkerInfo,
// JobStatus, the aggregated JSON), through the reader's cache too.
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/status_aggregator.hpp>
#include <jobwarden/worker_status_writer.hpp>

#include <map>
#include <string>
#include <vector>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "live_job.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::StatusAggregator;
using jobwarden::WorkerInfo;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;
using jwstatus::json;
using jwstatus::LiveJob;

namespace {
jobwarden::SupervisorOptions in(const jwtest::TempDir& dir) {
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "named";
  return options;
}

/// Text a host might choose: newlines, quotes, a backslash, a tab, a control
/// character, non-ASCII.
const std::string awkward_label = "repo \"core\"\nline two\\ with\ttab \x01 and \xc3\xa9t\xc3\xa9 \xe2\x9c\x93";

/// The worker `id` of the aggregated JSON `status`.
json worker_json(const json& status, const std::string& id) {
  for (const auto& worker : status["workers"]) {
    if (worker["id"] == id) return worker;
  }
  FAIL("no worker " << id);
  return nullptr;
}
}  // namespace

TEST_CASE("a worker's label and argv reach WorkerInfo, the journal and the aggregated JSON") {
  jwtest::TempDir dir;
  std::vector<std::string> argv_plain = {"/bin/sh", "-c", "exit 0", "arg with 'quotes'"};
  {
    JobSupervisor<> supervisor(in(dir));
    WorkerSpec labelled;
    labelled.id = "core";
    labelled.label = awkward_label;
    labelled.argv = {"/bin/sh", "-c", "exit 3"};
    WorkerSpec plain;
    plain.id = "plain";
    plain.argv = argv_plain;
    REQUIRE(supervisor.wait(supervisor.submit(labelled), 30s));
    REQUIRE(supervisor.wait(supervisor.submit(plain), 30s));
    CHECK(supervisor.info("core").label == awkward_label);
    CHECK(supervisor.info("core").argv == labelled.argv);
    CHECK(supervisor.info("plain").label.empty());
    supervisor.finish();
    supervisor.poll();

    // The supervisor's own view goes through the aggregator.
    const auto status = supervisor.status();
    const auto* core = status.find_worker("core");
    REQUIRE(core != nullptr);
    CHECK(core->state == WorkerState::failed);
    REQUIRE(core->label);
    CHECK(*core->label == awkward_label);
    REQUIRE(core->argv);
    CHECK(*core->argv == labelled.argv);
    const auto* other = status.find_worker("plain");
    REQUIRE(other != nullptr);
    CHECK_FALSE(other->label);
    REQUIRE(other->argv);
    CHECK(*other->argv == argv_plain);
  }

  // The journal: the label on the worker's lines, none on the other's.
  const jobwarden::detail::JobLayout layout{dir.path(), "named"};
  CHECK(jwjournal::worker_record(layout, "core").label == awkward_label);
  CHECK(jwjournal::worker_record(layout, "plain").label.empty());
  const std::string journal = jwtest::read_file(layout.journal_file());
  CHECK(journal.find("\"label\":") != std::string::npos);

  // Any reader, after the supervisor is gone; the JSON text round-trips the label exactly.
  StatusAggregator<> aggregator(dir.path());
  const json status = json::parse(aggregator.read("named").to_json().dump());
  const json core = worker_json(status, "core");
  CHECK(core["label"] == awkward_label);
  CHECK(core["argv"] == json{"/bin/sh", "-c", "exit 3"});
  CHECK(core["exit_code"] == 3);
  const json plain = worker_json(status, "plain");
  CHECK(plain["label"].is_null());
  CHECK(plain["argv"] == json(argv_plain));
}

TEST_CASE("an over-long or malformed label is refused at submit with a clear error") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec spec;
  spec.argv = {"/bin/true"};

  spec.label = std::string(jobwarden::max_label_bytes + 1, 'x');
  std::error_code ec;
  CHECK(supervisor.submit(spec, ec).empty());
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK_THROWS_WITH(supervisor.submit(spec), Catch::Contains("label is 1025 bytes long, more than the 1024 allowed"));

  spec.label = "caf\xc3";  // cut inside a character
  ec.clear();
  CHECK(supervisor.submit(spec, ec).empty());
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK_THROWS_WITH(supervisor.submit(spec), Catch::Contains("label is not valid UTF-8"));
  CHECK(supervisor.workers().empty());

  // The longest label is taken as it is.
  spec.label = std::string(jobwarden::max_label_bytes - 2, 'y') + "\xc3\xa9";
  const std::string id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  CHECK(supervisor.info(id).label == spec.label);
  supervisor.finish();
  supervisor.poll();
  const auto status = supervisor.status();
  REQUIRE(status.workers.size() == 1);
  CHECK(status.workers[0].label == spec.label);
}

TEST_CASE("a journal line carries the label only when there is one, and reads it back") {
  namespace jd = jobwarden::detail;
  const auto now = std::chrono::system_clock::now();
  WorkerInfo info = jwstatus::worker_info("7", WorkerState::running);
  const std::string unlabelled = jd::worker_line_text(info, now);
  CHECK(json::parse(unlabelled).count("label") == 0);
  info.label = awkward_label;
  const std::string labelled = jd::worker_line_text(info, now);
  const json parsed = json::parse(labelled);
  CHECK(parsed["label"] == awkward_label);
  // Compact, like nlohmann's own dump of the same object.
  CHECK(labelled.size() == jd::dump_json(parsed).size() + 1);
  WorkerInfo back;
  std::optional<std::chrono::system_clock::time_point> updated;
  std::string problem;
  REQUIRE(jd::worker_line_from_json(parsed, back, updated, problem));
  CHECK(back.label == awkward_label);
  CHECK(back.argv == info.argv);

  // A label that is not a string makes the line unusable, like any wrong field.
  json wrong = parsed;
  wrong["label"] = 5;
  CHECK_FALSE(jd::worker_line_from_json(wrong, back, updated, problem));
  CHECK(problem.find("label") != std::string::npos);
}

TEST_CASE("the aggregator's cached re-reads keep labels and argv as the journal changes") {
  LiveJob job;
  WorkerInfo first = jwstatus::worker_info("1", WorkerState::pending);
  first.label = "first\nrepo";
  job.add(first);
  job.add(jwstatus::worker_info("2", WorkerState::pending));
  // A worker known only by its own report: no command, no label.
  {
    jobwarden::WorkerStatusWriter<> writer(job.recorder.status_file("3"));
    REQUIRE_FALSE(writer.message("hello"));
    REQUIRE_FALSE(writer.flush());
  }

  StatusAggregator<> aggregator(job.dir.path());
  auto status = aggregator.read("scan-42");
  REQUIRE(status.workers.size() == 3);
  CHECK(status.find_worker("1")->label == std::optional<std::string>("first\nrepo"));
  REQUIRE(status.find_worker("1")->argv);
  CHECK(*status.find_worker("1")->argv == std::vector<std::string>{"scan", "1"});
  CHECK_FALSE(status.find_worker("2")->label);
  CHECK_FALSE(status.find_worker("3")->argv);
  CHECK_FALSE(status.find_worker("3")->label);
  const json worker3 = worker_json(status.to_json(), "3");
  CHECK(worker3["argv"].is_null());
  CHECK(worker3["label"].is_null());

  const auto unchanged = status.find_worker("2")->argv;
  // Worker 2 reports (merged again, its journal line unchanged): its command is shared, not copied.
  {
    jobwarden::WorkerStatusWriter<> writer(job.recorder.status_file("2"));
    REQUIRE_FALSE(writer.message("started"));
    REQUIRE_FALSE(writer.flush());
  }

  // The worker runs (a new line, same label); another appears with one.
  WorkerInfo running = jwstatus::worker_info("1", WorkerState::running);
  running.label = first.label;
  job.add(running);
  WorkerInfo fourth = jwstatus::worker_info("4", WorkerState::pending);
  fourth.label = "fourth";
  fourth.argv = {"scan", "--deep", "4"};
  job.add(fourth);
  status = aggregator.read("scan-42");
  REQUIRE(status.workers.size() == 4);
  CHECK(status.find_worker("1")->state == WorkerState::running);
  CHECK(status.find_worker("1")->label == std::optional<std::string>("first\nrepo"));
  CHECK(status.find_worker("4")->label == std::optional<std::string>("fourth"));
  REQUIRE(status.find_worker("4")->argv);
  CHECK(*status.find_worker("4")->argv == std::vector<std::string>{"scan", "--deep", "4"});
  // A worker whose line did not change keeps the very same command.
  CHECK(status.find_worker("2")->message == std::optional<std::string>("started"));
  CHECK_FALSE(status.find_worker("2")->label);
  CHECK(status.find_worker("2")->argv == unchanged);
  REQUIRE(status.find_worker("2")->argv);
  CHECK(*status.find_worker("2")->argv == std::vector<std::string>{"scan", "2"});

  // A reader with a typed progress sees the same.
  StatusAggregator<std::map<std::string, int>> typed(job.dir.path());
  const auto fresh = typed.read("scan-42");
  REQUIRE(fresh.workers.size() == 4);
  CHECK(fresh.find_worker("1")->label == std::optional<std::string>("first\nrepo"));
  REQUIRE(fresh.find_worker("4")->argv);
  CHECK(*fresh.find_worker("4")->argv == std::vector<std::string>{"scan", "--deep", "4"});
  CHECK_FALSE(fresh.find_worker("3")->argv);
}
