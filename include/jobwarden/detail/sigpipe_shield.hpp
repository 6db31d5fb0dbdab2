#pragma once
/// \file
/// `SigpipeShield`: writing to a pipe whose reader may be gone (a worker's
/// stdin, a supervised stream relayed to a pipe) without SIGPIPE reaching
/// the host. Used by the stdin feeder and by log sinks.

#include <signal.h>

#include <pthread.h>

namespace jobwarden::detail {

/// Keeps SIGPIPE from reaching the process while the calling thread writes
/// to pipes whose reader may be gone: such a write then fails with EPIPE.
///
/// `send(MSG_NOSIGNAL)` exists only for sockets, and changing SIGPIPE's
/// disposition would change the host's (which may rely on the default). A
/// SIGPIPE raised by `write` is sent to the writing thread, so this blocks it
/// in this thread for as long as the shield lives; when it goes, a SIGPIPE our
/// writes raised (one that was not pending already) is taken off the pending
/// set with `sigwait` — which cannot block, the signal being pending — and
/// then the thread's old mask comes back. Where a descriptor can be told not
/// to raise SIGPIPE at all (macOS's F_SETNOSIGPIPE, set by `make_input_pipe`),
/// none is raised and this changes nothing.
class SigpipeShield {
 public:
  SigpipeShield() {
    sigemptyset(&pipe_only_);
    sigaddset(&pipe_only_, SIGPIPE);
    active_ = ::pthread_sigmask(SIG_BLOCK, &pipe_only_, &old_mask_) == 0;
    if (active_) already_pending_ = sigpipe_pending();
  }
  ~SigpipeShield() {
    if (!active_) return;
    if (raised_ && !already_pending_ && sigpipe_pending()) {
      int taken = 0;
      ::sigwait(&pipe_only_, &taken);
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigpipeShield(const SigpipeShield&) = delete;
  SigpipeShield& operator=(const SigpipeShield&) = delete;

  /// Whether writes are safe (false: the mask could not be changed).
  bool active() const { return active_; }
  /// A write failed with EPIPE: a SIGPIPE may be pending now.
  void note_epipe() { raised_ = true; }

 private:
  static bool sigpipe_pending() {
    sigset_t pending;
    sigemptyset(&pending);
    return ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  }
  sigset_t pipe_only_;
  sigset_t old_mask_;
  bool active_ = false;
  bool already_pending_ = false;
  bool raised_ = false;
};

}  // namespace jobwarden::detail
