#pragma once
/// \file
/// The one orphan-guard mechanism: a process that waits for its owner to die
/// and then cleans up after it. Both guards use it — the supervisor's
/// orphan guard (`orphan_guard.hpp`: kills the running workers) and the Slurm
/// launcher's (`slurm_launcher.hpp`: cancels its Slurm jobs) — so what makes a
/// guard safe is written, and fixed, once:
///
/// - The lifeline is a socket pair. The guard holds one end, the owner the
///   other; nobody else holds either (both close-on-exec). When the owner
///   dies, however it dies, the kernel closes its end and the guard reads
///   EOF: that, and only that, means "clean up".
/// - A clean stop is one line ("q") sent before the owner closes its end,
///   with `MSG_NOSIGNAL` (or `SO_NOSIGPIPE` where there is no such flag): a
///   guard that was killed from outside costs the owner its protection,
///   never its life by SIGPIPE.
/// - Only the process that started the guard lets it go: a fork of the owner
///   that destroys its copy of the handle closes its copy and nothing more.
/// - The guard ignores the signals a Ctrl-C, a hang-up or a kill aimed at the
///   owner's process group or session sends (`guard_ignored_signals`), from
///   exec on, leads its own process group, and runs in `/` (pinning no
///   directory).
///
/// A guard is either a program (`spawn`: its standard input is the lifeline)
/// or, where no program can be started, a fork of the owner that keeps the
/// guard's end (`adopt`).

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>

#include "jobwarden/detail/spawn.hpp"

namespace jobwarden::detail {

/// What a guard ignores, whichever kind: a Ctrl-C or a kill aimed at the
/// owner's group or session must not take it down.
inline constexpr int guard_ignored_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE,
                                                SIGTERM, SIGUSR1, SIGUSR2, SIGALRM};

/// The line that lets a guard go without acting. A guard script reads it
/// with `read -r word` and exits when `$word` is `q`; EOF means the owner died.
inline constexpr char guard_release_line[] = "q\n";

/// An owner's handle on its guard: the socket pair and the guard's pid.
/// Neither copied nor moved; the destructor lets the guard go (`finish(true)`).
class Lifeline {
 public:
  Lifeline() = default;
  Lifeline(const Lifeline&) = delete;
  Lifeline& operator=(const Lifeline&) = delete;
  ~Lifeline() { finish(true); }

  /// Makes the socket pair. False (errno set) when it cannot.
  bool open() {
    finish(true);
    int fds[2];
#if defined(SOCK_CLOEXEC)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
#else
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return false;
    ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    int on = 1;
    ::setsockopt(fds[1], SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    guard_end_ = fds[0];
    owner_end_ = fds[1];
    owner_ = ::getpid();
    return true;
  }

  /// The guard's end (-1 when closed): a forked guard keeps it, closing
  /// `owner_end()` first.
  int guard_end() const { return guard_end_; }
  /// The owner's end (-1 when closed).
  int owner_end() const { return owner_end_; }

  /// Starts `plan`'s program as the guard: its standard input becomes the
  /// lifeline, its working directory `/`, and the guard signals are ignored
  /// from exec on (the spawn makes it lead its own process group). Standard
  /// output and error are the plan's. Closes the guard's end here either
  /// way. Returns the guard's pid, or -1 with errno set (then the lifeline is
  /// closed too).
  int spawn(SpawnPlan plan) {
    plan.stdio[0] = guard_end_;
    plan.cwd = "/";
    plan.ignored_signals.assign(std::begin(guard_ignored_signals), std::end(guard_ignored_signals));
    plan.seal();
    SpawnOutcome out = detail::spawn(plan);
    if (out.pidfd >= 0) ::close(out.pidfd);
    if (out.pid <= 0) {
      close_both();
      errno = out.error;
      return -1;
    }
    adopt(out.pid);
    return out.pid;
  }

  /// Records a guard started some other way (a fork that kept the guard's
  /// end), and closes the guard's end here.
  void adopt(int pid) {
    pid_ = pid;
    if (guard_end_ >= 0) ::close(guard_end_);
    guard_end_ = -1;
  }

  /// Whether a guard holds the other end.
  bool active() const { return owner_end_ >= 0 && pid_ > 0; }

  /// The guard's pid (0 when none runs).
  int pid() const { return pid_; }

  /// Ends the lifeline. With `let_go`, and only in the process that opened
  /// it, the guard is first told to exit without acting; otherwise closing
  /// our end looks to the guard like our death, and it acts. Never raises
  /// SIGPIPE (the guard may be dead). Then reaps the guard (only the owner:
  /// a fork of the owner has no such child).
  void finish(bool let_go) {
    const bool owner = ::getpid() == owner_;
    if (owner_end_ >= 0 && let_go && owner && pid_ > 0) {
#if defined(MSG_NOSIGNAL)
      ssize_t ignored = ::send(owner_end_, guard_release_line, sizeof guard_release_line - 1, MSG_NOSIGNAL);
#else
      ssize_t ignored = ::send(owner_end_, guard_release_line, sizeof guard_release_line - 1, 0);  // SO_NOSIGPIPE
#endif
      (void)ignored;
    }
    close_both();
    if (pid_ > 0 && owner) {
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = 0;
    owner_ = 0;
  }

 private:
  void close_both() {
    if (guard_end_ >= 0) ::close(guard_end_);
    if (owner_end_ >= 0) ::close(owner_end_);
    guard_end_ = owner_end_ = -1;
  }

  int guard_end_ = -1;
  int owner_end_ = -1;
  pid_t owner_ = 0;  // the process that opened it: the only one that lets the guard go
  int pid_ = 0;
};

}  // namespace jobwarden::detail
