// Control requests through the job directory: `control_job` (what `jobwarden
// signal|pause|resume` use) against a live supervisor, and the files the
// supervisor must not take for requests.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <jobwarden/job_control.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::ControlAction;
using jobwarden::ControlReply;
using jobwarden::ControlRequest;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
jobwarden::SupervisorOptions in(const jwtest::TempDir& dir) {
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "job";
  return options;
}

/// Runs `control_job` on another thread while this one polls the supervisor
/// (which answers inside `poll()`); returns the reply and its error.
std::pair<ControlReply, std::error_code> ask(JobSupervisor<>& supervisor, const jwtest::TempDir& dir,
                                             const ControlRequest& request) {
  auto answer = std::async(std::launch::async, [&] {
    std::error_code ec;
    ControlReply reply = jobwarden::control_job(dir.path(), "job", request, 20s, ec);
    return std::make_pair(reply, ec);
  });
  while (answer.wait_for(5ms) != std::future_status::ready) supervisor.poll();
  supervisor.poll();  // the events of what was done
  return answer.get();
}

/// Waits (bounded) until the file at `path` holds `text`.
bool wait_for_text(const std::string& path, const std::string& text) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (jwtest::read_file(path).find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::vector<std::string> names_ending(const std::filesystem::path& dir, const std::string& suffix) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      names.push_back(name);
    }
  }
  return names;
}
}  // namespace

TEST_CASE("control_job signals, and answers for, the workers the live supervisor holds") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  const std::string marks = dir / "marks";
  WorkerSpec trapping = jwtest::quiet(
      {"/bin/sh", "-c", "trap 'echo got >> " + marks + "' USR1; echo ready >> " + marks + "; while :; do sleep 0.05; done"});
  trapping.id = "t";
  trapping.grace_period = 1s;
  supervisor.submit(trapping);
  WorkerSpec quick = jwtest::quiet({"true"});
  quick.id = "q";
  supervisor.submit(quick);
  REQUIRE(supervisor.wait("q", 30s));
  REQUIRE(wait_for_text(marks, "ready"));

  ControlRequest request;
  request.action = ControlAction::signal;
  request.signal = SIGUSR1;
  request.worker = "t";
  auto [reply, ec] = ask(supervisor, dir, request);
  REQUIRE_FALSE(ec);
  CHECK(reply.done == std::vector<std::string>{"t"});
  CHECK(reply.failed.empty());
  CHECK(wait_for_text(marks, "got"));

  request.worker = "q";  // ended: nothing is sent, and the answer says why
  std::tie(reply, ec) = ask(supervisor, dir, request);
  REQUIRE_FALSE(ec);
  CHECK(reply.done.empty());
  REQUIRE(reply.failed.size() == 1);
  CHECK(reply.failed[0].worker == "q");
  CHECK(reply.failed[0].reason == "worker_not_running");

  request.worker = "nobody";
  std::tie(reply, ec) = ask(supervisor, dir, request);
  REQUIRE_FALSE(ec);
  REQUIRE(reply.failed.size() == 1);
  CHECK(reply.failed[0].reason == "unknown_worker");

  request.worker.reset();  // every running worker: only "t"
  std::tie(reply, ec) = ask(supervisor, dir, request);
  REQUIRE_FALSE(ec);
  CHECK(reply.done == std::vector<std::string>{"t"});
  CHECK(reply.failed.empty());

  // Nothing of the exchanges is left in the job directory.
  CHECK(names_ending(std::filesystem::path(dir / "job"), ".control").empty());
  CHECK(names_ending(std::filesystem::path(dir / "job"), ".reply").empty());
  supervisor.shutdown();
}

TEST_CASE("a file that is not a request is answered as such, links and FIFOs named *.control are left alone") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(in(dir));
  WorkerSpec sleeper = jwtest::quiet({"sleep", "60"});
  sleeper.id = "s";
  sleeper.grace_period = 1s;
  supervisor.submit(sleeper);
  supervisor.poll();
  const std::filesystem::path job = dir / "job";
  {
    std::ofstream garbage(job / ".garbage.tmp");
    garbage << "{\"action\": \"explode\", \"worker\": \"s\"}";
  }
  std::filesystem::rename(job / ".garbage.tmp", job / "garbage.control");
  REQUIRE(::mkfifo((job / "fifo.control").c_str(), 0600) == 0);
  std::filesystem::create_symlink(std::filesystem::path(dir / "marks"), job / "link.control");
  {
    std::ofstream target(dir / "marks");
    target << "{\"action\":\"signal\",\"worker\":\"s\",\"signal\":\"SIGKILL\",\"scope\":\"tree\"}";
  }
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(job / "garbage.reply") && std::chrono::steady_clock::now() < give_up) {
    supervisor.poll();
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(std::filesystem::exists(job / "garbage.reply"));
  ControlReply reply;
  REQUIRE(jobwarden::detail::parse_control_reply(jwtest::read_file((job / "garbage.reply").string()), reply));
  CHECK(reply.done.empty());
  REQUIRE(reply.failed.size() == 1);
  CHECK(reply.failed[0].worker.empty());
  CHECK(reply.failed[0].reason == "bad_request");
  CHECK(reply.failed[0].message.find("action") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(job / "garbage.control"));
  // The FIFO and the link were not requests: still there, and the worker
  // was not killed through the link.
  for (int i = 0; i < 20; ++i) supervisor.poll();
  CHECK(std::filesystem::exists(job / "fifo.control"));
  CHECK(std::filesystem::is_symlink(job / "link.control"));
  CHECK(supervisor.info("s").state == WorkerState::running);
  supervisor.shutdown();
  CHECK(supervisor.info("s").state == WorkerState::cancelled);
}

