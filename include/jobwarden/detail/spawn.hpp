#pragma once
/// \file
/// Starting a worker process: the one owner of fork/exec.
///
/// Everything the child needs is built in the parent (`SpawnPlan`); the child
/// runs only async-signal-safe system calls: new process group, default signal
/// dispositions, resource limits, nice value, working directory, stdio,
/// closing every other descriptor, execve. An exec failure comes back as an
/// errno and a stage, never as exit code 127.
///
/// Two strategies, chosen at run time:
/// - Linux: `clone(CLONE_VM | CLONE_VFORK [| CLONE_PIDFD])`. The child shares
///   the parent's memory until it execs, so the cost does not grow with the
///   host's size (a plain fork copies page tables: ~37 ms per GiB here), the
///   failure is written straight into the parent's memory, and the pidfd comes
///   back atomically with the pid. On x86-64 a worker with a cgroup is started
///   by clone3 with CLONE_INTO_CGROUP (Linux 5.7), so it is born inside it;
///   elsewhere the child joins its cgroup before exec (which makes the kernel
///   take its cgroup threadgroup lock for writing: hundreds of microseconds).
/// - Portable (macOS, old kernels, `JOBWARDEN_PORTABLE`, sanitizer builds):
///   fork with a close-on-exec pipe that carries the failure.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <pthread.h>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "jobwarden/detail/platform.hpp"
#include "jobwarden/launch_plan.hpp"

extern char** environ;  // NOLINT: POSIX declares it only this way

namespace jobwarden::detail {

/// Which step of the child's setup failed.
enum class SpawnStage : int { none = 0, setpgid, chdir, stdio, rlimit, exec, fork, resolve, watch, nice };

inline const char* to_string(SpawnStage stage) noexcept {
  switch (stage) {
    case SpawnStage::none: return "none";
    case SpawnStage::setpgid: return "setpgid";
    case SpawnStage::chdir: return "chdir";
    case SpawnStage::stdio: return "redirect stdio";
    case SpawnStage::rlimit: return "setrlimit";
    case SpawnStage::exec: return "exec";
    case SpawnStage::fork: return "fork";
    case SpawnStage::resolve: return "find program";
    case SpawnStage::watch: return "pidfd_open";
    case SpawnStage::nice: return "setpriority";
  }
  return "spawn";
}

/// A resource limit to set in the child before exec.
struct ChildRlimit {
  int resource;
  rlim_t soft;
  rlim_t hard;
};

/// Everything the child needs, prepared before the fork: the public
/// `LaunchPlan` (path, argv, env, cwd: what a launcher sees) and what only
/// the spawn itself needs.
struct SpawnPlan : LaunchPlan {
  std::vector<char*> argv_ptrs;  ///< null-terminated, points into `argv`
  std::vector<char*> envp;       ///< null-terminated, points into `env`
  int stdio[3] = {-1, -1, -1};  ///< descriptors to become 0, 1, 2 (-1: inherit)
  std::vector<ChildRlimit> rlimits;
  bool set_nice = false;  ///< give the child the nice value `nice` before exec
  int nice = 0;
  std::string cgroup_dir;  ///< the worker's cgroup v2 directory to start in (empty: none)
  int max_fd = 1024;  ///< for the close loop when close_range is missing
  /// Signals the child ignores (SIG_IGN survives exec) instead of taking the
  /// default action: a helper that must not die before it can say so itself.
  std::vector<int> ignored_signals;

  std::string cgroup_procs_path;  ///< `cgroup_dir`/cgroup.procs, set by `seal`

