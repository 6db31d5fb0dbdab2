#pragma once
/// \file
/// `WorkerStatusWriter`: how a worker reports its state, progress, message and
/// result into its status file (`$JOBWARDEN_STATUS_FILE`) — zero configuration
/// inside a worker, and never an exception into the worker's work.
///
/// ```
/// auto status = jobwarden::WorkerStatusWriter<>::from_environment(ec);  // a no-op writer outside jobwarden
/// for (std::size_t i = 0; i < files.size(); ++i) {
///   scan(files[i]);
///   status.progress(i + 1, files.size());   // at most one write per second, latest value wins
///   status.message("scanning " + files[i]);
/// }
/// status.result(summary);                   // written at once
/// ```
///
/// Every write replaces the whole file atomically (`detail/atomic_file.hpp`),
/// so a reader never sees half a file, and carries everything known so far:
/// `schema_version`, `job_id`, `worker_id`, `attempt`, `pid`,
/// `process_start_time`, `state`, `progress`, `message`, `result`, `error`,
/// `seq` (one more with every write) and `updated_at` (the heartbeat, RFC 3339
/// UTC with milliseconds). See `schemas/worker-status.schema.json`.
///
/// Which calls write when:
/// - at once: `set_state` (a change), `result`, `set_error`, `flush`;
/// - throttled (at most one write per `throttle_interval`, the latest value
///   wins): `progress`, `message`, `heartbeat`. An update that was held back
///   is written by the next call of any kind once the interval has passed, by
///   `flush()`, by any write made at once, and by the destructor. There is no
///   hidden thread: a worker that goes quiet for a long time calls `flush()`
///   or `heartbeat()`.
///
/// `message` is throttled like `progress` because the two usually come as a
/// pair at the same rate ("scanning src/a.c" per file), and writing every
/// message at once would undo the throttling; it is written together with the
/// progress it belongs to. Use `flush()` after a message that must be seen now.
///
/// A write that fails (disk full, directory gone, file size limit) returns its
/// `std::error_code`, is counted (`write_failures()`), remembered
/// (`last_error()`), and leaves the previous file as it was; the update stays
/// pending and is retried with the next write, throttled like progress so a
/// broken disk is not hammered.
///
/// The methods lock an internal mutex, so threads of one worker may share a
/// writer. Progress types are any type with nlohmann `to_json`.

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/status_record.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// How a `WorkerStatusWriter` writes. Everything has a default; inside a
/// jobwarden worker `from_environment()` fills in the identity.
template <class Clock = std::chrono::steady_clock>
struct WorkerStatusWriterOptions {
  /// At most one throttled write (progress, message, heartbeat) per interval.
  std::chrono::milliseconds throttle_interval{std::chrono::seconds(1)};
  /// `fsync` every write and its directory (see `detail::AtomicWriteOptions`).
  bool durable = false;
  /// Where "now" comes from for throttling; empty means `Clock::now()`. Tests
  /// pass a fake clock here and never sleep.
  std::function<typename Clock::time_point()> now;
  /// Identity written into the file (`from_environment` takes them from
  /// `JOBWARDEN_JOB_ID`, `JOBWARDEN_WORKER_ID`, `JOBWARDEN_ATTEMPT`).
  std::string job_id;
  std::string worker_id;
  int attempt = 1;
  /// A status larger than this is not written (`errc::oversized_file`): the
  /// aggregator would refuse to read it anyway.
  std::size_t max_file_size = detail::default_max_file_size;
  /// Start from what the status file already holds (state, progress,
  /// message, result, error, seq) when it is valid and of the same attempt,
  /// instead of from nothing: for `jobwarden report`, where every call is a
  /// new process that updates one field and must keep the others.
  bool continue_existing = false;
};

/// Writes one worker's status file. `Progress` is the progress payload type
/// (anything with nlohmann `to_json`); `Clock` drives the throttling.
/// Move-only. A default-constructed or moved-from writer is disabled: every
/// call does nothing and succeeds.
template <class Progress = nlohmann::json, class Clock = std::chrono::steady_clock>
class WorkerStatusWriter {
 public:
  /// The options type of this writer.
  using Options = WorkerStatusWriterOptions<Clock>;

