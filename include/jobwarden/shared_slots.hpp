#pragma once
/// \file
/// `SharedSlots`: a concurrency limit shared by several supervisors
/// (`SupervisorOptions::shared_slots`). `max_concurrency` bounds one job;
/// a service that starts a job per request and wants "at most 5 at once" for
/// the whole service gives all its supervisors one `SharedSlots(5)`. A worker
/// starts only holding a slot of its own job's `max_concurrency` AND one of
/// the shared slots; it gives the shared slot back when it exits.
///
/// Inside one process the waiting supervisors are served first come, first
/// served: a supervisor that could not get a slot joins a line, a freed slot
/// goes to the one at the head of the line (it is woken through its
/// `event_fd()`), and one that took its slot goes to the back of the line
/// for its next worker (so jobs take turns). Thread-safe: supervisors may be
/// polled on different threads. A slot comes back when its supervisor notes
/// the worker's exit, in its `poll()`, and the head of the line takes a slot
/// in its `poll()`: a host must keep polling every supervisor that shares
/// slots (a blocking `wait_all()` on one, while another is never polled,
/// may wait for ever).
///
/// `MachineSlots` (below) is the same limit shared by every process on the
/// machine that names it, kept in lock files the kernel frees when their
/// holder dies.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "jobwarden/errors.hpp"

namespace jobwarden {

/// A number of slots shared by the supervisors of this process that are
/// given it. The supervisors call the members below; a host only makes the
/// object, hands it over and may read `capacity()` and `in_use()`.
class SharedSlots {
 public:
  /// `count` slots (`errc::invalid_argument` if 0).
  /// At most `max_count` (4096): slot numbers are `int`s, and `MachineSlots`
  /// looks at one file per slot.
  static constexpr std::size_t max_count = 4096;

  explicit SharedSlots(std::size_t count) : held_(count <= max_count ? count : 0, false) {
    if (count == 0 || count > max_count) {
      detail::throw_error(make_error_code(errc::invalid_argument),
                          "shared slots: the count must be from 1 to " + std::to_string(max_count) + ", not " +
                              std::to_string(count));
    }
  }
  virtual ~SharedSlots() = default;
  SharedSlots(const SharedSlots&) = delete;
  SharedSlots& operator=(const SharedSlots&) = delete;

  /// How many workers may run at once under these slots.
  std::size_t capacity() const { return held_.size(); }

  /// How many slots workers of this process hold now.
  std::size_t in_use() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<std::size_t>(std::count(held_.begin(), held_.end(), true));
  }

  /// How many supervisors of this process wait in line for a slot.
  std::size_t waiting() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return line_.size();
  }

  // ---- for supervisors ------------------------------------------------------

  /// A supervisor joins: `wake` is called (from any thread, under this
  /// object's lock: it must only signal, e.g. write an eventfd) when a slot
  /// may have become free for it. Returns its member number.
  std::uint64_t join(std::function<void()> wake) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::uint64_t id = ++last_member_;
    members_[id] = std::move(wake);
    return id;
  }

  /// A supervisor leaves: no call of its `wake` starts after this returns.
  void leave(std::uint64_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    members_.erase(member);
    remove_from_line(member);
    wake_head();  // it may have been the head: the next in line looks
  }

  /// Takes a slot for one worker of `member`, without blocking: its index
  /// (0 ... capacity()-1), or -1 when none is free for it now — then
  /// `member` is in line and its `wake` is called when its turn may have
  /// come. A member not at the head of the line gets no slot while others
  /// wait before it.
  int try_acquire(std::uint64_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool first = line_.empty() || line_.front() == member;
    int slot = -1;
    if (first && others_may_go_first(member) == false) slot = take_free_slot();
    if (slot < 0) {
      if (std::find(line_.begin(), line_.end(), member) == line_.end()) line_.push_back(member);
      started_waiting();
      return -1;
    }
    held_[static_cast<std::size_t>(slot)] = true;
    remove_from_line(member);
    took_slot();
    wake_head();  // more may be free: the next in line looks
    return slot;
  }

  /// Gives back a slot taken by `try_acquire`; wakes the head of the line.
  void release(int slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (slot < 0 || static_cast<std::size_t>(slot) >= held_.size() || !held_[static_cast<std::size_t>(slot)]) {
      return;
    }
    held_[static_cast<std::size_t>(slot)] = false;
    give_back_slot(slot);
    wake_head();
  }

  /// `member` wants no slot for now (its queue is empty): it leaves the line.
  void withdraw(std::uint64_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (std::find(line_.begin(), line_.end(), member) == line_.end()) return;
    remove_from_line(member);
    wake_head();
  }

  /// Whether `member` waits in line for a slot.
  bool in_line(std::uint64_t member) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::find(line_.begin(), line_.end(), member) != line_.end();
  }

  /// How often a supervisor in line must try again even without a `wake`
  /// (slots freed by other processes wake no one here); none in-process.
  virtual std::optional<std::chrono::milliseconds> retry_interval() const { return std::nullopt; }

 protected:
  /// A free slot's index taken for this process, or -1. Under the lock.
  virtual int take_free_slot() {
    for (std::size_t i = 0; i < held_.size(); ++i) {
      if (!held_[i]) return static_cast<int>(i);
    }
    return -1;
  }
  /// The slot `slot` is no longer this process's. Under the lock.
  virtual void give_back_slot(int slot) { (void)slot; }
  /// Whether waiters elsewhere come first (another process's). Under the lock.
  virtual bool others_may_go_first(std::uint64_t member) {
    (void)member;
    return false;
  }
  /// This process took a slot: it goes to the back, behind other processes
  /// (see `started_waiting`). Under the lock.
  virtual void took_slot() {}
  /// Someone of this process is in line and got no slot. Under the lock.
  virtual void started_waiting() {}
  /// Nobody of this process is in line any more. Under the lock.
  virtual void stopped_waiting() {}

  mutable std::mutex mutex_;
  std::vector<bool> held_;  // slots held by this process's workers

 private:
  void remove_from_line(std::uint64_t member) {
    line_.erase(std::remove(line_.begin(), line_.end(), member), line_.end());
    if (line_.empty()) stopped_waiting();
  }
  void wake_head() {
    if (line_.empty()) return;
    auto it = members_.find(line_.front());
    if (it != members_.end() && it->second) it->second();
  }

  std::map<std::uint64_t, std::function<void()>> members_;
  std::deque<std::uint64_t> line_;  // members waiting, first come first
  std::uint64_t last_member_ = 0;
};

