// Output through the supervisor: line and chunk handlers, logs created on the
// first byte, the tail in WorkerInfo, head-and-tail caps, 2>&1, a host that
// stops polling, logs that cannot be written, restarts, descriptors.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <jobwarden/detail/job_files.hpp>
#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/slurm_launcher.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::OutputSpec;
using jobwarden::OutputStream;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {

/// What `seq 1 n` prints.
std::string seq_text(int n) {
  std::string text;
  for (int i = 1; i <= n; ++i) text += std::to_string(i) + "\n";
  return text;
}

/// A line as a handler saw it.
struct SeenLine {
  std::string worker;
  OutputStream stream;
  std::string text;
  bool partial;
};

/// Registers a line handler that keeps every line, and an event handler
/// that records each event in the same timeline.
struct Recorder {
  std::vector<SeenLine> lines;
  std::vector<std::string> timeline;

  template <class Supervisor>
  void attach(Supervisor& supervisor) {
    supervisor.on_output_line([this](const jobwarden::OutputLine& line) {
      lines.push_back({std::string(line.worker_id), line.stream, std::string(line.text), line.partial});
      timeline.push_back("line " + std::string(line.text) + (line.partial ? " (partial)" : ""));
    });
    supervisor.on_event([this](const jobwarden::WorkerEvent& event) {
      timeline.push_back("event " + std::string(jobwarden::to_string(event.kind)));
    });
  }
};

SupervisorOptions with_root(const jwtest::TempDir& dir) {
  SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "j";
  return options;
}

jobwarden::detail::JobLayout layout_of(const jwtest::TempDir& dir) { return {dir.path(), "j"}; }

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

/// A field of /proc/self/status in KiB: "VmHWM" (the peak resident set),
/// "VmRSS" (the resident set now); 0 where unknown.
long status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return 0;
}

/// `size` bytes of `path` from `offset`.
std::string read_at(const std::string& path, std::uint64_t offset, std::size_t size) {
  std::string text(size, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t n = ::pread(fd, text.data(), size, static_cast<off_t>(offset));
  ::close(fd);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return text;
}

}  // namespace

TEST_CASE("lines arrive whole and in order, the last one without a newline before the exit") {
  JobSupervisor<> supervisor;
  Recorder seen;
  seen.attach(supervisor);
  auto id = supervisor.submit(
      jwtest::quiet({"/bin/sh", "-c", "printf 'one\\ntwo\\nthr'; sleep 0.1; printf 'ee\\n\\nlast'"}));
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  REQUIRE(seen.lines.size() == 5);
  std::vector<std::string> texts;
  for (const auto& line : seen.lines) texts.push_back(line.text);
  CHECK(texts == std::vector<std::string>{"one", "two", "three", "", "last"});
  for (std::size_t i = 0; i < 4; ++i) CHECK_FALSE(seen.lines[i].partial);
  CHECK(seen.lines[4].partial);
  CHECK(seen.lines[0].worker == id);
  CHECK(seen.lines[0].stream == OutputStream::out);
  // Started first; the partial last line before the exit.
  REQUIRE(seen.timeline.size() == 7);
  CHECK(seen.timeline.front() == "event started");
  CHECK(seen.timeline[5] == "line last (partial)");
  CHECK(seen.timeline[6] == "event exited");
}

TEST_CASE("a line longer than the limit arrives in pieces, one of exactly the limit arrives whole") {
  SupervisorOptions options;
  options.max_line_bytes = 10;
  JobSupervisor<> supervisor(options);
  Recorder seen;
  seen.attach(supervisor);
  supervisor.submit(jwtest::quiet(
      {"/bin/sh", "-c", "printf '%025d\\n' 0; printf 'short\\n'; printf 'abcdefghij\\n'; printf 'x%.0s' 1 2 3 4 5 6 7 8 9 10 11 12"}));
  REQUIRE(supervisor.wait_all(30s));
  std::vector<std::pair<std::string, bool>> pieces;
  for (const auto& line : seen.lines) pieces.emplace_back(line.text, line.partial);
  std::vector<std::pair<std::string, bool>> expected = {
      {"0000000000", true}, {"0000000000", true}, {"00000", false}, {"short", false},
      {"abcdefghij", false}, {"xxxxxxxxxx", true},  {"xx", true}};
  CHECK(pieces == expected);
}

