// A worker for the tests: `jobwarden_test_worker MODE [ARGS...]`.
//   fds               print the open descriptors, one per line
//   crash             die of SIGSEGV
//   abort             die of SIGABRT
//   exit N            exit with status N
//   flood BYTES       write BYTES bytes to stdout, then exit 0
//   times FILE MS     append "<start_ns> <end_ns>" to FILE around a MS sleep
//   env NAME          print the variable's value (or "<unset>")
//   trap-term MS      on SIGTERM wait MS then exit 0; meanwhile sleep
//   ignore-term       ignore SIGTERM and sleep forever
//   sleep MS          sleep MS milliseconds, exit 0
//   interleave N      write N numbered lines, alternately to stdout ("out 0")
//                     and stderr ("err 1"), one write(2) each, then exit 0
//   report N MS       report progress i/N every MS ms through WorkerStatusWriter,
//                     then the result {"count": N}; exit 0
//   burn MS           spin until this process has used MS ms of CPU, exit 0
//   say TEXT FILE WHY report TEXT as its message through WorkerStatusWriter,
//                     heartbeat until FILE exists, then report WHY as its
//                     error and exit 3
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <jobwarden/worker_status_writer.hpp>

namespace {
volatile sig_atomic_t got_term = 0;
void on_term(int) { got_term = 1; }

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string mode = argv[1];
  if (mode == "fds") {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return 3;
    int own = dirfd(dir);
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      int fd = std::atoi(entry->d_name);
      if (fd != own) std::printf("%d\n", fd);
    }
    closedir(dir);
    return 0;
  }
  if (mode == "crash") {
    raise(SIGSEGV);
    return 4;
  }
  if (mode == "abort") std::abort();
  if (mode == "exit" && argc > 2) return std::atoi(argv[2]);
  if (mode == "flood" && argc > 2) {
    long long left = std::atoll(argv[2]);
    std::vector<char> block(1 << 16, 'x');
    while (left > 0) {
      auto n = static_cast<size_t>(std::min<long long>(left, static_cast<long long>(block.size())));
      ssize_t w = write(1, block.data(), n);
      if (w <= 0) return 5;
      left -= w;
    }
    return 0;
  }
  if (mode == "times" && argc > 3) {
    long long start = now_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[3])));
    long long end = now_ns();
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 6;
    std::string line = std::to_string(start) + " " + std::to_string(end) + "\n";
    ssize_t ignored = write(fd, line.data(), line.size());  // O_APPEND: one atomic line
    (void)ignored;
    close(fd);
    return 0;
  }
  if (mode == "env" && argc > 2) {
    const char* value = std::getenv(argv[2]);
    std::printf("%s\n", value ? value : "<unset>");
    return 0;
  }
  if (mode == "trap-term" && argc > 2) {
    signal(SIGTERM, on_term);
    std::printf("ready\n");
    std::fflush(stdout);
    while (!got_term) pause();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[2])));
    return 0;
  }
  if (mode == "ignore-term") {
    signal(SIGTERM, SIG_IGN);
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  if (mode == "report" && argc > 3) {
    int total = std::atoi(argv[2]);
    jobwarden::WorkerStatusWriterOptions<> options;
    options.throttle_interval = std::chrono::milliseconds(0);
    auto writer = jobwarden::WorkerStatusWriter<>::from_environment(options);
    writer.set_state(jobwarden::WorkerState::running);
    for (int i = 1; i <= total; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[3])));
      writer.progress(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(total));
      writer.message("step " + std::to_string(i));
    }
    writer.result(nlohmann::json{{"count", total}});
    return 0;
  }
  if (mode == "interleave" && argc > 2) {
    int total = std::atoi(argv[2]);
    for (int i = 0; i < total; ++i) {
      std::string line = (i % 2 == 0 ? "out " : "err ") + std::to_string(i) + "\n";
      if (write(i % 2 == 0 ? 1 : 2, line.data(), line.size()) !=
          static_cast<ssize_t>(line.size())) {
        return 5;
      }
    }
    return 0;
  }
  if (mode == "burn" && argc > 2) {
    const long long limit_ns = std::atoll(argv[2]) * 1'000'000LL;
    timespec used{};
    volatile unsigned long spins = 0;
    do {
      for (int i = 0; i < 10000; ++i) spins = spins + 1;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used);
    } while (used.tv_sec * 1'000'000'000LL + used.tv_nsec < limit_ns);
    return 0;
  }
  if (mode == "say" && argc > 4) {
    jobwarden::WorkerStatusWriterOptions<> options;
    options.throttle_interval = std::chrono::milliseconds(0);
    auto writer = jobwarden::WorkerStatusWriter<>::from_environment(options);
    writer.set_state(jobwarden::WorkerState::running);
    writer.message(argv[2]);
    while (access(argv[3], F_OK) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      writer.heartbeat();
    }
    writer.set_error(argv[4]);
    return 3;
  }
  if (mode == "sleep" && argc > 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[2])));
    return 0;
  }
  return 2;
}
