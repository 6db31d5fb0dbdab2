// The program the benchmarks run as a worker (besides /bin/true and /bin/sh):
// `jobwarden_bench_worker MODE [ARGS...]`. Plain C and raw system calls, so
// it starts fast and its name is easy to find in `ps` if a benchmark ever
// leaves one behind (scripts/bench.sh checks).
//
//   sleep                 sleep until a signal ends it (default dispositions)
//   stamp FILE DELAY_US   sleep DELAY_US, write CLOCK_MONOTONIC ns to FILE, exit 0
//   term-stamp FILE       on SIGTERM write CLOCK_MONOTONIC ns to FILE and exit 0;
//                         until then sleep
//   ignore-term           ignore SIGTERM and sleep until SIGKILL
//   lines BYTES           write BYTES bytes of 100-byte lines (99 letters and
//                         '\n') to stdout in 64 KiB writes (lines straddle
//                         writes), exit 0; exit 1 on a failed write
//
// In the sleeping modes, once ready (dispositions set), a worker writes one
// byte into the FIFO named by JOBWARDEN_BENCH_READY, if set: a benchmark
// counts those bytes to know its tree has started, rather than scanning /proc.
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
const char* stamp_path = nullptr;

long long now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Async-signal-safe: formats and writes the current time, then exits.
void write_stamp_and_exit(const char* path) {
  long long t = now_ns();
  char buf[32];
  int len = 0;
  char digits[32];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + t % 10);
    t /= 10;
  } while (t > 0);
  while (n > 0) buf[len++] = digits[--n];
  buf[len++] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ssize_t ignored = write(fd, buf, static_cast<size_t>(len));
    (void)ignored;
    close(fd);
  }
  _exit(0);
}

void on_term(int) { write_stamp_and_exit(stamp_path); }

// Every line is 99 'x' and '\n', so a reader can check it got whole lines; a
// write starts at its offset's place in a buffer that repeats the 100-byte line.
int write_lines(long long total) {
  constexpr int line = 100;
  constexpr int chunk = 64 * 1024;
  static char buffer[chunk + line];
  for (int i = 0; i < chunk + line; ++i) buffer[i] = i % line == line - 1 ? '\n' : 'x';
  long long written = 0;
  while (written < total) {
    long long want = total - written < chunk ? total - written : chunk;
    ssize_t n = write(1, buffer + written % line, static_cast<size_t>(want));
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    written += n;
  }
  return 0;
}

void say_ready() {
  const char* fifo = std::getenv("JOBWARDEN_BENCH_READY");
  if (fifo == nullptr || *fifo == '\0') return;
  int fd = open(fifo, O_WRONLY | O_CLOEXEC | O_NONBLOCK);  // ENXIO when nobody reads: nobody is counting
  if (fd < 0) return;
  ssize_t ignored = write(fd, "r", 1);
  (void)ignored;
  close(fd);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  if (std::strcmp(mode, "sleep") == 0) {
    say_ready();
    for (;;) pause();
  }
  if (std::strcmp(mode, "stamp") == 0 && argc > 3) {
    long long delay_us = std::atoll(argv[3]);
    timespec ts{static_cast<time_t>(delay_us / 1000000), static_cast<long>(delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    write_stamp_and_exit(argv[2]);
  }
  if (std::strcmp(mode, "term-stamp") == 0 && argc > 2) {
    stamp_path = argv[2];
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_handler = on_term;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    for (;;) pause();
  }
  if (std::strcmp(mode, "ignore-term") == 0) {
    signal(SIGTERM, SIG_IGN);
    say_ready();
    for (;;) pause();
  }
  if (std::strcmp(mode, "lines") == 0 && argc > 2) return write_lines(std::atoll(argv[2]));
  std::fprintf(stderr, "jobwarden_bench_worker: unknown mode %s\n", mode);
  return 2;
}
