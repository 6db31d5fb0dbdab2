// SupervisorSet: many supervisors behind one descriptor and one loop thread;
// retire, which stops a supervisor without blocking its caller; and the public
// RFC 3339 formatter.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <jobwarden/jobwarden.hpp>

#include "catch.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using jobwarden::EventKind;
using jobwarden::JobSupervisor;
using jobwarden::SupervisorOptions;
using jobwarden::WorkerEvent;
using jobwarden::WorkerState;
using Set = jobwarden::SupervisorSet<>;

namespace {
using jwtest::quiet;

/// The open descriptors of this process.
int open_fd_count() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.';
  ::closedir(dir);
  return count - 1;  // the directory's own descriptor
}

/// Whether this process has no child left at all, running or zombie (each
/// test case runs in its own process). Waits a little for a child's exit to
/// be noticed, but never reaps one.
bool no_children_left() {
  auto until = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    siginfo_t info{};
    int rc = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc != 0 && errno == ECHILD) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
}

/// Whether no process has `pid` any more (reaped, not just exited: a zombie
/// still answers kill 0).
bool reaped(int pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

SupervisorOptions options_for(const std::string& job_id, const std::string& root = {}) {
  SupervisorOptions options;
  options.job_id = job_id;
  options.root = root;
  return options;
}

/// Drives `set` from this thread until `done()` or a generous limit.
template <class Done>
bool drive_until(Set& set, Done done, std::chrono::seconds limit = 60s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    set.run_once(1s);
  }
  return true;
}

/// Runs `set.run()` on a thread of its own; stops and joins it at scope exit.
class LoopThread {
 public:
  explicit LoopThread(Set& set) : set_(set), thread_([this] {
    try {
      set_.run();
    } catch (...) {
      failed_ = true;
    }
  }) {}
  ~LoopThread() {
    set_.stop();
    thread_.join();
  }
  std::thread::id id() const { return thread_.get_id(); }
  bool failed() const { return failed_; }

 private:
  Set& set_;
  std::atomic<bool> failed_{false};
  std::thread thread_;
};

/// Waits (bounded) for a future.
template <class T>
bool ready_within(std::future<T>& future, std::chrono::seconds limit = 60s) {
  return future.wait_for(limit) == std::future_status::ready;
}

}  // namespace

