// scan_service: a web service that starts a job per request, with one limit
// for the whole service, and answers "how is scan 3 doing?" from the job
// directory. The shape of a scanner service that moved its CPU-heavy scans
// out of its event loop into worker processes:
//
//   scan_service [--port P] [--root DIR] [--slots N] [--per-scan M] [--pace MS]
//
//   POST   /scans        body: one directory per line -> 202 {"job_id": "scan-1", "workers": 3}
//   GET    /scans        -> 200 {"jobs": [...], "slots": {"capacity", "in_use", "waiting"}}
//   GET    /scans/ID     -> 200 the job's aggregated status (docs/contract.md), 404 if none
//   DELETE /scans/ID     -> 202 the scan is stopped (its workers get the stop sequence)
//
// It shows:
// - one `JobSupervisor` per request, all in one `SupervisorSet`: one thread
//   (the loop thread) polls them all; request threads create, submit to and
//   retire supervisors, and never wait for a worker;
// - one `SharedSlots(N)` handed to every supervisor: at most N scans' workers
//   run at once in the whole service (`--per-scan M` still bounds each scan),
//   and waiting scans take turns;
// - a finished scan retires itself from its own event handler (retire never
//   blocks, so no handler or request thread waits for the stop sequence);
// - status per job read from the job directory with `StatusAggregator`: it
//   answers for scans that have ended and been dropped, and for scans of an
//   earlier run of the service.
//
// Each worker is this program again (`scan_service --worker DIR`): it counts
// the files and bytes under DIR, sleeping `--pace` ms per file so that a demo
// can watch it, reports its progress and result with `WorkerStatusWriter`,
// and, if SCAN_TRACE is set, appends "start"/"end" lines to that file (how
// examples/scan_service_check.py sees from inside the workers that no more
// than N ran at once).
//
// It prints "listening on 127.0.0.1:PORT" when it is ready, and stops on
// SIGINT or SIGTERM: no new requests, every scan stopped, every worker reaped.
// HTTP/1.1 with `Connection: close`, one request per connection: enough for
// curl and for the check script, not a web server to deploy.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <jobwarden/jobwarden.hpp>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Supervisors = jobwarden::SupervisorSet<>;

namespace {

// ---- the worker -----------------------------------------------------------

void trace(const char* what) {
  const char* path = std::getenv("SCAN_TRACE");
  if (path == nullptr || *path == '\0') return;
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  char line[128];
  int n = std::snprintf(line, sizeof line, "%s %d %lld\n", what, static_cast<int>(::getpid()),
                        static_cast<long long>(now.tv_sec) * 1'000'000'000LL + now.tv_nsec);
  int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (::write(fd, line, static_cast<std::size_t>(n)) != n) std::perror("scan_service: trace");
  ::close(fd);
}

int run_worker(const std::string& dir, int pace_ms) {
  auto status = jobwarden::WorkerStatusWriter<>::from_environment();
  trace("start");
  std::error_code ec;
  std::vector<fs::path> files;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    status.set_error("cannot read " + dir + ": " + ec.message());
    trace("end");
    return 1;
  }
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::error_code type_error;
    if (it->is_regular_file(type_error)) files.push_back(it->path());
  }
  std::uintmax_t bytes = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::error_code size_error;
    std::uintmax_t size = fs::file_size(files[i], size_error);
    if (!size_error) bytes += size;
    status.progress(i + 1, files.size());
    status.message(files[i].filename().string());
    if (pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pace_ms));
  }
  status.result(nlohmann::json{{"directory", dir}, {"files", files.size()}, {"bytes", bytes}});
  trace("end");
  return 0;
}

// ---- the service ----------------------------------------------------------

int stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int) {
  const char byte = 1;
  ssize_t ignored = ::write(stop_pipe[1], &byte, 1);
  (void)ignored;
}

struct Settings {
  int port = 0;
  std::string root;
  std::size_t slots = 2;
  std::size_t per_scan = 2;
  int pace_ms = 50;
};

struct Response {
  int code = 200;
  nlohmann::json body;
};

class ScanService {
 public:
  explicit ScanService(Settings settings)
      : settings_(std::move(settings)), slots_(std::make_shared<jobwarden::SharedSlots>(settings_.slots)) {
    // Scans of an earlier run of the service keep their ids and records:
    // numbering goes on after the highest one under the root.
    for (const jobwarden::JobListing& job : jobwarden::StatusAggregator<>(settings_.root).list_jobs().jobs) {
      if (job.job_id.rfind("scan-", 0) != 0) continue;
      int n = std::atoi(job.job_id.c_str() + 5);
      if (n > scans_.load()) scans_.store(n);
    }
  }