  /// A writer for the file named by `JOBWARDEN_STATUS_FILE`, with identity
  /// from `JOBWARDEN_JOB_ID`, `JOBWARDEN_WORKER_ID` and `JOBWARDEN_ATTEMPT`
  /// (each overriding `options` when set). When `JOBWARDEN_STATUS_FILE` is
  /// not set — the program runs outside jobwarden — sets `ec` to
  /// `errc::no_status_file` and returns a disabled writer, so the same worker
  /// runs by hand unchanged.
  static WorkerStatusWriter from_environment(std::error_code& ec, Options options = {}) {
    ec.clear();
    const char* status_file = std::getenv("JOBWARDEN_STATUS_FILE");
    if (status_file == nullptr || *status_file == '\0') {
      ec = make_error_code(errc::no_status_file);
      return WorkerStatusWriter();
    }
    if (const char* job_id = std::getenv("JOBWARDEN_JOB_ID")) options.job_id = job_id;
    if (const char* worker_id = std::getenv("JOBWARDEN_WORKER_ID")) options.worker_id = worker_id;
    if (const char* attempt = std::getenv("JOBWARDEN_ATTEMPT")) {
      char* end = nullptr;
      const long value = std::strtol(attempt, &end, 10);
      if (end != attempt && *end == '\0' && value > 0 && value < 1'000'000'000) {
        options.attempt = static_cast<int>(value);
      }
    }
    return WorkerStatusWriter(status_file, std::move(options));
  }

  /// Throwing form of `from_environment`: `std::system_error` when
  /// `JOBWARDEN_STATUS_FILE` is not set.
  static WorkerStatusWriter from_environment(Options options = {}) {
    std::error_code ec;
    WorkerStatusWriter writer = from_environment(ec, std::move(options));
    if (ec) {
      detail::throw_error(ec, "JOBWARDEN_STATUS_FILE is not set: this process was not started by jobwarden");
    }
    return writer;
  }

  /// A writer for `status_file` (its directory must exist). Writes nothing
  /// until the first call; the state starts as `running`.
  explicit WorkerStatusWriter(std::string status_file, Options options = {})
      : impl_(std::make_unique<Impl>(std::move(status_file), std::move(options))) {}

  /// A disabled writer (every call does nothing).
  WorkerStatusWriter() noexcept = default;
  WorkerStatusWriter(const WorkerStatusWriter&) = delete;
  WorkerStatusWriter& operator=(const WorkerStatusWriter&) = delete;
  /// Takes over `other`'s file and pending updates; `other` becomes disabled.
  WorkerStatusWriter(WorkerStatusWriter&&) noexcept = default;
  /// Flushes this writer's pending update, then takes over `other`'s.
  WorkerStatusWriter& operator=(WorkerStatusWriter&& other) noexcept {
    if (this != &other) {
      (void)flush();
      impl_ = std::move(other.impl_);
    }
    return *this;
  }
  /// Writes a pending update, if any; a failure is ignored (a destructor has
  /// nobody to tell, and the previous file is still intact).
  ~WorkerStatusWriter() { (void)flush(); }

  /// Whether this writer writes a file (false outside jobwarden and when moved-from).
  bool enabled() const noexcept { return impl_ != nullptr; }

  /// The status file written.
  std::string path() const { return impl_ ? impl_->path : std::string(); }

  /// The state last set (`running` until a `set_state`).
  WorkerState state() const {
    if (!impl_) return WorkerState::running;
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return *impl_->record.state;
  }

  /// Sets the worker's own state; a change is written at once, the same state
  /// again counts as a `heartbeat()`. Leaving a terminal state is refused with
  /// `errc::invalid_state_transition` (nothing is written).
  std::error_code set_state(WorkerState state) noexcept {
    return update([&](Impl& impl, typename Clock::time_point now) -> std::error_code {
      const WorkerState current = *impl.record.state;
      if (state == current) return impl.write_if_due(now, /*even_if_clean=*/true);
      if (!is_allowed_transition(current, state)) return make_error_code(errc::invalid_state_transition);
      impl.record.state = state;
      impl.dirty = true;
      return impl.write(now);
    });
  }

  /// Sets the state by name (`"running"`, `"succeeded"`...); an unknown name
  /// is `errc::invalid_argument`.
  std::error_code set_state(std::string_view state_name) noexcept {
    const std::optional<WorkerState> state = worker_state_from_string(state_name);
    if (!state) return make_error_code(errc::invalid_argument);
    return set_state(*state);
  }

  /// Reports progress; throttled (see the file comment): returns the error of
  /// the write it made, or success when the update was held back.
  std::error_code progress(const Progress& value) noexcept {
    return update([&](Impl& impl, typename Clock::time_point now) -> std::error_code {
      impl.pending_progress = value;
      impl.dirty = true;
      return impl.write_if_due(now, /*even_if_clean=*/false);
    });
  }

