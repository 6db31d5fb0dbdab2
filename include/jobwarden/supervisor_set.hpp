#pragma once
/// \file
/// `SupervisorSet`: many `JobSupervisor`s behind one descriptor and one
/// blocking call, for a host that runs a job per request or keeps supervisors
/// for months; and `retire`, which stops a supervisor without blocking the
/// caller.
///
/// Why retire: destroying a `JobSupervisor` stops and reaps every worker it
/// started before it returns. It begins the stop sequence, then polls until
/// every worker is reaped, which takes up to the longest grace period, and
/// runs the supervisor's event and output handlers on the destroying thread
/// while it does. A host that destroys a supervisor while holding a lock that
/// one of those handlers takes deadlocks. `retire` returns at once; the set's
/// loop finishes the stop and destroys the supervisor on the loop thread, with
/// no lock of the set held, then calls the host's callback.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "jobwarden/detail/platform.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/job_supervisor.hpp"
#include "jobwarden/supervisor_options.hpp"

#if JOBWARDEN_LINUX_FAST_PATH
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

namespace jobwarden {

/// Any number of `JobSupervisor<Progress, Clock>`s driven by one thread.
///
/// **One descriptor.** `fd()` becomes readable when some supervisor's `poll()`
/// has work, or when the set was changed (`add`, `retire`) or woken (`wake`,
/// `stop`). On Linux it is an epoll descriptor holding every supervisor's
/// `event_fd()` (which covers their deadlines too) and an eventfd for
/// wake-ups. On the portable path (macOS, `JOBWARDEN_PORTABLE`) it is a
/// self-pipe that covers only the set's own changes and wake-ups: a host that
/// puts the set in its own poll(2) watches `descriptors()`, which also lists
/// every supervisor's descriptor, and waits at most `next_timeout()`.
///
/// **One loop.** `run_once(timeout)` waits until some supervisor needs a
/// `poll()` (its descriptor is readable, or its `next_timeout()` passed), the
/// set was changed or woken, or `timeout` passed, and then polls those
/// supervisors. `run()` does that until `stop()`. A host with its own loop
/// calls the non-blocking `poll()` when `fd()` is readable or `next_timeout()`
/// has passed. One thread at a time drives the loop (a second caller waits
/// for the first); call it the loop thread.
///
/// **Ownership.** The set holds each supervisor by a `std::shared_ptr`,
/// under a key the host picks (a job id, a request id). `add`/`emplace` and
/// `find` hand out the same pointer, so a request thread can `submit`,
/// `cancel` or read `workers()` while the loop polls: every call of
/// `JobSupervisor` but its blocking ones (`wait`, `wait_all`, `shutdown`) is
/// made for that. The set only lets go of a supervisor through `retire`, and
/// destroys it on the loop thread once its workers are reaped; a host that
/// still holds a pointer then destroys it where it drops the pointer, which
/// costs nothing more (nothing is left to stop).
///
/// **Threads.**
/// - `add`, `emplace`, `retire`, `find`, `contains`, `retiring`, `size`, `empty`,
///   `keys`, `wake`, `stop`, `fd`, `descriptors`, `next_timeout`: any thread,
///   including the loop thread, event handlers and retire callbacks. None of
///   them waits for a poll or a handler (`emplace` does construct the
///   supervisor on the calling thread); the set's lock is held only for its
///   own bookkeeping (and `next_timeout` reads the supervisors' under it),
///   never while the host's code runs. A request thread may call them while
///   another thread is inside `run_once`: the change wakes it.
/// - `poll`, `run_once`, `run`: the loop thread. The supervisors' event and
///   output handlers and the retire callbacks run inside them, on that
///   thread, with no lock of the set held. Calling one of the three from a
///   handler or a callback (a nested loop) throws `std::logic_error`.
/// - A handler may call anything of its own supervisor or of another one
///   but a blocking call, and anything of the set above, `retire` of its own
///   supervisor included. While it runs every supervisor of the set waits:
///   keep it short.
/// - A handler or callback that throws leaves `poll`/`run_once`/`run` with
///   its exception; the set wakes itself so that the next call carries on
///   with what that call left.
///
/// **Destroying the set** destroys every supervisor it still holds on the
/// destroying thread, each as `~JobSupervisor` does (blocking, running
/// handlers), then calls the callbacks of retirements that were under way.
/// To avoid that, retire them all and drive the loop until `empty()`.
///
/// The portable path registers one SIGCHLD self-pipe per supervisor, and a
/// process has 256 of them: at most about 250 supervisors there. Linux with
/// pidfds has no such limit.
template <class Progress = nlohmann::json, class Clock = std::chrono::steady_clock>
class SupervisorSet {
 public:
  using supervisor_type = JobSupervisor<Progress, Clock>;
  using supervisor_ptr = std::shared_ptr<supervisor_type>;
  /// Called once, on the loop thread, after a retired supervisor's workers
  /// were all reaped and the set dropped it.
  using retire_callback = std::function<void()>;

