// Fuzzes the status-file reader: the input becomes a job directory's
// job.json, one worker's process.json and its status.json (split at 0xFF
// bytes), and StatusAggregator reads it as a web endpoint would. Whatever the
// bytes, reading must not crash, throw, or lose the job: content problems
// become `errors` entries.
//
// Built with clang's libFuzzer (-DJOBWARDEN_BUILD_FUZZERS=ON, CXX=clang++);
// with any compiler it also builds as a replay test over tests/fuzz/corpus.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <jobwarden/status_aggregator.hpp>

namespace {
/// A job directory reused for every input, removed at exit.
struct FuzzRoot {
  std::string path;
  FuzzRoot() {
    path = "/tmp/jobwarden-fuzz-XXXXXX";
    if (::mkdtemp(path.data()) == nullptr) std::abort();
    std::filesystem::create_directories(path + "/job/workers/w1");
  }
  ~FuzzRoot() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

const std::string& fuzz_root() {
  static const FuzzRoot root;
  return root.path;
}

void write(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string parts[3];
  std::size_t part = 0;
  for (char c : input) {
    if (static_cast<unsigned char>(c) == 0xFF && part < 2) {
      ++part;
    } else {
      parts[part] += c;
    }
  }
  const std::string& root = fuzz_root();
  write(root + "/job/job.json", parts[0]);
  write(root + "/job/workers/w1/process.json", parts[1]);
  write(root + "/job/workers/w1/status.json", parts[2]);
  jobwarden::StatusAggregatorOptions options;
  options.max_file_size = 4096;
  jobwarden::StatusAggregator<> aggregator(root, options);  // fresh: no cache between inputs
  std::error_code ec;
  auto status = aggregator.read("job", ec);
  if (ec) std::abort();  // content, however bad, is never an error of the whole read
  std::string json = status.to_json().dump();
  if (json.empty() || status.job_id != "job") std::abort();
  return 0;
}

#ifdef JOBWARDEN_FUZZ_REPLAY
// Without libFuzzer: run every file given (or every file in the given
// directories) once — the corpus as a regression test.
int main(int argc, char** argv) {
  int runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    auto run_file = [&](const std::filesystem::path& file) {
      std::ifstream in(file, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++runs;
    };
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) run_file(entry.path());
    } else {
      run_file(arg);
    }
  }
  std::printf("replayed %d inputs\n", runs);
  return runs > 0 ? 0 : 1;
}
#endif
