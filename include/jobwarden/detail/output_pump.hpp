#pragma once
/// \file
/// A stream the supervisor reads: the one owner of moving a worker's output
/// through the supervisor. The worker writes into a pipe; `OutputPump`
/// reads it inside `poll()` and hands each byte to what needs it — the
/// stream's `LogSink` (log file, cap, or the supervisor's own stream), the
/// tail kept in memory (`TailRing`), and pieces queued for the host's line
/// and chunk handlers (`OutputPiece`, cut into lines by `LineSplitter`).
/// When only the log needs the bytes, Linux moves them from the pipe into
/// the file with splice(2): they never cross user space.
///
/// Each `pump` call moves at most a budget of bytes, so one noisy worker
/// cannot hold up the supervisor's other work; what it leaves stays in the
/// pipe, and a worker whose pipe is full waits on its next write. Streams
/// that go direct (the worker writes its file itself) never pass through here.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jobwarden/detail/log_sink.hpp"
#include "jobwarden/worker_io.hpp"

namespace jobwarden::detail {

/// The last `capacity` bytes of a stream, in a ring that never grows past it.
class TailRing {
 public:
  explicit TailRing(std::size_t capacity = 0) : capacity_(capacity) {}

  std::size_t capacity() const { return capacity_; }

  void add(const char* data, std::size_t size) {
    if (capacity_ == 0 || size == 0) return;
    if (size >= capacity_) {
      buffer_.assign(data + size - capacity_, capacity_);
      oldest_ = 0;
      return;
    }
    if (buffer_.size() < capacity_) {  // still filling up
      std::size_t first = std::min(capacity_ - buffer_.size(), size);
      buffer_.append(data, first);
      data += first;
      size -= first;
    }
    while (size > 0) {  // full: overwrite the oldest bytes
      std::size_t n = std::min(size, capacity_ - oldest_);
      std::memcpy(&buffer_[oldest_], data, n);
      oldest_ = (oldest_ + n) % capacity_;
      data += n;
      size -= n;
    }
  }

  /// The bytes in the order written.
  std::string str() const {
    if (buffer_.size() < capacity_ || oldest_ == 0) return buffer_;
    std::string text;
    text.reserve(capacity_);
    text.append(buffer_, oldest_, std::string::npos).append(buffer_, 0, oldest_);
    return text;
  }

 private:
  std::size_t capacity_;
  std::string buffer_;
  std::size_t oldest_ = 0;  // where the oldest byte is, once the ring is full
};

/// Cuts a stream into lines (without their '\n') for line handlers. A line
/// longer than `max_line` comes out in pieces: `max_line` bytes each, marked
/// partial, then the rest (1 to `max_line` bytes), which ends the line and is
/// not; so what is held back never exceeds `max_line`, and a line of exactly
/// `max_line` bytes comes out whole.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line) : max_(std::max<std::size_t>(1, max_line)) {}

  /// Calls `emit(text, partial)` for each line or piece `data` completes.
  template <class Emit>
  void feed(const char* data, std::size_t size, Emit&& emit) {
    while (size > 0) {
      const void* newline = std::memchr(data, '\n', size);
      std::size_t text = newline != nullptr
                             ? static_cast<std::size_t>(static_cast<const char*>(newline) - data)
                             : size;
      // A line that goes on past the limit: out in pieces of the limit.
      while (held_.size() + text > max_) {
        std::size_t room = max_ - held_.size();
        if (held_.empty()) {
          emit(std::string_view(data, max_), true);
        } else {
          held_.append(data, room);
          emit(std::string_view(held_), true);
          held_.clear();
        }
        data += room;
        size -= room;
        text -= room;
      }
      if (newline == nullptr) {
        held_.append(data, size);
        return;
      }
      if (held_.empty()) {
        emit(std::string_view(data, text), false);
      } else {
        held_.append(data, text);
        emit(std::string_view(held_), false);
        held_.clear();
      }
      data += text + 1;
      size -= text + 1;
    }
  }

  /// The stream ended: its last bytes without a newline, marked partial.
  template <class Emit>
  void finish(Emit&& emit) {
    if (!held_.empty()) emit(std::string_view(held_), true);
    held_.clear();
  }

 private:
  std::size_t max_;
  std::string held_;  // the start of a line whose end has not arrived
};

/// What a pump read for the host's handlers: a line (or piece of one) for
/// `on_output_line`, or a raw chunk for `on_output_chunk`.
struct OutputPiece {
  bool line = false;
  bool partial = false;
  OutputStream stream = OutputStream::out;
  std::string data;
};

/// One supervised stream; see the file comment. Owned by the worker's record
/// and used under the engine's mutex.
class OutputPump {
 public:
  struct Options {
    OutputStream stream = OutputStream::out;  ///< what handlers are told
    LogSinkOptions sink;
    std::size_t tail_bytes = 0;
    std::size_t max_line_bytes = 64 * 1024;
  };
  /// Which pieces the host's handlers want now.
  struct Wants {
    bool lines = false;
    bool chunks = false;
  };
  /// What one `pump` call ended with.
  enum class Result { drained, budget_used, end_of_file };

  /// Most a `pump` call moves by default.
  static constexpr std::size_t default_budget = std::size_t{1} << 20;

