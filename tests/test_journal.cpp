// The job's journal (`journal.jsonl`): the writer appends whole lines only,
// a torn tail is never read and is cut before the next append, a short write
// leaves the file ending in a whole line, a compaction loses no record for a
// follower holding the old file, the supervisor compacts a long-lived job's
// journal, durable mode works, and a worker that prints and reports nothing
// adds no file to the job directory.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <jobwarden/detail/directory.hpp>
#include <jobwarden/detail/job_lock.hpp>
#include <jobwarden/detail/job_recorder.hpp>
#include <jobwarden/detail/journal.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "status_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
namespace jd = jobwarden::detail;
using jobwarden::JobState;
using jobwarden::WorkerInfo;
using jobwarden::WorkerState;

namespace {

/// A directory opened for the journal's writer and readers.
jd::OwnedFd open_dir(const std::string& path) {
  std::error_code ec;
  jd::OwnedFd fd = jd::open_directory(path, ec);
  if (ec) throw std::system_error(ec, path);
  return fd;
}

/// Every whole line a follower delivers, and its problems.
struct Followed {
  jd::JournalFollower follower;
  std::vector<std::string> lines;
  std::vector<jd::JournalProblem> problems;
  int resets = 0;

  std::error_code follow(int dir_fd) {
    return follower.follow(
        dir_fd, [&] { ++resets; }, [&](std::string_view line, std::uint64_t) { lines.emplace_back(line); },
        [&](jd::JournalProblem problem) { problems.push_back(std::move(problem)); });
  }
};

/// A worker line's text for `id` at `attempt`, state running.
std::string worker_line(const std::string& id, int attempt) {
  WorkerInfo info;
  info.id = id;
  info.attempt = attempt;
  info.state = WorkerState::running;
  info.argv = {"scan", id};
  return jd::worker_line_text(info, std::chrono::system_clock::now());
}

/// A new journal of job "j" in `dir_fd` holding worker "a"'s line.
jd::JournalWriter started_journal(int dir_fd) {
  jd::JournalWriter writer;
  std::error_code ec;
  writer.create(dir_fd, "j", 1, worker_line("a", 1), ec);
  if (ec) throw std::system_error(ec, "cannot create the journal");
  return writer;
}

std::vector<std::string> entries_of(const std::string& path) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(path)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("the writer appends whole lines and a follower reads only what is new") {
  jwtest::TempDir dir;
  jd::OwnedFd fd = open_dir(dir.path());
  jd::JournalWriter writer;
  std::error_code ec;
  writer.create(fd.get(), "j", 1, "", ec);
  REQUIRE_FALSE(ec);
  REQUIRE_FALSE(writer.append(worker_line("a", 1)));
  REQUIRE_FALSE(writer.append(worker_line("b", 1)));
  CHECK(writer.size() == jwtest::read_file(dir / "journal.jsonl").size());

  Followed followed;
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 3);  // the first line, then a and b
  CHECK_THAT(followed.lines[0], Catch::Contains("\"schema_version\":2"));
  CHECK_THAT(followed.lines[2], Catch::StartsWith("{\"type\":\"worker\",\"id\":\"b\""));
  CHECK(followed.follower.offset() == writer.size());

  REQUIRE_FALSE(writer.append(worker_line("a", 2)));
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 4);  // only the new line
  CHECK_THAT(followed.lines[3], Catch::StartsWith("{\"type\":\"worker\",\"id\":\"a\""));
  CHECK_THAT(followed.lines[3], Catch::Contains("\"attempt\":2"));
  CHECK(followed.resets == 1);
  CHECK(followed.problems.empty());
  const std::string text = jwtest::read_file(dir / "journal.jsonl");
  CHECK(std::count(text.begin(), text.end(), '\n') == 4);
  CHECK(text.back() == '\n');
}

