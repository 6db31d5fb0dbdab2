#pragma once
/// \file
/// `WorkerStatusWriterBase`: how a worker reports its state, progress, message
/// and result into its status file (`$JOBWARDEN_STATUS_FILE`), without a JSON
/// library — the cheap include for workers. Progress is numeric
/// (`progress(done, total)`) or JSON text (`progress_json`), the result is JSON
/// text (`result_json`); both are checked for well-formedness. For typed
/// payloads (anything with nlohmann `to_json`) use `WorkerStatusWriter` of
/// `worker_status_writer.hpp`, built on this one, with the same behaviour.
///
/// ```
/// #include <jobwarden/worker_status_writer_base.hpp>
/// std::error_code ec;
/// auto status = jobwarden::WorkerStatusWriterBase<>::from_environment(ec);  // a no-op writer outside jobwarden
/// for (std::size_t i = 0; i < files.size(); ++i) {
///   scan(files[i]);
///   status.progress(i + 1, files.size());   // at most one write per second, latest value wins
///   status.message("scanning " + files[i]);
/// }
/// status.result_json(R"({"manifests": 12})");  // written at once
/// ```
///
/// Every write replaces the whole file atomically (`detail/atomic_file.hpp`),
/// so a reader never sees half a file, and carries everything known so far:
/// `schema_version`, `job_id`, `worker_id`, `attempt`, `pid`,
/// `process_start_time`, `state`, `progress`, `message`, `result`, `error`,
/// `seq` (one more with every write) and `updated_at` (the heartbeat, RFC 3339
/// UTC with milliseconds). See `schemas/worker-status.schema.json`. The text
/// is written by hand (`detail/status_text.hpp`), byte for byte what the
/// typed writer wrote through nlohmann: compact, keys sorted, invalid UTF-8
/// in a message or error replaced by U+FFFD. JSON text given to
/// `progress_json` and `result_json` is written as given (without the
/// whitespace around it).
///
/// Which calls write when:
/// - at once: `set_state` (a change), `result_json`, `set_error`, `flush`;
/// - throttled (at most one write per `throttle_interval`, the latest value
///   wins): `progress`, `progress_json`, `message`, `heartbeat`. An update
///   that was held back is written by the next call of any kind once the
///   interval has passed, by `flush()`, by any write made at once, and by the
///   destructor. There is no hidden thread: a worker that goes quiet for a
///   long time calls `flush()` or `heartbeat()`.
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
/// writer.

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/process_identity.hpp"
#include "jobwarden/detail/status_text.hpp"
#include "jobwarden/detail/time_format.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/worker_state.hpp"

namespace jobwarden {

/// How a status writer writes. Everything has a default; inside a jobwarden
/// worker `from_environment()` fills in the identity.
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

/// Writes one worker's status file, with JSON payloads as text (see the file
/// comment). `Clock` drives the throttling. Move-only. A default-constructed
/// or moved-from writer is disabled: every call does nothing and succeeds.
template <class Clock = std::chrono::steady_clock>
class WorkerStatusWriterBase {
 public:
  /// The options type of this writer.
  using Options = WorkerStatusWriterOptions<Clock>;

  /// A writer for the file named by `JOBWARDEN_STATUS_FILE`, with identity
  /// from `JOBWARDEN_JOB_ID`, `JOBWARDEN_WORKER_ID` and `JOBWARDEN_ATTEMPT`
  /// (each overriding `options` when set). When `JOBWARDEN_STATUS_FILE` is
  /// not set — the program runs outside jobwarden — sets `ec` to
  /// `errc::no_status_file` and returns a disabled writer, so the same worker
  /// runs by hand unchanged.
  static WorkerStatusWriterBase from_environment(std::error_code& ec, Options options = {}) {
    const char* status_file = read_environment(options, ec);
    if (ec) return WorkerStatusWriterBase();
    return WorkerStatusWriterBase(status_file, std::move(options));
  }

  /// Throwing form of `from_environment`: `std::system_error` when
  /// `JOBWARDEN_STATUS_FILE` is not set.
  static WorkerStatusWriterBase from_environment(Options options = {}) {
    std::error_code ec;
    WorkerStatusWriterBase writer = from_environment(ec, std::move(options));
    if (ec) throw_no_status_file(ec);
    return writer;
  }

  /// A writer for `status_file` (its directory must exist). Writes nothing
  /// until the first call; the state starts as `running`.
  explicit WorkerStatusWriterBase(std::string status_file, Options options = {})
      : core_(std::make_unique<Core>(std::move(status_file), std::move(options))) {
    core_->start();
  }

