// A worker's stdin: /dev/null, a file, the supervisor's own, or bytes the
// supervisor writes (all at once, or kept open for the host to add to);
// intact at any size, never blocking the host, never fatal when the worker
// stops reading, and no pipe leaking into other workers.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::InputSpec;
using jobwarden::JobSupervisor;
using jobwarden::OutputSpec;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (auto& byte : bytes) byte = static_cast<char>(random() & 0xff);
  return bytes;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size());
  std::fclose(file);
}

/// `sha256sum`'s hex digest of a file, computed outside any supervisor.
std::string sha256_of_file(const std::string& path) {
  std::string command = "sha256sum < '" + path + "'";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[128] = {};
  std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, pipe);
  ::pclose(pipe);
  std::string text(buffer, n);
  return text.substr(0, text.find(' '));
}

std::set<int> fds_listed_by(const std::string& path) {
  std::set<int> fds;
  std::istringstream in(jwtest::read_file(path));
  int fd;
  while (in >> fd) fds.insert(fd);
  return fds;
}

WorkerSpec reading(std::vector<std::string> argv, InputSpec input, const std::string& out_path) {
  WorkerSpec spec = jwtest::quiet(std::move(argv));
  spec.stdin_spec = std::move(input);
  if (!out_path.empty()) spec.stdout_spec = OutputSpec::to_file(out_path);
  return spec;
}

bool sigpipe_blocked_here() {
  sigset_t mask;
  sigemptyset(&mask);
  ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGPIPE) == 1;
}

/// Puts SIGPIPE's disposition to the default (the process dies of it) for
/// a test's duration.
class DefaultSigpipe {
 public:
  DefaultSigpipe() { ::sigaction(SIGPIPE, nullptr, &saved_); ::signal(SIGPIPE, SIG_DFL); }
  ~DefaultSigpipe() { ::sigaction(SIGPIPE, &saved_, nullptr); }

 private:
  struct sigaction saved_;
};

}  // namespace

TEST_CASE("10 MB of stdin arrive intact, through cat and through sha256sum") {
  jwtest::TempDir dir;
  DefaultSigpipe default_sigpipe;
  std::string data = random_bytes(10 * 1024 * 1024, 15);
  write_file(dir / "data.bin", data);
  std::string expected_hash = sha256_of_file(dir / "data.bin");
  REQUIRE(expected_hash.size() == 64);

  JobSupervisor<> supervisor;
  auto copy = supervisor.submit(reading({"cat"}, InputSpec::from_bytes(data), dir / "copy.bin"));
  auto hash = supervisor.submit(reading({"sha256sum"}, InputSpec::from_bytes(data), dir / "hash.txt"));
  REQUIRE(supervisor.wait_all(120s));  // only "it did not hang"

  auto copied = supervisor.info(copy);
  CHECK(copied.state == WorkerState::succeeded);
  CHECK(copied.stdin_written_bytes == data.size());
  CHECK(copied.stdin_pending_bytes == 0);
  CHECK(copied.input_error.empty());
  CHECK(jwtest::read_file(dir / "copy.bin") == data);

  auto hashed = supervisor.info(hash);
  CHECK(hashed.state == WorkerState::succeeded);
  CHECK(hashed.stdin_written_bytes == data.size());
  CHECK(jwtest::read_file(dir / "hash.txt").substr(0, 64) == expected_hash);
  CHECK_FALSE(sigpipe_blocked_here());
}

TEST_CASE("a kept-open stdin takes writes from another thread, then EOF at close_input") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto id = supervisor.submit(reading({"cat"}, InputSpec::kept_open("first\n"), dir / "out.txt"));
  std::string expected = "first\n";
  for (int i = 0; i < 200; ++i) expected += "line " + std::to_string(i) + "\n";

  std::atomic<bool> writer_failed{false};
  std::thread writer([&] {
    try {
      for (int i = 0; i < 200; ++i) {
        supervisor.write_input(id, "line " + std::to_string(i) + "\n");
        if (i % 50 == 0) std::this_thread::sleep_for(2ms);
      }
      supervisor.close_input(id);
    } catch (...) {
      writer_failed = true;
      supervisor.cancel(id);
    }
  });
  bool ended = supervisor.wait(id, 60s);  // poll() runs here while the writer writes
  writer.join();
  REQUIRE(ended);
  CHECK_FALSE(writer_failed);
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.stdin_written_bytes == expected.size());
  CHECK(info.stdin_pending_bytes == 0);
  CHECK(info.input_error.empty());
  CHECK(jwtest::read_file(dir / "out.txt") == expected);
}

