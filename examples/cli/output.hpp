#pragma once
// Where the `jobwarden` tool's text goes: print() formats with fmt and writes
// to a C stream (stdout, stderr, or the stream of `run`'s live display).
//
// Unlike fmt::print, a failed write is ignored rather than thrown, as with
// fprintf: `jobwarden status | head` closes the pipe early, SIGPIPE is
// ignored, and the command must still end normally with its own exit status.
// std::cout is never used, so every line goes through one buffer per stream.

#include <cstdio>
#include <iterator>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace jobwarden_cli {

/// Writes `text` to `out` as it is; a write error is ignored.
inline void write_text(std::FILE* out, const std::string& text) {
  if (!text.empty()) std::fwrite(text.data(), 1, text.size(), out);
}

/// Writes fmt's formatting of `args` by `format` to `out`; a write error is ignored.
template <class... Args>
void print(std::FILE* out, fmt::format_string<Args...> format, Args&&... args) {
  fmt::memory_buffer buffer;
  fmt::format_to(std::back_inserter(buffer), format, std::forward<Args>(args)...);
  std::fwrite(buffer.data(), 1, buffer.size(), out);
}

}  // namespace jobwarden_cli