  /// A disabled writer (every call does nothing).
  WorkerStatusWriterBase() noexcept = default;
  WorkerStatusWriterBase(const WorkerStatusWriterBase&) = delete;
  WorkerStatusWriterBase& operator=(const WorkerStatusWriterBase&) = delete;
  /// Takes over `other`'s file and pending updates; `other` becomes disabled.
  WorkerStatusWriterBase(WorkerStatusWriterBase&&) noexcept = default;
  /// Flushes this writer's pending update, then takes over `other`'s.
  WorkerStatusWriterBase& operator=(WorkerStatusWriterBase&& other) noexcept {
    if (this != &other) {
      (void)flush();
      core_ = std::move(other.core_);
    }
    return *this;
  }
  /// Writes a pending update, if any; a failure is ignored (a destructor has
  /// nobody to tell, and the previous file is still intact).
  ~WorkerStatusWriterBase() { (void)flush(); }

  /// Whether this writer writes a file (false outside jobwarden and when moved-from).
  bool enabled() const noexcept { return core_ != nullptr; }

  /// The status file written.
  std::string path() const { return core_ ? core_->path : std::string(); }

  /// The state last set (`running` until a `set_state`).
  WorkerState state() const {
    if (!core_) return WorkerState::running;
    std::lock_guard<std::mutex> lock(core_->mutex);
    return *core_->record.state;
  }

