// One translation unit of the 8-unit host scripts/compile-cost.sh times: built
// eight times with -DJW_UNIT=1..8, each unit uses the supervisor, the reader
// and the status writer, as the files of a bigger host would. Unit 1 also
// holds main(), which calls every unit.
#include <cstdio>
#include <filesystem>
#include <string>

#include <jobwarden/jobwarden.hpp>

#ifndef JW_UNIT
#error "build with -DJW_UNIT=<1..8>"
#endif

#define JW_CAT2(a, b) a##b
#define JW_CAT(a, b) JW_CAT2(a, b)
#define JW_UNIT_FUNCTION JW_CAT(unit_, JW_UNIT)

int unit_1(const std::string& root);
int unit_2(const std::string& root);
int unit_3(const std::string& root);
int unit_4(const std::string& root);
int unit_5(const std::string& root);
int unit_6(const std::string& root);
int unit_7(const std::string& root);
int unit_8(const std::string& root);

int JW_UNIT_FUNCTION(const std::string& root) {
  std::string job_id = "unit-" + std::to_string(JW_UNIT);
  {
    jobwarden::SupervisorOptions options;
    options.job_id = job_id;
    options.root = root;
    jobwarden::JobSupervisor<> supervisor(options);
    jobwarden::WorkerSpec spec;
    spec.argv = {"true"};
    supervisor.submit(spec);
    supervisor.wait_all();
  }
  jobwarden::StatusAggregator<> reader(root);
  jobwarden::JobStatus<> job = reader.read(job_id);
  if (std::getenv("JOBWARDEN_STATUS_FILE") != nullptr) {
    auto status = jobwarden::WorkerStatusWriter<>::from_environment();
    status.progress(JW_UNIT, 8);
    status.message("unit " + std::to_string(JW_UNIT));
  }
  return job.state == jobwarden::JobState::succeeded ? 0 : 1;
}

#if JW_UNIT == 1
int main() {
  std::string root = (std::filesystem::temp_directory_path() / "jw-compile-cost-XXXXXX").string();
  if (::mkdtemp(root.data()) == nullptr) return 1;
  int failures = unit_1(root) + unit_2(root) + unit_3(root) + unit_4(root) + unit_5(root) +
                 unit_6(root) + unit_7(root) + unit_8(root);
  std::filesystem::remove_all(root);
  std::printf("%d of 8 units failed\n", failures);
  return failures == 0 ? 0 : 1;
}
#endif