TEST_CASE("a torn tail is left by the follower until its newline comes, and cut by open_existing") {
  jwtest::TempDir dir;
  jd::OwnedFd fd = open_dir(dir.path());
  const std::string path = dir / "journal.jsonl";
  started_journal(fd.get());
  const std::string whole = jwtest::read_file(path);
  const std::string line = worker_line("b", 1);
  const std::string head = line.substr(0, line.size() / 2);

  // Being written: the follower delivers nothing of it, and stays before it.
  jwstatus::append_text(path, head);
  Followed followed;
  REQUIRE_FALSE(followed.follow(fd.get()));
  CHECK(followed.lines.size() == 2);
  CHECK(followed.follower.offset() == whole.size());
  // Its rest arrives: the line is delivered whole, once.
  jwstatus::append_text(path, line.substr(head.size()));
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 3);
  CHECK(followed.lines[2] + "\n" == line);
  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.problems().empty());
  REQUIRE(fold.find("b") != nullptr);
  CHECK(fold.find("b")->ok);

  // Torn for good (the writer died): the next writer cuts it before appending.
  const std::string before_tear = jwtest::read_file(path);
  jwstatus::append_text(path, head);
  {
    jd::JournalWriter writer;
    std::error_code ec;
    writer.open_existing(fd.get(), "j", 1, ec);
    REQUIRE_FALSE(ec);
    CHECK(writer.size() == before_tear.size());
    CHECK(jwtest::read_file(path) == before_tear);
    REQUIRE_FALSE(writer.append(worker_line("c", 1)));
  }
  const std::string after = jwtest::read_file(path);
  CHECK(after.compare(0, before_tear.size(), before_tear) == 0);
  const std::string appended = after.substr(before_tear.size());
  CHECK_THAT(appended, Catch::StartsWith("{\"type\":\"worker\",\"id\":\"c\""));
  CHECK(std::count(appended.begin(), appended.end(), '\n') == 1);
  CHECK(after.back() == '\n');
  jd::JournalFold again;
  REQUIRE_FALSE(jd::read_journal(fd.get(), again));
  CHECK(again.problems().empty());
  CHECK(again.worker_count() == 3);
  REQUIRE(again.find("c") != nullptr);
  CHECK(again.find("c")->ok);
  // The follower that read up to the tear goes on from where it was.
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 4);
  CHECK_THAT(followed.lines[3], Catch::StartsWith("{\"type\":\"worker\",\"id\":\"c\""));
  CHECK(followed.problems.empty());
}

TEST_CASE("a short write (file size limit) leaves the journal ending in a whole line") {
  jwtest::TempDir dir;
  const std::string path = dir / "journal.jsonl";
  // In a child: the size limit and the ignored SIGXFSZ stay there.
  const int code = jwstatus::run_in_child([&]() -> int {
    ::signal(SIGXFSZ, SIG_IGN);
    jd::OwnedFd fd = open_dir(dir.path());
    jd::JournalWriter writer;
    std::error_code ec;
    writer.create(fd.get(), "j", 1, worker_line("a", 1), ec);
    if (ec) return 10;
    const std::uint64_t size = writer.size();
    rlimit limit{};
    if (::getrlimit(RLIMIT_FSIZE, &limit) != 0) return 11;
    const rlimit old = limit;
    limit.rlim_cur = static_cast<rlim_t>(size + 10);  // room for 10 bytes of the next line
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 12;
    const std::error_code failed = writer.append(worker_line("b", 1));
    if (failed != std::errc::file_too_large) return 13;
    if (writer.size() != size) return 14;
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) != size) return 15;
    // Room again: the next append stands on its own.
    if (::setrlimit(RLIMIT_FSIZE, &old) != 0) return 16;
    if (writer.append(worker_line("c", 1))) return 17;
    return 0;
  });
  REQUIRE(code == 0);
  const std::string text = jwtest::read_file(path);
  CHECK(text.back() == '\n');
  CHECK(text.find("\"id\":\"b\"") == std::string::npos);
  jd::OwnedFd fd = open_dir(dir.path());
  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.problems().empty());
  CHECK(fold.worker_count() == 2);
  CHECK(fold.find("a") != nullptr);
  CHECK(fold.find("c") != nullptr);
}

