// SharedSlots and MachineSlots: a concurrency limit shared by several
// supervisors of one host, and by processes of one machine.

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <sstream>
#include <thread>

#include <jobwarden/job_supervisor.hpp>
#include <jobwarden/shared_slots.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::JobSupervisor;
using jobwarden::MachineSlots;
using jobwarden::SharedSlots;
using jobwarden::WorkerState;

namespace {

using Span = std::pair<long long, long long>;

/// The (start, end) a `times` worker wrote to `path`.
Span read_span(const std::string& path) {
  std::istringstream in(jwtest::read_file(path));
  Span span{0, 0};
  in >> span.first >> span.second;
  return span;
}

/// Most spans covering one instant (a start is the instant where a new
/// maximum can begin).
int most_at_once(const std::vector<Span>& spans) {
  int most = 0;
  for (const Span& probe : spans) {
    int overlapping = 0;
    for (const Span& other : spans) {
      if (other.first <= probe.first && probe.first < other.second) ++overlapping;
    }
    most = std::max(most, overlapping);
  }
  return most;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.insert(name);
    }
    ::closedir(d);
  }
  return names;
}

}  // namespace

TEST_CASE("shared slots: a count of 0 and a bad machine-wide name are refused") {
  jwtest::TempDir dir;
  CHECK_THROWS_AS(SharedSlots(0), std::system_error);
  CHECK_THROWS_AS(MachineSlots("scans", 0, dir.path()), std::system_error);
  for (const char* bad : {"", ".hidden", "a/b", "sp ace"}) {
    INFO(bad);
    try {
      MachineSlots slots(bad, 2, dir.path());
      FAIL("accepted");
    } catch (const std::system_error& e) {
      CHECK(e.code() == jobwarden::errc::invalid_argument);
      CHECK(std::string(e.what()).find("slot name") != std::string::npos);
    }
  }
  CHECK(files_in(dir.path()).empty());
}

TEST_CASE("machine-wide slots: a directory others may write in, or a file, is refused with the reason") {
  jwtest::TempDir dir;
  std::string open_dir = dir / "open";
  REQUIRE(::mkdir(open_dir.c_str(), 0700) == 0);
  REQUIRE(::chmod(open_dir.c_str(), 0777) == 0);
  std::string file = dir / "file";
  { std::ofstream(file.c_str()) << ""; }
  std::string link = dir / "link";
  REQUIRE(::symlink(file.c_str(), link.c_str()) == 0);
  struct Case {
    std::string path;
    std::string why;
  };
  for (const Case& c : {Case{open_dir, "other users may write in it"}, Case{file, "it is not a directory"},
                        Case{link, "symbolic link"}}) {
    INFO(c.path);
    try {
      MachineSlots slots("scans", 1, c.path);
      FAIL("accepted");
    } catch (const std::system_error& e) {
      CHECK(std::string(e.what()).find(c.path) != std::string::npos);
      CHECK(std::string(e.what()).find(c.why) != std::string::npos);
    }
  }
  CHECK(files_in(open_dir).empty());
}

TEST_CASE("shared slots: the line is first come, first served and a freed slot wakes its head") {
  SharedSlots slots(1);
  int woken[3] = {0, 0, 0};
  std::uint64_t a = slots.join([&] { ++woken[0]; });
  std::uint64_t b = slots.join([&] { ++woken[1]; });
  std::uint64_t c = slots.join([&] { ++woken[2]; });
  int held = slots.try_acquire(a);
  REQUIRE(held == 0);
  CHECK(slots.try_acquire(b) == -1);
  CHECK(slots.try_acquire(c) == -1);
  CHECK(slots.try_acquire(a) == -1);  // behind b and c now
  CHECK(slots.waiting() == 3);
  slots.release(held);
  CHECK(woken[1] == 1);  // b, the head, is told; c and a are not
  CHECK(woken[2] == 0);
  CHECK(woken[0] == 0);
  CHECK(slots.try_acquire(c) == -1);  // not its turn, though a slot is free
  CHECK(slots.try_acquire(a) == -1);
  held = slots.try_acquire(b);
  CHECK(held == 0);
  CHECK(slots.in_use() == 1);
  slots.withdraw(c);  // c has nothing to start any more: a is the head
  int a_woken = woken[0];
  slots.release(held);
  CHECK(woken[0] == a_woken + 1);  // a is next
  CHECK(slots.try_acquire(a) == 0);
  CHECK(slots.waiting() == 0);
  slots.release(0);
  slots.leave(a);
  slots.leave(b);
  slots.leave(c);
  CHECK(slots.in_use() == 0);
}

