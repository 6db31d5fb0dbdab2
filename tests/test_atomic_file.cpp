// Writing a file atomically and reading one safely (detail/atomic_file.hpp).
#include <jobwarden/detail/atomic_file.hpp>
#include <jobwarden/detail/directory.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "status_support.hpp"
#include "support.hpp"

using jobwarden::detail::AtomicWriteOptions;
using jobwarden::detail::OwnedFd;
using jobwarden::detail::read_file_at;
using jobwarden::detail::write_file_atomically;
using jobwarden::detail::write_file_atomically_at;

namespace {

OwnedFd open_dir(const std::string& path) {
  std::error_code ec;
  OwnedFd dir = jobwarden::detail::open_directory(path, ec);
  REQUIRE_FALSE(ec);
  return dir;
}

/// Names in `dir` that start with '.' (temporary files left behind).
std::vector<std::string> hidden_entries(const std::string& dir) {
  std::error_code ec;
  OwnedFd fd = jobwarden::detail::open_directory(dir, ec);
  std::vector<std::string> hidden;
  for (const auto& entry : jobwarden::detail::list_directory(fd.get(), ec)) {
    if (entry.name[0] == '.') hidden.push_back(entry.name);
  }
  return hidden;
}

}  // namespace

TEST_CASE("an atomic write replaces the file and leaves no temporary file behind") {
  jwtest::TempDir dir;
  REQUIRE_FALSE(write_file_atomically(dir / "status.json", "{\"a\":1}"));
  REQUIRE_FALSE(write_file_atomically(dir / "status.json", "{\"a\":2}"));
  CHECK(jwtest::read_file(dir / "status.json") == "{\"a\":2}");
  CHECK(hidden_entries(dir.path()).empty());
}

TEST_CASE("a durable atomic write replaces the file too") {
  jwtest::TempDir dir;
  AtomicWriteOptions durable;
  durable.durable = true;
  REQUIRE_FALSE(write_file_atomically(dir / "job.json", "first", durable));
  REQUIRE_FALSE(write_file_atomically(dir / "job.json", "second", durable));
  CHECK(jwtest::read_file(dir / "job.json") == "second");
  CHECK(hidden_entries(dir.path()).empty());
}

TEST_CASE("an atomic write replaces a symlink instead of writing through it") {
  jwtest::TempDir dir;
  jwstatus::write_text(dir / "outside.txt", "precious");
  REQUIRE(::symlink((dir / "outside.txt").c_str(), (dir / "status.json").c_str()) == 0);
  REQUIRE_FALSE(write_file_atomically(dir / "status.json", "new"));
  CHECK(jwtest::read_file(dir / "outside.txt") == "precious");
  CHECK(jwtest::read_file(dir / "status.json") == "new");
}

TEST_CASE("a reader never sees a partial file while a writer rewrites it tens of thousands of times") {
  jwtest::TempDir dir;
  OwnedFd dir_fd = open_dir(dir.path());
  auto document = [](int i) {
    // Alternate between a short and a long document so that a torn read shows.
    return nlohmann::json{{"seq", i}, {"pad", std::string(i % 2 == 0 ? 10 : 6000, 'x')}}.dump();
  };
  REQUIRE_FALSE(write_file_atomically_at(dir_fd.get(), "status.json", document(0)));

#if defined(__SANITIZE_THREAD__)
  // Under TSan each write costs ~10x: fewer rewrites keep the case far below
  // the ctest limit on a loaded machine, and still race the reader thousands of times.
  constexpr int writes = 5000;
#else
  constexpr int writes = 30000;
#endif
  std::atomic<bool> writing{true};
  std::atomic<int> write_errors{0};
  std::thread writer([&] {
    for (int i = 1; i <= writes; ++i) {
      if (write_file_atomically_at(dir_fd.get(), "status.json", document(i))) ++write_errors;
    }
    writing = false;
  });
  long reads = 0, bad_reads = 0, parse_errors = 0, last_seq = 0, went_back = 0;
  while (writing || reads == 0) {
    std::string content;
    if (read_file_at(dir_fd.get(), "status.json", content)) {
      ++bad_reads;
      continue;
    }
    ++reads;
    auto parsed = nlohmann::json::parse(content, nullptr, false);
    if (parsed.is_discarded()) {
      ++parse_errors;
      continue;
    }
    const long seq = parsed.at("seq").get<long>();
    if (seq < last_seq) ++went_back;
    last_seq = seq;
  }
  writer.join();
  CHECK(write_errors == 0);
  CHECK(bad_reads == 0);
  CHECK(parse_errors == 0);
  CHECK(went_back == 0);
  CHECK(reads > 0);
  CHECK(hidden_entries(dir.path()).empty());
}

