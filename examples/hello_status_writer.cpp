// hello_status_writer: a worker that reports progress and a result. Started
// by jobwarden it writes to $JOBWARDEN_STATUS_FILE; run by hand it says so,
// writes to a temporary file instead and shows what it wrote.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <jobwarden/jobwarden.hpp>

using namespace std::chrono_literals;

int main(int, char** argv) {
  std::error_code not_under_jobwarden;
  auto status = jobwarden::WorkerStatusWriter<>::from_environment(not_under_jobwarden);
  std::string own_file;
  if (not_under_jobwarden) {
    auto name = "hello-status-" + std::to_string(::getpid()) + ".json";
    own_file = (std::filesystem::temp_directory_path() / name).string();
    std::printf(
        "Not started by jobwarden (JOBWARDEN_STATUS_FILE is not set), so reporting into %s.\n"
        "Try: jobwarden run --root /tmp/jobs --job hello -- %s\n",
        own_file.c_str(), argv[0]);
    status = jobwarden::WorkerStatusWriter<>(own_file);
  }
  for (int step = 1; step <= 5; ++step) {
    std::this_thread::sleep_for(100ms);  // the work
    status.progress(step, 5);            // {"done": step, "total": 5}; at most one write a second
    status.message("finished step " + std::to_string(step));
  }
  status.result(nlohmann::json{{"answer", 42}});  // written at once, with the latest progress

  if (!own_file.empty()) {
    std::printf("%s\n", nlohmann::json::parse(std::ifstream(own_file)).dump(2).c_str());
    std::filesystem::remove(own_file);
  }
  return 0;
}
