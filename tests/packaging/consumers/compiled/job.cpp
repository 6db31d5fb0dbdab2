// The second translation unit of the compiled-mode consumer: runs a job with
// JobSupervisor<> and reads it back with StatusAggregator<>, whose members come
// from the jobwarden_compiled library, not from this file.
#include <jobwarden/jobwarden.hpp>

#include <string>

#ifndef JOBWARDEN_SEPARATE_COMPILATION
#error "jobwarden::compiled defines JOBWARDEN_SEPARATE_COMPILATION"
#endif

std::string run_job(const std::string& root, const std::string& self) {
  {
    jobwarden::SupervisorOptions options;
    options.job_id = "compiled";
    options.root = root;
    jobwarden::JobSupervisor<> supervisor(options);
    jobwarden::WorkerSpec spec;
    spec.id = "reporter";
    spec.argv = {self, "--worker"};
    supervisor.submit(spec);
    supervisor.wait_all();
    supervisor.finish();
    supervisor.poll();
  }
  jobwarden::StatusAggregator<> reader(root);
  jobwarden::JobStatus<> job = reader.read("compiled");
  if (job.workers.size() != 1) return "one worker expected";
  if (job.workers[0].state != jobwarden::WorkerState::succeeded) return "the worker did not succeed";
  if (job.workers[0].message != "hello from the compiled mode") return "the worker's message is missing";
  return job.state == jobwarden::JobState::succeeded ? "" : "the job did not succeed";
}
