#pragma once
// `jobwarden run --input FILE|-`: where the workers' stdin comes from.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include <fmt/format.h>
#include <jobwarden/worker_io.hpp>

#include "arguments.hpp"

namespace jobwarden_cli {

/// The stdin of each of `workers` workers for `--input VALUE`: FILE (every
/// worker reads it from its start), or `-`, this tool's own stdin, which only
/// one worker can read. A FILE that cannot be read, or a directory, is a
/// usage error here, before anything is written.
inline jobwarden::InputSpec input_option(const std::string& value, std::size_t workers) {
  if (value == "-") {
    if (workers != 1) {
      throw UsageError(fmt::format("--input -: this tool's stdin can feed one worker only, not {}", workers));
    }
    return jobwarden::InputSpec::inherit();
  }
  if (value.empty()) throw UsageError("--input: empty path");
  const int fd = ::open(value.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) throw UsageError(fmt::format("--input: cannot read {}: {}", value, std::strerror(errno)));
  struct stat info {};
  const bool directory = ::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode);
  ::close(fd);
  if (directory) throw UsageError("--input: " + value + " is a directory");
  // Opened by the supervisor, in its own working directory (a worker's --cwd
  // does not apply): made absolute so that it names what the user meant.
  std::string path = value;
  if (path.front() != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) != nullptr) path = std::string(cwd) + "/" + path;
  }
  return jobwarden::InputSpec::from_file(path);
}

}  // namespace jobwarden_cli