  /// Fixes the char* arrays after the storage is final.
  void seal() {
    cgroup_procs_path = cgroup_dir.empty() ? std::string() : cgroup_dir + "/cgroup.procs";
    argv_ptrs.clear();
    for (auto& a : argv) argv_ptrs.push_back(a.data());
    argv_ptrs.push_back(nullptr);
    envp.clear();
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

/// What came of a spawn.
struct SpawnOutcome {
  int pid = -1;
  int pidfd = -1;  ///< -1 where pidfds are unavailable
  int error = 0;   ///< errno of the failed step (0: the program is running)
  SpawnStage stage = SpawnStage::none;
};

struct ChildFailure {
  int stage;
  int error;
};

/// Closes every descriptor >= 3 except `keep` (the error pipe in fork mode).
/// Async-signal-safe.
inline void close_inherited_fds(int max_fd, int keep, bool use_close_range) noexcept {
#if JOBWARDEN_LINUX_FAST_PATH
  if (use_close_range) {
    if (keep < 3) {
      if (sys_close_range(3, ~0U) == 0) return;
    } else {
      bool ok = (keep == 3 || sys_close_range(3, static_cast<unsigned>(keep) - 1) == 0) &&
                sys_close_range(static_cast<unsigned>(keep) + 1, ~0U) == 0;
      if (ok) return;
    }
  }
#else
  (void)use_close_range;
#endif
  for (int fd = 3; fd < max_fd; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

/// The child's side: returns only on failure. Async-signal-safe throughout.
inline ChildFailure run_child(const SpawnPlan& plan, int keep_fd, bool use_close_range,
                              bool join_cgroup = true) noexcept {
  // A worker leads its own process group, so the whole tree can be signalled.
  if (::setpgid(0, 0) != 0) return {static_cast<int>(SpawnStage::setpgid), errno};

  // Join the worker's cgroup first, so everything it starts is born inside
  // (unless clone3 already started it there). A refusal is not fatal: the
  // worker then runs with process-group stopping.
  if (join_cgroup && !plan.cgroup_procs_path.empty()) {
    int fd = ::open(plan.cgroup_procs_path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t ignored = ::write(fd, "0", 1);
      (void)ignored;
      ::close(fd);
    }
  }

  // Clean slate for signals: default dispositions (the host may ignore
  // SIGPIPE or have handlers that must not run here), then an empty mask.
  struct sigaction default_action;
  std::memset(&default_action, 0, sizeof default_action);
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  struct sigaction ignore_action = default_action;
  ignore_action.sa_handler = SIG_IGN;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    bool ignore = false;
    for (int ignored : plan.ignored_signals) ignore = ignore || ignored == sig;
    ::sigaction(sig, ignore ? &ignore_action : &default_action, nullptr);  // fails harmlessly for reserved signals
  }
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  for (const ChildRlimit& limit : plan.rlimits) {
    struct rlimit value;
    value.rlim_cur = limit.soft;
    value.rlim_max = limit.hard;
    if (::setrlimit(limit.resource, &value) != 0) return {static_cast<int>(SpawnStage::rlimit), errno};
  }

  // The nice value, absolute (not relative to the supervisor's). The child
  // is one thread, so this is its whole process's; the program and all it
  // starts inherit it across exec and fork.
  if (plan.set_nice && ::setpriority(PRIO_PROCESS, 0, plan.nice) != 0) {
    return {static_cast<int>(SpawnStage::nice), errno};
  }

  if (!plan.cwd.empty() && ::chdir(plan.cwd.c_str()) != 0) {
    return {static_cast<int>(SpawnStage::chdir), errno};
  }

  // Move any source descriptor that sits on 0..2 out of the way first, so
  // installing one target cannot clobber another's source.
  int source[3] = {plan.stdio[0], plan.stdio[1], plan.stdio[2]};
  for (int target = 0; target < 3; ++target) {
    if (source[target] >= 0 && source[target] < 3 && source[target] != target) {
      int moved = ::fcntl(source[target], F_DUPFD_CLOEXEC, 3);
      if (moved < 0) return {static_cast<int>(SpawnStage::stdio), errno};
      for (int other = target + 1; other < 3; ++other) {
        if (source[other] == source[target]) source[other] = moved;
      }
      source[target] = moved;
    }
  }
  for (int target = 0; target < 3; ++target) {
    if (source[target] < 0) continue;
    if (source[target] == target) {
      if (::fcntl(target, F_SETFD, 0) != 0) return {static_cast<int>(SpawnStage::stdio), errno};
    } else {
      int rc;
      do {
        rc = ::dup2(source[target], target);
      } while (rc < 0 && errno == EINTR);
      if (rc < 0) return {static_cast<int>(SpawnStage::stdio), errno};
    }
  }

  close_inherited_fds(plan.max_fd, keep_fd, use_close_range);

  ::execve(plan.path.c_str(), plan.argv_ptrs.data(), plan.envp.data());
  return {static_cast<int>(SpawnStage::exec), errno};
}

/// Blocks every signal in the calling thread for the life of the object, so no
/// host handler runs in a child that shares or copies the parent's state.
class SignalBlock {
 public:
  SignalBlock() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &saved_);
  }
  ~SignalBlock() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  sigset_t saved_;
};

/// A child we cannot watch (no descriptor left for its pidfd) must not run
/// unsupervised: kill its group and reap it, and report why.
inline SpawnOutcome abandon(int pid, int error_number) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  SpawnOutcome out;
  out.error = error_number;
  out.stage = SpawnStage::watch;
  return out;
}

#if JOBWARDEN_LINUX_FAST_PATH
struct VforkArgs {
  const SpawnPlan* plan;
  bool use_close_range;
  ChildFailure failure;
  bool in_cgroup;  ///< started inside its cgroup by clone3: no joining in the child
};

inline int vfork_child_main(void* raw) {
  auto* args = static_cast<VforkArgs*>(raw);
  // Shared memory: the parent reads this after we exec or exit.
  args->failure = run_child(*args->plan, -1, args->use_close_range, !args->in_cgroup);
  ::_exit(127);
}

#if defined(__x86_64__)
#define JOBWARDEN_HAVE_CLONE3_VFORK 1
/// `struct clone_args` of clone3(2), the layout of CLONE_ARGS_SIZE_VER2.
struct Clone3Args {
  std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};
constexpr std::uint64_t clone_into_cgroup_flag = 0x200000000ULL;  // CLONE_INTO_CGROUP (Linux 5.7)

/// clone3 for a CLONE_VM child: the child comes back from the system call on
/// its own stack, where no C++ frame exists, so it must not return through
/// this function. It calls `fn(arg)` (which never returns: it execs or
/// _exits) and exits with its result if it ever did. Returns the pid, or
/// -errno. glibc exports no clone3 wrapper, hence the few instructions here
/// (x86-64; other architectures use clone(2) and join the cgroup in the child).
inline long clone3_vm(Clone3Args* args, int (*fn)(void*), void* arg) noexcept {
  long result;
  register int (*entry)(void*) asm("r12") = fn;  // callee-saved: the child finds them intact
  register void* entry_arg asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"  // the child: outermost frame on its new stack
      "mov %%r13, %%rdi\n\t"
      "call *%%r12\n\t"
      "mov %%eax, %%edi\n\t"
      "mov $60, %%eax\n\t"  // SYS_exit
      "syscall\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(result)
      : "0"(435L /* SYS_clone3 */), "D"(args), "S"(sizeof(Clone3Args)), "r"(entry), "r"(entry_arg)
      : "rcx", "r11", "memory", "cc");
  return result;
}