/// Slots shared by every process of this user on the machine that names
/// them: `count` lock files `<dir>/<name>.slot.<i>` (i = 0 ... count-1), each
/// held with an exclusive `flock` by the process running a worker in it.
/// The kernel drops a lock when its holder dies, however it dies (even by
/// SIGKILL), so a dead process never keeps a slot. The files stay (empty):
/// removing one while it may be locked would let two processes hold "the
/// same" slot.
///
/// Within this process the supervisors are served in order (as
/// `SharedSlots`). Between processes the order is close to first come,
/// first served but not exact: a process that waits keeps a locked file
/// `<dir>/<name>.wait.<since>.<pid>.<random>` for as long as it waits, and a
/// process takes a free slot only if no live process has waited longer. A
/// process whose own worker ends therefore lets an older waiter of another
/// process go first (no process starves). Waiting processes look for free
/// slots every `retry_interval()` (a slot freed elsewhere wakes no one here),
/// and at once when one of their own frees; each look writes the monotonic
/// time into the waiter file. A waiter that has not looked for
/// `stale_waiter_after` (a process stopped by Ctrl-Z, or a host that stopped
/// polling) holds nobody back until it looks again, when it takes its old
/// place in line.
class MachineSlots : public SharedSlots {
 public:
  /// `count` slots named `name` (letters, digits, `.`, `_`, `-`; not
  /// starting with `.`; at most 100 characters) in `dir` (empty: see
  /// `default_directory()`), which is made (mode 0700) if missing.
  /// `errc::invalid_argument` for a bad name or count 0; the system's error
  /// when the directory cannot be made or is not a directory we own.
  MachineSlots(std::string name, std::size_t count, std::string dir = {})
      : SharedSlots(count), name_(std::move(name)), dir_(std::move(dir)), fds_(count, -1) {
    std::string problem = check_name(name_);
    if (!problem.empty()) detail::throw_error(make_error_code(errc::invalid_argument), "shared slots: " + problem);
    if (dir_.empty()) dir_ = default_directory();
    std::string why;
    std::error_code ec = prepare_directory(dir_, why);
    if (ec) detail::throw_error(ec, "shared slots: cannot use the directory " + dir_ + why);
  }

  ~MachineSlots() override {
    for (int& fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
    drop_registration();
  }

  const std::string& name() const { return name_; }
  const std::string& directory() const { return dir_; }

  /// What is wrong with `name` as a slot name, or empty.
  static std::string check_name(const std::string& name) {
    if (name.empty()) return "the slot name is empty";
    if (name.size() > 100) return "the slot name is longer than 100 characters";
    if (name[0] == '.') return "the slot name \"" + name + "\" starts with '.'";
    for (char c : name) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                c == '_' || c == '-';
      if (!ok) return "the slot name \"" + name + "\" has a character other than letters, digits, '.', '_', '-'";
    }
    return {};
  }