TEST_CASE("three supervisors sharing 2 slots never run more than 2 workers at once, polled on three threads") {
  jwtest::TempDir dir;
  auto slots = std::make_shared<SharedSlots>(2);
  std::vector<std::string> files;
  std::atomic<int> unfinished{0};
  std::vector<std::thread> hosts;
  for (int job = 0; job < 3; ++job) {
    for (int i = 0; i < 3; ++i) files.push_back(dir / ("j" + std::to_string(job) + "w" + std::to_string(i)));
    hosts.emplace_back([&, job] {
      jobwarden::SupervisorOptions options;
      options.job_id = "j" + std::to_string(job);
      options.max_concurrency = 5;  // alone it would run all three at once
      options.shared_slots = slots;
      JobSupervisor<> supervisor(options);
      std::vector<std::string> ids;
      for (int i = 0; i < 3; ++i) {
        ids.push_back(supervisor.submit(jwtest::quiet(
            {jwtest::test_worker(), "times", dir / ("j" + std::to_string(job) + "w" + std::to_string(i)), "150"})));
      }
      bool done = supervisor.wait_all(120s);
      for (const auto& id : ids) {
        if (!done || supervisor.info(id).state != WorkerState::succeeded) ++unfinished;
      }
    });
  }
  for (auto& host : hosts) host.join();
  CHECK(unfinished == 0);
  std::vector<Span> spans;
  for (const auto& file : files) {
    Span span = read_span(file);
    CHECK(span.second > span.first);
    spans.push_back(span);
  }
  CHECK(spans.size() == 9);
  CHECK(most_at_once(spans) <= 2);
  CHECK(slots->in_use() == 0);
  CHECK(slots->waiting() == 0);
}

TEST_CASE("supervisors waiting for a shared slot are served in the order they asked") {
  jwtest::TempDir dir;
  auto slots = std::make_shared<SharedSlots>(1);
  auto make = [&](const char* id) {
    jobwarden::SupervisorOptions options;
    options.job_id = id;
    options.max_concurrency = 4;
    options.shared_slots = slots;
    return std::make_unique<JobSupervisor<>>(options);
  };
  auto a = make("a");
  auto b = make("b");
  auto c = make("c");
  auto job = [&](JobSupervisor<>& s, const std::string& name) {
    return s.submit(jwtest::quiet({jwtest::test_worker(), "times", dir / name, "100"}));
  };
  std::string a1 = job(*a, "a1");  // takes the slot
  REQUIRE(slots->in_use() == 1);
  std::string b1 = job(*b, "b1");
  CHECK(slots->waiting() == 1);
  std::string c1 = job(*c, "c1");
  CHECK(slots->waiting() == 2);
  std::string a2 = job(*a, "a2");  // a asks last for its second worker
  CHECK(slots->waiting() == 3);
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while ((a->active_count() + b->active_count() + c->active_count()) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    for (auto* s : {a.get(), b.get(), c.get()}) s->poll();
    pollfd fds[3] = {{a->event_fd(), POLLIN, 0}, {b->event_fd(), POLLIN, 0}, {c->event_fd(), POLLIN, 0}};
    ::poll(fds, 3, 50);
  }
  for (auto [s, id] : {std::pair{a.get(), a1}, {b.get(), b1}, {c.get(), c1}, {a.get(), a2}}) {
    CHECK(s->info(id).state == WorkerState::succeeded);
  }
  std::vector<Span> order = {read_span(dir / "a1"), read_span(dir / "b1"), read_span(dir / "c1"),
                             read_span(dir / "a2")};
  for (size_t i = 1; i < order.size(); ++i) {
    INFO(i);
    CHECK(order[i].first >= order[i - 1].second);  // one at a time, in the order asked
  }
  CHECK(slots->in_use() == 0);
}