  /// Takes ownership of `read_fd` (non-blocking) and of `opened_log`, the
  /// log when it was opened before the spawn (-1: created on the first byte).
  OutputPump(int read_fd, Options options, int opened_log = -1)
      : read_fd_(read_fd),
        stream_(options.stream),
        sink_(std::move(options.sink), opened_log),
        tail_(options.tail_bytes),
        lines_(options.max_line_bytes) {}
  OutputPump(const OutputPump&) = delete;
  OutputPump& operator=(const OutputPump&) = delete;
  ~OutputPump() { close_reader(); }

  /// The pipe's read end; -1 once the stream has ended.
  int read_fd() const { return read_fd_; }
  OutputStream stream() const { return stream_; }
  /// Bytes that left the pipe.
  std::uint64_t read_bytes() const { return read_; }
  std::uint64_t dropped() const { return sink_.dropped(); }
  const std::string& error() const { return sink_.error(); }
  /// The log's path once it exists.
  const std::string& log_path() const { return sink_.created_path(); }
  std::size_t tail_capacity() const { return tail_.capacity(); }
  std::string tail() const { return tail_.str(); }
  /// Whether the tail changed since the last call.
  bool take_tail_change() { return std::exchange(tail_changed_, false); }

  /// The record this pump belongs to and the stream's slot in it (the
  /// event loop hands back the pump; the engine needs its worker).
  void* owner = nullptr;
  int slot = 0;
  /// Whether the event loop wakes the supervisor when the pipe has data
  /// (false: pumped at every poll).
  bool watched = false;

  /// Moves what can be read now, at most about `budget` bytes; pieces for
  /// the handlers `wants` go to `out`. At the end of the stream the last
  /// bytes without a newline go out as a partial line.
  Result pump(std::vector<OutputPiece>& out, Wants wants, std::size_t budget = default_budget) {
    char buffer[65536];
    std::size_t moved = 0;
    const bool seen = wants.lines || wants.chunks || tail_.capacity() > 0;
    while (moved < budget) {
      if (read_fd_ < 0) return Result::end_of_file;
      if (!seen) {
        std::uint64_t room = sink_.splice_room();
        if (room > 0) {
          auto spliced = sink_.splice_from(
              read_fd_, static_cast<std::size_t>(std::min<std::uint64_t>(room, budget - moved)));
          using Status = LogSink::Spliced::Status;
          if (spliced.status == Status::moved) {
            moved += spliced.bytes;
            read_ += spliced.bytes;
            continue;
          }
          if (spliced.status == Status::empty) {
            if (moved >= busy_pipe_bytes) widen_pipe();
            return Result::drained;
          }
          if (spliced.status == Status::end) {
            end_lines(out, wants);
            return Result::end_of_file;
          }
        }
      }
      ssize_t n = ::read(read_fd_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {  // EAGAIN: nothing more now
        if (moved >= busy_pipe_bytes) widen_pipe();
        return Result::drained;
      }
      if (n == 0) {
        end_lines(out, wants);
        return Result::end_of_file;
      }
      take(buffer, static_cast<std::size_t>(n), out, wants);
      moved += static_cast<std::size_t>(n);
    }
    widen_pipe();
    return Result::budget_used;
  }

  /// The worker ended: takes what is left in the pipe (at most `limit`
  /// bytes, and only what is there now: a survivor that keeps the pipe open
  /// is not waited for), ends the last line, finishes the log and closes.
  void finish(std::vector<OutputPiece>& out, Wants wants, std::size_t limit = 16 * default_budget) {
    std::uint64_t start = read_;
    while (read_fd_ >= 0 && read_ - start < limit && pump(out, wants) == Result::budget_used) {
    }
    end_lines(out, wants);
    close_reader();
    sink_.finish();
  }

  /// Stops reading (the stream ended; take it off the event loop first).
  void close_reader() {
    if (read_fd_ >= 0) ::close(read_fd_);
    read_fd_ = -1;
  }

 private:
  /// A pipe found full is a stream that writes fast: a wider pipe (Linux)
  /// moves it in fewer, larger rounds of the supervisor's loop. Only such
  /// streams get one — the kernel counts pipe capacity against a per-user
  /// limit — and a refusal changes nothing.
  static constexpr std::size_t busy_pipe_bytes = 48 * 1024;
  void widen_pipe() {
#if JOBWARDEN_LINUX_FAST_PATH && defined(F_SETPIPE_SZ)
    if (widened_ || read_fd_ < 0) return;
    widened_ = true;
    ::fcntl(read_fd_, F_SETPIPE_SZ, 1 << 20);
#endif
  }

  void take(const char* data, std::size_t size, std::vector<OutputPiece>& out, Wants wants) {
    read_ += size;
    if (wants.chunks) out.push_back(OutputPiece{false, false, stream_, std::string(data, size)});
    if (wants.lines) {
      lines_.feed(data, size, [&](std::string_view text, bool partial) {
        out.push_back(OutputPiece{true, partial, stream_, std::string(text)});
      });
    }
    if (tail_.capacity() > 0) {
      tail_.add(data, size);
      tail_changed_ = true;
    }
    sink_.write(data, size);
  }

  void end_lines(std::vector<OutputPiece>& out, Wants wants) {
    lines_.finish([&](std::string_view text, bool partial) {
      if (wants.lines) out.push_back(OutputPiece{true, partial, stream_, std::string(text)});
    });
  }

  int read_fd_;
  OutputStream stream_;
  LogSink sink_;
  TailRing tail_;
  LineSplitter lines_;
  bool tail_changed_ = false;
  bool widened_ = false;
  std::uint64_t read_ = 0;
};

}  // namespace jobwarden::detail