  /// Where the lock files live unless told: `$JOBWARDEN_SLOTS_DIR` if set;
  /// else `$XDG_RUNTIME_DIR/jobwarden/slots` when `XDG_RUNTIME_DIR` is set
  /// (the user's own tmpfs, emptied at logout: nothing outlives the session,
  /// and no other user can make or lock the files); else
  /// `/tmp/jobwarden-slots-<uid>` (per user, mode 0700, so another user
  /// cannot take the slots or plant files).
  static std::string default_directory() {
    const char* forced = std::getenv("JOBWARDEN_SLOTS_DIR");
    if (forced && *forced) return forced;
    const char* runtime = std::getenv("XDG_RUNTIME_DIR");
    if (runtime && *runtime) return std::string(runtime) + "/jobwarden/slots";
    return "/tmp/jobwarden-slots-" + std::to_string(::getuid());
  }

  std::optional<std::chrono::milliseconds> retry_interval() const override {
    return std::chrono::milliseconds(100);
  }

  /// How long a live waiter may go without looking for a slot before other
  /// processes stop letting it go first (see the class comment).
  static constexpr std::chrono::seconds stale_waiter_after{5};

 protected:
  int take_free_slot() override {
    for (std::size_t i = 0; i < fds_.size(); ++i) {
      if (held_[i]) continue;
      std::string path = dir_ + "/" + name_ + ".slot." + std::to_string(i);
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) continue;
      if (lock_now(fd, LOCK_EX)) {
        fds_[i] = fd;
        return static_cast<int>(i);
      }
      ::close(fd);
    }
    return -1;
  }

  void give_back_slot(int slot) override {
    int& fd = fds_[static_cast<std::size_t>(slot)];
    if (fd >= 0) ::close(fd);  // the lock goes with the descriptor
    fd = -1;
  }

  bool others_may_go_first(std::uint64_t member) override {
    (void)member;
    const std::string prefix = name_ + ".wait.";
    const std::string unfinished = name_ + ".new.";
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return false;
    bool before_us = false;
    while (dirent* entry = ::readdir(d)) {
      std::string file = entry->d_name;
      std::uint64_t since = 0;
      // Only `<name>.new.<since>.<pid>.<salt>` and `<name>.wait.<...>` exactly:
      // a name may hold '.', so the slot files of slots named "<name>.wait"
      // begin with the same prefix and must never be taken for waiters.
      if (parse_waiter_tail(file, unfinished, since)) {
        remove_if_abandoned(file, since);
        continue;
      }
      if (file == registration_ || !parse_waiter_tail(file, prefix, since)) continue;
      if (!registration_.empty() && since >= registration_since_) continue;  // after us
      std::string path = dir_ + "/" + file;
      int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) continue;
      if (lock_now(fd, LOCK_SH)) {
        ::unlink(path.c_str());  // its process died waiting (a live one holds it locked)
      } else {
        before_us = !is_stale(fd, since);
      }
      ::close(fd);
      if (before_us) break;
    }
    ::closedir(d);
    return before_us;
  }

  void started_waiting() override {
    if (registration_fd_ >= 0) {
      note_look(registration_fd_);  // still looking: not stale
      return;
    }
    // Made under a temporary name, locked, then renamed into view: nobody
    // ever sees an unlocked waiter file of a live process.
    // The monotonic clock is the machine's, the same in every process, and
    // does not jump when the wall clock is set.
    std::uint64_t since = steady_nanoseconds();
    std::uint64_t salt = std::random_device{}();
    std::string tail = std::to_string(since) + "." + std::to_string(::getpid()) + "." + std::to_string(salt);
    std::string temporary = dir_ + "/" + name_ + ".new." + tail;
    int fd = ::open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return;  // best effort: without it this process is only less fair
    std::string file = name_ + ".wait." + tail;
    if (!lock_now(fd, LOCK_EX) || !note_look(fd) || ::rename(temporary.c_str(), (dir_ + "/" + file).c_str()) != 0) {
      ::unlink(temporary.c_str());
      ::close(fd);
      return;
    }
    registration_fd_ = fd;
    registration_ = file;
    registration_since_ = since;
  }

  void took_slot() override { drop_registration(); }
  void stopped_waiting() override { drop_registration(); }

 private:
  static bool lock_now(int fd, int how) {
    for (;;) {
      if (::flock(fd, how | LOCK_NB) == 0) return true;
      if (errno != EINTR) return false;
    }
  }

  static std::uint64_t steady_nanoseconds() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
  }

  /// Whether `file` is `prefix` followed by exactly `<since>.<pid>.<salt>`
  /// (three runs of digits); `since` is set from the first.
  static bool parse_waiter_tail(const std::string& file, const std::string& prefix, std::uint64_t& since) {
    if (file.size() <= prefix.size() || file.compare(0, prefix.size(), prefix) != 0) return false;
    std::size_t at = prefix.size();
    for (int part = 0; part < 3; ++part) {
      const std::size_t begin = at;
      while (at < file.size() && file[at] >= '0' && file[at] <= '9') ++at;
      if (at == begin || at - begin > 20) return false;
      if (part == 0) since = std::strtoull(file.c_str() + begin, nullptr, 10);
      if (part < 2) {
        if (at >= file.size() || file[at] != '.') return false;
        ++at;
      }
    }
    return at == file.size();
  }

  /// Writes the monotonic time of this look into our waiter file (its
  /// first 21 bytes, always the same length): others judge by it whether
  /// we still look (`is_stale`). The monotonic clock is the machine's, the
  /// same in every process, and does not jump when the wall clock is set.
  static bool note_look(int fd) {
    char text[32];
    const int n = std::snprintf(text, sizeof text, "%020llu\n", static_cast<unsigned long long>(steady_nanoseconds()));
    return n > 0 && ::pwrite(fd, text, static_cast<std::size_t>(n), 0) == n;
  }

  /// Whether the live waiter whose file is open on `fd` last looked for a
  /// slot longer ago than `stale_waiter_after` (by the time it wrote there;
  /// `since`, from its file's name, when it wrote nothing readable).
  static bool is_stale(int fd, std::uint64_t since) {
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    std::uint64_t last = since;
    if (n >= 20) {
      char* end = nullptr;
      const unsigned long long written = std::strtoull(text, &end, 10);
      if (end == text + 20) last = written;
    }
    const std::uint64_t now = steady_nanoseconds();
    const auto age = std::chrono::nanoseconds(now - std::min(last, now));
    return age > stale_waiter_after;
  }

  /// A waiter file left half made (`<name>.new.<since>...`: its process died
  /// between making and renaming it) is removed once it is old and unlocked.
  /// A live maker holds it for microseconds, locked.
  void remove_if_abandoned(const std::string& file, std::uint64_t since) {
    auto age = std::chrono::nanoseconds(steady_nanoseconds() - std::min(since, steady_nanoseconds()));
    if (age < stale_waiter_after) return;
    std::string path = dir_ + "/" + file;
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return;
    if (lock_now(fd, LOCK_SH)) ::unlink(path.c_str());
    ::close(fd);
  }

  void drop_registration() {
    if (registration_fd_ < 0) return;
    ::unlink((dir_ + "/" + registration_).c_str());  // while still locked: nobody else removes it
    ::close(registration_fd_);
    registration_fd_ = -1;
    registration_.clear();
    registration_since_ = 0;
  }

  /// Makes `dir` (and its parents) mode 0700 where missing; it must end up a
  /// directory owned by this user, not a symbolic link. On an error, `why`
  /// is what is wrong with it in words (", ..."), or empty when the error
  /// says it.
  static std::error_code prepare_directory(const std::string& dir, std::string& why) {
    for (std::size_t at = 1; at <= dir.size(); ++at) {
      if (at != dir.size() && dir[at] != '/') continue;
      std::string part = dir.substr(0, at);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        const int error = errno;
        if (part != dir) why = " (making " + part + ")";
        return {error, std::generic_category()};
      }
    }
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) return {errno, std::generic_category()};
    if (!S_ISDIR(st.st_mode)) {
      why = S_ISLNK(st.st_mode) ? ": it is a symbolic link, not a directory" : ": it is not a directory";
      return std::make_error_code(std::errc::not_a_directory);
    }
    if (st.st_uid != ::getuid()) {
      why = ": it belongs to uid " + std::to_string(st.st_uid) + ", not to this user (uid " +
            std::to_string(::getuid()) + ")";
      return std::make_error_code(std::errc::permission_denied);
    }
    // Writable by others: they could plant or remove slot files.
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      why = ": other users may write in it (make it mode 0700)";
      return std::make_error_code(std::errc::permission_denied);
    }
    return {};
  }

  std::string name_;
  std::string dir_;
  std::vector<int> fds_;  // the lock of each slot this process holds (-1: not held)
  int registration_fd_ = -1;  // our waiter file, locked while we wait
  std::string registration_;
  std::uint64_t registration_since_ = 0;
};

}  // namespace jobwarden