TEST_CASE("2>&1 keeps the order of writes, for handlers and in the log") {
  jwtest::TempDir dir;
  const bool direct = GENERATE(false, true);
  CAPTURE(direct);
  JobSupervisor<> supervisor(with_root(dir));
  Recorder seen;
  if (!direct) seen.attach(supervisor);
  WorkerSpec spec;
  spec.argv = {jwtest::test_worker(), "interleave", "600"};
  spec.stderr_to_stdout = true;
  if (direct) {
    spec.stdout_spec.route = OutputSpec::Route::direct;
  }
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  std::string expected;
  for (int i = 0; i < 600; ++i) expected += (i % 2 == 0 ? "out " : "err ") + std::to_string(i) + "\n";
  const std::string log = layout_of(dir).stdout_file(id);
  CHECK(jwtest::read_file(log) == expected);
  CHECK(info.stdout_log == log);
  CHECK(info.stderr_log == log);
  CHECK_FALSE(exists(layout_of(dir).stderr_file(id)));
  if (!direct) {
    REQUIRE(seen.lines.size() == 600);
    std::string joined;
    for (const auto& line : seen.lines) {
      CHECK(line.stream == OutputStream::out);
      joined += line.text + "\n";
    }
    CHECK(joined == expected);
  }
}

TEST_CASE("a chunk handler gets every byte, in order") {
  JobSupervisor<> supervisor;
  std::string out;
  std::string err;
  std::size_t chunks = 0;
  supervisor.on_output_chunk([&](const jobwarden::OutputChunk& chunk) {
    ++chunks;
    (chunk.stream == OutputStream::out ? out : err).append(chunk.data);
  });
  auto id = supervisor.submit(jwtest::quiet({"/bin/sh", "-c", "seq 1 200000; echo bye >&2"}));
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(out == seq_text(200000));
  CHECK(err == "bye\n");
  CHECK(chunks > 1);
}

TEST_CASE("a supervised log is created on the first byte: a worker that prints nothing leaves none") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_root(dir));
  WorkerSpec silent;
  silent.id = "silent";
  silent.argv = {"/bin/true"};
  silent.stdout_spec = OutputSpec::supervised();
  silent.stderr_spec = OutputSpec::supervised();
  WorkerSpec talker = silent;
  talker.id = "talker";
  talker.argv = {"/bin/sh", "-c", "echo hello"};
  supervisor.submit(silent);
  supervisor.submit(talker);
  REQUIRE(supervisor.wait_all(30s));
  auto layout = layout_of(dir);
  // No directory per worker: workers/ holds the talker's log and nothing else.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(layout.workers_dir())) {
    names.push_back(entry.path().filename());
  }
  CHECK(names == std::vector<std::string>{"talker.stdout.log"});
  CHECK_FALSE(exists(layout.stdout_file("silent")));
  CHECK_FALSE(exists(layout.stderr_file("silent")));
  CHECK(supervisor.info("silent").stdout_log.empty());
  CHECK(supervisor.info("silent").stderr_log.empty());
  CHECK(jwtest::read_file(layout.stdout_file("talker")) == "hello\n");
  CHECK_FALSE(exists(layout.stderr_file("talker")));
  CHECK(supervisor.info("talker").stdout_log == layout.stdout_file("talker"));
  CHECK(supervisor.info("talker").stderr_log.empty());
}

TEST_CASE("a direct log of the job directory is the worker's own file, made at its start") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_root(dir));
  WorkerSpec spec;
  spec.id = "direct";
  spec.argv = {"/bin/true"};
  spec.stdout_spec.route = OutputSpec::Route::direct;  // opts out of the supervisor's pipe
  supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(30s));
  const auto layout = layout_of(dir);
  CHECK(exists(layout.stdout_file("direct")));
  CHECK(jwtest::read_file(layout.stdout_file("direct")).empty());
  CHECK(supervisor.info("direct").stdout_log == layout.stdout_file("direct"));
}

