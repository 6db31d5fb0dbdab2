#pragma once
/// \file
/// One file of a job directory as its reader caches it: the verdict on its
/// content (parsed, missing, or an error phrase for the `errors` list), kept
/// with the file's stamp (device, inode, size, mtime, ctime) and reused while
/// the stamp shows no change. Hostile files never make it throw: anything
/// unreadable, truncated, not JSON, wrongly shaped, oversized, not a regular
/// file, or a symlink becomes an error with a short phrase
/// (`"not valid JSON"`) and a detail. Files are opened relative to their
/// directory's descriptor with `O_NOFOLLOW`, without blocking: a FIFO or a
/// device under a status file's name is opened, never read.

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/job_status.hpp"

namespace jobwarden::detail {

/// The short phrase for a file that could not be used (`detail` gets the specifics).
inline std::string describe_file_error(std::error_code ec, std::string& detail, std::size_t limit, off_t size) {
  if (ec == std::errc::too_many_symbolic_link_levels) return "symbolic link not followed";
  if (ec == errc::not_regular_file) return "not a regular file";
  if (ec == std::errc::not_a_directory) return "not a directory";
  if (ec == errc::oversized_file) {
    detail = std::to_string(size) + " bytes, more than the limit of " + std::to_string(limit);
    return "oversized";
  }
  detail = ec.message();
  return "unreadable";
}

/// The verdict on one file, cached with the stamp it was made for.
template <class Parsed>
struct CachedFile {
  enum class Outcome { missing, error, ok };
  Outcome outcome = Outcome::missing;
  bool cached = false;   ///< `stamp` is meaningful
  bool trusted = false;  ///< old enough that an unchanged stamp proves unchanged content
  FileStamp stamp;
  Parsed parsed{};
  std::string error;
  std::string detail;

  /// The parsed content, or null when the file is missing or unusable.
  const Parsed* usable() const noexcept { return outcome == Outcome::ok ? &parsed : nullptr; }
  /// Counts for the cache statistics: a file that exists.
  bool present() const noexcept { return outcome != Outcome::missing; }
  /// Whether the file exists but cannot be used.
  bool failed() const noexcept { return outcome == Outcome::error; }
  /// Adds the file's error, if it has one, to `errors` as `path`.
  void report(const std::string& path, std::vector<StatusFileError>& errors) const {
    if (failed()) errors.push_back({path, error, detail});
  }
};

/// Files read and files reused, counted by one reading thread.
struct FileCounters {
  std::uint64_t read = 0;
  std::uint64_t reused = 0;
};

/// Whether a file with this stamp has not changed for `recent_change_window`:
/// a file changed within the last timestamp tick may change again within the
/// same tick (and, where inodes are reused, with the same inode and size),
/// unseen by its stamp. Its ctime is set by the kernel on every change and
/// cannot be set back, so once it is older than the window, any later change
/// shows.
inline bool is_settled(const FileStamp& stamp, std::chrono::milliseconds recent_change_window) {
  const auto wall_now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  return wall_now_ns - stamp.changed_ns >
         std::chrono::duration_cast<std::chrono::nanoseconds>(recent_change_window).count();
}

/// Refreshes `cache` from `name` in `dir_fd`, reusing the cached verdict
/// while the file is unchanged. `parse` turns the document into `Parsed` or
/// returns a problem text. Files over `limit` bytes are `oversized`; a file
/// changed within `recent_change_window` is not trusted yet (see
/// `is_settled`). With `force` (an event named the file) or nothing cached,
/// the file is read without a `stat` first: `read_file_at` refuses what it
/// must.
template <class Parsed>
void refresh_file(int dir_fd, const char* name, CachedFile<Parsed>& cache,
                  bool (*parse)(const nlohmann::json&, Parsed&, std::string&), std::size_t limit,
                  std::chrono::milliseconds recent_change_window, FileCounters& counters, bool force = false) {
  using Outcome = typename CachedFile<Parsed>::Outcome;
  FileStamp stamp;
  std::error_code ec;
  if (cache.cached && !force) {
    ec = stat_file_at(dir_fd, name, stamp);
    if (ec == std::errc::no_such_file_or_directory) {
      cache = CachedFile<Parsed>{};
      return;
    }
    if (ec) {  // a symlink, a FIFO, a device: not opened
      cache = CachedFile<Parsed>{};
      cache.outcome = Outcome::error;
      cache.error = describe_file_error(ec, cache.detail, limit, 0);
      return;
    }
    if (cache.trusted && cache.stamp == stamp) {
      ++counters.reused;
      return;
    }
  }

  cache = CachedFile<Parsed>{};
  std::string content;
  ec = read_file_at(dir_fd, name, content, &stamp, limit);
  if (ec == std::errc::no_such_file_or_directory) return;  // no such file (any more)
  if (ec == std::errc::too_many_symbolic_link_levels || ec == errc::not_regular_file) {
    cache.outcome = Outcome::error;
    cache.error = describe_file_error(ec, cache.detail, limit, 0);
    return;
  }
  ++counters.read;
  cache.stamp = stamp;
  cache.cached = !ec || ec == errc::oversized_file;
  cache.trusted = is_settled(stamp, recent_change_window);
  if (ec) {
    cache.outcome = Outcome::error;
    cache.error = describe_file_error(ec, cache.detail, limit, stamp.size);
    return;
  }
  if (content.empty()) {
    cache.outcome = Outcome::error;
    cache.error = "not valid JSON";
    cache.detail = "empty file";
    return;
  }
  nlohmann::json document;
  try {
    document = nlohmann::json::parse(content);
  } catch (const nlohmann::json::exception& e) {
    cache.outcome = Outcome::error;
    cache.error = "not valid JSON";
    cache.detail = printable_text(e.what());
    return;
  }
  std::string problem;
  if (!parse(document, cache.parsed, problem)) {
    cache.outcome = Outcome::error;
    cache.error = "wrong shape";
    cache.detail = printable_text(problem);
    cache.parsed = Parsed{};
    return;
  }
  cache.outcome = Outcome::ok;
}

}  // namespace jobwarden::detail