TEST_CASE("bytes written to a worker that waits for a slot go to it when it starts, after its data") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  auto blocker = supervisor.submit(reading({"cat"}, InputSpec::kept_open(), ""));
  auto waiting = supervisor.submit(reading({"cat"}, InputSpec::kept_open("data\n"), dir / "out.txt"));
  CHECK(supervisor.info(waiting).state == WorkerState::pending);
  supervisor.write_input(waiting, "host\n");
  CHECK(supervisor.info(waiting).stdin_pending_bytes == 5);
  supervisor.close_input(waiting);
  supervisor.close_input(blocker);  // the blocker ends, the waiting worker starts
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(waiting).state == WorkerState::succeeded);
  CHECK(jwtest::read_file(dir / "out.txt") == "data\nhost\n");
}

TEST_CASE("bytes written to a worker cancelled before it started are dropped and said so") {
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 1;
  JobSupervisor<> supervisor(options);
  auto blocker = supervisor.submit(reading({"cat"}, InputSpec::kept_open(), ""));
  auto waiting = supervisor.submit(reading({"cat"}, InputSpec::kept_open(), ""));
  supervisor.write_input(waiting, "never read\n");
  CHECK(supervisor.info(waiting).stdin_pending_bytes == 11);
  supervisor.cancel(waiting);
  auto info = supervisor.info(waiting);
  CHECK(info.state == WorkerState::cancelled);
  CHECK(info.stdin_pending_bytes == 0);
  CHECK(info.input_error == "the worker never ran: 11 bytes of stdin dropped");
  std::error_code ec;
  supervisor.write_input(waiting, "more", ec);
  CHECK(ec == jobwarden::errc::input_closed);
  supervisor.close_input(blocker);
  REQUIRE(supervisor.wait_all(60s));
}

TEST_CASE("a worker that closes stdin early: reported, not fatal, the worker's outcome its own") {
  jwtest::TempDir dir;
  DefaultSigpipe default_sigpipe;  // a SIGPIPE reaching the host would kill the test
  std::string data = random_bytes(10 * 1024 * 1024, 7);
  JobSupervisor<> supervisor;
  auto head = supervisor.submit(reading({"head", "-c", "10"}, InputSpec::from_bytes(data), dir / "head.txt"));
  auto done = supervisor.submit(reading({"true"}, InputSpec::kept_open(data), ""));
  REQUIRE(supervisor.wait_all(60s));

  for (const auto& id : {head, done}) {
    auto info = supervisor.info(id);
    INFO(id << ": " << info.input_error);
    CHECK(info.state == WorkerState::succeeded);
    CHECK(info.stdin_pending_bytes == 0);
    REQUIRE_FALSE(info.input_error.empty());
    CHECK(info.input_error.find("unwritten") != std::string::npos);
    // "... with N bytes unwritten": N and what was written add up.
    auto with = info.input_error.find(" with ");
    REQUIRE(with != std::string::npos);
    auto unwritten = std::stoull(info.input_error.substr(with + 6));
    CHECK(info.stdin_written_bytes + unwritten == data.size());
    CHECK(unwritten > 0);
  }
  CHECK(supervisor.info(head).input_error.find("stdin closed by the worker") != std::string::npos);
  CHECK(jwtest::read_file(dir / "head.txt") == data.substr(0, 10));
  CHECK_FALSE(sigpipe_blocked_here());

  // The supervisor carries on: another worker runs and is fed.
  auto after = supervisor.submit(reading({"cat"}, InputSpec::from_bytes("still here\n"), dir / "after.txt"));
  REQUIRE(supervisor.wait(after, 60s));
  CHECK(supervisor.info(after).state == WorkerState::succeeded);
  CHECK(jwtest::read_file(dir / "after.txt") == "still here\n");
}