TEST_CASE("a compaction that fails for want of descriptors leaves the writer on the named journal") {
  jwtest::TempDir dir;
  const std::string path = dir / "journal.jsonl";
  // In a child: the descriptors it uses up die with it.
  const int code = jwstatus::run_in_child([&]() -> int {
    jd::OwnedFd fd = open_dir(dir.path());
    jd::JournalWriter writer;
    std::error_code ec;
    writer.create(fd.get(), "j", 1, worker_line("a", 1), ec);
    if (ec) return 10;
    const std::string snapshot = worker_line("a", 1);
    const std::string appended = worker_line("b", 1);
    std::vector<int> spent;
    spent.reserve(1 << 16);
    for (;;) {
      const int extra = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (extra < 0) break;
      spent.push_back(extra);
      if (spent.size() > 1'000'000) return 11;
    }
    const int open_errno = errno;
    // No descriptor for the new file: the old journal stays, named and open.
    const std::error_code compacted = writer.compact(snapshot);
    const std::uint64_t generation = writer.generation();
    const bool appended_ok = !writer.append(appended);
    for (int extra : spent) ::close(extra);
    // Checked only with descriptors again: UBSan's dynamic type check behind
    // error_code comparisons needs a pipe of its own.
    if (open_errno != EMFILE) return 12;
    if (compacted != std::errc::too_many_files_open) return 13;
    if (generation != 1) return 14;
    if (!appended_ok) return 15;
    // With descriptors again: the new journal, and the appends land in it.
    if (writer.compact(worker_line("a", 1) + worker_line("b", 1))) return 16;
    if (writer.generation() != 2) return 17;
    if (writer.append(worker_line("c", 1))) return 18;
    return 0;
  });
  REQUIRE(code == 0);
  jd::OwnedFd fd = open_dir(dir.path());
  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.generation() == 2);
  CHECK(fold.problems().empty());
  CHECK(fold.worker_count() == 3);
  CHECK(fold.find("c") != nullptr);
  CHECK(entries_of(dir.path()) == std::vector<std::string>{"journal.jsonl"});  // no temporary left
}

TEST_CASE("a worker line with a huge argv stays readable, and the writer refuses a line no reader takes") {
  jwtest::TempDir dir;
  jd::OwnedFd fd = open_dir(dir.path());
  WorkerInfo info;
  info.id = "tar";
  info.state = WorkerState::running;
  info.argv = {"tar", "czf", "x.tgz"};
  for (int i = 0; i < 12'000; ++i) info.argv.push_back("/data/some/rather/long/path/to/a/file-" + std::to_string(i) + ".bin");
  const std::string line = jd::worker_line_text(info, std::chrono::system_clock::now());
  CHECK(line.size() < jd::max_journal_line);
  jd::JournalWriter writer;
  std::error_code ec;
  writer.create(fd.get(), "j", 1, line, ec);
  REQUIRE_FALSE(ec);
  const std::string before = jwtest::read_file(dir / "journal.jsonl");
  CHECK(writer.append(std::string(jd::max_journal_line + 1, 'x') + "\n") == jobwarden::errc::oversized_file);
  CHECK(jwtest::read_file(dir / "journal.jsonl") == before);

  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.problems().empty());
  const jd::JournalWorker* worker = fold.find("tar");
  REQUIRE(worker != nullptr);
  REQUIRE(worker->ok);
  const auto& argv = worker->info.argv;
  REQUIRE(argv.size() > 3);
  REQUIRE(argv.size() < info.argv.size());
  CHECK(std::equal(argv.begin(), argv.end(), info.argv.begin()));
  const auto document = nlohmann::json::parse(line);
  CHECK(document.at("argv_omitted").get<std::size_t>() == info.argv.size() - argv.size());
  // A short argv has no count.
  CHECK(nlohmann::json::parse(worker_line("a", 1)).count("argv_omitted") == 0);
}