TEST_CASE("control_job refuses bad arguments before touching the disk, and a job without a live supervisor") {
  jwtest::TempDir dir;
  ControlRequest request;
  request.action = ControlAction::signal;
  request.signal = SIGUSR1;
  std::error_code ec;
  jobwarden::control_job(dir.path(), "../x", request, 1s, ec);
  CHECK(ec == jobwarden::errc::invalid_id);
  request.worker = "a/b";
  jobwarden::control_job(dir.path(), "job", request, 1s, ec);
  CHECK(ec == jobwarden::errc::invalid_id);
  request.worker.reset();
  request.signal = 0;
  jobwarden::control_job(dir.path(), "job", request, 1s, ec);
  CHECK(ec == jobwarden::errc::invalid_signal);
  request.signal = SIGUSR1;
  jobwarden::control_job(dir.path(), "job", request, -1ms, ec);
  CHECK(ec == jobwarden::errc::invalid_duration);
  jobwarden::control_job(dir.path(), "job", request, 1s, ec);
  CHECK(ec == jobwarden::errc::unknown_job);
  CHECK(std::filesystem::is_empty(dir.path()));
  {
    JobSupervisor<> supervisor(in(dir));
    supervisor.submit(jwtest::quiet({"true"}));
    supervisor.wait_all(30s);
  }
  jobwarden::control_job(dir.path(), "job", request, 1s, ec);
  CHECK(ec == jobwarden::errc::no_live_supervisor);
  CHECK(names_ending(std::filesystem::path(dir / "job"), ".control").empty());
  CHECK_THROWS_AS(jobwarden::control_job(dir.path(), "job", request, 1s), std::system_error);
}

TEST_CASE("a reply that cannot be read is errc::bad_control_reply, and is removed") {
  // A stand-in for a live supervisor (of another version): it holds the job's
  // lock, takes the request, and answers with something that is no reply.
  jwtest::TempDir dir;
  const std::filesystem::path job = std::filesystem::path(dir.path()) / "job";
  std::filesystem::create_directories(job);
  { std::ofstream(job / "journal.jsonl") << ""; }
  const std::string lock_path = (job / "supervisor.lock").string();
  int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(lock >= 0);
  REQUIRE(::flock(lock, LOCK_EX) == 0);
  std::atomic<bool> answered{false};
  std::thread stand_in([&] {
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (!answered && std::chrono::steady_clock::now() < give_up) {
      for (const std::string& name : names_ending(job, ".control")) {
        const std::string nonce = name.substr(0, name.size() - std::string(".control").size());
        std::filesystem::remove(job / name);
        // Atomically, as a supervisor writes it: read whole, yet no reply.
        { std::ofstream(job / ".reply.tmp") << "{\"schema_version\": 99, \"done\": 7}\n"; }
        std::filesystem::rename(job / ".reply.tmp", job / (nonce + ".reply"));
        answered = true;
      }
      std::this_thread::sleep_for(2ms);
    }
  });
  ControlRequest request;
  request.action = ControlAction::pause;
  std::error_code ec;
  jobwarden::control_job(dir.path(), "job", request, 20s, ec);
  stand_in.join();
  ::close(lock);
  CHECK(answered);
  CHECK(ec == jobwarden::errc::bad_control_reply);
  CHECK(names_ending(job, ".reply").empty());
  CHECK(names_ending(job, ".control").empty());
}

TEST_CASE("a signal without a name goes through a control request by number") {
  CHECK(jobwarden::signal_from_string("SIG40") == std::optional<int>(40));
  CHECK(jobwarden::signal_from_string("sig40") == std::optional<int>(40));
  CHECK_FALSE(jobwarden::signal_from_string("SIG1X"));
  CHECK_FALSE(jobwarden::signal_from_string("SIG"));
  ControlRequest request;
  request.action = ControlAction::signal;
  request.signal = SIGRTMIN + 6;
  request.worker = "w";
  ControlRequest back;
  std::string problem;
  REQUIRE(jobwarden::detail::parse_control_request(jobwarden::detail::control_request_text(request, 1), back, problem));
  CHECK(back.signal == request.signal);
}
