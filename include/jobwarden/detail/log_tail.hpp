#pragma once
/// \file
/// A worker's log files as a reader of the job directory sees them: whether
/// each exists, and the end of its stderr log (`stderr_tail` of the
/// aggregated JSON), cached with the file's stamp so that an unchanged log is
/// never read twice. A log is opened like every other file of the job
/// directory (relative to its directory's descriptor, `O_NOFOLLOW`,
/// non-blocking, regular files only), and only its last bytes are read,
/// however large it is. The tail starts at a line start when the bytes read
/// hold one, and is valid UTF-8: anything that is not becomes U+FFFD.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/cached_file.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/errors.hpp"

namespace jobwarden::detail {

/// Most bytes of a stderr log the aggregated JSON quotes.
inline constexpr std::size_t stderr_tail_bytes = 2048;

/// `bytes` as valid UTF-8: every byte that does not belong to a well-formed
/// sequence (overlong forms, surrogates and code points past U+10FFFF
/// included) becomes U+FFFD.
inline std::string valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  while (i < n) {
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      ++i;
      continue;
    }
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // the second byte's range
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead == 0xE0) { length = 3; low = 0xA0; }
    else if (lead >= 0xE1 && lead <= 0xEC) length = 3;
    else if (lead == 0xED) { length = 3; high = 0x9F; }
    else if (lead >= 0xEE && lead <= 0xEF) length = 3;
    else if (lead == 0xF0) { length = 4; low = 0x90; }
    else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
    else if (lead == 0xF4) { length = 4; high = 0x8F; }
    std::size_t good = length == 0 ? 0 : 1;
    if (length != 0 && i + 1 < n && byte(i + 1) >= low && byte(i + 1) <= high) {
      good = 2;
      while (good < length && i + good < n && byte(i + good) >= 0x80 && byte(i + good) <= 0xBF) ++good;
    }
    if (length != 0 && good == length) {
      out.append(bytes.substr(i, length));
      i += length;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for the maximal ill-formed prefix
      i += good == 0 ? 1 : good;
    }
  }
  return out;
}

/// The tail to show of `end`, the last bytes of a log: when they do not
/// begin a line (`whole` false), the cut partial first line is dropped if a
/// newline follows it; then made valid UTF-8, at most `max_bytes` long.
inline std::string tail_text(std::string_view end, bool whole, std::size_t max_bytes = stderr_tail_bytes) {
  if (!whole) {
    const std::size_t newline = end.find('\n');
    if (newline != std::string_view::npos && newline + 1 < end.size()) {
      end.remove_prefix(newline + 1);
    } else {
      // No line start: at least not half a character.
      for (int k = 0; k < 3 && !end.empty() && (static_cast<unsigned char>(end.front()) & 0xC0) == 0x80; ++k) {
        end.remove_prefix(1);
      }
    }
  }
  std::string text = valid_utf8(end);
  if (text.size() > max_bytes) {
    // Replacements made it longer: keep the last whole characters that fit.
    std::size_t from = text.size() - max_bytes;
    while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
    text.erase(0, from);
  }
  return text;
}

/// Reads the last `max_bytes` bytes of `name` in `dir_fd` with the reader's
/// safe rules: `ELOOP` for a symlink, `errc::not_regular_file`, or the system
/// error. `stamp` receives the stamp of the file read.
inline std::error_code read_log_end_at(int dir_fd, const char* name, std::size_t max_bytes, std::string& end,
                                       bool& whole, FileStamp& stamp) noexcept {
  try {
    end.clear();
    whole = true;
    OwnedFd file(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!file) return normalize_nofollow_error(errno_code());
    struct stat info {};
    if (::fstat(file.get(), &info) != 0) return errno_code();
    if (!S_ISREG(info.st_mode)) return make_error_code(errc::not_regular_file);
    stamp = stamp_of(info);
    const off_t size = info.st_size < 0 ? 0 : info.st_size;
    // A longer file: one byte more than shown, to see whether the shown part
    // starts a line.
    const bool cut = static_cast<std::uint64_t>(size) > max_bytes;
    const off_t start = cut ? size - static_cast<off_t>(max_bytes) - 1 : 0;
    end.resize(static_cast<std::size_t>(size - start));
    std::size_t used = 0;
    while (used < end.size()) {
      const ssize_t got = ::pread(file.get(), &end[used], end.size() - used, start + static_cast<off_t>(used));
      if (got < 0) {
        if (errno == EINTR) continue;
        return errno_code();
      }
      if (got == 0) break;  // truncated meanwhile
      used += static_cast<std::size_t>(got);
    }
    end.resize(used);
    if (cut && !end.empty()) {
      whole = end.front() == '\n';
      end.erase(0, 1);
    }
    return {};
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

/// One log file as a reader last saw it.
struct CachedLog {
  enum class Outcome { missing, error, ok };
  Outcome outcome = Outcome::missing;
  FileStamp stamp;
  bool trusted = false;          ///< old enough that an unchanged stamp proves unchanged content
  bool tail_read = false;        ///< `tail` is the end of the file with `stamp`
  std::string tail;              ///< for a stderr log whose tail was asked for
  std::string error, detail;     ///< when `error`: the phrase and its specifics
};

/// Brings `log` (`name` in `worker_fd`) up to date: whether it exists and,
/// with `want_tail`, its last `stderr_tail_bytes` bytes, read again only
/// when its stamp changed (or changed too recently to be trusted).
/// Errors use the phrases of `describe_file_error` (detail/cached_file.hpp);
/// a log that does not exist is no error (a worker that printed nothing).
inline void refresh_log(int worker_fd, const char* name, CachedLog& log, bool want_tail,
                        std::chrono::milliseconds recent_change_window) {
  auto fail = [&log](std::error_code ec) {
    log = CachedLog{};
    if (ec == std::errc::no_such_file_or_directory) return;  // no log: no output (yet)
    log.outcome = CachedLog::Outcome::error;
    log.error = describe_file_error(ec, log.detail, 0, 0);
  };
  FileStamp stamp;
  std::error_code ec = stat_file_at(worker_fd, name, stamp);
  if (ec) return fail(ec);
  const bool unchanged = log.outcome == CachedLog::Outcome::ok && log.trusted && log.stamp == stamp;
  if (!want_tail) {
    log.tail.clear();
    log.tail_read = false;
    log.outcome = CachedLog::Outcome::ok;
    log.stamp = stamp;
    log.trusted = is_settled(stamp, recent_change_window);
    return;
  }
  if (unchanged && log.tail_read) return;
  std::string end;
  bool whole = true;
  ec = read_log_end_at(worker_fd, name, stderr_tail_bytes, end, whole, stamp);
  if (ec) return fail(ec);
  log.outcome = CachedLog::Outcome::ok;
  log.stamp = stamp;
  log.trusted = is_settled(stamp, recent_change_window);
  log.tail = tail_text(end, whole);
  log.tail_read = true;
  log.error.clear();
  log.detail.clear();
}

}  // namespace jobwarden::detail
