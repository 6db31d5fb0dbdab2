// hello_aggregator: runs a tiny job with a root directory, then reads it back
// with StatusAggregator, as any other process could, and prints the JSON.
#include <cstdio>
#include <filesystem>

#include <jobwarden/jobwarden.hpp>

int main(int argc, char** argv) {
  if (argc == 2) {  // the worker: `hello_aggregator NAME` reports progress and a result
    auto status = jobwarden::WorkerStatusWriter<>::from_environment();
    status.progress(1, 1);
    status.result(nlohmann::json{{"greeting", "hello from " + std::string(argv[1])}});
    return 0;
  }
  std::string root = (std::filesystem::temp_directory_path() / "hello-aggregator-XXXXXX").string();
  if (::mkdtemp(root.data()) == nullptr) return 1;
  {
    jobwarden::SupervisorOptions options;
    options.job_id = "hello";
    options.root = root;  // the job directory: <root>/hello/
    jobwarden::JobSupervisor<> supervisor(options);
    for (std::string name : {"alice", "bob"}) {
      jobwarden::WorkerSpec spec;
      spec.id = name;
      spec.argv = {"/proc/self/exe", name};  // this program again, as a worker
      supervisor.submit(spec);
    }
    supervisor.wait_all();
    supervisor.finish();  // no more work: the next poll() writes the job's final state
    supervisor.poll();
  }
  jobwarden::StatusAggregator<> reader(
      root);  // any process can do this, while the job runs or after
  jobwarden::JobStatus<> job = reader.read("hello");
  std::printf("%s\n", job.to_json().dump(2).c_str());
  std::filesystem::remove_all(root);
  return job.state == jobwarden::JobState::succeeded ? 0 : 1;
}