TEST_CASE("a log the supervisor moves alone gets every byte (splice where it can)") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "seq 1 300000"});
  spec.stdout_spec = OutputSpec::supervised(OutputSpec::Kind::file);
  spec.stdout_spec.path = dir / "seq.log";
  auto flood = jwtest::quiet({jwtest::test_worker(), "flood", "20971520"});
  flood.stdout_spec = OutputSpec::supervised(OutputSpec::Kind::file);
  flood.stdout_spec.path = dir / "flood.log";
  auto a = supervisor.submit(spec);
  auto b = supervisor.submit(flood);
  REQUIRE(supervisor.wait_all(120s));
  CHECK(supervisor.info(a).state == WorkerState::succeeded);
  CHECK(supervisor.info(b).state == WorkerState::succeeded);
  CHECK(jwtest::read_file(dir / "seq.log") == seq_text(300000));
  CHECK(std::filesystem::file_size(dir / "flood.log") == 20971520u);
  CHECK(supervisor.info(b).stdout_dropped_bytes == 0);
}

TEST_CASE("the tail of a failed worker's stderr is in its info and its exit event") {
  JobSupervisor<> supervisor;
  std::string tail_in_event;
  supervisor.on_event([&](const jobwarden::WorkerEvent& event) {
    if (event.kind == EventKind::exited) tail_in_event = event.worker.stderr_tail;
  });
  auto id = supervisor.submit(jwtest::quiet(
      {"/bin/sh", "-c",
       "i=0; while [ $i -lt 1000 ]; do echo \"noise $i\" >&2; i=$((i+1)); done; "
       "echo 'fatal: the disk is on fire' >&2; echo done; exit 3"}));
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  const std::string last = "noise 999\nfatal: the disk is on fire\n";
  static_assert(jobwarden::detail::default_stderr_tail_bytes > 0 &&
                jobwarden::detail::default_stderr_tail_bytes < 9000);
  CHECK(info.stderr_tail.size() == jobwarden::detail::default_stderr_tail_bytes);
  CHECK(info.stderr_tail.compare(info.stderr_tail.size() - last.size(), last.size(), last) == 0);
  if (jobwarden::detail::default_stdout_tail_bytes == 0) CHECK(info.stdout_tail.empty());
  CHECK(tail_in_event == info.stderr_tail);
}

TEST_CASE("an inherited stderr stays the worker's own unless a tail is asked for") {
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "echo 'inherited line (expected in the test log)' >&2"});
  spec.stderr_spec = OutputSpec::inherit();
  auto direct = supervisor.submit(spec);
  spec.stderr_spec.tail_bytes = 64;
  auto tailed = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(direct).stderr_tail.empty());  // not relayed: poll() never writes it
  CHECK(supervisor.info(tailed).stderr_tail == "inherited line (expected in the test log)\n");
}

TEST_CASE("the tail is up to date while the worker runs, and tail_bytes sets its size") {
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "echo starting; echo ready; exec sleep 60"});
  spec.stdout_spec.tail_bytes = 6;
  auto id = supervisor.submit(spec);
  auto until = std::chrono::steady_clock::now() + 20s;
  while (supervisor.info(id).stdout_tail != "ready\n" && std::chrono::steady_clock::now() < until) {
    supervisor.poll();
    std::this_thread::sleep_for(5ms);
  }
  CHECK(supervisor.info(id).stdout_tail == "ready\n");
  CHECK(supervisor.workers().front().stdout_tail == "ready\n");
  supervisor.cancel(id);
  REQUIRE(supervisor.wait_all(30s));
  CHECK(supervisor.info(id).state == WorkerState::cancelled);
}