  /// Reports progress as `{"done": done, "total": total}` (the contract's shape,
  /// what `jobwarden report --done N --total M` writes); throttled.
  template <class P = Progress, std::enable_if_t<std::is_same_v<P, nlohmann::json>, int> = 0>
  std::error_code progress(std::uint64_t done, std::uint64_t total) noexcept {
    try {
      return progress(nlohmann::json{{"done", done}, {"total", total}});
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }

  /// Sets the human-readable message; throttled like progress (see the file comment).
  std::error_code message(std::string text) noexcept {
    return update([&](Impl& impl, typename Clock::time_point now) -> std::error_code {
      impl.record.message = std::move(text);
      impl.dirty = true;
      return impl.write_if_due(now, /*even_if_clean=*/false);
    });
  }

  /// Records the worker's result (any type with nlohmann `to_json`, or JSON)
  /// and writes at once. A `to_json` that throws is `errc::invalid_argument`.
  template <class Result>
  std::error_code result(const Result& value) noexcept {
    return update([&](Impl& impl, typename Clock::time_point now) -> std::error_code {
      try {
        impl.record.result = nlohmann::json(value);
      } catch (...) {
        return impl.count_failure(make_error_code(errc::invalid_argument));
      }
      impl.dirty = true;
      return impl.write(now);
    });
  }

  /// JSON form, so `result({{"manifests", list}})` works with braces.
  std::error_code result(const nlohmann::json& value) noexcept { return result<nlohmann::json>(value); }

  /// Records why the worker is failing, written at once. (The state is left
  /// alone: set it too, or let the exit code speak.)
  std::error_code set_error(std::string why) noexcept {
    return update([&](Impl& impl, typename Clock::time_point now) -> std::error_code {
      impl.record.error = std::move(why);
      impl.dirty = true;
      return impl.write(now);
    });
  }

  /// Proves the worker is alive while it has nothing new to report: writes
  /// (with any pending update) if `throttle_interval` has passed since the
  /// last write, otherwise does nothing.
  std::error_code heartbeat() noexcept {
    return update([](Impl& impl, typename Clock::time_point now) -> std::error_code {
      return impl.write_if_due(now, /*even_if_clean=*/true);
    });
  }

  /// Writes a pending update now, whatever the throttle says; does nothing
  /// when everything is written.
  std::error_code flush() noexcept {
    return update([](Impl& impl, typename Clock::time_point now) -> std::error_code {
      return impl.dirty ? impl.write(now) : std::error_code{};
    });
  }

  /// Makes every call inside `changes` one write: the calls set their fields
  /// (a refused state transition is still returned by its call) and nothing
  /// is written until `changes` returns; then, if anything changed (or a
  /// heartbeat was asked for), the file is written once, whatever the
  /// throttle says. Returns the error of that write. For a reporter that sets
  /// several fields at once (`jobwarden report --done 3 --total 9 --message
  /// ...`): one call, one write, one `seq`. Do not call it from inside
  /// `changes`. An exception from `changes` propagates; what it had set is
  /// written with the next write.
  template <class Changes>
  std::error_code batch(Changes&& changes) {
    if (!impl_) {
      changes();
      return {};
    }
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      impl_->holding = true;
    }
    struct Release {
      Impl* impl;
      ~Release() {
        std::lock_guard<std::mutex> lock(impl->mutex);
        impl->holding = false;
      }
    } release{impl_.get()};
    changes();
    return update([](Impl& impl, typename Clock::time_point now) -> std::error_code {
      impl.holding = false;
      return impl.dirty ? impl.write(now) : std::error_code{};
    });
  }

  /// The error of the most recent failed write (it stays after later
  /// successful writes; `write_failures()` tells whether new ones happened).
  std::error_code last_error() const {
    if (!impl_) return {};
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->last_error;
  }

  /// How many writes failed.
  std::uint64_t write_failures() const {
    if (!impl_) return 0;
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->failures;
  }

  /// How many writes succeeded.
  std::uint64_t write_count() const {
    if (!impl_) return 0;
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->writes;
  }

  /// The `seq` of the last write attempted (0 before the first).
  std::uint64_t seq() const {
    if (!impl_) return 0;
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->record.seq;
  }

  /// Whether an update is held back by the throttle (or by a failed write).
  bool has_pending_update() const {
    if (!impl_) return false;
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->dirty;
  }