TEST_CASE("an oversized line is reported once, also while unfinished, and the lines after it are read") {
  jwtest::TempDir dir;
  jd::OwnedFd fd = open_dir(dir.path());
  const std::string path = dir / "journal.jsonl";
  started_journal(fd.get());
  Followed followed;
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 2);
  // A hostile writer: 1.5 MiB without a newline yet, in three steps.
  const std::string chunk(jd::max_journal_line / 2, 'x');
  for (int i = 0; i < 3; ++i) {
    jwstatus::append_text(path, chunk);
    REQUIRE_FALSE(followed.follow(fd.get()));
    CHECK(followed.lines.size() == 2);
  }
  CHECK(followed.problems.size() == 1);
  // Its end, and a good line after it.
  jwstatus::append_text(path, "\n" + worker_line("b", 1));
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 3);
  CHECK_THAT(followed.lines[2], Catch::StartsWith("{\"type\":\"worker\",\"id\":\"b\""));
  CHECK(followed.problems.size() == 1);
  // A whole line of 1.5 MiB arriving at once is reported, not delivered.
  jwstatus::append_text(path, chunk + chunk + chunk + "\n" + worker_line("c", 1));
  REQUIRE_FALSE(followed.follow(fd.get()));
  REQUIRE(followed.lines.size() == 4);
  CHECK_THAT(followed.lines[3], Catch::StartsWith("{\"type\":\"worker\",\"id\":\"c\""));
  REQUIRE(followed.problems.size() == 2);
  CHECK(followed.problems[1].error == "oversized line");
  // A fresh reader says the same.
  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.problems().size() == 2);
  CHECK(fold.worker_count() == 3);
}

TEST_CASE("only the first line is the header: one further down is reported and changes nothing") {
  jwtest::TempDir dir;
  jd::OwnedFd fd = open_dir(dir.path());
  jd::JournalWriter writer = started_journal(fd.get());
  REQUIRE_FALSE(writer.append("{\"type\":\"journal\",\"schema_version\":3,\"job_id\":\"j\",\"generation\":9}\n"));
  jd::JournalFold fold;
  REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
  CHECK(fold.schema_version() == 2);
  CHECK(fold.generation() == 1);
  CHECK(jd::journal_schema_problem(fold).empty());
  REQUIRE(fold.problems().size() == 1);
  CHECK(fold.problems()[0].detail == "a journal header that is not the first line");
}

TEST_CASE("compaction while a follower holds the old file: no record is lost, the fold is a fresh reader's") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir.path(), "long"};
  jd::JobRecorderOptions options;
  options.compact_bytes = 1;  // whenever the journal is twice its fold (and 4 KiB more)
  jd::JobRecorder recorder(layout, options);
  recorder.open();
  jd::OwnedFd job_fd = open_dir(layout.job_dir());

  jd::JournalFollower follower;
  jd::JournalFold followed;
  std::set<std::pair<std::string, int>> seen;  // every (worker, attempt) the follower was given
  auto follow = [&] {
    std::error_code ec = follower.follow(
        job_fd.get(), [&] { followed.reset(); },
        [&](std::string_view line, std::uint64_t offset) {
          followed.apply(line, offset);
          auto document = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
          if (document.value("type", "") == "worker") seen.emplace(document["id"].get<std::string>(), document["attempt"].get<int>());
        },
        [&](jd::JournalProblem problem) { followed.note(std::move(problem)); });
    REQUIRE_FALSE(ec);
  };
  follow();

  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  std::set<std::pair<std::string, int>> written;
  int compactions = 0;
  for (int attempt = 1; attempt <= 60; ++attempt) {
    for (const std::string& id : ids) {
      WorkerInfo info;
      info.id = id;
      info.attempt = attempt;
      info.state = WorkerState::running;
      info.argv = {"scan", id, std::string(64, 'x')};
      recorder.write_worker(info);
      written.emplace(id, attempt);
    }
    jobwarden::JobSummary summary;
    for (std::size_t i = 0; i < ids.size(); ++i) summary.add(WorkerState::running);
    recorder.write_job(JobState::running, summary);
    // Lines appended to the old file after the follower's last read, then
    // the rename: the follower must read the old file to its end first.
    const std::uint64_t generation = recorder.journal_generation();
    std::error_code ec;
    recorder.compact_if_due(ec);
    REQUIRE_FALSE(ec);
    if (recorder.journal_generation() != generation) ++compactions;
    if (attempt <= 40) {
      // At most one compaction between two reads: every line written reaches the follower.
      follow();
      if (attempt == 40) {
        std::vector<std::string> missing;
        for (const auto& [id, n] : written) {
          if (seen.count({id, n}) == 0) missing.push_back(id + "#" + std::to_string(n));
        }
        CAPTURE(missing);
        CHECK(missing.empty());
        CHECK(seen == written);
        CHECK(compactions >= 3);
      }
    } else if (attempt % 7 == 0) {
      // Several compactions between two reads: the lines of a journal that
      // was replaced before anyone opened it are superseded, never read;
      // the fold still comes out whole.
      follow();
    }
  }
  follow();

  jd::JournalFold fresh;
  REQUIRE_FALSE(jd::read_journal(job_fd.get(), fresh));
  CHECK(fresh.generation() == recorder.journal_generation());
  CHECK(followed.generation() == fresh.generation());
  CHECK(followed.problems().empty());
  CHECK(fresh.problems().empty());
  REQUIRE(followed.worker_count() == fresh.worker_count());
  for (std::size_t i = 0; i < fresh.worker_count(); ++i) {
    const jd::JournalWorker& want = fresh.worker(i);
    const jd::JournalWorker* got = followed.find(want.id);
    REQUIRE(got != nullptr);
    CHECK(got->line == want.line);
    CHECK(got->info.attempt == 60);
  }
  REQUIRE(followed.job());
  REQUIRE(fresh.job());
  CHECK(jd::job_line_text(*followed.job()) == jd::job_line_text(*fresh.job()));
  // Bounded: the compacted journal is about its fold, not 60 rounds of lines.
  const std::string text = jwtest::read_file(layout.journal_file());
  CHECK(recorder.journal_size() == text.size());
  const auto lines = std::count(text.begin(), text.end(), '\n');
  CHECK(lines < 60 * static_cast<long>(ids.size() + 1) / 4);
}

