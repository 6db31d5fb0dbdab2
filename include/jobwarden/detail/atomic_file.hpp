#pragma once
/// \file
/// The one owner of writing a file atomically and of reading one safely.
///
/// Writing (`write_file_atomically`, `write_file_atomically_at`): the content
/// goes to a temporary file in the target's own directory (named
/// `.<name>.<pid>.<counter>.<random>.tmp`: the leading dot makes every reader
/// skip it, the pid/counter/random make it unique across processes, threads
/// and forks), is written in full, optionally `fsync`ed, then renamed over the
/// target. A reader therefore sees either the old file or the new one, never a
/// mix, and never a missing file once the first write succeeded. On any failure
/// the temporary file is removed, the old file is left intact and the error is
/// returned (`ENOSPC`, `EIO`, `EMFILE`, `EFBIG`...); nothing here throws.
///
/// Reading (`read_file_at`): relative to a directory descriptor, with
/// `O_NOFOLLOW` (a symlink is refused with `ELOOP`, so a job directory can
/// never make its reader read `/etc/shadow`), `O_NONBLOCK` (a FIFO planted as
/// a status file cannot hang the reader), a regular-file check on the opened
/// descriptor and a size cap (`errc::oversized_file` rather than reading it).

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#if __has_include(<sys/random.h>)
#include <sys/random.h>  // getentropy
#endif

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/errors.hpp"

namespace jobwarden::detail {

/// `errno` as a `std::error_code` of the system category.
inline std::error_code errno_code() noexcept { return {errno, std::system_category()}; }

/// How an atomic write is made.
struct AtomicWriteOptions {
  /// `fsync` the file before the rename and its directory after it, so the new
  /// content survives a power cut. Costs milliseconds per write on real disks;
  /// off by default because status files are re-written often and losing the
  /// last update in a crash of the machine is harmless.
  bool durable = false;
  /// Permissions of a new file (before the umask).
  mode_t permissions = 0644;
};

/// A name for the temporary file of an atomic write of `target_name`: starts
/// with `.`, unique per process (pid), per call (counter) and per fork of a
/// process that has not written yet (random, re-drawn per thread).
inline std::string temporary_name_for(std::string_view target_name) {
  static std::atomic<std::uint64_t> counter{0};
  // splitmix64 over a per-thread seed: the kernel's entropy where there is
  // some, mixed with the clock and a stack address (a clash is caught by
  // O_EXCL anyway). No <random>: this header is part of the workers' cheap
  // include.
  thread_local std::uint64_t random_state = [] {
    std::uint64_t seed = static_cast<std::uint64_t>(
        std::chrono::high_resolution_clock::now().time_since_epoch().count());
#if __has_include(<sys/random.h>)
    std::uint64_t entropy = 0;
    if (::getentropy(&entropy, sizeof entropy) == 0) seed ^= entropy;
#endif
    int on_stack = 0;
    seed ^= reinterpret_cast<std::uintptr_t>(&on_stack);
    return seed;
  }();
  random_state += 0x9e3779b97f4a7c15ULL;
  std::uint64_t random_bits = random_state;
  random_bits = (random_bits ^ (random_bits >> 30)) * 0xbf58476d1ce4e5b9ULL;
  random_bits = (random_bits ^ (random_bits >> 27)) * 0x94d049bb133111ebULL;
  random_bits ^= random_bits >> 31;
  static constexpr char hex[] = "0123456789abcdef";
  std::string random_hex;
  for (std::uint64_t bits = random_bits, i = 0; i < 8; ++i, bits >>= 4) random_hex += hex[bits & 15];
  // Keep the whole name under NAME_MAX (255) even for long targets.
  return "." + std::string(target_name.substr(0, 128)) + "." + std::to_string(::getpid()) + "." +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "." + random_hex +
         ".tmp";
}

/// Writes all of `data` to `fd`, retrying after `EINTR` and short writes.
inline std::error_code write_all(int fd, std::string_view data) noexcept {
  const char* next = data.data();
  std::size_t remaining = data.size();
  while (remaining > 0) {
    // Bounded chunks: some kernels reject or truncate single writes >= 2 GiB.
    const std::size_t chunk = remaining < (std::size_t{1} << 30) ? remaining : (std::size_t{1} << 30);
    const ssize_t written = ::write(fd, next, chunk);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno_code();
    }
    if (written == 0) return std::make_error_code(std::errc::io_error);
    next += written;
    remaining -= static_cast<std::size_t>(written);
  }
  return {};
}