  /// Throws `std::system_error` when the kernel refuses the set's
  /// descriptors (EMFILE, ENFILE), naming which one.
  SupervisorSet() {
#if JOBWARDEN_LINUX_FAST_PATH
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) fail("epoll_create1");
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) fail("eventfd");
    epoll_event event;
    std::memset(&event, 0, sizeof event);
    event.events = EPOLLIN;
    event.data.u64 = wake_token;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) != 0) fail("epoll registration");
#else
    if (::pipe(pipe_) != 0) fail("pipe");
    for (int fd : pipe_) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
#endif
  }

  /// See "Destroying the set" above.
  ~SupervisorSet() {
    std::vector<std::shared_ptr<Entry>> left;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& item : by_key_) left.push_back(std::move(item.second));
      by_key_.clear();
    }
    for (auto& entry : left) {
      unregister(*entry);
      entry->supervisor.reset();  // ~JobSupervisor: stops and reaps, here
      if (entry->retiring && entry->on_retired) {
        try {
          entry->on_retired();
        } catch (...) {
          // A destructor must not throw.
        }
      }
    }
    close_all();
  }

  SupervisorSet(const SupervisorSet&) = delete;
  SupervisorSet& operator=(const SupervisorSet&) = delete;

  /// Adds `supervisor` under `key` and returns it. Its handlers may be
  /// registered before or after. Throws `std::system_error`
  /// (`errc::invalid_argument`, the message naming the key) for an empty key,
  /// a null supervisor, or a key already in the set (a retiring supervisor
  /// keeps its key until its retire callback ran).
  supervisor_ptr add(const std::string& key, supervisor_ptr supervisor) {
    std::error_code ec;
    std::string why;
    auto added = add_impl(key, std::move(supervisor), ec, why);
    if (ec) throw std::system_error(ec, why);
    return added;
  }

  /// Non-throwing form: sets `ec` and returns null instead.
  supervisor_ptr add(const std::string& key, supervisor_ptr supervisor, std::error_code& ec) {
    std::string why;
    return add_impl(key, std::move(supervisor), ec, why);
  }

  /// Constructs a supervisor with `options` (on the calling thread) and adds
  /// it under `key`. Throws what `JobSupervisor`'s constructor and `add`
  /// throw; a taken key is refused before the supervisor is made.
  supervisor_ptr emplace(const std::string& key, SupervisorOptions options) {
    std::error_code ec;
    std::string why;
    if (!check_new_key(key, ec, why)) throw std::system_error(ec, why);
    return add(key, std::make_shared<supervisor_type>(std::move(options)));
  }

  /// Begins retiring the supervisor under `key` and returns at once: its
  /// `begin_shutdown(grace)` (nothing new is accepted, pending workers are
  /// cancelled, running ones get the stop sequence). The loop keeps polling
  /// it, so its handlers see the workers end, until every worker is reaped;
  /// then, on the loop thread and with no lock of the set held, it removes
  /// the supervisor from the set, drops its pointer (destroying it unless the
  /// host holds one) and calls `done` once. Never blocks, never runs a
  /// handler: the call for a host that holds locks its handlers take.
  ///
  /// Throws `std::system_error` (`errc::invalid_argument`, naming the key)
  /// when no supervisor has that key or it is already retiring.
  void retire(const std::string& key, retire_callback done = {},
              std::optional<std::chrono::milliseconds> grace = std::nullopt) {
    std::error_code ec;
    std::string why;
    retire_impl(key, ec, why, std::move(done), grace);
    if (ec) throw std::system_error(ec, why);
  }

  /// Non-throwing form: sets `ec` instead (`done` is then never called).
  void retire(const std::string& key, std::error_code& ec, retire_callback done = {},
              std::optional<std::chrono::milliseconds> grace = std::nullopt) {
    std::string why;
    retire_impl(key, ec, why, std::move(done), grace);
  }

  /// The supervisor under `key` (also while it retires), or null.
  supervisor_ptr find(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second->supervisor;
  }

  /// Whether a supervisor (retiring or not) has that key.
  bool contains(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return by_key_.count(key) != 0;
  }

  /// Whether `key` is retiring (retired and not yet dropped).
  bool retiring(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_key_.find(key);
    return it != by_key_.end() && it->second->claimed;
  }

  /// Supervisors in the set, retiring ones included.
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return by_key_.size();
  }

  bool empty() const { return size() == 0; }

  /// The keys, in order.
  std::vector<std::string> keys() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    out.reserve(by_key_.size());
    for (const auto& item : by_key_) out.push_back(item.first);
    return out;
  }

  /// The one descriptor to wait on (see the class comment for the portable path).
  int fd() const {
#if JOBWARDEN_LINUX_FAST_PATH
    return epoll_fd_;
#else
    return pipe_[0];
#endif
  }

  /// Every descriptor a host's own poll(2) must watch for this set: `fd()`
  /// alone on Linux; on the portable path `fd()` and each supervisor's
  /// `event_fd()`. The list changes as supervisors come and go (and `fd()`
  /// says so): read it again after every `poll()`. The descriptors stay
  /// open until the loop thread's next `poll()`.
  std::vector<int> descriptors() const {
    std::vector<int> out{fd()};
#if !JOBWARDEN_LINUX_FAST_PATH
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& item : by_key_) out.push_back(item.second->fd);
#endif
    return out;
  }

  /// How long a host may wait on `fd()` before `poll()` has work that no
  /// descriptor announces: the soonest `next_timeout()` of the supervisors
  /// (zero when a supervisor was added or finished retiring and the loop has
  /// not seen it yet); `std::nullopt` when nothing is due.
  std::optional<std::chrono::milliseconds> next_timeout() const {
    std::optional<std::chrono::milliseconds> wait;
    // Under the set's lock, so that no pointer outlives the loop's: the
    // supervisors' calls take only their own lock, never the set's.
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& pair : by_key_) {
      const Entry& entry = *pair.second;
      if (entry.fresh.load(std::memory_order_acquire) ||
          (entry.retiring && entry.supervisor->active_count() == 0 && !entry.supervisor->recovering())) {
        return std::chrono::milliseconds(0);
      }
      if (auto next = entry.supervisor->next_timeout()) wait = wait ? std::min(*wait, *next) : *next;
    }
    return wait;
  }

  /// Makes `fd()` readable (and returns a `run_once` under way) from any thread.
  void wake() {
#if JOBWARDEN_LINUX_FAST_PATH
    std::uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
#else
    char byte = 1;
    ssize_t ignored = ::write(pipe_[1], &byte, 1);  // non-blocking: a full pipe is awake already
#endif
    (void)ignored;
  }

  /// Asks `run()` to return after the round it is in (or, if it is not
  /// running, makes the next `run()` return after one round). Any thread.
  void stop() {
    stop_requested_.store(true, std::memory_order_release);
    wake();
  }

  /// Polls, without blocking, every supervisor that has work (its descriptor
  /// is readable, its `next_timeout()` passed, it was just added, or it is
  /// retiring), then finishes the retirements whose workers are all reaped.
  /// Returns the number of events delivered. Loop thread only.
  std::size_t poll() {
    LoopGuard guard(*this);
    return poll_ready();
  }

  /// Waits until some supervisor needs a `poll()`, the set was changed or
  /// woken, or `timeout` passed (none: no limit), then does what `poll()`
  /// does. Returns the number of events delivered. Loop thread only.
  std::size_t run_once(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    LoopGuard guard(*this);
    int wait_ms = -1;
    if (timeout) wait_ms = static_cast<int>(std::clamp<long long>(timeout->count(), 0, 60'000));
    if (auto next = next_timeout()) {
      // One millisecond more: a deadline that rounds down would wake us early.
      int due = next->count() == 0 ? 0 : static_cast<int>(std::min<long long>(next->count() + 1, 60'000));
      wait_ms = wait_ms < 0 ? due : std::min(wait_ms, due);
    }
    if (wait_ms != 0) {
#if JOBWARDEN_LINUX_FAST_PATH
      pollfd pfd{epoll_fd_, POLLIN, 0};
      ::poll(&pfd, 1, wait_ms);
#else
      // Only the loop thread closes a supervisor's descriptor, so each one
      // listed here stays open while we wait on it.
      std::vector<pollfd> fds;
      for (int fd : descriptors()) fds.push_back(pollfd{fd, POLLIN, 0});
      ::poll(fds.data(), static_cast<nfds_t>(fds.size()), wait_ms);
#endif
    }
    return poll_ready();
  }

  /// `run_once()` until `stop()`; returns the number of events delivered.
  /// Loop thread only.
  std::size_t run() {
    std::size_t delivered = 0;
    while (!stop_requested_.load(std::memory_order_acquire)) delivered += run_once();
    stop_requested_.store(false, std::memory_order_release);
    return delivered;
  }

 private:
  supervisor_ptr add_impl(const std::string& key, supervisor_ptr supervisor, std::error_code& ec,
                          std::string& why) {
    ec.clear();
    if (!supervisor) {
      ec = make_error_code(errc::invalid_argument);
      why = "supervisor set: no supervisor to add under \"" + key + "\" (null pointer)";
      return nullptr;
    }
    if (!check_new_key(key, ec, why)) return nullptr;
    auto entry = std::make_shared<Entry>();
    entry->key = key;
    entry->supervisor = supervisor;
    entry->fd = supervisor->event_fd();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!check_new_key_locked(key, ec, why)) return nullptr;
      entry->token = next_token_++;
#if JOBWARDEN_LINUX_FAST_PATH
      epoll_event event;
      std::memset(&event, 0, sizeof event);
      event.events = EPOLLIN;
      event.data.u64 = entry->token;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, entry->fd, &event) != 0) {
        ec = std::error_code(errno, std::system_category());
        why = "supervisor set: cannot watch supervisor \"" + key + "\"";
        return nullptr;
      }
#endif
      by_key_.emplace(key, entry);
    }
    wake();
    return supervisor;
  }

  bool check_new_key(const std::string& key, std::error_code& ec, std::string& why) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return check_new_key_locked(key, ec, why);
  }

  bool check_new_key_locked(const std::string& key, std::error_code& ec, std::string& why) const {
    if (key.empty()) {
      why = "supervisor set: the key is empty";
    } else if (auto it = by_key_.find(key); it != by_key_.end()) {
      why = "supervisor set: the key \"" + key + "\" is taken" +
            (it->second->claimed ? " (its supervisor is still retiring)" : "");
    } else {
      return true;
    }
    ec = make_error_code(errc::invalid_argument);
    return false;
  }

  void retire_impl(const std::string& key, std::error_code& ec, std::string& why,
                   retire_callback done, std::optional<std::chrono::milliseconds> grace) {
    ec.clear();
    std::shared_ptr<Entry> entry;
    supervisor_ptr supervisor;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = by_key_.find(key);
      if (it == by_key_.end() || it->second->claimed) {
        ec = make_error_code(errc::invalid_argument);
        why = "supervisor set: cannot retire \"" + key + "\": " +
              (it == by_key_.end() ? "no supervisor has that key" : "it is already retiring");
        return;
      }
      it->second->claimed = true;
      entry = it->second;
      supervisor = entry->supervisor;
    }
    supervisor->begin_shutdown(grace);  // wakes the supervisor's descriptor, and so the loop
    // Our pointer goes before the loop may finish the retirement: the
    // supervisor must never be destroyed here, on the host's thread.
    supervisor.reset();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      entry->on_retired = std::move(done);
      entry->retiring = true;
    }
    wake();
  }

  struct Entry {
    std::string key;
    std::uint64_t token = 0;
    int fd = -1;  ///< the supervisor's event_fd(), open as long as it lives
    supervisor_ptr supervisor;
    std::atomic<bool> fresh{true};  ///< added, not yet polled
    bool claimed = false;           ///< `retire` was called (under mutex_)
    bool retiring = false;          ///< its shutdown has begun: the loop may end it (under mutex_)
    retire_callback on_retired;     ///< under mutex_ until the loop takes it
  };

  /// Marks the loop thread; refuses a loop nested in a handler.
  struct LoopGuard {
    explicit LoopGuard(SupervisorSet& set) : set(set) {
      if (set.loop_thread_.load(std::memory_order_acquire) == std::this_thread::get_id()) {
        throw std::logic_error(
            "jobwarden: SupervisorSet::poll/run_once/run called from inside the set's own loop "
            "(an event handler or a retire callback)");
      }
      lock = std::unique_lock<std::mutex>(set.loop_mutex_);
      set.loop_thread_.store(std::this_thread::get_id(), std::memory_order_release);
    }
    ~LoopGuard() { set.loop_thread_.store(std::thread::id(), std::memory_order_release); }
    SupervisorSet& set;
    std::unique_lock<std::mutex> lock;
  };

  static constexpr std::uint64_t wake_token = 0;

  /// An entry as the set's lock saw it: the supervisor pointer is copied
  /// under the lock, so it stays valid however the loop retires it meanwhile.
  struct Item {
    std::shared_ptr<Entry> entry;
    supervisor_ptr supervisor;
    bool retiring;
  };

  std::vector<Item> snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Item> out;
    out.reserve(by_key_.size());
    for (const auto& pair : by_key_) out.push_back(Item{pair.second, pair.second->supervisor, pair.second->retiring});
    return out;
  }

  bool is_retiring(const Entry& entry) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entry.retiring;
  }

  /// The tokens whose descriptors are readable now (and drains the wake-up);
  /// `all` when there may be more than one call can say.
  void collect(std::vector<std::uint64_t>& ready, bool& all) {
#if JOBWARDEN_LINUX_FAST_PATH
    constexpr int capacity = 256;
    epoll_event events[capacity];
    int n;
    do {
      n = ::epoll_wait(epoll_fd_, events, capacity, 0);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == wake_token) {
        std::uint64_t count;
        ssize_t ignored = ::read(wake_fd_, &count, sizeof count);
        (void)ignored;
      } else {
        ready.push_back(events[i].data.u64);
      }
    }
    all = n == capacity;
