// Fuzzes the job directory's reader: the input becomes a job directory's
// journal.jsonl and one worker's workers/w1.status.json (split at the first
// 0xFF byte), and StatusAggregator reads it as a web endpoint would: once with
// the first half of the journal, then again after the rest was appended (the
// follower's incremental path). Whatever the bytes, reading must not crash,
// throw, or lose the job: content problems become `errors` entries.
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
    std::filesystem::create_directories(path + "/job/workers");
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

void write(const std::string& path, const std::string& content, bool append = false) {
  std::ofstream out(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  out << content;
}

void check(const jobwarden::JobStatus<>& status, const std::error_code& ec) {
  // Content, however bad, is never an error of the whole read — except a
  // first line naming another schema version, which refuses the job as such.
  if (ec == jobwarden::errc::unsupported_layout) return;
  if (ec) std::abort();
  std::string json = status.to_json().dump();
  if (json.empty() || status.job_id != "job") std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string parts[2];
  const std::size_t split = input.find('\xFF');
  parts[0] = input.substr(0, split);
  if (split != std::string::npos) parts[1] = input.substr(split + 1);
  const std::string& root = fuzz_root();
  const std::size_t half = parts[0].size() / 2;
  write(root + "/job/journal.jsonl", parts[0].substr(0, half));
  write(root + "/job/workers/w1.status.json", parts[1]);
  jobwarden::StatusAggregatorOptions options;
  options.max_file_size = 4096;
  jobwarden::StatusAggregator<> aggregator(root, options);  // fresh: no cache between inputs
  std::error_code ec;
  auto status = aggregator.read("job", ec);
  check(status, ec);
  write(root + "/job/journal.jsonl", parts[0].substr(half), /*append=*/true);
  status = aggregator.read("job", ec);
  check(status, ec);
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