TEST_CASE("three supervisors in one set, driven by one thread, deliver every event") {
  jwtest::TempDir root;
  const int fds_before = open_fd_count();
  {
    Set set;
    auto with_root_a = set.emplace("a", options_for("set-a", root.path()));
    auto with_root_b = set.emplace("b", options_for("set-b", root.path()));
    auto no_root = set.add("c", std::make_shared<JobSupervisor<>>(options_for("set-c")));
    REQUIRE(set.size() == 3);
    CHECK(set.keys() == std::vector<std::string>{"a", "b", "c"});
    CHECK(set.find("b") == with_root_b);
    CHECK(set.find("zzz") == nullptr);

    // Per key: the kinds of events seen, and the thread they were seen on.
    std::map<std::string, std::vector<std::pair<std::string, EventKind>>> seen;
    std::set<std::thread::id> handler_threads;
    for (const auto& key : set.keys()) {
      set.find(key)->on_event([&, key](const WorkerEvent& e) {
        seen[key].emplace_back(e.worker.id, e.kind);
        handler_threads.insert(std::this_thread::get_id());
      });
    }
    for (const auto& supervisor : {with_root_a, with_root_b, no_root}) {
      supervisor->submit(quiet({jwtest::test_worker(), "exit", "0"}));
      supervisor->submit(quiet({jwtest::test_worker(), "exit", "3"}));
      supervisor->submit(quiet({jwtest::test_worker(), "sleep", "100"}));
      supervisor->finish();
    }
    auto exits = [&] {
      std::size_t n = 0;
      for (auto& [key, events] : seen) {
        for (auto& event : events) n += event.second == EventKind::exited;
      }
      return n;
    };
    REQUIRE(drive_until(set, [&] { return exits() == 9; }));
    CHECK(handler_threads == std::set<std::thread::id>{std::this_thread::get_id()});
    for (const auto& supervisor : {with_root_a, with_root_b, no_root}) {
      auto workers = supervisor->workers();
      REQUIRE(workers.size() == 3);
      CHECK(workers[0].state == WorkerState::succeeded);
      CHECK(workers[1].state == WorkerState::failed);
      CHECK(workers[2].state == WorkerState::succeeded);
      for (const auto& worker : workers) CHECK(reaped(worker.pid));
    }
    for (auto& [key, events] : seen) {
      INFO(key);
      CHECK(events.size() == 6);  // started and exited, for each of three workers
      for (const auto& [id, kind] : events) CHECK((kind == EventKind::started || kind == EventKind::exited));
    }
    // What the supervisors with a root wrote is the job every reader sees.
    CHECK(with_root_a->status().state == jobwarden::JobState::failed);
    CHECK(with_root_b->status().workers.size() == 3);

    with_root_a.reset();
    with_root_b.reset();
    no_root.reset();
    for (const auto& key : set.keys()) set.retire(key);
    REQUIRE(drive_until(set, [&] { return set.empty(); }));
  }
  // Nothing left behind: no child (workers, orphan guards), no descriptor.
  CHECK(no_children_left());
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE("supervisors are added and retired from other threads while the loop runs") {
  jwtest::TempDir root;
  Set set;
  std::atomic<int> callbacks{0};
  std::atomic<bool> handler_off_loop{false};
  {
    LoopThread loop(set);
    const std::thread::id loop_id = loop.id();
    auto request = [&](int thread, int round) {
      std::string key = "t" + std::to_string(thread) + "-" + std::to_string(round);
      // Half of them keep a job directory.
      auto supervisor = set.emplace(key, options_for(key, round % 2 == 0 ? root.path() : std::string()));
      auto exited = std::make_shared<std::promise<WorkerState>>();
      supervisor->on_event([exited, loop_id, &handler_off_loop](const WorkerEvent& e) {
        if (std::this_thread::get_id() != loop_id) handler_off_loop = true;
        if (e.kind == EventKind::exited && e.worker.id == "short") exited->set_value(e.worker.state);
      });
      auto spec = quiet({jwtest::test_worker(), "sleep", "20"});
      spec.id = "short";
      supervisor->submit(spec);
      auto long_one = quiet({jwtest::test_worker(), "sleep", "100000"});
      long_one.id = "long";
      supervisor->submit(long_one);
      // What went wrong, if anything (no Catch assertion off the main thread).
      auto state = exited->get_future();
      if (!ready_within(state)) return key + ": no exit event";
      if (state.get() != WorkerState::succeeded) return key + ": the short worker did not succeed";
      int long_pid = supervisor->info("long").pid;
      auto retired = std::make_shared<std::promise<bool>>();
      supervisor.reset();  // the set's pointer is the only one: it destroys the supervisor
      set.retire(key, [retired, long_pid, &callbacks] {
        ++callbacks;
        retired->set_value(reaped(long_pid));
      });
      auto done = retired->get_future();
      if (!ready_within(done)) return key + ": no retire callback";
      if (!done.get()) return key + ": the long worker was not reaped at the callback";
      if (set.contains(key)) return key + ": still in the set after its callback";
      return std::string();
    };
    std::vector<std::future<std::string>> results;
    for (int thread = 0; thread < 3; ++thread) {
      results.push_back(std::async(std::launch::async, [&, thread] {
        std::string errors;
        for (int round = 0; round < 4; ++round) errors += request(thread, round);
        return errors;
      }));
    }
    for (auto& result : results) {
      REQUIRE(ready_within(result, 120s));
      CHECK(result.get() == "");
    }
    CHECK_FALSE(loop.failed());
  }
  CHECK(callbacks == 12);
  CHECK_FALSE(handler_off_loop);
  CHECK(set.empty());
  CHECK(no_children_left());
}

TEST_CASE("retiring a supervisor while holding a lock its handler takes does not deadlock") {
  Set set;
  std::mutex registry_mutex;  // the host's own lock, also taken by the handler
  std::vector<EventKind> registry;
  auto supervisor = set.emplace("held", options_for("held"));
  supervisor->on_event([&](const WorkerEvent& e) {
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry.push_back(e.kind);
  });
  auto spec = quiet({jwtest::test_worker(), "sleep", "100000"});
  spec.grace_period = 20s;
  auto id = supervisor->submit(spec);
  int pid = supervisor->info(id).pid;
  REQUIRE(pid > 0);
  jwtest::KillOnExit guard;
  guard.watch(pid);
  std::promise<void> retired;
  auto done = retired.get_future();
  {
    LoopThread loop(set);
    {
      std::lock_guard<std::mutex> lock(registry_mutex);
      supervisor.reset();
      // Returns at once although the handler cannot run until we unlock.
      set.retire("held", [&retired] { retired.set_value(); });
      CHECK(set.retiring("held"));
      std::this_thread::sleep_for(50ms);  // let the loop reach the handler and block on our lock
    }
    REQUIRE(ready_within(done));
    CHECK_FALSE(loop.failed());
  }
  std::lock_guard<std::mutex> lock(registry_mutex);
  REQUIRE_FALSE(registry.empty());
  CHECK(registry.back() == EventKind::exited);
  CHECK(reaped(pid));
  CHECK(set.empty());
}

TEST_CASE("the set's descriptor works in a host's own poll(2) loop") {
  Set set;
  auto supervisor = set.emplace("own-loop", options_for("own-loop"));
  set.poll();  // takes the wake-up of the add; the idle supervisor has nothing to say
  {
    pollfd pfd{set.fd(), POLLIN, 0};
    CHECK(::poll(&pfd, 1, 0) == 0);
  }
  // A wake-up from another thread makes it readable; poll() takes it.
  std::thread([&] { set.wake(); }).join();
  {
    pollfd pfd{set.fd(), POLLIN, 0};
    CHECK(::poll(&pfd, 1, 0) == 1);
    set.poll();
    CHECK(::poll(&pfd, 1, 0) == 0);
  }

  std::vector<EventKind> kinds;
  supervisor->on_event([&](const WorkerEvent& e) { kinds.push_back(e.kind); });
  auto spec = quiet({jwtest::test_worker(), "sleep", "50"});
  spec.timeout = 60s;  // a deadline, so that next_timeout() has something to say
  supervisor->submit(spec);
  CHECK(set.next_timeout());
  int readable = 0;
  auto until = std::chrono::steady_clock::now() + 60s;
  while ((kinds.empty() || kinds.back() != EventKind::exited) && std::chrono::steady_clock::now() < until) {
    // The host's loop: its own descriptor (a pipe nobody writes) and the set's.
    int never[2];
    REQUIRE(::pipe(never) == 0);
    std::vector<pollfd> fds{pollfd{never[0], POLLIN, 0}};
    for (int fd : set.descriptors()) fds.push_back(pollfd{fd, POLLIN, 0});
    auto next = set.next_timeout();
    int timeout = next ? static_cast<int>(std::min<long long>(next->count(), 10'000)) : 10'000;
    int n = ::poll(fds.data(), static_cast<nfds_t>(fds.size()), timeout);
    ::close(never[0]);
    ::close(never[1]);
    readable += n > 0;
    set.poll();
  }
  CHECK(readable > 0);
  REQUIRE(kinds.size() == 2);
  CHECK(kinds[0] == EventKind::started);
  CHECK(kinds[1] == EventKind::exited);
  supervisor.reset();
  set.retire("own-loop");
  REQUIRE(drive_until(set, [&] { return set.empty(); }));
}

TEST_CASE("a retire callback fires exactly once, after every worker is reaped") {
  jwtest::TempDir root;
  Set set;
  auto supervisor = set.emplace("graceful", options_for("graceful", root.path()));
  jwtest::ReadyPipe ready(root / "ready.fifo");
  auto spec = quiet({jwtest::test_worker(), "trap-term", "300"});  // exits 300 ms after SIGTERM
  spec.stdout_spec = jobwarden::OutputSpec::to_file(ready.path());
  spec.grace_period = 30s;
  auto id = supervisor->submit(spec);
  auto pending = supervisor->submit(quiet({jwtest::test_worker(), "sleep", "100000"}));
  (void)pending;
  int pid = supervisor->info(id).pid;
  REQUIRE(pid > 0);
  jwtest::KillOnExit guard;
  guard.watch(pid);
  REQUIRE(ready.wait_ready());

  std::weak_ptr<JobSupervisor<>> weak = supervisor;
  supervisor.reset();
  int calls = 0;
  bool reaped_at_callback = false;
  bool destroyed_at_callback = false;
  set.retire("graceful", [&] {
    ++calls;
    reaped_at_callback = reaped(pid);
    destroyed_at_callback = weak.expired();
  });
  // Retiring twice is an error naming the key; the first retirement goes on.
  try {
    set.retire("graceful");
    FAIL("a second retire was accepted");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("\"graceful\"") != std::string::npos);
    CHECK(std::string(e.what()).find("already retiring") != std::string::npos);
  }
  // Adding under the key of a retiring supervisor is refused too.
  CHECK_THROWS_WITH(set.emplace("graceful", options_for("other")), Catch::Contains("still retiring"));
  REQUIRE(drive_until(set, [&] { return calls > 0; }));
  CHECK(calls == 1);
  CHECK(reaped_at_callback);
  CHECK(destroyed_at_callback);
  for (int i = 0; i < 5; ++i) set.run_once(10ms);
  CHECK(calls == 1);
  CHECK(set.empty());
  // The job directory says how it ended, written before the supervisor went.
  jobwarden::StatusAggregator<> reader(root.path());
  auto job = reader.read("graceful");
  CHECK(job.state == jobwarden::JobState::cancelled);
  CHECK(no_children_left());
}

TEST_CASE("a retiring supervisor does not hold up the others") {
  jwtest::TempDir dir;
  Set set;
  auto slow = set.emplace("slow", options_for("slow"));
  jwtest::ReadyPipe ready(dir / "ready.fifo");
  auto spec = quiet({jwtest::test_worker(), "trap-term", "3000"});  // exits 3 s after SIGTERM
  spec.stdout_spec = jobwarden::OutputSpec::to_file(ready.path());
  spec.grace_period = 60s;
  int slow_pid = slow->info(slow->submit(spec)).pid;
  jwtest::KillOnExit guard;
  guard.watch(slow_pid);
  REQUIRE(ready.wait_ready());
  slow.reset();
  bool slow_retired = false;
  set.retire("slow", [&] { slow_retired = true; });

  auto quick = set.emplace("quick", options_for("quick"));
  bool quick_exited = false;
  bool slow_still_retiring = false;
  quick->on_event([&](const WorkerEvent& e) {
    if (e.kind != EventKind::exited) return;
    quick_exited = true;
    slow_still_retiring = set.retiring("slow") && !jwtest::process_gone(slow_pid);
  });
  quick->submit(quiet({jwtest::test_worker(), "exit", "0"}));
  REQUIRE(drive_until(set, [&] { return quick_exited; }));
  CHECK(slow_still_retiring);  // the loop delivered it while the other one was stopping
  CHECK_FALSE(slow_retired);
  REQUIRE(drive_until(set, [&] { return slow_retired; }));
  CHECK(reaped(slow_pid));
  quick.reset();
  set.retire("quick");
  REQUIRE(drive_until(set, [&] { return set.empty(); }));
}

TEST_CASE("a supervisor retired with no worker is dropped by the next round") {
  Set set;
  set.emplace("idle", options_for("idle"));
  bool done = false;
  set.retire("idle", [&] { done = true; });
  CHECK(set.next_timeout() == std::chrono::milliseconds(0));
  REQUIRE(drive_until(set, [&] { return done; }, 10s));
  CHECK_FALSE(set.contains("idle"));
  CHECK(no_children_left());
}

TEST_CASE("bad calls to a supervisor set are refused with the key named") {
  Set set;
  CHECK_THROWS_WITH(set.emplace("", options_for("x")), Catch::StartsWith("supervisor set: the key is empty"));
  CHECK_THROWS_WITH(set.add("k", nullptr), Catch::Contains("null pointer") && Catch::Contains("\"k\""));
  set.emplace("k", options_for("k"));
  CHECK_THROWS_WITH(set.emplace("k", options_for("k2")), Catch::StartsWith("supervisor set: the key \"k\" is taken"));
  CHECK_THROWS_WITH(set.retire("nope"),
                    Catch::StartsWith("supervisor set: cannot retire \"nope\": no supervisor has that key"));
  std::error_code ec;
  set.retire("nope", ec);
  CHECK(ec == jobwarden::errc::invalid_argument);
  CHECK(set.add("k", std::make_shared<JobSupervisor<>>(options_for("k3")), ec) == nullptr);
  CHECK(ec == jobwarden::errc::invalid_argument);

  // A loop nested in a handler is refused (it would poll the same supervisors).
  auto supervisor = set.find("k");
  bool refused = false;
  supervisor->on_event([&](const WorkerEvent& e) {
    if (e.kind != EventKind::exited) return;
    try {
      set.run_once(0ms);
    } catch (const std::logic_error&) {
      refused = true;
    }
  });
  supervisor->submit(quiet({jwtest::test_worker(), "exit", "0"}));
  supervisor->finish();
  REQUIRE(drive_until(set, [&] { return supervisor->active_count() == 0; }));
  CHECK(refused);
  supervisor.reset();
  set.retire("k");
  REQUIRE(drive_until(set, [&] { return set.empty(); }));
}

TEST_CASE("destroying the set stops what it still holds and ends pending retirements") {
  int pid = 0;
  int calls = 0;
  {
    Set set;
    auto supervisor = set.emplace("left", options_for("left"));
    auto spec = quiet({jwtest::test_worker(), "sleep", "100000"});
    spec.grace_period = 5s;
    pid = supervisor->info(supervisor->submit(spec)).pid;
    set.emplace("also-left", options_for("also-left"))->submit(quiet({jwtest::test_worker(), "sleep", "100000"}));
    set.retire("also-left", [&] { ++calls; });
    supervisor.reset();
  }
  CHECK(calls == 1);
  CHECK(reaped(pid));
  CHECK(no_children_left());
}

TEST_CASE("the public RFC 3339 formatter and parser match the job directory's text") {
  using namespace std::chrono;
  const system_clock::time_point time{milliseconds(1763719200123)};  // 2025-11-21T10:00:00.123Z
  CHECK(jobwarden::format_rfc3339(time) == "2025-11-21T10:00:00.123Z");
  CHECK(jobwarden::format_rfc3339(time + microseconds(999)) == "2025-11-21T10:00:00.123Z");
  CHECK(jobwarden::format_rfc3339(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(jobwarden::parse_rfc3339("2025-11-21T10:00:00.123Z") == time);
  CHECK(jobwarden::parse_rfc3339("2025-11-21T12:30:00.123+02:30") == time);
  CHECK(jobwarden::parse_rfc3339(jobwarden::format_rfc3339(time)) == time);
  CHECK_FALSE(jobwarden::parse_rfc3339("2025-11-21T10:00:00.123Z trailing"));
  CHECK_FALSE(jobwarden::parse_rfc3339("2025-02-29T00:00:00Z"));
  // The same text as jobwarden writes (the detail name stays for its own users).
  auto now = system_clock::now();
  CHECK(jobwarden::format_rfc3339(now) == jobwarden::detail::format_rfc3339(now));
}
