// The worker half of repo_scanner: `repo_scanner --worker DIR` walks DIR file
// by file, reports typed progress through WorkerStatusWriter and writes the
// manifests it found, with their dependencies, as its result.
//
// Run by hand (no JOBWARDEN_STATUS_FILE) the writer is a no-op and the worker
// simply prints its result: the same program works with or without jobwarden.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "manifests.hpp"
#include "repo_scanner.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using StatusWriter = jobwarden::WorkerStatusWriter<ScanProgress>;

namespace {

/// Every regular file under `root`, sorted, without version control data and
/// vendored packages (symbolic links are not followed).
std::vector<fs::path> list_files(const fs::path& root) {
  std::vector<fs::path> files;
  auto options = fs::directory_options::skip_permission_denied;
  for (auto it = fs::recursive_directory_iterator(root, options);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() && (name == ".git" || name == "node_modules")) {
      it.disable_recursion_pending();
    } else if (it->symlink_status().type() == fs::file_type::regular) {
      files.push_back(it->path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// Demo only: dies by SIGSEGV, after saying so where the host will see it.
[[noreturn]] void crash_on_purpose(StatusWriter& status) {
  status.message("crashing on purpose: the demo's crash marker");
  status.flush();  // messages are throttled: make sure this one is on disk
  std::fprintf(stderr, "repo_scanner: found %s, raising SIGSEGV (a demo of the crashed outcome)\n",
               crash_marker);
  std::signal(SIGSEGV, SIG_DFL);  // a sanitizer or crash reporter may have its own handler
  std::raise(SIGSEGV);
  std::abort();
}

/// Demo only: hangs like a worker stuck on a child process, deaf to SIGTERM,
/// so the host's timeout must stop it with SIGKILL — its helper included.
[[noreturn]] void hang_on_purpose(StatusWriter& status) {
  std::signal(SIGTERM, SIG_IGN);  // inherited by the helper, across exec too
  const pid_t helper = ::fork();
  if (helper == 0) {
    ::execlp("sleep", "sleep", "3600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  status.message("waiting forever for helper process " + std::to_string(helper));
  status.flush();
  ::waitpid(helper, nullptr, 0);
  for (;;) ::pause();
}

}  // namespace

int run_worker(const std::string& directory, std::chrono::milliseconds pace) {
  jobwarden::WorkerStatusWriterOptions<> writer_options;
  // A live view wants more than the default of one update a second.
  writer_options.throttle_interval = 200ms;
  // Outside jobwarden (run by hand) this is set and `status` writes nothing.
  std::error_code no_status_file;
  StatusWriter status = StatusWriter::from_environment(no_status_file, writer_options);

  const fs::path root(directory);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    const std::string reason = ec ? ec.message() : "not a directory";
    const std::string why = "cannot scan " + directory + ": " + reason;
    status.set_error(why);
    std::fprintf(stderr, "repo_scanner: %s\n", why.c_str());
    return 2;
  }
  try {
    status.message("listing files");
    const std::vector<fs::path> files = list_files(root);
    status.message("scanning " + std::to_string(files.size()) + " files");
    ScanResult result;
    ScanProgress progress{0, files.size(), ""};
    for (const fs::path& file : files) {
      progress.current_file = file.lexically_relative(root).generic_string();
      status.progress(progress);  // throttled: cheap enough to call for every file
      const std::string name = file.filename().string();
      if (name == crash_marker) crash_on_purpose(status);
      if (name == hang_marker) hang_on_purpose(status);
      if (auto ecosystem = manifests::ecosystem_of(name)) {
        result.manifests.push_back({progress.current_file, *ecosystem,
                                    manifests::dependencies(file.string(), *ecosystem)});
      }
      // The demo slows down so there is something to watch.
      if (pace.count() > 0) std::this_thread::sleep_for(pace);
      ++progress.files_done;
    }
    result.files_scanned = files.size();
    progress.current_file.clear();
    status.progress(progress);
    const std::size_t found = result.manifests.size();
    status.message("found " + std::to_string(found) + (found == 1 ? " manifest" : " manifests"));
    // The result is written at once, together with the latest progress and message.
    if (std::error_code write_error = status.result(result)) {
      std::fprintf(stderr, "repo_scanner: cannot write the result: %s\n",
                   write_error.message().c_str());
      return 1;
    }
    std::printf("%s\n", nlohmann::json(result).dump(2).c_str());
    return 0;
  } catch (const std::exception& e) {  // a directory that vanished or became unreadable mid-scan
    status.set_error(e.what());
    std::fprintf(stderr, "repo_scanner: %s\n", e.what());
    return 1;
  }
}