 private:
  struct Impl {
    Impl(std::string status_file, Options opts) : path(std::move(status_file)), options(std::move(opts)) {
      record.job_id = options.job_id;
      record.worker_id = options.worker_id;
      record.attempt = options.attempt;
      record.pid = static_cast<int>(::getpid());
      record.process_start_time = detail::process_start_time(record.pid).value_or(0);
      record.state = WorkerState::running;
      if (options.continue_existing) continue_from_file();
    }

    void continue_from_file() {
      const std::size_t slash = path.rfind('/');
      const std::string directory = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
      const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
      std::error_code ec;
      detail::OwnedFd dir = detail::open_directory(directory, ec);
      std::string content;
      if (ec || detail::read_file_at(dir.get(), name.c_str(), content, nullptr, options.max_file_size)) return;
      const nlohmann::json document = nlohmann::json::parse(content, nullptr, false);
      detail::StatusRecord existing;
      std::string problem;
      if (document.is_discarded() || !detail::status_record_from_json(document, existing, problem)) return;
      if (existing.attempt != 0 && existing.attempt != record.attempt) return;  // an earlier attempt's report
      if (existing.state) record.state = existing.state;
      record.progress = std::move(existing.progress);
      record.message = std::move(existing.message);
      record.result = std::move(existing.result);
      record.error = std::move(existing.error);
      record.seq = existing.seq;
    }

    typename Clock::time_point now() const { return options.now ? options.now() : Clock::now(); }

    bool due(typename Clock::time_point at) const {
      return !last_attempt || at - *last_attempt >= options.throttle_interval;
    }

    std::error_code write_if_due(typename Clock::time_point at, bool even_if_clean) {
      if (holding) {
        if (even_if_clean) dirty = true;  // the batch's one write is the heartbeat
        return {};
      }
      if (!due(at)) return {};
      if (!dirty && !even_if_clean) return {};
      return write(at);
    }

    std::error_code count_failure(std::error_code ec) {
      ++failures;
      last_error = ec;
      return ec;
    }

    std::error_code write(typename Clock::time_point at) {
      if (holding) {
        dirty = true;  // written once, when the batch ends
        return {};
      }
      last_attempt = at;
      try {
        if (pending_progress) {
          try {
            record.progress = nlohmann::json(*pending_progress);
          } catch (...) {
            pending_progress.reset();  // that value cannot be written; the last good one stays
            return count_failure(make_error_code(errc::invalid_argument));
          }
          pending_progress.reset();
        }
        record.seq += 1;
        record.updated_at = std::chrono::system_clock::now();
        if (auto ec = store()) return count_failure(ec);
      } catch (...) {
        return count_failure(std::make_error_code(std::errc::not_enough_memory));
      }
      ++writes;
      dirty = false;
      return {};
    }

    /// Serializes the record and replaces the file. (A function of its own:
    /// GCC 12 at -O3 mistakes the string's lifetime inside `write`'s try
    /// block for a dangling pointer.)
    std::error_code store() {
      const std::string content = detail::dump_json(detail::status_record_to_json(record));
      if (content.size() > options.max_file_size) return make_error_code(errc::oversized_file);
      return detail::write_file_atomically(path, content, {options.durable, 0644});
    }

    std::mutex mutex;
    std::string path;
    Options options;
    detail::StatusRecord record;
    std::optional<Progress> pending_progress;  ///< converted to JSON only when written
    std::optional<typename Clock::time_point> last_attempt;
    bool dirty = false;
    bool holding = false;  ///< inside `batch`: writes wait for its end
    std::uint64_t writes = 0;
    std::uint64_t failures = 0;
    std::error_code last_error;
  };

  /// Runs `change` under the lock with the current time; never throws.
  template <class Change>
  std::error_code update(Change&& change) noexcept {
    if (!impl_) return {};
    try {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return change(*impl_, impl_->now());
    } catch (...) {
      // A throwing clock, a Progress copy that throws, or bad_alloc; the lock
      // was released by the unwinding, so the failure can still be counted.
      const std::error_code ec = std::make_error_code(std::errc::not_enough_memory);
      std::lock_guard<std::mutex> lock(impl_->mutex);
      return impl_->count_failure(ec);
    }
  }

  std::unique_ptr<Impl> impl_;
};

}  // namespace jobwarden

#include "jobwarden/compiled/worker_status_writer.hpp"  // the separately compiled mode