TEST_CASE("write_input and close_input say why they cannot") {
  JobSupervisor<> supervisor;
  std::error_code ec;

  supervisor.write_input("nobody", "x", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  supervisor.close_input("nobody", ec);
  CHECK(ec == jobwarden::errc::unknown_worker);
  CHECK_THROWS_AS(supervisor.write_input("nobody", "x"), std::system_error);

  auto fed = supervisor.submit(reading({"cat"}, InputSpec::from_bytes("x"), ""));
  auto null = supervisor.submit(reading({"cat"}, InputSpec{}, ""));
  for (const auto& id : {fed, null}) {
    supervisor.write_input(id, "more", ec);
    CHECK(ec == jobwarden::errc::input_closed);
    supervisor.close_input(id, ec);
    CHECK(ec == jobwarden::errc::input_closed);
  }
  try {
    supervisor.write_input(fed, "more");
    FAIL("write_input to a stdin that is not kept open did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == jobwarden::errc::input_closed);
    CHECK(std::string(e.what()).find("\"" + fed + "\"") != std::string::npos);
  }

  auto open = supervisor.submit(reading({"cat"}, InputSpec::kept_open(), ""));
  supervisor.write_input(open, "a\n", ec);
  CHECK_FALSE(ec);
  supervisor.close_input(open, ec);
  CHECK_FALSE(ec);
  supervisor.write_input(open, "b\n", ec);  // closed, though perhaps not yet written
  CHECK(ec == jobwarden::errc::input_closed);
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(open).state == WorkerState::succeeded);

  auto ended = supervisor.submit(reading({"true"}, InputSpec::kept_open(), ""));
  REQUIRE(supervisor.wait(ended, 60s));
  supervisor.write_input(ended, "late", ec);
  CHECK(ec == jobwarden::errc::input_closed);
  try {
    supervisor.close_input(ended);
    FAIL("close_input to an ended worker did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == jobwarden::errc::input_closed);
    CHECK(std::string(e.what()).find("\"" + ended + "\"") != std::string::npos);
  }
}

TEST_CASE("an inconsistent stdin spec is refused, naming the field") {
  JobSupervisor<> supervisor;
  std::error_code ec;
  WorkerSpec spec = jwtest::quiet({"cat"});
  spec.stdin_spec.kind = InputSpec::Kind::file;  // no path
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
  try {
    supervisor.submit(spec);
    FAIL("a file stdin without a path was accepted");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("stdin_spec.path") != std::string::npos);
  }
  spec.stdin_spec = InputSpec{};
  spec.stdin_spec.data = "ignored?";
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
  spec.stdin_spec = InputSpec::from_file("x");
  spec.stdin_spec.keep_open = true;
  supervisor.submit(spec, ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK(supervisor.workers().empty());
}

TEST_CASE("stdin from a file, a missing file is spawn_failed naming it") {
  jwtest::TempDir dir;
  std::string data = random_bytes(300 * 1024, 3);
  write_file(dir / "in.bin", data);
  JobSupervisor<> supervisor;
  auto good = supervisor.submit(reading({"cat"}, InputSpec::from_file(dir / "in.bin"), dir / "out.bin"));
  auto missing = supervisor.submit(reading({"cat"}, InputSpec::from_file(dir / "missing.bin"), ""));
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(good).state == WorkerState::succeeded);
  CHECK(jwtest::read_file(dir / "out.bin") == data);
  auto info = supervisor.info(missing);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("cannot open stdin file \"" + (dir / "missing.bin") + "\"") !=
        std::string::npos);
}

TEST_CASE("a stdin file that is a FIFO without a writer never holds up submit or poll") {
  jwtest::TempDir dir;
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  JobSupervisor<> supervisor;
  // A blocking open would wait here, inside submit(), for a writer that never comes.
  auto id = supervisor.submit(reading({"cat"}, InputSpec::from_file(fifo), dir / "out.txt"));
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);  // no writer: EOF at once
  auto directory = supervisor.submit(reading({"cat"}, InputSpec::from_file(dir.path()), ""));
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(directory);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error.find("Is a directory") != std::string::npos);
}

