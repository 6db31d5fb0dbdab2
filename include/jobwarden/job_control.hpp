#pragma once
/// \file
/// Controlling a job from outside its supervisor — another process, a web
/// endpoint, `jobwarden stop`: asking a live supervisor to stop everything
/// (`request_stop`), and stopping a job whatever became of its supervisor
/// (`stop_job`: a live one is asked and waited for; where it is gone, what it
/// left behind is recovered).
///
/// ```
/// std::error_code ec;
/// auto outcome = jobwarden::stop_job("/var/lib/scans", "scan-42", 5s, 30s, ec);
/// if (!ec && outcome.finished) std::printf("job ended %s\n", std::string(to_string(outcome.state)).c_str());
/// ```

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/journal.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/recovery.hpp"
#include "jobwarden/control_request.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/recovery_report.hpp"
#include "jobwarden/status_aggregator.hpp"

namespace jobwarden {
namespace detail {

/// What a job directory holds in the way of records.
enum class JournalPresence {
  present,  ///< `journal.jsonl` (or something by that name: its reader judges it)
  missing,  ///< neither a journal nor a `job.json`: no supervisor recorded the job
  legacy,   ///< `job.json` and no journal: a schema 1 job directory
  unknown,  ///< the job directory could not be opened (`ec` says why)
};

/// Whether the job directory open on `job_fd` has a journal.
inline JournalPresence journal_presence_at(int job_fd) {
  if (is_legacy_job_dir(job_fd)) return JournalPresence::legacy;
  struct stat info {};
  if (::fstatat(job_fd, journal_file_name, &info, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
    return JournalPresence::missing;
  }
  return JournalPresence::present;
}

/// Opens the job directory `<root>/<job_id>` relative to the root's
/// descriptor and never through a link; `errc::unknown_job` when it is
/// missing or not a directory, else the system's error.
inline OwnedFd open_job_directory(const std::string& root, const std::string& job_id, std::error_code& ec) {
  ec.clear();
  OwnedFd job_fd;
  OwnedFd root_fd = open_directory(root, ec);
  if (!ec) job_fd = open_directory_at(root_fd.get(), job_id.c_str(), ec);
  if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) {
    ec = make_error_code(errc::unknown_job);
  }
  return job_fd;
}

/// Whether the job directory `<root>/<job_id>` has a journal, opened relative
/// to the root's descriptor and never through a link.
inline JournalPresence job_journal_presence(const std::string& root, const std::string& job_id,
                                            std::error_code& ec) {
  ec.clear();
  OwnedFd root_fd = open_directory(root, ec);
  if (ec) return JournalPresence::unknown;
  OwnedFd job_fd = open_directory_at(root_fd.get(), job_id.c_str(), ec);
  if (ec) return JournalPresence::unknown;
  return journal_presence_at(job_fd.get());
}

}  // namespace detail

/// Asks the live supervisor of job `job_id` under `root` to stop everything:
/// writes `<root>/<job_id>/stop.request` atomically (a reader never sees half
/// of it; its text is `detail::stop_request_text`), naming `grace` when given — the grace period that then replaces
/// every running worker's own. The supervisor notices the file within
/// moments (inotify, or at its next poll at the latest) and shuts down as
/// `begin_shutdown(grace)` would; its workers end `cancelled`.
///
/// Returns at once, without waiting for anything (see `stop_job`). Without a
/// live supervisor the request is harmless: the next supervisor of the job
/// id removes it unread. Errors, with nothing written: `errc::invalid_id`
/// (before touching the disk), `errc::invalid_argument` (an empty root),
/// `errc::invalid_duration` (a negative grace),
/// `errc::unknown_job` (no such job directory), `ELOOP` (the job directory
/// is a symlink), or the system error of the write.
inline void request_stop(const std::string& root, const std::string& job_id,
                         std::optional<std::chrono::milliseconds> grace, std::error_code& ec) {
  ec.clear();
  if (!is_valid_id(job_id)) {
    ec = make_error_code(errc::invalid_id);
    return;
  }
  if (root.empty()) {
    ec = make_error_code(errc::invalid_argument);
    return;
  }
  if (grace && grace->count() < 0) {
    ec = make_error_code(errc::invalid_duration);
    return;
  }
  auto missing = [](const std::error_code& error) {
    return error == std::errc::no_such_file_or_directory || error == std::errc::not_a_directory;
  };
  detail::OwnedFd root_fd = detail::open_directory(root, ec);
  if (ec) {
    if (missing(ec)) ec = make_error_code(errc::unknown_job);
    return;
  }
  // Relative to the root's descriptor and never through a link: the request
  // lands in the job directory itself or nowhere.
  detail::OwnedFd job_fd = detail::open_directory_at(root_fd.get(), job_id.c_str(), ec);
  if (ec) {
    if (missing(ec)) ec = make_error_code(errc::unknown_job);
    return;
  }
  try {
    ec = detail::write_file_atomically_at(job_fd.get(), detail::stop_request_file_name,
                                          detail::stop_request_text(grace, static_cast<long long>(::getpid())));
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
}

/// Throwing form of `request_stop`: `std::system_error` naming the job and root.
inline void request_stop(const std::string& root, const std::string& job_id,
                         std::optional<std::chrono::milliseconds> grace = std::nullopt) {
  std::error_code ec;
  request_stop(root, job_id, grace, ec);
  if (ec) {
    detail::throw_error(ec, "cannot request a stop of job " + detail::quote_id(job_id) + " under " + root);
  }
}

/// How `stop_job` went about stopping a job.
enum class StopAction {
  already_finished,     ///< nothing to stop: the job had ended and none of its workers was left
  requested,            ///< its live supervisor was asked to stop (`request_stop`) and stopped the job
  finished_on_its_own,  ///< its live supervisor was asked, but the job ended by itself first: nothing was stopped
  recovered,            ///< its supervisor was gone (or died while stopping): recovery stopped what was left
};

/// The name of a stop action (`"recovered"`).
constexpr std::string_view to_string(StopAction action) noexcept {
  switch (action) {
    case StopAction::already_finished: return "already_finished";
    case StopAction::requested: return "requested";
    case StopAction::finished_on_its_own: return "finished_on_its_own";
    case StopAction::recovered: return "recovered";
  }
  return "unknown";
}

/// What `stop_job` did, and where the job stands now.
struct StopOutcome {
  /// The last thing done to the job (a request followed by the supervisor's
  /// death ends as `recovered`, with `stop_requested` set).
  StopAction action = StopAction::already_finished;
  /// Whether `stop.request` was written.
  bool stop_requested = false;
  /// Whether the job is over: its state is terminal and nothing of it runs.
  /// False when a live supervisor was still stopping its workers when the
  /// wait limit passed (and after an error).
  bool finished = false;
  /// The job's state as last read.
  JobState state = JobState::pending;
  /// Whether the supervisor was still alive when `stop_job` returned.
  bool supervisor_alive = false;
  /// What recovery did, when it ran (`action == StopAction::recovered`).
  RecoveryReport recovery;
};

/// Stops job `job_id` under `root`, whatever became of its supervisor:
/// - its supervisor is alive: asks it to stop (`request_stop` with `grace`),
///   then waits — polling the job's status every 50 ms, for at most
///   `wait_limit` — until the job's state is terminal or the supervisor is
///   gone; if the supervisor died first, recovers the job as below. A job
///   that then reads `succeeded` or `failed` ended by itself before the
///   request took effect (a stopped job reads `cancelled`):
///   `StopAction::finished_on_its_own`;
/// - its supervisor is gone and the job did not finish (or left workers that
///   are not terminal): `recover_abandoned_job` stops the leftover workers —
///   only processes proven by pid and start time to be the recorded ones,
///   with the stop signal to each worker's process group, up to `grace`
///   (default 10 s), then SIGKILL — and marks them and the job `lost`;
/// - the job had finished: does nothing (`StopAction::already_finished`);
/// - the job directory has no journal (`journal.jsonl`) and no live
///   supervisor (a start that was interrupted; it reads `lost`): nothing can
///   be proven to be its process, so nothing is stopped
///   (`StopAction::already_finished`, the missing journal named in
///   `recovery.problems`).
///
/// Blocks for at most about `wait_limit` plus, for a recovery, the grace
/// period and the few seconds SIGKILLed processes take to go. Errors, with
/// nothing changed: `errc::invalid_id` (before touching the disk),
/// `errc::invalid_duration` (a negative duration), `errc::unknown_job` (no
/// such job), `ELOOP` (the job directory is a symlink),
/// `errc::unsupported_layout` (a job directory of an older jobwarden, schema
/// 1: it is not read, and nothing is stopped); those of recovery (`ENOTSUP`:
/// the supervisor ran on another host; `ENOENT`: no lock file, nothing proves
/// the supervisor dead; `errc::bad_status_file`: the journal has no usable
/// job line — `recovery.problems` says more). Not being finished within
/// `wait_limit` is no error: `finished` is false.
inline StopOutcome stop_job(const std::string& root, const std::string& job_id,
                            std::optional<std::chrono::milliseconds> grace,
                            std::chrono::milliseconds wait_limit, std::error_code& ec) {
  using clock = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds poll_interval{50};
  constexpr std::chrono::milliseconds default_recovery_grace{10'000};
  // A supervisor taking the job over between two reads, or the lock changing
  // hands, sends us round again; this bounds how often.
  constexpr int max_rounds = 8;

  StopOutcome outcome;
  ec.clear();
  if (!is_valid_id(job_id)) {
    ec = make_error_code(errc::invalid_id);
    return outcome;
  }
  if ((grace && grace->count() < 0) || wait_limit.count() < 0) {
    ec = make_error_code(errc::invalid_duration);
    return outcome;
  }
  if (detail::job_journal_presence(root, job_id, ec) == detail::JournalPresence::legacy) {
    outcome.recovery.problems.emplace_back(detail::legacy_job_file_name, detail::legacy_layout_problem);
    ec = make_error_code(errc::unsupported_layout);
    return outcome;
  }
  ec.clear();  // a missing job is the aggregator's to report
  StatusAggregator<> aggregator(root);
  const auto give_up_at = clock::now() + wait_limit;
  auto over = [](const JobStatus<>& status) {
    return is_terminal(status.state) && status.running.empty() && status.pending.empty();
  };

  for (int round = 0; round < max_rounds; ++round) {
    JobStatus<> status = aggregator.read(job_id, ec);
    if (ec) return outcome;
    outcome.state = status.state;
    outcome.supervisor_alive = status.supervisor.alive;

    if (status.supervisor.alive) {
      if (over(status)) {
        // Its host keeps the supervisor, but the job itself has ended.
        outcome.finished = true;
        return outcome;
      }
      if (!outcome.stop_requested) {
        request_stop(root, job_id, grace, ec);
        if (ec) return outcome;
        outcome.stop_requested = true;
        outcome.action = StopAction::requested;
      }
      // Wait for the supervisor to finish the job, or to die trying.
      for (;;) {
        if (clock::now() >= give_up_at) return outcome;  // finished stays false
        std::this_thread::sleep_for(poll_interval);
        status = aggregator.read(job_id, ec);
        if (ec) return outcome;
        outcome.state = status.state;
        outcome.supervisor_alive = status.supervisor.alive;
        if (over(status)) {
          outcome.finished = true;
          if (status.state == JobState::succeeded || status.state == JobState::failed) {
            outcome.action = StopAction::finished_on_its_own;  // a stopped job reads cancelled
          }
          return outcome;
        }
        if (!status.supervisor.alive) break;  // died before writing its verdict: recover
      }
      continue;
    }

    std::error_code presence_error;
    const detail::JournalPresence presence = detail::job_journal_presence(root, job_id, presence_error);
    if (presence == detail::JournalPresence::legacy) {
      outcome.recovery.problems.emplace_back(detail::legacy_job_file_name, detail::legacy_layout_problem);
      ec = make_error_code(errc::unsupported_layout);
      return outcome;
    }
    if (presence == detail::JournalPresence::missing) {
      // No supervisor ever recorded this job (or its journal was removed):
      // without a journal no pid can be trusted, so nothing is signalled.
      outcome.finished = status.running.empty();
      outcome.recovery.problems.emplace_back(detail::journal_file_name,
                                             "missing: no supervisor recorded this job; nothing was stopped");
      return outcome;
    }

    // No live supervisor. Recovery stops what is left and writes the verdict
    // the supervisor never wrote; for a job that ended properly it finds
    // nothing to do and changes nothing.
    RecoveryReport report = detail::recover_abandoned_job(detail::JobLayout{root, job_id},
                                                          grace.value_or(default_recovery_grace), ec);
    if (ec == errc::job_locked) {
      ec.clear();  // a supervisor (re)appeared between the read and the lock: ask it instead
      continue;
    }
    const bool did_something =
        !report.stopped.empty() || !report.marked_lost.empty() || report.job_was_abandoned;
    if (ec && !did_something && over(status)) {
      // Finished by every account we can read (recovery may still refuse a
      // job from another host, or one without a lock file): nothing to stop.
      ec.clear();
      outcome.finished = true;
      return outcome;
    }
    if (did_something || ec) outcome.action = StopAction::recovered;
    outcome.recovery = std::move(report);
    if (ec) return outcome;
    std::error_code read_error;
    status = aggregator.read(job_id, read_error);
    if (!read_error) {
      outcome.state = status.state;
      outcome.supervisor_alive = status.supervisor.alive;
    }
    outcome.finished = over(status) || is_terminal(outcome.state);
    return outcome;
  }
  return outcome;
}

/// Throwing form of `stop_job`: `std::system_error` naming the job and root
/// (and recovery's first problem, when recovery failed).
inline StopOutcome stop_job(const std::string& root, const std::string& job_id,
                            std::optional<std::chrono::milliseconds> grace,
                            std::chrono::milliseconds wait_limit) {
  std::error_code ec;
  StopOutcome outcome = stop_job(root, job_id, grace, wait_limit, ec);
  if (ec) {
    std::string what = "cannot stop job " + detail::quote_id(job_id) + " under " + root;
    if (!outcome.recovery.problems.empty()) {
      what += " (" + outcome.recovery.problems.front().first + ": " + outcome.recovery.problems.front().second + ")";
    }
    detail::throw_error(ec, what);
  }
  return outcome;
}

namespace detail {
/// A fresh nonce for a control request's files: `<pid>-<counter>-<random>`.
inline std::string control_nonce() {
  static std::atomic<unsigned> counter{0};
  std::random_device device;
  char text[64];
  std::snprintf(text, sizeof text, "%ld-%u-%08x", static_cast<long>(::getpid()), counter.fetch_add(1),
                static_cast<unsigned>(device()));
  return text;
}
}  // namespace detail

/// Asks the live supervisor of job `job_id` under `root` to signal, pause or
/// resume one worker (`request.worker`) or every running worker, and waits —
/// at most `wait_limit` — for its answer: which workers it was applied to and
/// which not, and why (`ControlReply`). The supervisor applies it as
/// `JobSupervisor::signal`/`pause`/`resume` would: only to workers it still
/// holds, never by a pid that may have been reused.
///
/// Through the job directory, without a server: writes `<nonce>.control`
/// atomically, the supervisor (woken by inotify, or at its next heartbeat on
/// a system without it) removes it and writes `<nonce>.reply`, which this
/// reads and removes. Errors: `errc::invalid_id` (a bad job or worker id,
/// before touching the disk), `errc::invalid_signal`, `errc::invalid_duration`
/// (a negative wait), `errc::invalid_argument` (an empty root),
/// `errc::unknown_job`, `errc::unsupported_layout`, `errc::no_live_supervisor`
/// (none when asked, or it died before answering: the request is removed if
/// it was not taken), `std::errc::timed_out` (no answer in time: the request
/// is withdrawn if still unread), `errc::bad_control_reply` (an answer came
/// but cannot be read: a damaged file, or a supervisor of another version;
/// the request may have been applied), or the system error of the write.
inline ControlReply control_job(const std::string& root, const std::string& job_id, const ControlRequest& request,
                                std::chrono::milliseconds wait_limit, std::error_code& ec) {
  using clock = std::chrono::steady_clock;
  ControlReply reply;
  ec.clear();
  if (!is_valid_id(job_id) || (request.worker && !is_valid_id(*request.worker))) {
    ec = make_error_code(errc::invalid_id);
    return reply;
  }
  if (request.action == ControlAction::signal && !detail::is_signal_number(request.signal)) {
    ec = make_error_code(errc::invalid_signal);
    return reply;
  }
  if (root.empty()) {
    ec = make_error_code(errc::invalid_argument);
    return reply;
  }
  if (wait_limit.count() < 0) {
    ec = make_error_code(errc::invalid_duration);
    return reply;
  }
  const detail::OwnedFd job_fd = detail::open_job_directory(root, job_id, ec);
  if (ec) return reply;
  if (detail::journal_presence_at(job_fd.get()) == detail::JournalPresence::legacy) {
    ec = make_error_code(errc::unsupported_layout);
    return reply;
  }
  // Alive: its lock is held (or, without a lock file, the aggregator's
  // probe; one aggregator, which reads only what changed at each probe).
  std::optional<StatusAggregator<>> aggregator;
  auto alive = [&] {
    switch (detail::probe_supervisor_lock(job_fd.get())) {
      case detail::LockProbe::held: return true;
      case detail::LockProbe::free: return false;
      case detail::LockProbe::unknown: break;
    }
    std::error_code read_error;
    if (!aggregator) aggregator.emplace(root);
    const JobStatus<> status = aggregator->read(job_id, read_error);
    return !read_error && status.supervisor.alive;
  };
  if (!alive()) {
    ec = make_error_code(errc::no_live_supervisor);
    return reply;
  }
  const std::string nonce = detail::control_nonce();
  const std::string request_name = nonce + detail::control_request_suffix;
  const std::string reply_name = nonce + detail::control_reply_suffix;
  try {
    ec = detail::write_file_atomically_at(job_fd.get(), request_name,
                                          detail::control_request_text(request, static_cast<long long>(::getpid())));
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  if (ec) return reply;
  // Withdraws the request; true when it was still there (never taken).
  auto withdraw = [&] { return ::unlinkat(job_fd.get(), request_name.c_str(), 0) == 0; };
  const auto give_up_at = clock::now() + wait_limit;
  auto next_probe = clock::now() + std::chrono::milliseconds(100);
  std::chrono::milliseconds interval{1};
  for (;;) {
    std::string text;
    const std::error_code read_error =
        detail::read_file_at(job_fd.get(), reply_name.c_str(), text, nullptr, detail::max_control_request_size * 64);
    if (!read_error) {
      ::unlinkat(job_fd.get(), reply_name.c_str(), 0);
      if (!detail::parse_control_reply(text, reply)) ec = make_error_code(errc::bad_control_reply);
      return reply;
    }
    if (read_error != std::errc::no_such_file_or_directory) {
      ec = read_error;
      withdraw();
      return reply;
    }
    const auto now = clock::now();
    if (now >= next_probe) {
      next_probe = now + std::chrono::milliseconds(100);
      if (!alive()) {
        // One last look: it may have answered and then ended.
        if (!detail::read_file_at(job_fd.get(), reply_name.c_str(), text, nullptr,
                                  detail::max_control_request_size * 64)) {
          continue;
        }
        withdraw();
        ec = make_error_code(errc::no_live_supervisor);
        return reply;
      }
    }
    if (now >= give_up_at) {
      withdraw();
      ec = std::make_error_code(std::errc::timed_out);
      return reply;
    }
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        interval, std::chrono::duration_cast<std::chrono::milliseconds>(give_up_at - now) + std::chrono::milliseconds(1)));
    interval = std::min<std::chrono::milliseconds>(interval * 2, std::chrono::milliseconds(20));
  }
}

/// Throwing form of `control_job`: `std::system_error` naming the job and root.
inline ControlReply control_job(const std::string& root, const std::string& job_id, const ControlRequest& request,
                                std::chrono::milliseconds wait_limit) {
  std::error_code ec;
  ControlReply reply = control_job(root, job_id, request, wait_limit, ec);
  if (ec) {
    detail::throw_error(ec, "cannot " + std::string(to_string(request.action)) + " in job " + detail::quote_id(job_id) +
                                " under " + root);
  }
  return reply;
}

}  // namespace jobwarden
