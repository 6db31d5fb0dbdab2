#include <jobwarden/jobwarden.hpp>

#include <cstdio>

int main() {
  if (!jobwarden::is_valid_id("scan-42") || jobwarden::is_valid_id("..")) return 1;
  auto state = jobwarden::to_string(jobwarden::WorkerState::succeeded);
  std::printf("jobwarden %s: %.*s\n", JOBWARDEN_VERSION_STRING, static_cast<int>(state.size()),
              state.data());
  return 0;
}
