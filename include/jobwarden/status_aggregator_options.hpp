#pragma once
/// \file
/// `StatusAggregatorOptions`: how a `StatusAggregator` reads. On its own so
/// that `SupervisorOptions` can carry it without the reader's code.

#include <chrono>
#include <cstddef>
#include <functional>

#include "jobwarden/detail/atomic_file.hpp"

namespace jobwarden {

/// How a `StatusAggregator` reads.
struct StatusAggregatorOptions {
  /// A running worker silent for longer than this is `stale`.
  std::chrono::milliseconds stale_after{std::chrono::seconds(30)};
  /// Files larger than this are reported as `oversized`, not read.
  std::size_t max_file_size = detail::default_max_file_size;
  /// Where "now" comes from for staleness, elapsed time and retention; empty
  /// means `std::chrono::system_clock::now()`. Tests move time here.
  std::function<std::chrono::system_clock::time_point()> now;
  /// How many jobs' parsed files are kept between calls (least recently read
  /// jobs are forgotten first).
  std::size_t max_cached_jobs = 16;
  /// Files changed more recently than this are re-read on every call even if
  /// their stamp looks unchanged: file system timestamps are coarse (a few
  /// milliseconds locally, a second or more on some network file systems),
  /// so two changes within one tick could otherwise look like none.
  std::chrono::milliseconds recent_change_window{std::chrono::seconds(1)};
  /// Every jobwarden writer replaces a status file by renaming a new one
  /// over it, which also changes the job's `workers/` directory, so an
  /// unchanged `workers/` means unchanged files and costs one `fstat`. A
  /// foreign writer that rewrites a status file in place changes only the
  /// file: it is noticed within this interval (the files are checked one by
  /// one that often, spread over calls). (The journal needs no such check:
  /// it is only appended to, and each read looks at its size.)
  std::chrono::milliseconds in_place_write_check_interval{std::chrono::seconds(10)};
  /// Linux (not with `JOBWARDEN_PORTABLE`): watch each job read with inotify
  /// (one watch, on its flat `workers/` directory), from its first read on,
  /// so that a later read re-reads only the files that changed — it costs
  /// O(changed workers), not a check per worker — and a change in place or
  /// within one timestamp tick is seen at once. It costs one inotify instance
  /// and one watch per cached job. Turn it off for one-shot readers. Where
  /// watching is not possible (no instance or watch left: `EMFILE`,
  /// `ENOSPC`...), the job is read with the stamp checks described above and
  /// watching is tried again a minute later; when the event queue overflows,
  /// the next read checks every worker as without watching, then relies on
  /// the watch again.
  bool watch_for_changes = true;
  /// Threads that read workers' files when many need checking at once (a
  /// first read, a full check): 0 picks the hardware's concurrency, at most 4;
  /// 1 reads on the calling thread only. `Progress`'s `from_json` runs on the
  /// calling thread, when the result is built.
  unsigned read_threads = 0;
};

}  // namespace jobwarden
