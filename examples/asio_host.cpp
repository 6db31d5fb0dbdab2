// asio_host: a JobSupervisor driven by a standalone asio event loop
// (Debian: libasio-dev). The supervisor's event_fd() is wrapped in an
// asio::posix::stream_descriptor; each time it is readable the host calls
// poll(), which returns at once, and waits again. A steady_timer covers
// next_timeout() (deadlines, and the periodic pump of the portable build).
// Workers' stdout lines are streamed as they come, prefixed with the worker's
// id; stderr is kept by the supervisor as a tail and quoted when a worker
// fails. SIGINT or SIGTERM begins the shutdown: every worker is stopped with
// the stop sequence, and the host exits once all have ended.
//
// It runs four shell commands that print lines over a second or so; one
// fails on purpose. It exits 0 when every worker succeeded, 1 otherwise
// (so 1 here), after a line saying how many succeeded.
#include <fcntl.h>

#include <asio.hpp>
#include <cerrno>

#include <cstdio>
#include <optional>
#include <string>
#include <system_error>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;

namespace {

// The supervisor inside an asio event loop.
class AsioHost {
 public:
  AsioHost(asio::io_context& io, jobwarden::JobSupervisor<>& supervisor)
      : supervisor_(supervisor),
        // asio owns (and closes) what it wraps, so it gets its own copy of the descriptor.
        events_(io, own_copy(supervisor.event_fd())),
        timer_(io),
        signals_(io, SIGINT, SIGTERM) {
    signals_.async_wait([this](const std::error_code& ec, int number) {
      if (ec) return;
      std::printf("asio_host: %s, stopping every worker\n", number == SIGINT ? "SIGINT" : "SIGTERM");
      supervisor_.begin_shutdown();  // the stop sequence; exits arrive through poll()
      pump();
    });
    asio::post(io, [this] { pump(); });  // starts the first workers
    wait_for_events();
  }

 private:
  static int own_copy(int fd) {
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);  // close-on-exec, like the supervisor's own
    if (copy < 0) throw std::system_error(errno, std::generic_category(), "cannot copy event_fd()");
    return copy;
  }

  void wait_for_events() {
    events_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& ec) {
      if (ec) return;  // cancelled: the host is done
      pump();
      if (!done_) wait_for_events();
    });
  }

  // poll() does whatever is ready and returns at once: handlers run inside it.
  void pump() {
    if (done_) return;
    supervisor_.poll();
    if (supervisor_.active_count() == 0) {  // finish() was called: nothing more will start
      done_ = true;
      events_.cancel();
      timer_.cancel();
      signals_.cancel();
      return;
    }
    // Re-arming replaces the pending wait (whose handler sees operation_aborted).
    if (std::optional<std::chrono::milliseconds> next = supervisor_.next_timeout()) {
      timer_.expires_after(*next);
      timer_.async_wait([this](const std::error_code& ec) {
        if (!ec) pump();
      });
    } else {
      timer_.cancel();
    }
  }

  jobwarden::JobSupervisor<>& supervisor_;
  asio::posix::stream_descriptor events_;
  asio::steady_timer timer_;
  asio::signal_set signals_;
  bool done_ = false;
};

jobwarden::WorkerSpec shell(std::string id, std::string script) {
  jobwarden::WorkerSpec spec;
  spec.id = std::move(id);
  spec.argv = {"sh", "-c", std::move(script)};
  spec.timeout = 30s;
  spec.grace_period = 2s;
  // Read by the supervisor, for the line handler below, and not kept in a file.
  spec.stdout_spec = jobwarden::OutputSpec::supervised(jobwarden::OutputSpec::Kind::discard);
  spec.stderr_spec = jobwarden::OutputSpec::supervised(jobwarden::OutputSpec::Kind::discard);
  spec.stderr_spec.tail_bytes = 1024;  // the last KiB stays in WorkerInfo::stderr_tail
  return spec;
}

}  // namespace

int main() {
  jobwarden::SupervisorOptions options;
  options.job_id = "asio-demo";  // no root: no job directory, only what the handlers show
  options.max_concurrency = 4;
  jobwarden::JobSupervisor<> supervisor(options);

  supervisor.on_output_line([](const jobwarden::OutputLine& line) {
    if (line.stream != jobwarden::OutputStream::out) return;  // stderr: kept as a tail
    std::printf("[%.*s] %.*s%s\n", static_cast<int>(line.worker_id.size()), line.worker_id.data(),
                static_cast<int>(line.text.size()), line.text.data(), line.partial ? " (no newline)" : "");
    std::fflush(stdout);  // stream it: stdout may be a pipe
  });
  supervisor.on_event([](const jobwarden::WorkerEvent& event) {
    if (event.kind != jobwarden::EventKind::exited) return;
    const jobwarden::WorkerInfo& worker = event.worker;
    std::printf("%s %s", worker.id.c_str(), std::string(jobwarden::to_string(worker.state)).c_str());
    if (worker.exit_code) std::printf(" (exit %d)", *worker.exit_code);
    std::printf("\n");
    if (worker.state != jobwarden::WorkerState::succeeded && !worker.stderr_tail.empty()) {
      std::printf("  its stderr ended with:\n");
      std::size_t begin = 0;
      while (begin < worker.stderr_tail.size()) {
        std::size_t end = worker.stderr_tail.find('\n', begin);
        if (end == std::string::npos) end = worker.stderr_tail.size();
        std::printf("  | %s\n", worker.stderr_tail.substr(begin, end - begin).c_str());
        begin = end + 1;
      }
    }
    std::fflush(stdout);
  });

  asio::io_context io;
  AsioHost host(io, supervisor);  // SIGINT and SIGTERM are ours from here on

  supervisor.submit(shell("fetch", "for i in 1 2 3 4; do echo \"fetched part $i of 4\"; sleep 0.3; done"));
  supervisor.submit(shell("build", "for i in 1 2 3; do echo \"compiled unit $i of 3\"; sleep 0.4; done; "
                                   "printf 'build finished'"));  // a last line without newline
  supervisor.submit(shell("test", "echo 'running 3 tests'; sleep 0.5; echo 'test 2 of 3 failed' >&2; "
                                  "echo 'expected 4, got 5 (tests/sum.sh:12)' >&2; exit 1"));
  supervisor.submit(shell("report", "sleep 0.2; echo 'report started'; sleep 0.6; echo 'report written'"));
  supervisor.finish();  // no more workers: the job ends when these four do

  io.run();  // returns when the host cancelled its waits: every worker has ended

  std::size_t succeeded = 0, total = 0;
  for (const jobwarden::WorkerInfo& worker : supervisor.workers()) {
    ++total;
    if (worker.state == jobwarden::WorkerState::succeeded) ++succeeded;
  }
  std::printf("asio_host: %zu of %zu workers succeeded\n", succeeded, total);
  return succeeded == total ? 0 : 1;
}