TEST_CASE("a host that stops calling poll() for 2 s loses nothing: the worker waits") {
  JobSupervisor<> supervisor;
  std::vector<std::string> lines;
  supervisor.on_output_line([&](const jobwarden::OutputLine& line) { lines.emplace_back(line.text); });
  const int count = 500000;  // about 3.4 MB
  auto id = supervisor.submit(jwtest::quiet({"seq", "1", std::to_string(count)}));
  int pid = supervisor.info(id).pid;
  jwtest::KillOnExit guard;
  guard.watch(pid);
  std::this_thread::sleep_for(2s);  // no poll(): the pipe fills up
  CHECK_FALSE(jwtest::process_gone(pid));  // blocked on its next write, not gone
  REQUIRE(supervisor.wait_all(60s));
  CHECK(supervisor.info(id).state == WorkerState::succeeded);
  REQUIRE(lines.size() == static_cast<std::size_t>(count));
  bool in_order = true;
  for (int i = 0; i < count && in_order; ++i) in_order = lines[static_cast<std::size_t>(i)] == std::to_string(i + 1);
  CHECK(in_order);
}

TEST_CASE("a head-and-tail cap keeps the first and the last half, and says what it dropped between") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  const std::string whole = seq_text(100000);
  auto over = jwtest::quiet({"seq", "1", "100000"});
  over.stdout_spec = OutputSpec::to_capped_file(dir / "over.log", 1000, OutputSpec::Keep::head_and_tail);
  auto under = jwtest::quiet({"seq", "1", "100"});
  under.stdout_spec = OutputSpec::to_capped_file(dir / "under.log", 1000, OutputSpec::Keep::head_and_tail);
  auto a = supervisor.submit(over);
  auto b = supervisor.submit(under);
  REQUIRE(supervisor.wait_all(60s));
  std::uint64_t dropped = whole.size() - 1000;
  CHECK(supervisor.info(a).stdout_dropped_bytes == dropped);
  CHECK(jwtest::read_file(dir / "over.log") ==
        whole.substr(0, 500) + "\n[jobwarden: log limit of 1000 bytes reached; " + std::to_string(dropped) +
            " bytes dropped between the first 500 and the last 500 bytes]\n" +
            whole.substr(whole.size() - 500));
  CHECK(jwtest::read_file(dir / "under.log") == seq_text(100));
  CHECK(supervisor.info(b).stdout_dropped_bytes == 0);
}

TEST_CASE("a gigabyte into a head-and-tail capped log: the right bytes, bounded memory") {
  jwtest::TempDir dir;
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";  // resets the peak RSS to the current one: earlier tests do not count
  }
  const long rss_before = status_kib("VmRSS");
  const std::uint64_t cap = std::uint64_t{512} << 20;
  const std::uint64_t zeros = std::uint64_t{1} << 30;
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/sh", "-c", "printf HEAD; head -c " + std::to_string(zeros) + " /dev/zero; printf TAIL"});
  const std::string path = dir / "big.log";
  spec.stdout_spec = OutputSpec::to_capped_file(path, cap, OutputSpec::Keep::head_and_tail);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(300s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  const std::uint64_t total = zeros + 8;
  CHECK(info.stdout_dropped_bytes == total - cap);
  const std::string note = "\n[jobwarden: log limit of " + std::to_string(cap) + " bytes reached; " +
                           std::to_string(total - cap) + " bytes dropped between the first " +
                           std::to_string(cap / 2) + " and the last " + std::to_string(cap / 2) + " bytes]\n";
  CHECK(std::filesystem::file_size(path) == cap + note.size());
  CHECK(read_at(path, 0, 8) == std::string("HEAD") + std::string(4, '\0'));
  CHECK(read_at(path, cap / 2 - 4, 4) == std::string(4, '\0'));
  CHECK(read_at(path, cap / 2, note.size()) == note);
  CHECK(read_at(path, cap + note.size() - 8, 8) == std::string(4, '\0') + "TAIL");
  // What the supervisor held on top of what this process held before (a
  // sanitizer's quarantine may keep much of that): nowhere near the cap.
  const long growth = status_kib("VmHWM") - rss_before;
  CAPTURE(rss_before, growth);
  if (rss_before > 0) CHECK(growth < static_cast<long>(cap / 8 / 1024));
}