TEST_CASE("an inherited stdin is the supervisor's own") {
  jwtest::TempDir dir;
  write_file(dir / "in.txt", "from the host's stdin\n");
  int saved = ::dup(0);
  REQUIRE(saved >= 0);
  int file = ::open((dir / "in.txt").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(file >= 0);
  REQUIRE(::dup2(file, 0) == 0);
  ::close(file);
  bool ended = false;
  std::string id;
  {
    JobSupervisor<> supervisor;
    id = supervisor.submit(reading({"cat"}, InputSpec::inherit(), dir / "out.txt"));
    ended = supervisor.wait(id, 60s);
    CHECK(supervisor.info(id).state == WorkerState::succeeded);
  }
  ::dup2(saved, 0);
  ::close(saved);
  REQUIRE(ended);
  CHECK(jwtest::read_file(dir / "out.txt") == "from the host's stdin\n");
}

TEST_CASE("a restarted worker gets its data again, not the host's bytes of the earlier attempt") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  // Each attempt appends what it reads; the first fails, the second succeeds.
  std::string script = "cat >> '" + (dir / "out.txt") + "'; [ -e '" + (dir / "second") +
                       "' ] && exit 0; touch '" + (dir / "second") + "'; exit 1";
  WorkerSpec spec = reading({"sh", "-c", script}, InputSpec::kept_open("data\n"), "");
  spec.restart.policy = jobwarden::RestartPolicy::on_failure;
  spec.restart.max_restarts = 1;
  spec.restart.initial_backoff = 10ms;
  auto id = supervisor.submit(spec);
  supervisor.write_input(id, "host\n");
  supervisor.close_input(id);
  REQUIRE(supervisor.wait(id, 60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.attempt == 2);
  CHECK(jwtest::read_file(dir / "out.txt") == "data\nhost\ndata\n");
}

TEST_CASE("no stdin pipe or capped-log pipe leaks into another worker") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.max_concurrency = 8;  // the holders and the listers all run at once
  JobSupervisor<> supervisor(options);
  std::vector<std::string> holders;
  for (int i = 0; i < 3; ++i) {
    WorkerSpec spec = reading({"cat"}, InputSpec::kept_open("x"), "");
    spec.stdout_spec = OutputSpec::to_capped_file(dir / ("capped" + std::to_string(i)), 1024);
    holders.push_back(supervisor.submit(spec));
  }
  std::vector<std::string> listers;
  for (int i = 0; i < 3; ++i) {
    WorkerSpec spec = reading({jwtest::test_worker(), "fds"}, InputSpec::kept_open(),
                              dir / ("fds" + std::to_string(i) + ".txt"));
    listers.push_back(supervisor.submit(spec));
    supervisor.close_input(listers.back());
  }
  for (const auto& id : listers) REQUIRE(supervisor.wait(id, 60s));
  for (const auto& id : holders) {
    CHECK(supervisor.info(id).state == WorkerState::running);  // still held open while listing
    supervisor.close_input(id);
  }
  REQUIRE(supervisor.wait_all(60s));
  for (int i = 0; i < 3; ++i) {
    CHECK(supervisor.info(listers[i]).state == WorkerState::succeeded);
    CHECK(fds_listed_by(dir / ("fds" + std::to_string(i) + ".txt")) == std::set<int>{0, 1, 2});
  }
  for (const auto& id : holders) CHECK(supervisor.info(id).state == WorkerState::succeeded);
}

namespace {
std::atomic<int> sigpipes_seen{0};
void count_sigpipe(int) { sigpipes_seen.fetch_add(1); }
}  // namespace

TEST_CASE("a host's own SIGPIPE handler never hears of a worker's closed stdin") {
  struct sigaction counting;
  std::memset(&counting, 0, sizeof counting);
  counting.sa_handler = &count_sigpipe;
  sigemptyset(&counting.sa_mask);
  struct sigaction saved;
  ::sigaction(SIGPIPE, &counting, &saved);
  sigpipes_seen = 0;
  {
    JobSupervisor<> supervisor;
    auto id = supervisor.submit(reading({"true"}, InputSpec::from_bytes(random_bytes(1 << 20, 1)), ""));
    REQUIRE(supervisor.wait(id, 60s));
    CHECK(supervisor.info(id).input_error.find("unwritten") != std::string::npos);
  }
  ::sigaction(SIGPIPE, &saved, nullptr);
  CHECK(sigpipes_seen == 0);
  CHECK_FALSE(sigpipe_blocked_here());
}

TEST_CASE("the event loop reports a full pipe's write end once it has room, once") {
  jobwarden::detail::EventLoop loop;
  if (!loop.multiplexes_writers()) {
    WARN("SKIPPED: no writer readiness on this path (the engine retries writes instead)");
    return;
  }
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  for (int fd : fds) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string block(4096, 'x');
  while (::write(fds[1], block.data(), block.size()) > 0) {
  }
  std::uint64_t token_storage = 0;  // tokens are 8-aligned pointers
  void* token = &token_storage;
  REQUIRE(loop.arm_writer(fds[1], token, true));
  CHECK(loop.collect().writable.empty());
  char sink[65536];
  while (::read(fds[0], sink, sizeof sink) > 0) {
  }
  pollfd pfd{loop.fd(), POLLIN, 0};
  CHECK(::poll(&pfd, 1, 10000) == 1);  // the loop's descriptor wakes the host
  auto ready = loop.collect();
  REQUIRE(ready.writable.size() == 1);
  CHECK(ready.writable[0] == token);
  CHECK(loop.collect().writable.empty());  // one shot: not again until re-armed
  REQUIRE(loop.arm_writer(fds[1], token, false));
  CHECK(loop.collect().writable.size() == 1);  // room already: reported at once
  loop.remove_writer(fds[1]);
  ::close(fds[0]);
  ::close(fds[1]);
}