/// Whether clone3 with CLONE_INTO_CGROUP is still worth trying in this process
/// (cleared for good when the kernel or a seccomp filter refuses it).
inline std::atomic<bool>& clone3_into_cgroup_usable() {
  static std::atomic<bool> usable{true};
  return usable;
}
#else
#define JOBWARDEN_HAVE_CLONE3_VFORK 0
#endif

inline SpawnOutcome spawn_vfork(const SpawnPlan& plan) {
  SpawnOutcome out;
  constexpr std::size_t stack_size = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[stack_size]);
  // The stack grows down on every Linux target we support; keep it 16-aligned.
  auto top = reinterpret_cast<std::uintptr_t>(stack.get() + stack_size) & ~std::uintptr_t{15};
  VforkArgs args{&plan, features().close_range, {0, 0}, false};
  int pidfd = -1;
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  int pid = -1;
#if JOBWARDEN_HAVE_CLONE3_VFORK
  // Born inside its cgroup: joining one from the child (a write to
  // cgroup.procs) takes the kernel's cgroup threadgroup lock for writing,
  // which costs hundreds of microseconds while the host waits in vfork.
  if (!plan.cgroup_dir.empty() && features().pidfd && clone3_into_cgroup_usable().load(std::memory_order_relaxed)) {
    int cgroup_fd = ::open(plan.cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd >= 0) {
      Clone3Args clone_args{};
      clone_args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | clone_into_cgroup_flag;
      clone_args.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
      clone_args.exit_signal = SIGCHLD;
      clone_args.stack = reinterpret_cast<std::uintptr_t>(stack.get());
      clone_args.stack_size = top - reinterpret_cast<std::uintptr_t>(stack.get());
      clone_args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
      args.in_cgroup = true;
      long result;
      {
        SignalBlock block;
        result = clone3_vm(&clone_args, vfork_child_main, &args);
      }
      ::close(cgroup_fd);
      if (result > 0) {
        pid = static_cast<int>(result);
      } else {
        // No clone3, no CLONE_INTO_CGROUP, or a filter that forbids it: use
        // clone(2) from now on. Anything else (a cgroup that refuses, no
        // memory): clone(2) for this worker, which reports what it meets.
        long error_number = -result;
        if (error_number == ENOSYS || error_number == EINVAL || error_number == E2BIG || error_number == EPERM) {
          clone3_into_cgroup_usable().store(false, std::memory_order_relaxed);
        }
        pidfd = -1;
        args.in_cgroup = false;
      }
    }
  }