TEST_CASE("a log that cannot be created or written loses its bytes, not the worker") {
  jwtest::TempDir dir;
  const bool full = GENERATE(false, true);
  CAPTURE(full);
  const std::string path = full ? "/dev/full" : dir / "missing/out.log";
  if (full && !exists(path)) return;
  JobSupervisor<> supervisor;
  Recorder seen;
  seen.attach(supervisor);
  auto spec = jwtest::quiet({"/bin/sh", "-c", "echo a; echo b"});
  spec.stdout_spec = OutputSpec::to_file(path);
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.stdout_dropped_bytes == 4);
  CHECK(info.output_error.find(path) != std::string::npos);
  CHECK(info.output_error.find(full ? "No space left" : "cannot create") != std::string::npos);
  if (!full) CHECK(info.stdout_log.empty());
  REQUIRE(seen.lines.size() == 2);
  CHECK(seen.lines[0].text == "a");
  CHECK(seen.lines[1].text == "b");
}

TEST_CASE("restarts append to the supervised log of the job directory") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_root(dir));
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo \"attempt $JOBWARDEN_ATTEMPT\"; exit 1"};
  spec.stdout_spec = OutputSpec::supervised();
  spec.restart.policy = jobwarden::RestartPolicy::on_failure;
  spec.restart.max_restarts = 2;
  spec.restart.initial_backoff = 1ms;
  spec.restart.jitter = 0;
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  CHECK(info.attempt == 3);
  CHECK(jwtest::read_file(layout_of(dir).stdout_file(id)) == "attempt 1\nattempt 2\nattempt 3\n");
  CHECK(info.stdout_log == layout_of(dir).stdout_file(id));
}

TEST_CASE("supervised logs appended to by several workers lose no one's bytes") {
  jwtest::TempDir dir;
  const std::string shared = dir / "shared.log";
  JobSupervisor<> supervisor;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    WorkerSpec spec;
    spec.argv = {"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo \"w" + std::to_string(i) +
                                      " line $i\"; i=$((i+1)); done"};
    spec.stdout_spec = OutputSpec::to_file(shared, true);
    spec.stdout_spec.route = OutputSpec::Route::supervisor;
    spec.stdout_spec.tail_bytes = 64;  // the bytes pass through user space, written with O_APPEND
    spec.stderr_spec = OutputSpec::discard();
    ids.push_back(supervisor.submit(spec));
  }
  REQUIRE(supervisor.wait_all(60s));
  std::string text = jwtest::read_file(shared);
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  CHECK(lines == 8000);  // with one offset per writer, they overwrote each other
  for (int i = 0; i < 4; ++i) {
    CHECK(text.find("w" + std::to_string(i) + " line 1999\n") != std::string::npos);
  }
}

TEST_CASE("with 2>&1 into the job directory's log, a failed worker's stdout tail holds its stderr") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_root(dir));
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo progress; echo 'error: no such repository' >&2; exit 2"};
  spec.stderr_to_stdout = true;
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(60s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::failed);
  CHECK(info.stdout_tail == "progress\nerror: no such repository\n");
  CHECK(jwtest::read_file(layout_of(dir).stdout_file(id)) == info.stdout_tail);
}

TEST_CASE("without a job directory a line handler alone gets the workers' lines") {
  JobSupervisor<> supervisor;
  std::vector<std::string> lines;
  supervisor.on_output_line([&](const jobwarden::OutputLine& line) { lines.emplace_back(line.text); });
  WorkerSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo one; echo two"};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(60s));
  CHECK(lines == std::vector<std::string>{"one", "two"});
  CHECK(supervisor.info(id).stdout_log.empty());
}

TEST_CASE("a worker with supervised streams has no descriptor but 0, 1 and 2") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor(with_root(dir));
  Recorder seen;
  seen.attach(supervisor);  // both streams supervised
  // Another worker's pipes exist while this one starts.
  auto busy = supervisor.submit(jwtest::quiet({"/bin/sh", "-c", "echo busy; exec sleep 30"}));
  WorkerSpec spec;
  spec.argv = {jwtest::test_worker(), "fds"};
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait(id, 30s));
  supervisor.cancel(busy);
  REQUIRE(supervisor.wait_all(30s));
  std::vector<std::string> fds;
  for (const auto& line : seen.lines) {
    if (line.worker == id) fds.push_back(line.text);
  }
  CHECK(fds == std::vector<std::string>{"0", "1", "2"});
}

