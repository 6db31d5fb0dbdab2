// The cheap include for workers: worker_status_writer_base.hpp compiles
// without nlohmann/json, and a worker that includes nothing else reports
// state, numeric progress, a message, an error and a JSON result.
#include <jobwarden/worker_status_writer_base.hpp>

#ifdef NLOHMANN_JSON_VERSION_MAJOR
#error "worker_status_writer_base.hpp must not include nlohmann/json"
#endif

#include <chrono>
#include <string>

#include "catch.hpp"
#include "support.hpp"

using jobwarden::WorkerState;
using namespace std::chrono_literals;

TEST_CASE("a worker reports through the cheap header alone") {
  jwtest::TempDir dir;
  jobwarden::WorkerStatusWriterBase<>::Options options;
  options.job_id = "scan-42";
  options.worker_id = "7";
  options.attempt = 2;
  options.throttle_interval = 1h;  // only the writes made at once, and flush
  jobwarden::WorkerStatusWriterBase<> writer(dir / "status.json", options);
  REQUIRE(writer.enabled());
  CHECK(writer.state() == WorkerState::running);
  REQUIRE_FALSE(writer.progress(3, 9));   // the first write is never held back
  REQUIRE_FALSE(writer.progress(4, 9));   // held back
  REQUIRE_FALSE(writer.message("tab\there"));
  CHECK(writer.has_pending_update());
  REQUIRE_FALSE(writer.result_json(" {\"found\": [1, 2]}\n"));
  REQUIRE_FALSE(writer.set_error("bad \xff byte"));
  REQUIRE_FALSE(writer.set_state("failed"));
  CHECK(writer.set_state(WorkerState::running) == jobwarden::errc::invalid_state_transition);
  CHECK(writer.set_state("nonsense") == jobwarden::errc::invalid_argument);
  CHECK(writer.seq() == 4);
  CHECK(writer.write_count() == 4);
  CHECK(writer.write_failures() == 0);

  const std::string text = jwtest::read_file(dir / "status.json");
  CAPTURE(text);
  CHECK(text.rfind("{\"attempt\":2,\"error\":\"bad \xEF\xBF\xBD byte\",\"job_id\":\"scan-42\","
                   "\"message\":\"tab\\there\",\"pid\":", 0) == 0);
  CHECK(text.find(",\"progress\":{\"done\":4,\"total\":9},\"result\":{\"found\": [1, 2]},"
                  "\"schema_version\":1,\"seq\":4,\"state\":\"failed\",\"updated_at\":\"") != std::string::npos);
  CHECK(text.size() > 24);
  CHECK(text.substr(text.size() - 19) == "Z\",\"worker_id\":\"7\"}");
}

TEST_CASE("outside jobwarden the cheap writer is disabled and its calls do nothing") {
  ::unsetenv("JOBWARDEN_STATUS_FILE");
  std::error_code ec;
  auto writer = jobwarden::WorkerStatusWriterBase<>::from_environment(ec);
  CHECK(ec == jobwarden::errc::no_status_file);
  CHECK_FALSE(writer.enabled());
  CHECK_FALSE(writer.progress(1, 2));
  CHECK_FALSE(writer.result_json("not json"));  // a disabled writer checks nothing
  CHECK_THROWS_AS(jobwarden::WorkerStatusWriterBase<>::from_environment(), std::system_error);
}