TEST_CASE("a supervisor destroyed while in line leaves it, and the next one gets the slot") {
  jwtest::TempDir dir;
  auto slots = std::make_shared<SharedSlots>(1);
  jobwarden::SupervisorOptions options;
  options.shared_slots = slots;
  options.job_id = "holder";
  JobSupervisor<> holder(options);
  options.job_id = "later";
  JobSupervisor<> later(options);
  std::string held = holder.submit(jwtest::quiet({jwtest::test_worker(), "sleep", "300"}));
  {
    options.job_id = "gone";
    JobSupervisor<> gone(options);
    gone.submit(jwtest::quiet({jwtest::test_worker(), "sleep", "10"}));
    CHECK(slots->waiting() == 1);
  }  // its queued worker is cancelled as it goes
  CHECK(slots->waiting() == 0);
  std::string next = later.submit(jwtest::quiet({jwtest::test_worker(), "times", dir / "later", "10"}));
  CHECK(slots->waiting() == 1);
  REQUIRE(holder.wait_all(60s));
  REQUIRE(later.wait_all(60s));
  CHECK(later.info(next).state == WorkerState::succeeded);
  CHECK(slots->in_use() == 0);
}

TEST_CASE("machine-wide slots: lock files shared by separate holders, fair between them") {
  jwtest::TempDir dir;
  MachineSlots first("scan", 2, dir.path());
  MachineSlots second("scan", 2, dir.path());  // as another process would: its own descriptors
  std::uint64_t f = first.join(nullptr);
  std::uint64_t s = second.join(nullptr);
  int f0 = first.try_acquire(f);
  int f1 = first.try_acquire(f);
  REQUIRE(f0 >= 0);
  REQUIRE(f1 >= 0);
  CHECK(second.try_acquire(s) == -1);  // both files locked by `first`
  CHECK(second.retry_interval().has_value());
  first.release(f0);
  CHECK(first.try_acquire(f) == -1);  // `second` waited longer: it goes first
  int s0 = second.try_acquire(s);
  CHECK(s0 == f0);
  first.release(f1);
  CHECK(first.try_acquire(f) == f1);  // nobody waits before it now
  second.release(s0);
  first.release(f1);
  second.leave(s);
  first.leave(f);
  // Only the slot files stay: no waiter file of a process that waits no more.
  CHECK(files_in(dir.path()) == std::set<std::string>{"scan.slot.0", "scan.slot.1"});
}

TEST_CASE("machine-wide slots: a holder killed with SIGKILL frees its slots") {
  jwtest::TempDir dir;
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    MachineSlots slots("held", 1, dir.path());
    std::uint64_t me = slots.join(nullptr);
    char ok = slots.try_acquire(me) == 0 ? 'y' : 'n';
    ssize_t ignored = ::write(ready[1], &ok, 1);
    (void)ignored;
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = 0;
  CHECK(::read(ready[0], &ok, 1) == 1);
  ::close(ready[0]);
  MachineSlots slots("held", 1, dir.path());
  std::uint64_t me = slots.join(nullptr);
  CHECK(ok == 'y');
  CHECK(slots.try_acquire(me) == -1);
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(slots.try_acquire(me) == 0);
  slots.release(0);
  slots.leave(me);
  CHECK(files_in(dir.path()) == std::set<std::string>{"held.slot.0"});
}

TEST_CASE("machine-wide slots: a waiter that died is skipped and its file removed") {
  jwtest::TempDir dir;
  MachineSlots holder("w", 1, dir.path());
  std::uint64_t h = holder.join(nullptr);
  REQUIRE(holder.try_acquire(h) == 0);
  {
    MachineSlots dead("w", 1, dir.path());
    std::uint64_t d = dead.join(nullptr);
    CHECK(dead.try_acquire(d) == -1);  // waits: a waiter file while it does
    CHECK(files_in(dir.path()).size() == 2);
  }  // gone cleanly: its waiter file with it
  CHECK(files_in(dir.path()) == std::set<std::string>{"w.slot.0"});
  // What a waiter killed by SIGKILL leaves: an old waiter file nobody locks.
  std::string stale = dir / "w.wait.1.99999.7";
  { std::ofstream(stale.c_str()) << ""; }
  holder.release(0);
  CHECK(holder.try_acquire(h) == 0);  // the dead waiter does not hold it up
  CHECK(files_in(dir.path()) == std::set<std::string>{"w.slot.0"});
  holder.release(0);
  holder.leave(h);
}