#else
    char buffer[256];
    while (::read(pipe_[0], buffer, sizeof buffer) > 0) {
    }
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> tokens;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& item : by_key_) {
        fds.push_back(pollfd{item.second->fd, POLLIN, 0});
        tokens.push_back(item.second->token);
      }
    }
    int n;
    do {
      n = ::poll(fds.data(), static_cast<nfds_t>(fds.size()), 0);
    } while (n < 0 && errno == EINTR);
    for (std::size_t i = 0; n > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) ready.push_back(tokens[i]);
    }
    all = false;
#endif
  }

  std::size_t poll_ready() {
    std::vector<std::uint64_t> ready;
    bool all = false;
    collect(ready, all);
    std::sort(ready.begin(), ready.end());

    std::vector<Item> items = snapshot();
    std::size_t delivered = 0;
    std::vector<std::shared_ptr<Entry>> finished;
    try {
      for (const Item& item : items) {
        Entry& entry = *item.entry;
        bool due = all || entry.fresh.exchange(false, std::memory_order_acq_rel) ||
                   std::binary_search(ready.begin(), ready.end(), entry.token) || item.retiring;
        if (!due) {
          auto next = item.supervisor->next_timeout();
          due = next && next->count() <= 0;
        }
        if (!due) continue;
        delivered += item.supervisor->poll();
        // Retiring (perhaps since the snapshot, by a handler of this very
        // poll), and nothing left to wait for: what wait_all() and so the
        // destructor wait for.
        if (is_retiring(entry) && item.supervisor->active_count() == 0 && !item.supervisor->recovering()) {
          finished.push_back(item.entry);  // reaped, and not recovering (its destructor would wait for that)
        }
      }
    } catch (...) {
      wake();  // the next call carries on with the rest
      throw;
    }
    items.clear();  // the set's pointer is the last one now, unless the host holds one
    for (const auto& entry : finished) {
      retire_callback done;
      supervisor_ptr dying;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        by_key_.erase(entry->key);
        done = std::move(entry->on_retired);
        dying = std::move(entry->supervisor);
      }
      unregister(*entry);
      dying.reset();  // destroyed here unless someone else holds it: nothing is left to stop
      if (done) {
        try {
          done();
        } catch (...) {
          wake();
          throw;
        }
      }
    }
    return delivered;
  }

  /// Takes the supervisor's descriptor out of the epoll set (before it closes).
  void unregister(const Entry& entry) {
#if JOBWARDEN_LINUX_FAST_PATH
    if (epoll_fd_ >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, entry.fd, nullptr);
#else
    (void)entry;
#endif
  }

  [[noreturn]] void fail(const char* what) {
    int saved = errno;
    close_all();
    throw std::system_error(saved, std::system_category(),
                            std::string("jobwarden: cannot create the supervisor set's ") + what);
  }

  void close_all() {
    for (int* fd : {&epoll_fd_, &wake_fd_, &pipe_[0], &pipe_[1]}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  mutable std::mutex mutex_;  ///< the map and each entry's `claimed`, `retiring`, `on_retired`
  std::map<std::string, std::shared_ptr<Entry>> by_key_;
  std::uint64_t next_token_ = 1;  ///< 0 is the wake-up

  std::mutex loop_mutex_;  ///< one loop at a time
  std::atomic<std::thread::id> loop_thread_{};
  std::atomic<bool> stop_requested_{false};

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int pipe_[2] = {-1, -1};
};

}  // namespace jobwarden