TEST_CASE("a write whose directory does not exist returns an error") {
  jwtest::TempDir dir;
  auto ec = write_file_atomically(dir / "missing/status.json", "{}");
  CHECK(ec == std::errc::no_such_file_or_directory);
}

TEST_CASE("a write whose directory is a file returns an error and leaves the file alone") {
  jwtest::TempDir dir;
  jwstatus::write_text(dir / "workers", "not a directory");
  auto ec = write_file_atomically(dir / "workers/status.json", "{}");
  CHECK(ec == std::errc::not_a_directory);
  CHECK(jwtest::read_file(dir / "workers") == "not a directory");
}

TEST_CASE("a write that hits the file size limit fails, keeps the last good file and removes its temporary file") {
  jwtest::TempDir dir;
  const std::string target = dir / "status.json";
  REQUIRE_FALSE(write_file_atomically(target, "{\"good\":true}"));
  // RLIMIT_FSIZE applies to the whole process, so the failing write runs in a
  // forked child (reaped by run_in_child); SIGXFSZ is ignored so write() reports EFBIG.
  const int child_result = jwstatus::run_in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {};
    limit.rlim_cur = limit.rlim_max = 64;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 10;
    auto ec = write_file_atomically(target, std::string(4096, 'x'));
    return ec == std::errc::file_too_large ? 0 : 11;
  });
  CHECK(child_result == 0);
  CHECK(jwtest::read_file(target) == "{\"good\":true}");
  CHECK(hidden_entries(dir.path()).empty());
}

TEST_CASE("the safe reader refuses a symlink") {
  jwtest::TempDir dir;
  jwstatus::write_text(dir / "secret", "{\"secret\":1}");
  REQUIRE(::symlink((dir / "secret").c_str(), (dir / "status.json").c_str()) == 0);
  OwnedFd dir_fd = open_dir(dir.path());
  std::string content;
  auto ec = read_file_at(dir_fd.get(), "status.json", content);
  CHECK(ec == std::errc::too_many_symbolic_link_levels);
  CHECK(content.empty());
}

TEST_CASE("the safe reader reports an oversized file without reading it") {
  jwtest::TempDir dir;
  jwstatus::write_text(dir / "status.json", std::string(2000, ' '));
  OwnedFd dir_fd = open_dir(dir.path());
  std::string content;
  jobwarden::detail::FileStamp stamp;
  auto ec = read_file_at(dir_fd.get(), "status.json", content, &stamp, 1000);
  CHECK(ec == jobwarden::errc::oversized_file);
  CHECK(stamp.size == 2000);
  CHECK(content.empty());
  CHECK_FALSE(read_file_at(dir_fd.get(), "status.json", content, nullptr, 2000));
  CHECK(content.size() == 2000);
}

TEST_CASE("the safe reader refuses a FIFO without blocking") {
  jwtest::TempDir dir;
  REQUIRE(::mkfifo((dir / "status.json").c_str(), 0644) == 0);
  OwnedFd dir_fd = open_dir(dir.path());
  std::string content;
  CHECK(read_file_at(dir_fd.get(), "status.json", content) == jobwarden::errc::not_regular_file);
  jobwarden::detail::FileStamp stamp;
  CHECK(jobwarden::detail::stat_file_at(dir_fd.get(), "status.json", stamp) == jobwarden::errc::not_regular_file);
}

TEST_CASE("removing a tree never follows a symlink out of it") {
  jwtest::TempDir dir;
  jwstatus::make_dir(dir / "outside");
  jwstatus::write_text(dir / "outside/keep.txt", "keep");
  jwstatus::make_dir(dir / "tree");
  jwstatus::make_dir(dir / "tree/sub");
  jwstatus::write_text(dir / "tree/sub/file", "x");
  REQUIRE(::symlink((dir / "outside").c_str(), (dir / "tree/sub/link").c_str()) == 0);
  OwnedFd dir_fd = open_dir(dir.path());
  CHECK_FALSE(jobwarden::detail::remove_tree_at(dir_fd.get(), "tree"));
  struct stat info {};
  CHECK(::lstat((dir / "tree").c_str(), &info) != 0);
  CHECK(jwtest::read_file(dir / "outside/keep.txt") == "keep");
}
