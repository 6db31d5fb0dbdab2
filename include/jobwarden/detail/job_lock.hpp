#pragma once
/// \file
/// The job's `supervisor.lock`: a live supervisor holds an exclusive `flock` on
/// it for its whole life, and the kernel drops that lock the moment the
/// supervisor dies, however it dies. That makes the lock the best "is the
/// supervisor alive?" signal there is: unlike a pid, it cannot be reused, and
/// it also works when the host process (a web service) outlives the job.
///
/// Readers probe it with a *shared* non-blocking lock (two readers probing at
/// once must not see each other as a supervisor), release it at once, and never
/// create the file (a reader may be on a read-only file system, or another user).

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/errors.hpp"

namespace jobwarden::detail {

/// What a reader could learn about the supervisor lock.
enum class LockProbe {
  held,     ///< someone holds it: a supervisor is alive
  free,     ///< nobody holds it: no supervisor is alive
  unknown,  ///< no lock file, or it cannot be opened: ask the pid instead
};

/// Probes the lock of the job whose directory is `job_dir_fd` without creating,
/// following or keeping anything.
inline LockProbe probe_supervisor_lock(int job_dir_fd) noexcept {
  OwnedFd lock(::openat(job_dir_fd, lock_file_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!lock) return LockProbe::unknown;
  int result;
  do {
    result = ::flock(lock.get(), LOCK_SH | LOCK_NB);
  } while (result != 0 && errno == EINTR);
  if (result == 0) {
    ::flock(lock.get(), LOCK_UN);
    return LockProbe::free;
  }
  return errno == EWOULDBLOCK ? LockProbe::held : LockProbe::unknown;
}

/// Takes the job's lock exclusively, without blocking: `errc::job_locked` when
/// another supervisor (in this process or another) holds it. Readers hold a
/// shared lock for a few microseconds while probing, so a busy lock is retried
/// for up to `patience` before it counts as a live supervisor's. With
/// `create`, a missing lock file is created (`0644`); without it, a missing
/// file is `ENOENT`. The lock lives as long as the returned descriptor.
inline OwnedFd acquire_supervisor_lock(int job_dir_fd, bool create,
                                       std::chrono::milliseconds patience,
                                       std::error_code& ec) noexcept {
  ec.clear();
  OwnedFd lock(::openat(job_dir_fd, lock_file_name,
                        (create ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
                        0644));
  if (!lock) {
    ec = normalize_nofollow_error(errno_code());
    return lock;
  }
  const auto give_up_at = std::chrono::steady_clock::now() + patience;
  for (;;) {
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) == 0) return lock;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      ec = errno_code();
      return OwnedFd{};
    }
    if (std::chrono::steady_clock::now() >= give_up_at) {
      ec = make_error_code(errc::job_locked);
      return OwnedFd{};
    }
    // A reader's probe lasts microseconds; a supervisor's lock lasts forever.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace jobwarden::detail
