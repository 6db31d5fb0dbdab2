#pragma once
/// \file
/// A worker's standard streams as the host sees them: where its stdin comes
/// from (`InputSpec`), and what the supervisor hands the host of the output
/// it reads (`OutputLine`, `OutputChunk`). Where stdout and stderr go is
/// `OutputSpec` (worker_spec.hpp).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace jobwarden {

/// Where a worker's stdin comes from.
///
/// ```
/// spec.stdin_spec = jobwarden::InputSpec::from_bytes(request_body);
/// spec.stdin_spec = jobwarden::InputSpec::kept_open();  // then write_input / close_input
/// ```
///
/// With `Kind::host` the supervisor holds the write end of a pipe and writes
/// in `poll()`, as much as the pipe takes each time, never blocking the host
/// (the portable path retries about every 20 ms: see `next_timeout()`). A
/// worker that closes its stdin or ends before reading everything is not an
/// error of the supervisor's: feeding stops, the bytes left are dropped, and
/// `WorkerInfo::input_error` says how many; the worker's outcome is its own.
/// SIGPIPE never reaches the host for it, whatever the host's disposition.
/// A restarted worker gets `data` again; what the host wrote to an earlier
/// attempt is not replayed.
struct InputSpec {
  enum class Kind {
    null,     ///< /dev/null (the default)
    /// `path`, opened for reading before the spawn (relative to the
    /// supervisor's working directory, not the worker's `cwd`); one that
    /// cannot be opened ends the worker `spawn_failed`, the error naming it.
    file,
    host,     ///< a pipe the supervisor writes: `data` first, then what the host adds
    inherit,  ///< the supervisor's own stdin (fd 0), shared with the host
  };
  Kind kind = Kind::null;
  std::string path;  ///< for `Kind::file` (required there, and only there)
  /// For `Kind::host`: bytes written to the worker's stdin by the supervisor's
  /// event loop (inside `poll()`, never blocking the host). Kept in the spec:
  /// every attempt gets them.
  std::string data;
  /// For `Kind::host`: keep stdin open after `data`, for
  /// `JobSupervisor::write_input`, until `JobSupervisor::close_input`.
  /// Otherwise the pipe is closed once `data` is written (the worker reads EOF).
  bool keep_open = false;

  static InputSpec null_device() { return InputSpec{}; }
  static InputSpec from_file(std::string p) {
    InputSpec spec;
    spec.kind = Kind::file;
    spec.path = std::move(p);
    return spec;
  }
  static InputSpec from_bytes(std::string bytes) {
    InputSpec spec;
    spec.kind = Kind::host;
    spec.data = std::move(bytes);
    return spec;
  }
  /// stdin stays open for the host to write (`data` goes first).
  static InputSpec kept_open(std::string first_bytes = {}) {
    InputSpec spec = from_bytes(std::move(first_bytes));
    spec.keep_open = true;
    return spec;
  }
  static InputSpec inherit() {
    InputSpec spec;
    spec.kind = Kind::inherit;
    return spec;
  }
};

/// Which of a worker's output streams. (Not `stdout`/`stderr`: those are
/// macros in C.)
enum class OutputStream { out = 1, err = 2 };

/// The stream's name: `"stdout"` or `"stderr"`.
constexpr std::string_view to_string(OutputStream stream) noexcept {
  return stream == OutputStream::out ? "stdout" : "stderr";
}

/// One line of a worker's output, handed to `JobSupervisor::on_output_line`
/// handlers inside `poll()`. `text` is valid only during the call.
struct OutputLine {
  std::string_view worker_id;
  int attempt = 1;
  OutputStream stream = OutputStream::out;
  std::string_view text;  ///< without its '\n'
  /// The text does not end a line: the last bytes of a stream that ended
  /// without a newline, or a piece of a line longer than the line limit.
  bool partial = false;
};

/// Raw output as it was read, for `JobSupervisor::on_output_chunk` handlers.
/// `data` is valid only during the call.
struct OutputChunk {
  std::string_view worker_id;
  int attempt = 1;
  OutputStream stream = OutputStream::out;
  std::string_view data;
};

using output_line_handler = std::function<void(const OutputLine&)>;
using output_chunk_handler = std::function<void(const OutputChunk&)>;

}  // namespace jobwarden