TEST_CASE("machine-wide slots: a live waiter that stopped looking holds nobody back, a half-made waiter file goes") {
  jwtest::TempDir dir;
  MachineSlots holder("z", 1, dir.path());
  std::uint64_t h = holder.join(nullptr);
  REQUIRE(holder.try_acquire(h) == 0);
  const auto steady_now = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch());
  };
  // Another process's waiter, older than anyone, its file locked as a live
  // (here: stopped) process keeps it; it writes when it last looked.
  std::string waiter = dir / "z.wait.1.99999.7";
  int fd = ::open(waiter.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  auto looked = [fd](std::chrono::nanoseconds at) {
    char text[32];
    const int n = std::snprintf(text, sizeof text, "%020llu\n", static_cast<unsigned long long>(at.count()));
    return ::pwrite(fd, text, static_cast<std::size_t>(n), 0) == n;
  };
  REQUIRE(looked(steady_now()));
  holder.release(0);
  CHECK(holder.try_acquire(h) == -1);  // it looked lately: it goes first
  // It last looked longer ago than the staleness limit: as if stopped by Ctrl-Z.
  REQUIRE(looked(steady_now() - 4 * std::chrono::nanoseconds(MachineSlots::stale_waiter_after)));
  CHECK(holder.try_acquire(h) == 0);
  CHECK(files_in(dir.path()).count("z.wait.1.99999.7") == 1);  // alive: it keeps its place
  holder.release(0);
  REQUIRE(looked(steady_now()));       // it looks again (SIGCONT)
  CHECK(holder.try_acquire(h) == -1);  // and is first in line again
  ::close(fd);                         // it dies: its lock goes

  // Half-made waiter files (a process that died between making and renaming
  // one): an old one goes, a new one may belong to a process at work.
  auto old_since = steady_now() - 4 * std::chrono::nanoseconds(MachineSlots::stale_waiter_after);
  std::string old_half = "z.new." + std::to_string(old_since.count()) + ".99999.8";
  std::string new_half = "z.new." + std::to_string(steady_now().count()) + ".99999.9";
  { std::ofstream((dir / old_half).c_str()) << ""; }
  { std::ofstream((dir / new_half).c_str()) << ""; }
  CHECK(holder.try_acquire(h) == 0);
  CHECK(files_in(dir.path()) == std::set<std::string>{"z.slot.0", new_half});
  holder.release(0);
  holder.leave(h);
}

TEST_CASE("machine-wide slots: the files of slots whose name extends another's are never taken for its waiters") {
  jwtest::TempDir dir;
  // Slot names may hold '.': the slot and waiter files of "z.wait" and
  // "z.new" begin as waiter files of "z" would.
  MachineSlots wait_named("z.wait", 1, dir.path());
  MachineSlots new_named("z.new", 1, dir.path());
  std::uint64_t w = wait_named.join(nullptr);
  std::uint64_t n = new_named.join(nullptr);
  REQUIRE(wait_named.try_acquire(w) == 0);
  REQUIRE(new_named.try_acquire(n) == 0);
  wait_named.release(0);  // free, unlocked: as a dead waiter's file would be
  new_named.release(0);
  MachineSlots z("z", 1, dir.path());
  std::uint64_t me = z.join(nullptr);
  CHECK(z.try_acquire(me) == 0);  // nothing of theirs holds it back...
  CHECK(files_in(dir.path()) == std::set<std::string>{"z.slot.0", "z.wait.slot.0", "z.new.slot.0"});  // ...or goes
  // Their slots are still theirs: one holder each at a time.
  REQUIRE(wait_named.try_acquire(w) == 0);
  MachineSlots wait_again("z.wait", 1, dir.path());
  std::uint64_t w2 = wait_again.join(nullptr);
  CHECK(wait_again.try_acquire(w2) == -1);
  wait_again.leave(w2);
  wait_named.release(0);
  wait_named.leave(w);
  new_named.leave(n);
  z.release(0);
  z.leave(me);
}