TEST_CASE("the supervisor compacts a long-lived job's journal (a restarting worker)") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "pool";
  options.journal_compact_bytes = 4096;
  options.orphan_guard = false;
  jobwarden::JobSupervisor<> supervisor(options);
  jobwarden::WorkerSpec spec = jwtest::quiet({"/bin/false"});
  spec.id = "flaky";
  spec.restart.policy = jobwarden::RestartPolicy::on_failure;
  spec.restart.max_restarts = 80;
  spec.restart.initial_backoff = 0ms;
  spec.restart.max_backoff = 0ms;
  spec.restart.jitter = 0;
  spec.restart.burst_limit = 1000;
  supervisor.submit(spec);
  REQUIRE(supervisor.wait_all(120s));
  supervisor.finish();
  supervisor.poll();

  const jd::JobLayout layout{dir.path(), "pool"};
  jd::JournalFold fold = jwjournal::fold_of(layout);
  CHECK(fold.problems().empty());
  CHECK(fold.generation() > 1);  // compacted at least once
  const jd::JournalWorker* worker = fold.find("flaky");
  REQUIRE(worker != nullptr);
  REQUIRE(worker->ok);
  CHECK(worker->info.state == WorkerState::failed);
  CHECK(worker->info.attempt == 81);
  REQUIRE(fold.job());
  CHECK(fold.job()->state == JobState::failed);
  // 81 attempts are hundreds of lines; what is left is a few kilobytes.
  const std::string text = jwtest::read_file(layout.journal_file());
  CHECK(std::count(text.begin(), text.end(), '\n') < 81);
}