  // Request threads: any number at once.
  Response handle(const std::string& method, const std::string& path, const std::string& body) {
    try {
      if (path == "/scans" && method == "POST") return start_scan(body);
      if (path == "/scans" && method == "GET") return list_scans();
      const std::string prefix = "/scans/";
      if (path.rfind(prefix, 0) == 0 && path.size() > prefix.size()) {
        std::string id = path.substr(prefix.size());
        if (method == "GET") return scan_status(id);
        if (method == "DELETE") return stop_scan(id);
      }
      return {404, {{"error", "no such endpoint: " + method + " " + path}}};
    } catch (const std::exception& e) {  // a request never takes the service down
      return {500, {{"error", e.what()}}};
    }
  }

  // The loop thread: polls every scan's supervisor until told to stop and
  // every scan has been retired.
  void run_loop() {
    while (!(stopping_.load() && supervisors_.empty())) supervisors_.run_once(500ms);
  }

  // At SIGINT/SIGTERM: every scan still running is stopped; the loop ends
  // once all are reaped.
  void stop() {
    stopping_.store(true);
    for (const std::string& key : supervisors_.keys()) {
      std::error_code ec;
      supervisors_.retire(key, ec);  // already retiring: nothing to do
    }
    supervisors_.wake();
  }

 private:
  Response start_scan(const std::string& body) {
    std::vector<std::string> dirs;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      std::error_code ec;
      if (!fs::is_directory(line, ec)) return {400, {{"error", "not a directory: " + line}}};
      dirs.push_back(line);
    }
    if (dirs.empty()) return {400, {{"error", "the body names no directory (one per line)"}}};
    if (stopping_.load()) return {503, {{"error", "the service is stopping"}}};

    const std::string job_id = "scan-" + std::to_string(++scans_);
    jobwarden::SupervisorOptions options;
    options.root = settings_.root;
    options.job_id = job_id;
    options.max_concurrency = settings_.per_scan;
    options.shared_slots = slots_;  // the service-wide limit
    auto supervisor = supervisors_.emplace(job_id, options);
    // A finished scan retires itself: the handler runs on the loop thread,
    // and retire returns at once (the set drops the supervisor later). The
    // loop polls the supervisor while this thread still submits: until every
    // worker is in, "nothing active" is not "finished".
    auto submitted = std::make_shared<std::atomic<bool>>(false);
    jobwarden::JobSupervisor<>* self = supervisor.get();
    supervisor->on_event([this, self, job_id, submitted](const jobwarden::WorkerEvent& event) {
      if (event.kind != jobwarden::EventKind::exited || !submitted->load() || self->active_count() != 0) return;
      std::error_code ec;
      supervisors_.retire(job_id, ec);  // already retiring (a DELETE): nothing to do
    });
    for (std::size_t i = 0; i < dirs.size(); ++i) {
      jobwarden::WorkerSpec spec;
      spec.id = std::to_string(i + 1);
      spec.label = dirs[i];
      spec.argv = {self_path_, "--worker", dirs[i], "--pace", std::to_string(settings_.pace_ms)};
      spec.timeout = 10min;
      supervisor->submit(spec);
    }
    supervisor->finish();  // no more work: the job's final state is written when the last worker ends
    submitted->store(true);
    if (supervisor->active_count() == 0) {  // every worker ended before the flag was up
      std::error_code ec;
      supervisors_.retire(job_id, ec);
    }
    return {202, {{"job_id", job_id}, {"workers", dirs.size()}}};
  }

  Response list_scans() {
    jobwarden::StatusAggregator<> reader(settings_.root);
    jobwarden::JobList list = reader.list_jobs();
    return {200,
            {{"jobs", list.to_json()["jobs"]},
             {"live", supervisors_.keys()},
             {"slots", {{"capacity", slots_->capacity()}, {"in_use", slots_->in_use()}, {"waiting", slots_->waiting()}}}}};
  }

  Response scan_status(const std::string& id) {
    jobwarden::StatusAggregator<> reader(settings_.root);
    std::error_code ec;
    jobwarden::JobStatus<> status = reader.read(id, ec);
    if (ec == jobwarden::errc::unknown_job) return {404, {{"error", "no scan " + id}}};
    if (ec) return {400, {{"error", ec.message() + ": " + id}}};
    return {200, status.to_json()};
  }

  Response stop_scan(const std::string& id) {
    std::error_code ec;
    supervisors_.retire(id, ec);  // the loop thread finishes the stop sequence
    if (ec) return {404, {{"error", "no running scan " + id + " (it ended, is stopping, or never was)"}}};
    return {202, {{"job_id", id}, {"stopping", true}}};
  }

  Settings settings_;
  std::shared_ptr<jobwarden::SharedSlots> slots_;
  Supervisors supervisors_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> scans_{0};
  std::string self_path_ = fs::read_symlink("/proc/self/exe").string();
};

// ---- a little HTTP --------------------------------------------------------

const char* reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
  }
}

void send_all(int fd, const std::string& text) {
  std::size_t sent = 0;
  while (sent < text.size()) {
    ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away
    sent += static_cast<std::size_t>(n);
  }
}

