#pragma once
// Reading a job's records back in the supervisor-side tests: the fold of its
// journal (`journal.jsonl`), through the library's own reader.

#include <fcntl.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <system_error>

#include <jobwarden/detail/directory.hpp>
#include <jobwarden/detail/job_files.hpp>
#include <jobwarden/detail/journal.hpp>

namespace jwjournal {

namespace jd = jobwarden::detail;

/// The fold of the journal of the job `layout` (throws when it cannot be read).
inline jd::JournalFold fold_of(const jd::JobLayout& layout) {
  std::error_code ec;
  jd::OwnedFd dir = jd::open_directory(layout.job_dir(), ec);
  if (ec) throw std::system_error(ec, "cannot open " + layout.job_dir());
  jd::JournalFold fold;
  if ((ec = jd::read_journal(dir.get(), fold))) throw std::system_error(ec, "cannot read " + layout.journal_file());
  return fold;
}

/// The latest record of worker `id` (throws when it has none or it is unusable).
inline jobwarden::WorkerInfo worker_record(const jd::JobLayout& layout, const std::string& id) {
  jd::JournalFold fold = fold_of(layout);
  const jd::JournalWorker* worker = fold.find(id);
  if (worker == nullptr) throw std::runtime_error("no line for worker \"" + id + "\" in " + layout.journal_file());
  if (!worker->ok) throw std::runtime_error("worker \"" + id + "\": " + worker->problem);
  return worker->info;
}

/// The latest job record (throws when there is no usable job line).
inline jd::JobRecord job_record(const jd::JobLayout& layout) {
  jd::JournalFold fold = fold_of(layout);
  if (!fold.job()) throw std::runtime_error("no usable job line in " + layout.journal_file() + ": " + fold.job_problem());
  return *fold.job();
}

/// How many lines of worker `id` the journal holds (compaction aside: every record written).
inline int worker_line_count(const jd::JobLayout& layout, const std::string& id) {
  std::error_code ec;
  jd::OwnedFd dir = jd::open_directory(layout.job_dir(), ec);
  if (ec) throw std::system_error(ec, "cannot open " + layout.job_dir());
  jd::JournalFollower follower;
  int count = 0;
  const std::string prefix = "{\"type\":\"worker\",\"id\":\"" + id + "\"";
  ec = follower.follow(
      dir.get(), [&] { count = 0; },
      [&](std::string_view line, std::uint64_t) { count += line.compare(0, prefix.size(), prefix) == 0 ? 1 : 0; },
      [](jd::JournalProblem) {});
  if (ec) throw std::system_error(ec, "cannot read " + layout.journal_file());
  return count;
}

}  // namespace jwjournal