/// `fsync` retried after `EINTR`.
inline std::error_code sync_fd(int fd) noexcept {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return errno_code();
  }
  return {};
}

/// Replaces `name` in the directory `dir_fd` with `content`, atomically (see
/// the file comment). On failure returns the error, removes the temporary
/// file and leaves the previous `name` untouched — with one exception: with
/// `durable`, an `fsync` of the directory that fails after the rename returns
/// its error although the new content is already in place (it is the
/// durability, not the content, that is in doubt).
///
/// `append_fd`, when given, receives the new file open for appending (write
/// only, `O_APPEND`) once it has its name — also in that one exception — so
/// a writer that goes on appending needs no open after the rename, which
/// could fail (EMFILE) and leave it holding a file that lost its name.
inline std::error_code write_file_atomically_at(int dir_fd, std::string_view name,
                                                std::string_view content,
                                                const AtomicWriteOptions& options = {},
                                                OwnedFd* append_fd = nullptr) noexcept {
  try {
    if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..") {
      return std::make_error_code(std::errc::invalid_argument);
    }
    const std::string target(name);
    std::string temporary;
    OwnedFd file;
    // O_EXCL: never write into a file someone else created (or planted as a
    // symlink) under our temporary name; a clash is just retried.
    for (int attempt = 0; attempt < 8 && !file; ++attempt) {
      temporary = temporary_name_for(name);
      file.reset(::openat(dir_fd, temporary.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | (append_fd ? O_APPEND : 0),
                          options.permissions));
      if (!file && errno != EEXIST) return errno_code();
    }
    if (!file) return std::make_error_code(std::errc::file_exists);

    auto fail = [&](std::error_code ec) {
      file.reset();
      ::unlinkat(dir_fd, temporary.c_str(), 0);
      return ec;
    };
    if (auto ec = write_all(file.get(), content)) return fail(ec);
    if (options.durable) {
      if (auto ec = sync_fd(file.get())) return fail(ec);
    }
    // close() reports deferred write errors on NFS and quota-limited file
    // systems; EINTR still closed the descriptor (Linux), so it is not an error.
    // A file kept open for appending is not closed: its writer sees such
    // errors on its own later writes and syncs.
    if (append_fd == nullptr && ::close(file.release()) != 0 && errno != EINTR) return fail(errno_code());
    if (::renameat(dir_fd, temporary.c_str(), dir_fd, target.c_str()) != 0) return fail(errno_code());
    if (append_fd != nullptr) *append_fd = std::move(file);
    if (options.durable) {
      if (auto ec = sync_fd(dir_fd)) return ec;
    }
    return {};
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

/// Path form of `write_file_atomically_at`: the directory part of `path` is
/// the caller's (trusted) configuration and is resolved as usual; the file
/// name itself is never followed if it is a symlink — it is replaced.
inline std::error_code write_file_atomically(const std::string& path, std::string_view content,
                                             const AtomicWriteOptions& options = {}) noexcept {
  try {
    const std::size_t slash = path.rfind('/');
    const std::string directory =
        slash == std::string::npos ? std::string(".") : (slash == 0 ? std::string("/") : path.substr(0, slash));
    const std::string_view name =
        slash == std::string::npos ? std::string_view(path) : std::string_view(path).substr(slash + 1);
    if (name.empty()) return std::make_error_code(std::errc::is_a_directory);
    OwnedFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return errno_code();
    return write_file_atomically_at(dir.get(), name, content, options);
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

/// What identifies one version of a file cheaply: an atomic write always makes
/// a new inode, and an in-place rewrite changes the size or the times.
struct FileStamp {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  std::int64_t modified_ns = 0;  ///< st_mtime in nanoseconds since the epoch
  std::int64_t changed_ns = 0;   ///< st_ctime in nanoseconds since the epoch

  friend bool operator==(const FileStamp& a, const FileStamp& b) noexcept {
    return a.device == b.device && a.inode == b.inode && a.size == b.size &&
           a.modified_ns == b.modified_ns && a.changed_ns == b.changed_ns;
  }
  friend bool operator!=(const FileStamp& a, const FileStamp& b) noexcept { return !(a == b); }
};

/// The stamp of a `stat` result.
inline FileStamp stamp_of(const struct stat& info) noexcept {
#if defined(__APPLE__)
  const struct timespec& modified = info.st_mtimespec;
  const struct timespec& changed = info.st_ctimespec;
#else
  const struct timespec& modified = info.st_mtim;
  const struct timespec& changed = info.st_ctim;
#endif
  return {info.st_dev, info.st_ino, info.st_size,
          static_cast<std::int64_t>(modified.tv_sec) * 1'000'000'000 + modified.tv_nsec,
          static_cast<std::int64_t>(changed.tv_sec) * 1'000'000'000 + changed.tv_nsec};
}

/// Default cap on a file the readers accept: status files are small, and a
/// 2 GiB "status" must not be slurped into a web server's memory.
inline constexpr std::size_t default_max_file_size = std::size_t{1} << 20;

/// Some systems report a refused `O_NOFOLLOW` as `EMLINK` or `EFTYPE`; readers
/// see one error for "that is a symlink".
inline std::error_code normalize_nofollow_error(std::error_code ec) noexcept {
  if (ec == std::errc::too_many_links) return std::make_error_code(std::errc::too_many_symbolic_link_levels);
#ifdef EFTYPE
  if (ec.value() == EFTYPE && ec.category() == std::system_category()) {
    return std::make_error_code(std::errc::too_many_symbolic_link_levels);
  }
#endif
  return ec;
}

/// Stats `name` in `dir_fd` without following a symlink: `ELOOP` for a
/// symlink, `errc::not_regular_file` for anything but a regular file. Cheap
/// (one syscall): readers use it to see whether a cached file has changed.
inline std::error_code stat_file_at(int dir_fd, const char* name, FileStamp& stamp) noexcept {
  struct stat info {};
  if (::fstatat(dir_fd, name, &info, AT_SYMLINK_NOFOLLOW) != 0) return errno_code();
  if (S_ISLNK(info.st_mode)) return std::make_error_code(std::errc::too_many_symbolic_link_levels);
  if (!S_ISREG(info.st_mode)) return make_error_code(errc::not_regular_file);
  stamp = stamp_of(info);
  return {};
}

/// Reads the whole of `name` in the directory `dir_fd` into `content`, safely
/// (see the file comment): `ELOOP` for a symlink, `errc::not_regular_file`,
/// `errc::oversized_file` when it is larger than `max_size` bytes (also when
/// it grows past it while being read), or the system error. `stamp`, when
/// given, receives the stamp of the file that was opened — set for an
/// oversized file too, so a caller can remember that verdict.
inline std::error_code read_file_at(int dir_fd, const char* name, std::string& content,
                                    FileStamp* stamp = nullptr,
                                    std::size_t max_size = default_max_file_size) noexcept {
  try {
    content.clear();
    OwnedFd file(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!file) return normalize_nofollow_error(errno_code());
    struct stat info {};
    if (::fstat(file.get(), &info) != 0) return errno_code();
    if (!S_ISREG(info.st_mode)) return make_error_code(errc::not_regular_file);
    if (stamp != nullptr) *stamp = stamp_of(info);
    if (info.st_size < 0 || static_cast<std::uint64_t>(info.st_size) > max_size) {
      return make_error_code(errc::oversized_file);
    }
    content.resize(static_cast<std::size_t>(info.st_size) + 1);
    std::size_t used = 0;
    for (;;) {
      if (used == content.size()) {
        // The file grew since fstat: keep reading up to the cap, no further.
        if (content.size() > max_size) return make_error_code(errc::oversized_file);
        content.resize(content.size() * 2 < max_size + 1 ? content.size() * 2 : max_size + 1);
      }
      const ssize_t got = ::read(file.get(), &content[used], content.size() - used);
      if (got < 0) {
        if (errno == EINTR) continue;
        return errno_code();
      }
      if (got == 0) break;
      used += static_cast<std::size_t>(got);
      // A short read that delivered exactly the size fstat reported is the
      // whole file: no need for one more read to see the end of it. A file
      // that grew fills the extra byte and is read on.
      if (used == static_cast<std::size_t>(info.st_size) && used < content.size()) break;
    }
    content.resize(used);
    return {};
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

}  // namespace jobwarden::detail
