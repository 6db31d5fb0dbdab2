// Fault injection: a full disk under the job directory, a worker printing a
// gigabyte, and a soak of thousands of short jobs.
#include <dirent.h>
#include <malloc.h>
#include <sys/mount.h>

#include <jobwarden/detail/platform.hpp>
#include <jobwarden/job_supervisor.hpp>

#include "catch.hpp"
#include "helpers/journal_reading.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::WorkerSpec;
using jobwarden::WorkerState;

namespace {
std::size_t open_fd_count() {
  std::size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* entry = ::readdir(dir)) n += entry->d_name[0] != '.';
  ::closedir(dir);
  return n - 1;  // the directory's own descriptor
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  long value = 0;
  while (status >> key) {
    if (key == "VmRSS:") {
      status >> value;
      return value;
    }
  }
  return 0;
}

std::vector<int> our_children() {
  std::vector<int> children;
  DIR* dir = ::opendir("/proc");
  while (dirent* entry = ::readdir(dir)) {
    int pid = std::atoi(entry->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close_paren = line.rfind(')');
    std::istringstream rest(line.substr(close_paren + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid()) children.push_back(pid);
  }
  ::closedir(dir);
  return children;
}

/// A tiny tmpfs, so the job directory can really run out of space.
class SmallFilesystem {
 public:
  explicit SmallFilesystem(const std::string& path) : path_(path) {
    mounted_ = ::mount("jobwarden-test", path.c_str(), "tmpfs", 0, "size=256k") == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};
}  // namespace

TEST_CASE("a full disk under the job directory fails writes, not the supervisor, and loses no record") {
  jwtest::TempDir dir;
  SmallFilesystem small(dir.path());
  if (!small.mounted()) {
    WARN("SKIPPED: cannot mount a tmpfs here (needs root): " << std::strerror(errno));
    return;
  }
  jobwarden::SupervisorOptions options;
  options.root = dir.path();
  options.job_id = "full";
  JobSupervisor<> supervisor(options);
  WorkerSpec spec;
  spec.argv = {"/bin/true"};
  spec.stdout_spec = jobwarden::OutputSpec::discard();
  spec.stderr_spec = jobwarden::OutputSpec::discard();
  auto before = supervisor.submit(spec);
  REQUIRE(supervisor.wait(before, 30s));
  // Fill the filesystem.
  {
    std::ofstream filler(dir / "filler", std::ios::binary);
    std::string block(4096, 'x');
    while (filler.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }
  std::vector<std::string> during;
  for (int i = 0; i < 5; ++i) during.push_back(supervisor.submit(spec));
  REQUIRE(supervisor.wait_all(30s));
  for (const auto& id : during) CHECK(supervisor.info(id).state == WorkerState::succeeded);
  CHECK(supervisor.status_write_failures() > 0);
  auto [error, path] = supervisor.last_status_error();
  CHECK(error == std::errc::no_space_on_device);
  CHECK_FALSE(path.empty());
  // The records written before the disk filled are intact, and a short
  // append was cut back: the journal still ends in a whole line.
  const jobwarden::detail::JobLayout layout{dir.path(), "full"};
  CHECK(jwtest::read_file(layout.journal_file()).back() == '\n');
  {
    auto fold = jwjournal::fold_of(layout);
    CHECK(fold.problems().empty());
    CHECK(jwjournal::worker_record(layout, before).state == WorkerState::succeeded);
  }
  // Space again: the next writes repair the records.
  std::filesystem::remove(dir / "filler");
  auto after = supervisor.submit(spec);
  REQUIRE(supervisor.wait(after, 30s));
  supervisor.finish();
  supervisor.poll();
  auto status = supervisor.status();
  CHECK(status.state == jobwarden::JobState::succeeded);
  CHECK(status.summary.succeeded == 7);
}

TEST_CASE("a worker printing a gigabyte into a capped log neither blocks nor fills the disk") {
  jwtest::TempDir dir;
  JobSupervisor<> supervisor;
  WorkerSpec spec;
  spec.argv = {jwtest::test_worker(), "flood", "1073741824"};
  spec.stdout_spec = jobwarden::OutputSpec::to_capped_file(dir / "out.log", 4 << 20);
  auto id = supervisor.submit(spec);
  // Meanwhile the supervisor still serves other work.
  WorkerSpec quick;
  quick.argv = {"/bin/true"};
  auto other = supervisor.submit(quick);
  REQUIRE(supervisor.wait(other, 60s));
  REQUIRE(supervisor.wait(id, 300s));
  auto info = supervisor.info(id);
  CHECK(info.state == WorkerState::succeeded);
  CHECK(info.stdout_dropped_bytes == (1ull << 30) - (4ull << 20));
  CHECK(std::filesystem::file_size(dir / "out.log") < (4u << 20) + 200);
}

TEST_CASE("after 5000 short jobs no descriptor, zombie or per-worker memory is left over") {
  ::malloc_trim(0);
  std::size_t fds_before = open_fd_count();
  long rss_before = rss_kib();
  // JOBWARDEN_SOAK_JOBS lowers the count where every spawn is slow (TSan).
  const char* configured = std::getenv("JOBWARDEN_SOAK_JOBS");
  const int jobs = configured != nullptr ? std::atoi(configured) : 5000;
  REQUIRE(jobs > 0);
  {
    jobwarden::SupervisorOptions options;
    options.max_concurrency = 4;
    JobSupervisor<> supervisor(options);
    WorkerSpec spec;
    spec.argv = {"/bin/true"};
    spec.stdout_spec = jobwarden::OutputSpec::discard();
    for (int i = 0; i < jobs; ++i) supervisor.submit(spec);
    REQUIRE(supervisor.wait_all(600s));
    std::size_t succeeded = 0;
    for (const auto& w : supervisor.workers()) succeeded += w.state == WorkerState::succeeded;
    CHECK(succeeded == static_cast<std::size_t>(jobs));
    CHECK(our_children().size() == 1);  // only the orphan guard
    long per_worker = (rss_kib() - rss_before) * 1024 / jobs;
    INFO("supervisor memory per finished worker record: " << per_worker << " bytes");
    // A sanitizer's allocator keeps freed memory and pads every block: memory
    // is only measured in plain builds.
    if (!JOBWARDEN_UNDER_SANITIZER) CHECK(per_worker < 16 * 1024);
  }
  ::malloc_trim(0);
  CHECK(open_fd_count() == fds_before);
  CHECK(our_children().empty());
  INFO("RSS before " << rss_before << " KiB, after " << rss_kib() << " KiB");
  if (!JOBWARDEN_UNDER_SANITIZER) CHECK(rss_kib() - rss_before < 8 * 1024);
}