  /// Sets the worker's own state; a change is written at once, the same state
  /// again counts as a `heartbeat()`. Leaving a terminal state is refused with
  /// `errc::invalid_state_transition` (nothing is written).
  std::error_code set_state(WorkerState state) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      const WorkerState current = *core.record.state;
      if (state == current) return core.write_if_due(now, /*even_if_clean=*/true);
      if (!is_allowed_transition(current, state)) return make_error_code(errc::invalid_state_transition);
      core.record.state = state;
      core.dirty = true;
      return core.write(now);
    });
  }

  /// Sets the state by name (`"running"`, `"succeeded"`...); an unknown name
  /// is `errc::invalid_argument`.
  std::error_code set_state(std::string_view state_name) noexcept {
    const std::optional<WorkerState> state = worker_state_from_string(state_name);
    if (!state) return make_error_code(errc::invalid_argument);
    return set_state(*state);
  }

  /// Reports progress as `{"done": done, "total": total}` (the contract's
  /// shape, what `jobwarden report --done N --total M` writes); throttled
  /// (see the file comment): returns the error of the write it made, or
  /// success when the update was held back.
  std::error_code progress(std::uint64_t done, std::uint64_t total) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      std::string text = "{\"done\":";
      detail::append_integer(text, done);
      text += ",\"total\":";
      detail::append_integer(text, total);
      text += '}';
      core.record.progress = std::move(text);
      core.dirty = true;
      return core.write_if_due(now, /*even_if_clean=*/false);
    });
  }

  /// Reports progress as any JSON value, given as text; throttled. Text that
  /// is not one well-formed JSON value is refused with `errc::invalid_argument`
  /// (counted as a failed write; the last good progress stays).
  std::error_code progress_json(std::string_view json_text) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      if (!detail::is_valid_json_text(json_text)) return core.count_failure(make_error_code(errc::invalid_argument));
      core.record.progress = std::string(detail::trim_json_space(json_text));
      core.dirty = true;
      return core.write_if_due(now, /*even_if_clean=*/false);
    });
  }

  /// Sets the human-readable message; throttled like progress (see the file comment).
  std::error_code message(std::string text) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      core.record.message = std::move(text);
      core.dirty = true;
      return core.write_if_due(now, /*even_if_clean=*/false);
    });
  }

  /// Records the worker's result, any JSON value given as text, and writes at
  /// once. Text that is not one well-formed JSON value is refused with
  /// `errc::invalid_argument` (counted as a failed write; nothing is written).
  std::error_code result_json(std::string_view json_text) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      if (!detail::is_valid_json_text(json_text)) return core.count_failure(make_error_code(errc::invalid_argument));
      core.record.result = std::string(detail::trim_json_space(json_text));
      core.dirty = true;
      return core.write(now);
    });
  }

  /// Records why the worker is failing, written at once. (The state is left
  /// alone: set it too, or let the exit code speak.)
  std::error_code set_error(std::string why) noexcept {
    return update([&](Core& core, typename Clock::time_point now) -> std::error_code {
      core.record.error = std::move(why);
      core.dirty = true;
      return core.write(now);
    });
  }

  /// Proves the worker is alive while it has nothing new to report: writes
  /// (with any pending update) if `throttle_interval` has passed since the
  /// last write, otherwise does nothing.
  std::error_code heartbeat() noexcept {
    return update([](Core& core, typename Clock::time_point now) -> std::error_code {
      return core.write_if_due(now, /*even_if_clean=*/true);
    });
  }

  /// Writes a pending update now, whatever the throttle says; does nothing
  /// when everything is written.
  std::error_code flush() noexcept {
    return update([](Core& core, typename Clock::time_point now) -> std::error_code {
      return core.dirty ? core.write(now) : std::error_code{};
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
    if (!core_) {
      changes();
      return {};
    }
    {
      std::lock_guard<std::mutex> lock(core_->mutex);
      core_->holding = true;
    }
    struct Release {
      Core* core;
      ~Release() {
        std::lock_guard<std::mutex> lock(core->mutex);
        core->holding = false;
      }
    } release{core_.get()};
    changes();
    return update([](Core& core, typename Clock::time_point now) -> std::error_code {
      core.holding = false;
      return core.dirty ? core.write(now) : std::error_code{};
    });
  }

  /// The error of the most recent failed write (it stays after later
  /// successful writes; `write_failures()` tells whether new ones happened).
  std::error_code last_error() const {
    if (!core_) return {};
    std::lock_guard<std::mutex> lock(core_->mutex);
    return core_->last_error;
  }

  /// How many writes failed.
  std::uint64_t write_failures() const {
    if (!core_) return 0;
    std::lock_guard<std::mutex> lock(core_->mutex);
    return core_->failures;
  }

  /// How many writes succeeded.
  std::uint64_t write_count() const {
    if (!core_) return 0;
    std::lock_guard<std::mutex> lock(core_->mutex);
    return core_->writes;
  }

  /// The `seq` of the last write attempted (0 before the first).
  std::uint64_t seq() const {
    if (!core_) return 0;
    std::lock_guard<std::mutex> lock(core_->mutex);
    return core_->record.seq;
  }

  /// Whether an update is held back by the throttle (or by a failed write).
  bool has_pending_update() const {
    if (!core_) return false;
    std::lock_guard<std::mutex> lock(core_->mutex);
    return core_->dirty;
  }

 protected:
  /// The writer's state, shared by the typed writer, which extends it (a
  /// progress value converted to JSON only when written, and the typed
  /// reading of an existing file).
  struct Core {
    Core(std::string status_file, Options opts) : path(std::move(status_file)), options(std::move(opts)) {
      record.job_id = options.job_id;
      record.worker_id = options.worker_id;
      record.attempt = options.attempt;
      record.pid = static_cast<int>(::getpid());
      record.process_start_time = detail::process_start_time(record.pid).value_or(0);
      record.state = WorkerState::running;
    }
    virtual ~Core() = default;
    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;

    /// Called once the object is complete: reads the existing file when asked to.
    void start() {
      if (options.continue_existing) continue_from_file();
    }

    /// Turns what is pending into `record` just before a write; an error
    /// cancels the write. Nothing is pending here.
    virtual std::error_code render_pending() { return {}; }

    /// Takes state, progress, message, result, error and seq from an existing
    /// status file's `content` when it is valid and of the same attempt. The
    /// rules are `status_record_from_json`'s (detail/job_format.hpp, used by
    /// the typed writer and the reader) read without nlohmann: change both
    /// together. One difference: a file starting with a UTF-8 byte-order mark
    /// is not continued from here (no jobwarden writer writes one).
    virtual void continue_from(const std::string& content) {
      if (!detail::is_valid_json_text(content)) return;
      detail::StatusRecordText existing;
      bool ok = true;
      bool has_schema_version = false;
      std::string text;
      auto is_null = [](std::string_view raw) { return raw == "null"; };
      auto integer = [&ok](std::string_view raw, long long min, long long max, long long& out) {
        const auto parsed = std::from_chars(raw.data(), raw.data() + raw.size(), out);
        if (parsed.ec != std::errc() || parsed.ptr != raw.data() + raw.size() || out < min || out > max) ok = false;
      };
      auto unsigned_integer = [&ok](std::string_view raw, std::uint64_t& out) {
        const auto parsed = std::from_chars(raw.data(), raw.data() + raw.size(), out);
        if (parsed.ec != std::errc() || parsed.ptr != raw.data() + raw.size()) ok = false;
      };
      auto string = [&ok](std::string_view raw, std::string& out) {
        if (!detail::decode_json_string(raw, out)) ok = false;
      };
      const bool is_object = detail::for_each_json_member(content, [&](const std::string& key, std::string_view raw) {
        if (!ok || is_null(raw)) return;
        long long number = 0;
        if (key == "schema_version") {
          integer(raw, LLONG_MIN, LLONG_MAX, number);
          if (ok && number != detail::status_schema_version) ok = false;
          has_schema_version = true;
        } else if (key == "job_id") {
          string(raw, existing.job_id);
        } else if (key == "worker_id") {
          string(raw, existing.worker_id);
        } else if (key == "attempt") {
          integer(raw, 0, 1'000'000'000, number);
          existing.attempt = static_cast<int>(number);
        } else if (key == "pid") {
          integer(raw, 0, 0x7fffffff, number);
        } else if (key == "process_start_time" || key == "seq") {
          std::uint64_t value = 0;
          unsigned_integer(raw, value);
          if (key == "seq") existing.seq = value;
        } else if (key == "state") {
          string(raw, text);
          existing.state = worker_state_from_string(text);
          if (!existing.state) ok = false;
        } else if (key == "progress") {
          existing.progress = std::string(raw);
        } else if (key == "message") {
          string(raw, text);
          existing.message = text;
        } else if (key == "result") {
          existing.result = std::string(raw);
        } else if (key == "error") {
          string(raw, text);
          existing.error = text;
        } else if (key == "updated_at") {
          string(raw, text);
          if (ok && !detail::parse_rfc3339(text)) ok = false;
        }
      });
      if (!is_object || !ok || !has_schema_version) return;
      if (existing.attempt != 0 && existing.attempt != record.attempt) return;  // an earlier attempt's report
      if (existing.state) record.state = existing.state;
      record.progress = std::move(existing.progress);
      record.message = std::move(existing.message);
      record.result = std::move(existing.result);
      record.error = std::move(existing.error);
      record.seq = existing.seq;
    }

    void continue_from_file() {
      const std::size_t slash = path.rfind('/');
      const std::string directory = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
      const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
      std::error_code ec;
      detail::OwnedFd dir = detail::open_directory(directory, ec);
      std::string content;
      if (ec || detail::read_file_at(dir.get(), name.c_str(), content, nullptr, options.max_file_size)) return;
      continue_from(content);
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
        if (auto ec = render_pending()) return count_failure(ec);
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
      const std::string content = detail::status_text(record);
      if (content.size() > options.max_file_size) return make_error_code(errc::oversized_file);
      return detail::write_file_atomically(path, content, {options.durable, 0644});
    }

    std::mutex mutex;
    std::string path;
    Options options;
    detail::StatusRecordText record;
    std::optional<typename Clock::time_point> last_attempt;
    bool dirty = false;
    bool holding = false;  ///< inside `batch`: writes wait for its end
    std::uint64_t writes = 0;
    std::uint64_t failures = 0;
    std::error_code last_error;
  };

  /// A writer of `core` (already `start()`ed), for the typed writer.
  explicit WorkerStatusWriterBase(std::unique_ptr<Core> core) noexcept : core_(std::move(core)) {}

  /// Fills `options`' identity from the environment and returns the status
  /// file's path; `errc::no_status_file` (and `nullptr`) outside jobwarden.
  static const char* read_environment(Options& options, std::error_code& ec) {
    ec.clear();
    const char* status_file = std::getenv(detail::status_file_env);
    if (status_file == nullptr || *status_file == '\0') {
      ec = make_error_code(errc::no_status_file);
      return nullptr;
    }
    if (const char* job_id = std::getenv(detail::job_id_env)) options.job_id = job_id;
    if (const char* worker_id = std::getenv(detail::worker_id_env)) options.worker_id = worker_id;
    if (const char* attempt = std::getenv(detail::attempt_env)) {
      char* end = nullptr;
      const long value = std::strtol(attempt, &end, 10);
      if (end != attempt && *end == '\0' && value > 0 && value < 1'000'000'000) {
        options.attempt = static_cast<int>(value);
      }
    }
    return status_file;
  }

  [[noreturn]] static void throw_no_status_file(std::error_code ec) {
    detail::throw_error(ec, std::string(detail::status_file_env) +
                                " is not set: this process was not started by jobwarden");
  }

  /// Runs `change` under the lock with the current time; never throws.
  template <class Change>
  std::error_code update(Change&& change) noexcept {
    if (!core_) return {};
    try {
      std::lock_guard<std::mutex> lock(core_->mutex);
      return change(*core_, core_->now());
    } catch (...) {
      // A throwing clock, a payload copy that throws, or bad_alloc; the lock
      // was released by the unwinding, so the failure can still be counted.
      const std::error_code ec = std::make_error_code(std::errc::not_enough_memory);
      std::lock_guard<std::mutex> lock(core_->mutex);
      return core_->count_failure(ec);
    }
  }

  std::unique_ptr<Core> core_;
};

}  // namespace jobwarden
