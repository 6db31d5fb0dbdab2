// The minimal host program scripts/compile-cost.sh times: it constructs a
// JobSupervisor<>, submits one worker, waits for it and reads the job back with
// a StatusAggregator<>. It also runs (the script builds it only), so it stays
// an honest program rather than a list of declarations.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <jobwarden/jobwarden.hpp>

int main() {
  std::string root = (std::filesystem::temp_directory_path() / "jw-compile-cost-XXXXXX").string();
  if (::mkdtemp(root.data()) == nullptr) return 1;
  {
    jobwarden::SupervisorOptions options;
    options.job_id = "minimal";
    options.root = root;
    jobwarden::JobSupervisor<> supervisor(options);
    jobwarden::WorkerSpec spec;
    spec.argv = {"true"};
    supervisor.submit(spec);
    supervisor.wait_all();
  }
  jobwarden::StatusAggregator<> reader(root);
  jobwarden::JobStatus<> job = reader.read("minimal");
  std::printf("%s\n", job.to_json().dump().c_str());
  std::filesystem::remove_all(root);
  return 0;
}
