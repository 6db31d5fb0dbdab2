// A host in jobwarden's separately compiled mode (jobwarden::compiled): this
// unit is also the job's worker (WorkerStatusWriter<>), job.cpp runs the job.
// Exits 0 only if the job ran and read back as expected.
#include <jobwarden/jobwarden.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

std::string run_job(const std::string& root, const std::string& self);

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--worker") {
    auto status = jobwarden::WorkerStatusWriter<>::from_environment();
    status.message("hello from the compiled mode");
    return status.flush() ? 1 : 0;
  }
  std::string root = (std::filesystem::temp_directory_path() / "jobwarden-compiled-XXXXXX").string();
  if (::mkdtemp(root.data()) == nullptr) return 1;
  std::string self = std::filesystem::absolute(argv[0]).string();
  std::string failure = run_job(root, self);
  std::filesystem::remove_all(root);
  if (!failure.empty()) {
    std::fprintf(stderr, "compiled consumer: %s\n", failure.c_str());
    return 1;
  }
  std::printf("jobwarden %s in compiled mode: one job run and read back\n", JOBWARDEN_VERSION_STRING);
  return 0;
}