TEST_CASE("a capped log that goes direct is refused at submit") {
  JobSupervisor<> supervisor;
  auto spec = jwtest::quiet({"/bin/true"});
  spec.stdout_spec = OutputSpec::to_capped_file("/tmp/never-created.log", 100);
  spec.stdout_spec.route = OutputSpec::Route::direct;
  std::error_code ec;
  CHECK(supervisor.submit(spec, ec).empty());
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK_THROWS_WITH(supervisor.submit(spec), Catch::Contains("stdout_spec") && Catch::Contains("direct"));
}

TEST_CASE("srun's verdict is read from the tail when stderr is supervised into no complete file") {
  // No cluster: a stand-in srun runs nothing and says on stderr what the
  // worker's environment tells it to; the verdict turns exit 2 into
  // spawn_failed only if the launcher found it.
  jwtest::TempDir dir;
  std::ofstream(dir / "srun") << "#!/bin/sh\nprintf '%b' \"$VERDICT\" >&2\nexit 2\n";
  ::chmod((dir / "srun").c_str(), 0755);
  std::ofstream(dir / "scancel") << "#!/bin/sh\nexit 0\n";
  ::chmod((dir / "scancel").c_str(), 0755);
  jobwarden::SlurmOptions slurm;
  slurm.srun_program = dir / "srun";
  slurm.scancel_program = dir / "scancel";
  slurm.squeue_program = dir / "scancel";
  slurm.scratch_dir = dir / "scratch";
  slurm.orphan_guard = false;
  SupervisorOptions options;
  options.launcher = std::make_shared<jobwarden::SlurmLauncher>(slurm);
  JobSupervisor<> supervisor(options);
  const std::string verdict =
      "srun: job 7 queued\\nslurmstepd-n1: error: execve(): /opt/tool: No such file or directory\\n"
      "srun: error: n1: task 0: Exited with exit code 2\\n";
  const int variant = GENERATE(0, 1, 2, 3, 4);
  CAPTURE(variant);
  WorkerSpec spec;
  spec.argv = {"/opt/tool"};
  spec.env["VERDICT"] = verdict;
  spec.stdout_spec = OutputSpec::discard();
  switch (variant) {
    case 0: spec.stderr_spec = OutputSpec::discard(); break;       // supervised for its tail
    case 1:  // direct (no tail): srun's stderr captured in a scratch file, as before
      spec.stderr_spec = OutputSpec::discard();
      spec.stderr_spec.tail_bytes = 0;
      break;
    case 2: spec.stderr_spec = OutputSpec::to_capped_file(dir / "err.log", 10); break;  // the log keeps only a head
    case 3: spec.stderr_spec = OutputSpec::to_file(dir / "err.log"); break;  // supervised, complete
    case 4:  // 2>&1: stdout's tail
      spec.stderr_to_stdout = true;
      spec.stdout_spec.tail_bytes = 1024;
      break;
  }
  auto id = supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(30s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::spawn_failed);
  CHECK(info.error == "cannot run \"/opt/tool\" on n1: No such file or directory");
  CHECK_FALSE(info.exit_code);
  if (variant == 0 || variant == 2) CHECK(info.stderr_tail.find("task 0: Exited") != std::string::npos);
  if (variant == 4) CHECK(info.stdout_tail.find("task 0: Exited") != std::string::npos);
}

TEST_CASE("workers submitted from one thread while another polls deliver every line") {
  JobSupervisor<> supervisor;
  std::size_t lines = 0;
  supervisor.on_output_line([&](const jobwarden::OutputLine&) { ++lines; });  // poll thread only
  std::atomic<bool> done{false};
  std::thread poller([&] {
    while (!done) {
      supervisor.poll();
      std::this_thread::sleep_for(1ms);
    }
  });
  for (int i = 0; i < 20; ++i) supervisor.submit(jwtest::quiet({"seq", "1", "500"}));
  bool finished = false;
  auto until = std::chrono::steady_clock::now() + 60s;
  while (!finished && std::chrono::steady_clock::now() < until) {
    finished = supervisor.active_count() == 0;
    std::this_thread::sleep_for(5ms);
  }
  done = true;
  poller.join();
  REQUIRE(finished);
  supervisor.poll();
  CHECK(lines == 20u * 500u);
}