#endif
  if (pid < 0) {
    SignalBlock block;
#ifdef CLONE_PIDFD
    if (features().pidfd) {
      pid = ::clone(vfork_child_main, reinterpret_cast<void*>(top), flags | CLONE_PIDFD, &args,
                    &pidfd);
      if (pid < 0 && errno == EINVAL) {
        pidfd = -1;
        pid = ::clone(vfork_child_main, reinterpret_cast<void*>(top), flags, &args);
      }
    } else
#endif
    {
      pid = ::clone(vfork_child_main, reinterpret_cast<void*>(top), flags, &args);
    }
  }
  if (pid < 0) {
    out.error = errno;
    out.stage = SpawnStage::fork;
    return out;
  }
  if (args.failure.error != 0) {
    // The child has already called _exit; collect it so no zombie stays.
    if (pidfd >= 0) ::close(pidfd);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    out.error = args.failure.error;
    out.stage = static_cast<SpawnStage>(args.failure.stage);
    return out;
  }
  if (pidfd < 0 && features().pidfd) {
    pidfd = sys_pidfd_open(pid);  // still our unreaped child, so the pid is right
    if (pidfd < 0) return abandon(pid, errno);
  }
  out.pid = pid;
  out.pidfd = pidfd;
  return out;
}
#endif

#ifndef JOBWARDEN_HAVE_CLONE3_VFORK
#define JOBWARDEN_HAVE_CLONE3_VFORK 0
#endif

inline SpawnOutcome spawn_fork(const SpawnPlan& plan) {
  SpawnOutcome out;
  int pipe_fds[2];
#if defined(__linux__)
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
#else
  if (::pipe(pipe_fds) != 0 || ::fcntl(pipe_fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
      ::fcntl(pipe_fds[1], F_SETFD, FD_CLOEXEC) != 0) {
#endif
    out.error = errno;
    out.stage = SpawnStage::fork;
    return out;
  }
  bool use_close_range = features().close_range;
  int pid;
  {
    SignalBlock block;
    pid = ::fork();
    if (pid == 0) {
      ::close(pipe_fds[0]);
      ChildFailure failure = run_child(plan, pipe_fds[1], use_close_range);
      ssize_t ignored = ::write(pipe_fds[1], &failure, sizeof failure);
      (void)ignored;
      ::_exit(127);
    }
  }
  int fork_errno = errno;
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    out.error = fork_errno;
    out.stage = SpawnStage::fork;
    return out;
  }
  ChildFailure failure{0, 0};
  ssize_t got;
  do {
    got = ::read(pipe_fds[0], &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  ::close(pipe_fds[0]);
  if (got == static_cast<ssize_t>(sizeof failure) && failure.error != 0) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    out.error = failure.error;
    out.stage = static_cast<SpawnStage>(failure.stage);
    return out;
  }
#if JOBWARDEN_LINUX_FAST_PATH
  if (features().pidfd) {
    out.pidfd = sys_pidfd_open(pid);
    if (out.pidfd < 0) return abandon(pid, errno);
  }
#endif
  out.pid = pid;
  return out;
}

/// Starts the plan's program. Thread-safe: several host threads may spawn at
/// once (all descriptors jobwarden opens are close-on-exec, and the child
/// closes everything else it inherited).
inline SpawnOutcome spawn(const SpawnPlan& plan) {
#if JOBWARDEN_LINUX_FAST_PATH
  if (features().vfork_spawn) return spawn_vfork(plan);
#endif
  return spawn_fork(plan);
}

/// Finds `name` the way execvp would, in the parent (the child must not
/// allocate): names with a '/' are used as given. Sets `error` to ENOENT or
/// EACCES when nothing executable is found.
inline std::string resolve_program(const std::string& name, const std::string& path_env,
                                   int& error) {
  error = 0;
  if (name.find('/') != std::string::npos) return name;
  std::string search = path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env;
  int first_error = ENOENT;
  std::size_t begin = 0;
  while (begin <= search.size()) {
    std::size_t end = search.find(':', begin);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      first_error = EACCES;
    }
    begin = end + 1;
  }
  error = first_error;
  return {};
}

/// The host's environment as a map (for "inherit, then override").
inline std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const char* eq = std::strchr(*entry, '=');
    if (eq == nullptr) continue;
    env.emplace(std::string(*entry, static_cast<std::size_t>(eq - *entry)), std::string(eq + 1));
  }
  return env;
}

/// The limit for the close loop: the soft RLIMIT_NOFILE, capped so an
/// "unlimited" setting cannot make a spawn take seconds.
inline int max_descriptor_bound() {
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur > 1048576) {
    return 65536;
  }
  return static_cast<int>(limit.rlim_cur);
}

}  // namespace jobwarden::detail
