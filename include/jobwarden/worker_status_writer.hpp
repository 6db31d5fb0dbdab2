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
///
/// It is `WorkerStatusWriterBase` (`worker_status_writer_base.hpp`) with typed
/// progress and result: a worker that reports numeric progress and JSON text
/// can include that header alone and not compile nlohmann/json.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/worker_state.hpp"
#include "jobwarden/worker_status_writer_base.hpp"

namespace jobwarden {

/// Writes one worker's status file. `Progress` is the progress payload type
/// (anything with nlohmann `to_json`); `Clock` drives the throttling.
/// Move-only. A default-constructed or moved-from writer is disabled: every
/// call does nothing and succeeds.
template <class Progress = nlohmann::json, class Clock = std::chrono::steady_clock>
class WorkerStatusWriter : private WorkerStatusWriterBase<Clock> {
  using Base = WorkerStatusWriterBase<Clock>;
  using Core = typename Base::Core;

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
    const char* status_file = Base::read_environment(options, ec);
    if (ec) return WorkerStatusWriter();
    return WorkerStatusWriter(status_file, std::move(options));
  }

  /// Throwing form of `from_environment`: `std::system_error` when
  /// `JOBWARDEN_STATUS_FILE` is not set.
  static WorkerStatusWriter from_environment(Options options = {}) {
    std::error_code ec;
    WorkerStatusWriter writer = from_environment(ec, std::move(options));
    if (ec) Base::throw_no_status_file(ec);
    return writer;
  }

  /// A writer for `status_file` (its directory must exist). Writes nothing
  /// until the first call; the state starts as `running`.
  explicit WorkerStatusWriter(std::string status_file, Options options = {})
      : Base(start(std::make_unique<TypedCore>(std::move(status_file), std::move(options)))) {}

  /// A disabled writer (every call does nothing).
  WorkerStatusWriter() noexcept = default;
  WorkerStatusWriter(const WorkerStatusWriter&) = delete;
  WorkerStatusWriter& operator=(const WorkerStatusWriter&) = delete;
  /// Takes over `other`'s file and pending updates; `other` becomes disabled.
  WorkerStatusWriter(WorkerStatusWriter&&) noexcept = default;
  /// Flushes this writer's pending update, then takes over `other`'s.
  WorkerStatusWriter& operator=(WorkerStatusWriter&&) noexcept = default;
  /// Writes a pending update, if any; a failure is ignored (a destructor has
  /// nobody to tell, and the previous file is still intact).
  ~WorkerStatusWriter() = default;

  using Base::batch;
  using Base::enabled;
  using Base::flush;
  using Base::has_pending_update;
  using Base::heartbeat;
  using Base::last_error;
  using Base::message;
  using Base::path;
  using Base::seq;
  using Base::set_error;
  using Base::set_state;
  using Base::state;
  using Base::write_count;
  using Base::write_failures;

  /// Reports progress; throttled (see the file comment): returns the error of
  /// the write it made, or success when the update was held back. The value
  /// becomes JSON only when it is written.
  std::error_code progress(const Progress& value) noexcept {
    return this->update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      static_cast<TypedCore&>(core).pending_progress = value;
      core.dirty = true;
      return core.write_if_due(now, /*even_if_clean=*/false);
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

  /// Records the worker's result (any type with nlohmann `to_json`, or JSON)
  /// and writes at once. A `to_json` that throws is `errc::invalid_argument`.
  template <class Result>
  std::error_code result(const Result& value) noexcept {
    return this->update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      try {
        core.record.result = detail::dump_json(nlohmann::json(value));
      } catch (...) {
        return core.count_failure(make_error_code(errc::invalid_argument));
      }
      core.dirty = true;
      return core.write(now);
    });
  }

  /// JSON form, so `result({{"manifests", list}})` works with braces.
  std::error_code result(const nlohmann::json& value) noexcept { return result<nlohmann::json>(value); }

 private:
  struct TypedCore : Core {
    using Core::Core;

    /// The typed progress, converted to JSON text just before it is written.
    std::error_code render_pending() override {
      if (!pending_progress) return {};
      try {
        this->record.progress = detail::dump_json(nlohmann::json(*pending_progress));
      } catch (...) {
        pending_progress.reset();  // that value cannot be written; the last good one stays
        return make_error_code(errc::invalid_argument);
      }
      pending_progress.reset();
      return {};
    }

    /// Reads the existing file as the aggregator does (`status_record_from_json`),
    /// so its payloads are kept exactly as nlohmann writes them.
    void continue_from(const std::string& content) override {
      const nlohmann::json document = nlohmann::json::parse(content, nullptr, false);
      detail::StatusRecord existing;
      std::string problem;
      if (document.is_discarded() || !detail::status_record_from_json(document, existing, problem)) return;
      if (existing.attempt != 0 && existing.attempt != this->record.attempt) return;  // an earlier attempt's report
      if (existing.state) this->record.state = existing.state;
      this->record.progress = detail::dump_json(existing.progress);
      this->record.message = std::move(existing.message);
      this->record.result = detail::dump_json(existing.result);
      this->record.error = std::move(existing.error);
      this->record.seq = existing.seq;
    }

    std::optional<Progress> pending_progress;  ///< converted to JSON only when written
  };

  static std::unique_ptr<Core> start(std::unique_ptr<TypedCore> core) {
    core->start();
    return core;
  }
};

}  // namespace jobwarden

#include "jobwarden/compiled/worker_status_writer.hpp"  // the separately compiled mode