TEST_CASE("durable mode writes a readable journal (writer, compaction and supervisor)") {
  jwtest::TempDir dir;
  {
    jd::OwnedFd fd = open_dir(dir.path());
    jd::JournalWriter writer;
    writer.options().durable = true;
    std::error_code ec;
    writer.create(fd.get(), "j", 1, "", ec);
    REQUIRE_FALSE(ec);
    REQUIRE_FALSE(writer.append(worker_line("a", 1)));
    CHECK_FALSE(writer.sync());
    CHECK_FALSE(writer.sync());  // nothing new: nothing to do
    REQUIRE_FALSE(writer.compact(worker_line("a", 1)));
    CHECK(writer.generation() == 2);
    REQUIRE_FALSE(writer.append(worker_line("a", 2)));
    CHECK_FALSE(writer.sync());
    jd::JournalFold fold;
    REQUIRE_FALSE(jd::read_journal(fd.get(), fold));
    CHECK(fold.generation() == 2);
    REQUIRE(fold.find("a") != nullptr);
    CHECK(fold.find("a")->info.attempt == 2);
  }
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "durable";
  options.durable = true;
  jobwarden::JobSupervisor<> supervisor(options);
  for (int i = 0; i < 5; ++i) supervisor.submit(jwtest::quiet({"/bin/true"}));
  REQUIRE(supervisor.wait_all(60s));
  supervisor.finish();
  supervisor.poll();
  CHECK(supervisor.status_write_failures() == 0);
  jd::JournalFold fold = jwjournal::fold_of({dir.path(), "durable"});
  CHECK(fold.problems().empty());
  REQUIRE(fold.worker_count() == 5);
  for (std::size_t i = 0; i < 5; ++i) CHECK(fold.worker(i).info.state == WorkerState::succeeded);
  REQUIRE(fold.job());
  CHECK(fold.job()->state == JobState::succeeded);
}

TEST_CASE("200 workers that print and report nothing add no file to the job directory") {
  jwtest::TempDir dir;
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "silent";
  {
    jobwarden::JobSupervisor<> supervisor(options);
    for (int i = 0; i < 200; ++i) {
      jobwarden::WorkerSpec spec;  // default outputs: the job's logs
      spec.argv = {"/bin/true"};
      supervisor.submit(spec);
    }
    REQUIRE(supervisor.wait_all(120s));
    supervisor.finish();
    supervisor.poll();
    const jd::JobLayout layout{dir.path(), "silent"};
    CHECK(entries_of(layout.job_dir()) ==
          std::vector<std::string>{"journal.jsonl", "supervisor.lock", "workers"});
    CHECK(entries_of(layout.workers_dir()).empty());
    jd::JournalFold fold = jwjournal::fold_of(layout);
    CHECK(fold.worker_count() == 200);
    REQUIRE(fold.job());
    CHECK(fold.job()->state == JobState::succeeded);
    REQUIRE(fold.job()->summary);
    CHECK(fold.job()->summary->succeeded == 200);
  }
}

TEST_CASE("a lock adopted from a job directory since removed and made again is not taken for the new one's") {
  jwtest::TempDir dir;
  const jd::JobLayout layout{dir.path(), "again"};
  std::filesystem::create_directories(layout.job_dir());
  std::error_code ec;
  jd::OwnedFd lock;
  {
    jd::OwnedFd old_dir = open_dir(layout.job_dir());
    lock = jd::acquire_supervisor_lock(old_dir.get(), /*create=*/true, 0ms, ec);
    REQUIRE_FALSE(ec);
  }
  // What a `clean` during a background recovery does: the directory goes,
  // and a new one of that name comes.
  std::filesystem::remove_all(layout.job_dir());
  std::filesystem::create_directories(layout.job_dir());
  jd::JobRecorder recorder(layout, jd::JobRecorderOptions{});
  recorder.adopt_lock(std::move(lock));
  recorder.open(ec);
  REQUIRE_FALSE(ec);
  jd::OwnedFd new_dir = open_dir(layout.job_dir());
  CHECK(jd::probe_supervisor_lock(new_dir.get()) == jd::LockProbe::held);  // its own lock, held
  recorder.close();
  CHECK(jd::probe_supervisor_lock(new_dir.get()) == jd::LockProbe::free);

  // The same directory: the adopted lock is the one kept (no second take).
  lock = jd::acquire_supervisor_lock(new_dir.get(), /*create=*/true, 0ms, ec);
  REQUIRE_FALSE(ec);
  jd::JobRecorderOptions replace;
  replace.replace_finished = true;
  jd::JobRecorder second(layout, replace);
  second.adopt_lock(std::move(lock));
  second.open(ec);
  REQUIRE_FALSE(ec);
  CHECK(jd::probe_supervisor_lock(new_dir.get()) == jd::LockProbe::held);
}
