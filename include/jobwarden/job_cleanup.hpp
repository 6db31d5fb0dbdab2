#pragma once
/// \file
/// Retention: `clean_jobs` removes the finished jobs under a root that ended
/// long enough ago (`jobwarden clean`). It reads each job's state as
/// `StatusAggregator` does, and removes a job only if all of these hold: it
/// is finished (`succeeded`, `failed`, `cancelled` or `lost`), no worker of it
/// still runs, its supervisor is not alive (lock held, or pid provably alive
/// when there is no lock to probe), and it ended (by `ended_at`, else its
/// last update, else the directory's mtime) more than `older_than` ago.
///
/// A removal holds the job's lock (a supervisor starting the same id then
/// fails with `job_locked`), renames the directory to a hidden
/// `.<id>.removing.*` name (readers never see half a job), then deletes the
/// tree without following any link. Hidden leftovers of an interrupted
/// removal are deleted by the next one that is not a dry run.
///
/// A job directory of an older jobwarden (schema 1: `job.json` and a
/// directory per worker, no `journal.jsonl`) is not read — readers answer
/// `errc::unsupported_layout` for it — but users who upgrade need a way to
/// clean it: it is removed when its lock is free (no supervisor of it is
/// alive) and the directory itself was last changed more than `older_than`
/// ago (its supervisor replaced `job.json` by a rename at every write, so
/// the directory's mtime is its last sign of life). Kept otherwise, with the
/// reason "older layout, too recent" or "supervisor alive".

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/directory.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_lock.hpp"
#include "jobwarden/detail/journal.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/detail/status_reader.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/job_state.hpp"
#include "jobwarden/job_status.hpp"

namespace jobwarden {
namespace detail {

/// Whether `name` is what an interrupted removal left behind.
inline bool is_removal_tombstone(const std::string& name) {
  return name.size() > 1 && name[0] == '.' && name.find(".removing.") != std::string::npos;
}

/// `clean_jobs` through `reader` (its clock, its limits and its cache: removed
/// jobs are forgotten). The caller holds `reader.mutex`.
inline CleanReport clean_jobs_with(StatusReader& reader, std::chrono::milliseconds older_than, bool dry_run,
                                   std::error_code& ec) {
  CleanReport report;
  report.dry_run = dry_run;
  std::error_code open_ec;
  OwnedFd root_fd = open_directory(reader.root(), open_ec);
  if (open_ec) {
    if (open_ec != std::errc::no_such_file_or_directory) ec = open_ec;
    return report;
  }
  std::vector<DirectoryEntry> entries = list_directory(root_fd.get(), ec);
  if (ec) return report;
  const WallTime now_wall = reader.now();
  // Removes one job (or, in a dry run, says it would). `probe_lock`: a dry
  // run asks the lock too (the status read did not, for an older layout).
  auto remove_job = [&](const std::string& name, OwnedFd& job_fd, bool dry, bool probe_lock) {
    // Hold the lock across the rename: a supervisor starting this job id
    // now fails with job_locked instead of writing into a doomed directory.
    OwnedFd lock;
    if (!dry || probe_lock) {
      std::error_code lock_ec;
      lock = acquire_supervisor_lock(job_fd.get(), /*create=*/false, std::chrono::milliseconds(50), lock_ec);
      if (lock_ec == errc::job_locked) {
        report.kept.push_back({name, "supervisor alive"});
        return;
      }
      if (lock_ec && lock_ec != std::errc::no_such_file_or_directory) {
        report.errors.push_back({name + "/" + lock_file_name, "unreadable", lock_ec.message()});
        return;
      }
    }
    if (dry) {
      report.removed.push_back(name);
      return;
    }
    const std::string tombstone = "." + name + ".removing" + temporary_name_for("").substr(1);
    if (::renameat(root_fd.get(), name.c_str(), root_fd.get(), tombstone.c_str()) != 0) {
      report.errors.push_back({name, "not removed", errno_code().message()});
      return;
    }
    lock.reset();
    job_fd.reset();
    reader.cache().forget(name);
    report.removed.push_back(name);
    if (auto remove_ec = remove_tree_at(root_fd.get(), tombstone)) {
      report.errors.push_back({tombstone, "not removed", remove_ec.message()});
    }
  };
  for (const DirectoryEntry& entry : entries) {
    if (!dry_run && is_removal_tombstone(entry.name)) {
      // Left behind by a clean that was interrupted: nobody can reach it.
      (void)remove_tree_at(root_fd.get(), entry.name);
      continue;
    }
    if (!is_valid_id(entry.name)) continue;
    OwnedFd job_fd = open_directory_at(root_fd.get(), entry.name.c_str(), open_ec);
    if (open_ec) continue;  // symlinks and files are not jobs: never touched
    auto keep = [&](std::string why) { report.kept.push_back({entry.name, std::move(why)}); };
    if (is_legacy_job_dir(job_fd.get())) {
      struct stat info {};
      if (::fstat(job_fd.get(), &info) != 0) {
        report.errors.push_back({entry.name, "unreadable", errno_code().message()});
        continue;
      }
      const WallTime changed_at(
          std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(stamp_of(info).modified_ns)));
      if (now_wall - changed_at < older_than) {
        keep("older layout, too recent");
        continue;
      }
      remove_job(entry.name, job_fd, dry_run, /*probe_lock=*/true);
      continue;
    }
    const JobStatus<> status = reader.read_open_job(entry.name, job_fd.get()).status;
    if (status.supervisor.alive) {
      keep("supervisor alive");
      continue;
    }
    if (!is_terminal(status.state)) {
      keep("not finished");
      continue;
    }
    if (!status.running.empty()) {
      keep("a worker is still running");
      continue;
    }
    std::optional<WallTime> finished_at = status.ended_at ? status.ended_at : status.last_update;
    if (!finished_at) {
      struct stat info {};
      if (::fstat(job_fd.get(), &info) == 0) {
        finished_at = WallTime(std::chrono::duration_cast<WallTime::duration>(
            std::chrono::nanoseconds(stamp_of(info).modified_ns)));
      }
    }
    if (!finished_at || now_wall - *finished_at < older_than) {
      keep("too recent");
      continue;
    }
    remove_job(entry.name, job_fd, dry_run, /*probe_lock=*/false);
  }
  std::sort(report.removed.begin(), report.removed.end());
  return report;
}

}  // namespace detail

/// Removes the finished jobs under `root` that ended more than `older_than`
/// ago (the conditions are in the file comment); with `dry_run`, only reports
/// what it would remove. A missing root has nothing to remove. Errors (as a
/// whole): the system error opening or listing `root`; a job that could not
/// be removed is an `errors` entry of the report instead.
inline CleanReport clean_jobs(const std::string& root, std::chrono::milliseconds older_than, bool dry_run,
                              std::error_code& ec) {
  ec.clear();
  try {
    detail::StatusReaderSettings settings;
    settings.cache.watch_for_changes = false;  // every job is read once
    detail::StatusReader reader(root, std::move(settings));
    return detail::clean_jobs_with(reader, older_than, dry_run, ec);
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
}

/// Throwing form of `clean_jobs`: `std::system_error` naming the root.
inline CleanReport clean_jobs(const std::string& root, std::chrono::milliseconds older_than, bool dry_run = false) {
  std::error_code ec;
  CleanReport report = clean_jobs(root, older_than, dry_run, ec);
  if (ec) detail::throw_error(ec, "cannot clean jobs under " + root);
  return report;
}

}  // namespace jobwarden