void serve_connection(int fd, ScanService& service) {
  constexpr std::size_t max_request = 64 * 1024;
  std::string request;
  char buffer[4096];
  std::size_t header_end = std::string::npos;
  std::size_t content_length = 0;
  Response response{400, {{"error", "incomplete request"}}};
  timeval timeout{10, 0};  // a client that sends nothing does not keep a thread for ever
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string method, path;
  while (request.size() <= max_request) {
    if (header_end == std::string::npos) {
      header_end = request.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::istringstream head(request.substr(0, header_end));
        std::string line;
        std::getline(head, line);
        std::istringstream first(line);
        first >> method >> path;
        while (std::getline(head, line)) {
          std::string lower;
          for (char c : line) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          if (lower.rfind("content-length:", 0) == 0) content_length = std::strtoul(line.c_str() + 15, nullptr, 10);
        }
      }
    }
    if (header_end != std::string::npos && request.size() >= header_end + 4 + content_length) {
      response = content_length > max_request
                     ? Response{413, {{"error", "request too large"}}}
                     : service.handle(method, path, request.substr(header_end + 4, content_length));
      break;
    }
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buffer, static_cast<std::size_t>(n));
  }
  if (request.size() > max_request) response = {413, {{"error", "request too large"}}};
  std::string body = response.body.dump(2) + "\n";
  send_all(fd, "HTTP/1.1 " + std::to_string(response.code) + " " + reason(response.code) +
                   "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\nConnection: close\r\n\r\n" + body);
  ::close(fd);
}

int run_service(Settings settings) {
  bool own_root = settings.root.empty();
  if (own_root) {
    std::string root = (fs::temp_directory_path() / "scan-service-XXXXXX").string();
    if (::mkdtemp(root.data()) == nullptr) {
      std::perror("scan_service: mkdtemp");
      return 1;
    }
    settings.root = root;
  }
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int yes = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(settings.port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 64) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::fprintf(stderr, "scan_service: cannot listen on 127.0.0.1:%d: %s\n", settings.port, std::strerror(errno));
    return 1;
  }
  if (::pipe2(stop_pipe, O_CLOEXEC) != 0) return 1;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  const std::string root = settings.root;
  int status = 0;
  {
    ScanService service(settings);
    std::thread loop([&service] { service.run_loop(); });
    std::printf("listening on 127.0.0.1:%d (jobs under %s, %zu slots for the service)\n",
                static_cast<int>(ntohs(address.sin_port)), root.c_str(), settings.slots);
    std::fflush(stdout);
    struct Request {
      std::thread thread;
      std::shared_ptr<std::atomic<bool>> done;
    };
    std::vector<Request> requests;
    for (;;) {
      pollfd fds[2] = {{listener, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        std::perror("scan_service: poll");
        status = 1;
        break;
      }
      if (fds[1].revents != 0) break;
      int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;  // EMFILE and friends: the client is refused, the service goes on
      // Request threads that have answered are joined as new ones come.
      for (auto it = requests.begin(); it != requests.end();) {
        if (it->done->load()) {
          it->thread.join();
          it = requests.erase(it);
        } else {
          ++it;
        }
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      requests.push_back({std::thread([client, &service, done] {
                            serve_connection(client, service);
                            done->store(true);
                          }),
                          done});
    }
    ::close(listener);
    for (Request& request : requests) request.thread.join();
    service.stop();
    loop.join();  // every scan retired: every worker reaped
  }
  std::printf("stopped: every scan's workers reaped\n");
  if (own_root) fs::remove_all(root);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  std::string worker_dir;
  bool worker = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "scan_service: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](long low, long high) {
      std::string text = value();
      char* end = nullptr;
      long n = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || n < low || n > high) {
        std::fprintf(stderr, "scan_service: %s must be a number from %ld to %ld, not \"%s\"\n", arg.c_str(), low,
                     high, text.c_str());
        std::exit(2);
      }
      return n;
    };
    if (arg == "--worker") {
      worker = true;
      worker_dir = value();
    } else if (arg == "--port") {
      settings.port = static_cast<int>(number(0, 65535));
    } else if (arg == "--root") {
      settings.root = value();
    } else if (arg == "--slots") {
      settings.slots = static_cast<std::size_t>(number(1, 1024));
    } else if (arg == "--per-scan") {
      settings.per_scan = static_cast<std::size_t>(number(1, 1024));
    } else if (arg == "--pace") {
      settings.pace_ms = static_cast<int>(number(0, 60'000));
    } else {
      std::fprintf(stderr,
                   "usage: scan_service [--port P] [--root DIR] [--slots N] [--per-scan M] [--pace MS]\n"
                   "unknown option: %s\n",
                   arg.c_str());
      return 2;
    }
  }
  if (worker) return run_worker(worker_dir, settings.pace_ms);
  return run_service(settings);
}
