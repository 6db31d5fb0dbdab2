#pragma once
/// \file
/// The job's journal, `journal.jsonl`: the supervisor's records of the job
/// and of every worker, one JSON object per line, only ever appended to.
/// docs/job-directory.md is the contract for readers in any language;
/// `schemas/journal-line.schema.json` is a line's schema.
///
/// ```
/// {"type":"journal","schema_version":2,"job_id":"scan","generation":1}
/// {"type":"job","job_id":"scan","state":"running",...,"supervisor":{...}}
/// {"type":"worker","id":"1","attempt":0,"state":"pending",...,"argv":["scan","a"]}
/// {"type":"worker","id":"1","attempt":1,"state":"running","pid":4242,...}
/// {"type":"worker","id":"1","attempt":1,"state":"succeeded","exit_code":0,...}
/// ```
///
/// - The first line names the format (`schema_version`), the job and the
///   file's `generation` (1 for a new journal, one more for every compaction).
/// - Every other line is a whole record: the job's latest line is the job
///   record, a worker's latest line is that worker's record. The state of a
///   job is the fold of its journal: read the lines in order, the last line of
///   each worker (and of the job) wins. Lines of a `type` a reader does not
///   know are skipped (later versions may add some).
/// - A line counts only once its newline is there. A last line without one is
///   being written, or was torn by a crash or a full disk: readers leave it
///   and read it again later. The writer removes a torn tail before it
///   appends again, so a torn line is never followed by another.
/// - Compaction: once the journal passes a size, the writer writes its fold
///   (the first line with the next generation, the job's line, one line per
///   worker) to a temporary file and renames it over `journal.jsonl`. A
///   reader holding the old file reads it to its end — nothing was appended
///   there after the rename — then opens the new one and folds it from the
///   start. No record is lost, and none is read half.
///
/// The writer is `JournalWriter` (one per job: the holder of
/// `supervisor.lock`); readers use `JournalFollower` to read what was
/// appended since their last read and `JournalFold` to keep the fold.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobwarden/detail/atomic_file.hpp"
#include "jobwarden/detail/job_files.hpp"
#include "jobwarden/detail/job_format.hpp"
#include "jobwarden/detail/json_fields.hpp"
#include "jobwarden/detail/json_text.hpp"
#include "jobwarden/detail/owned_fd.hpp"
#include "jobwarden/errors.hpp"
#include "jobwarden/ids.hpp"
#include "jobwarden/worker_spec.hpp"

namespace jobwarden::detail {

/// A journal line longer than this is not read; a reader reports it and
/// skips to the next newline. The writer never writes one: a worker line's
/// argv is capped (`max_journal_argv_bytes`), and `JournalWriter::append`
/// refuses a longer line.
inline constexpr std::size_t max_journal_line = std::size_t{1} << 20;

/// The first line of a journal of `job_id` in its `generation`.
inline std::string journal_header_text(const std::string& job_id, std::uint64_t generation) {
  std::string out = "{\"type\":\"journal\",\"schema_version\":";
  append_integer(out, journal_schema_version);
  out += ",\"job_id\":";
  append_json_string(out, job_id);
  out += ",\"generation\":";
  append_integer(out, static_cast<long long>(generation));
  out += "}\n";
  return out;
}

// ---------------------------------------------------------------------------
// Writing

/// How a `JournalWriter` writes.
struct JournalWriterOptions {
  /// `sync()` makes what was appended durable (`fdatasync`), and a compaction
  /// `fsync`s the new file and the directory. Off: appends reach the page
  /// cache, which every reader on the machine sees at once.
  bool durable = false;
  /// Permissions of a new journal (before the umask).
  mode_t permissions = 0644;
};

/// Appends lines to one job's journal. Single writer: the holder of the
/// job's `supervisor.lock` (a supervisor, or recovery). Not thread-safe.
/// Every error is returned (nothing throws) and leaves the journal as it was
/// before the failed call: a short append (`ENOSPC`, `EFBIG`) is cut off
/// again, so the file always ends with a whole line.
class JournalWriter {
 public:
  JournalWriter() = default;

  /// Creates `journal.jsonl` in `job_dir_fd` anew (replacing any old one,
  /// atomically) with its first line for `job_id` and `generation`, followed
  /// by `lines` (each a whole line with its newline). The file is written
  /// under a temporary name and kept open across the rename, so once the new
  /// journal has the name this writer appends to it: nothing after the
  /// rename can fail and leave the writer on a file without a name. With
  /// `durable`, a failed `fsync` of the directory after the rename is
  /// returned, and the writer still uses the new file.
  void create(int job_dir_fd, const std::string& job_id, std::uint64_t generation, std::string_view lines,
              std::error_code& ec) {
    ec.clear();
    std::string content = journal_header_text(job_id, generation);
    content.append(lines.data(), lines.size());
    OwnedFd file;
    ec = write_file_atomically_at(job_dir_fd, journal_file_name, content,
                                  AtomicWriteOptions{options_.durable, options_.permissions}, &file);
    if (!file) return;  // the old journal, if any, is untouched
    fd_ = std::move(file);
    dir_fd_ = job_dir_fd;
    job_id_ = job_id;
    generation_ = generation;
    size_ = content.size();
    unsynced_ = false;
    torn_ = false;
  }

  /// Opens an existing journal to append to it (recovery writing its verdict
  /// into a dead supervisor's journal). A torn last line is cut off first.
  /// `generation` and `job_id` come from the caller's fold of the file.
  void open_existing(int job_dir_fd, const std::string& job_id, std::uint64_t generation, std::error_code& ec) {
    ec.clear();
    OwnedFd file(::openat(job_dir_fd, journal_file_name, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!file) {
      ec = normalize_nofollow_error(errno_code());
      return;
    }
    struct stat info {};
    if (::fstat(file.get(), &info) != 0) {
      ec = errno_code();
      return;
    }
    if (!S_ISREG(info.st_mode)) {
      ec = make_error_code(errc::not_regular_file);
      return;
    }
    std::uint64_t size = static_cast<std::uint64_t>(info.st_size);
    // Find the end of the last whole line (read backwards in blocks).
    std::uint64_t keep = size;
    char block[4096];
    while (keep > 0) {
      const std::uint64_t start = keep > sizeof block ? keep - sizeof block : 0;
      const std::size_t want = static_cast<std::size_t>(keep - start);
      ssize_t got;
      do got = ::pread(file.get(), block, want, static_cast<off_t>(start));
      while (got < 0 && errno == EINTR);
      if (got < 0) {
        ec = errno_code();
        return;
      }
      if (static_cast<std::size_t>(got) != want) {
        ec = std::make_error_code(std::errc::io_error);
        return;
      }
      const void* newline = nullptr;
      for (std::size_t i = want; i > 0; --i) {
        if (block[i - 1] == '\n') {
          newline = &block[i - 1];
          keep = start + i;
          break;
        }
      }
      if (newline != nullptr) break;
      keep = start;
    }
    if (keep != size && ::ftruncate(file.get(), static_cast<off_t>(keep)) != 0) {
      ec = errno_code();
      return;
    }
    fd_ = std::move(file);
    dir_fd_ = job_dir_fd;
    job_id_ = job_id;
    generation_ = generation;
    size_ = keep;
    unsynced_ = false;
    torn_ = false;
  }

  /// Whether a journal is open.
  bool is_open() const noexcept { return static_cast<bool>(fd_); }
  /// Its size in bytes as this writer left it.
  std::uint64_t size() const noexcept { return size_; }
  /// Its generation (1 for a new journal, one more per compaction).
  std::uint64_t generation() const noexcept { return generation_; }

  /// Appends `line` (one or more whole lines, each ending in a newline) with
  /// one `write`. On failure the journal is cut back to its previous size;
  /// when even that fails, nothing more is appended (the error is returned
  /// again) until a later call manages the cut, so a torn line is never
  /// followed by another. A single line longer than `max_journal_line`, which
  /// no reader would take, is refused (`errc::oversized_file`).
  std::error_code append(std::string_view line) noexcept {
    if (!fd_) return std::make_error_code(std::errc::bad_file_descriptor);
    if (line.empty()) return {};
    if (torn_ && !cut_back()) return errno_code();
    for (std::size_t start = 0; start < line.size();) {
      const std::size_t end = line.find('\n', start);
      const std::size_t stop = end == std::string_view::npos ? line.size() : end;
      if (stop - start > max_journal_line) return make_error_code(errc::oversized_file);
      start = stop + 1;
    }
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t written = ::write(fd_.get(), line.data() + done, line.size() - done);
      if (written < 0) {
        if (errno == EINTR) continue;
        const std::error_code ec = errno_code();
        if (done > 0) cut_back();
        return ec;
      }
      if (written == 0) {
        cut_back();
        return std::make_error_code(std::errc::io_error);
      }
      done += static_cast<std::size_t>(written);
    }
    size_ += line.size();
    unsynced_ = true;
    return {};
  }

  /// With `durable`, makes every append so far durable with one
  /// `fdatasync` (a supervisor calls it once per batch of records, not per
  /// record). Without, does nothing.
  std::error_code sync() noexcept {
    if (!fd_ || !options_.durable || !unsynced_) return {};
    while (::fdatasync(fd_.get()) != 0) {
      if (errno != EINTR) return errno_code();
    }
    unsynced_ = false;
    return {};
  }

  /// Replaces the journal with its fold: a first line with the next
  /// generation, then `lines` (the job's line and one line per worker). On
  /// failure before the rename the old journal stays as it was and stays
  /// open; once the new one has the name, this writer appends to it (a failed
  /// directory `fsync` after the rename is still returned, see `create`).
  std::error_code compact(std::string_view lines) {
    if (!fd_) return std::make_error_code(std::errc::bad_file_descriptor);
    JournalWriter next;
    next.options_ = options_;
    std::error_code ec;
    try {
      next.create(dir_fd_, job_id_, generation_ + 1, lines, ec);
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
    if (next.is_open()) *this = std::move(next);
    return ec;
  }

  /// The options this writer uses.
  JournalWriterOptions& options() noexcept { return options_; }

  /// Closes the journal (the file stays).
  void close() noexcept { fd_.reset(); }

 private:
  /// Cuts the file back to `size_` (single writer: its size before the
  /// failed append). False, with errno set, when it cannot: the writer then
  /// stays `torn_` and tries again before its next append. A torn line is
  /// never ended with a newline instead: it would read as a record (a worker
  /// line's prefix is enough to be taken for that worker's latest).
  bool cut_back() noexcept {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) {
      torn_ = true;
      return false;
    }
    torn_ = false;
    return true;
  }

  OwnedFd fd_;
  int dir_fd_ = -1;
  std::string job_id_;
  std::uint64_t generation_ = 0;
  std::uint64_t size_ = 0;
  bool unsynced_ = false;
  bool torn_ = false;  ///< a failed append could not be cut back yet
  JournalWriterOptions options_;
};

// ---------------------------------------------------------------------------
// Reading

/// A journal line a reader could not use.
struct JournalProblem {
  std::uint64_t offset = 0;  ///< where the line starts in its file
  std::string error;         ///< "not valid JSON", "wrong shape", "oversized line", ...
  std::string detail;
};

/// Reads a job's journal by offset: each call returns only what was appended
/// since the last one, whole lines only, and notices a compaction (or a new
/// job under the same name) by the file's identity, reading the old file to
/// its end before it starts the new one. Costs two `fstat`s when nothing
/// changed. Not thread-safe; one per reader of a job.
class JournalFollower {
 public:
  /// Reads what is new in `journal.jsonl` of the job directory `job_dir_fd`.
  /// `on_reset()` is called when the journal was replaced (its fold must be
  /// started anew: the new file holds everything), `on_line(line, offset)`
  /// for every whole line in order (without its newline), `on_problem` for a
  /// line that cannot be a record (oversized). Errors: `ENOENT` (no journal),
  /// `ELOOP`, `errc::not_regular_file`, or the read error; what was delivered
  /// before an error stays delivered.
  template <class OnReset, class OnLine, class OnProblem>
  std::error_code follow(int job_dir_fd, OnReset&& on_reset, OnLine&& on_line, OnProblem&& on_problem) {
    struct stat named {};
    const bool have_name = ::fstatat(job_dir_fd, journal_file_name, &named, AT_SYMLINK_NOFOLLOW) == 0;
    const int name_error = have_name ? 0 : errno;
    if (fd_ && have_name && named.st_dev == device_ && named.st_ino == inode_) {
      return read_new(on_reset, on_line, on_problem);
    }
    if (fd_) {
      // Replaced (compaction) or removed: what was appended to the old file
      // before that is still to be read.
      if (std::error_code ec = read_new(on_reset, on_line, on_problem)) return ec;
    }
    if (!have_name) {
      if (fd_) return {};  // removed: keep what was read (a job being cleaned)
      return std::error_code(name_error, std::system_category());
    }
    if (S_ISLNK(named.st_mode)) return std::make_error_code(std::errc::too_many_symbolic_link_levels);
    if (!S_ISREG(named.st_mode)) return make_error_code(errc::not_regular_file);
    OwnedFd file(::openat(job_dir_fd, journal_file_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!file) return normalize_nofollow_error(errno_code());
    struct stat info {};
    if (::fstat(file.get(), &info) != 0) return errno_code();
    if (!S_ISREG(info.st_mode)) return make_error_code(errc::not_regular_file);
    fd_ = std::move(file);
    device_ = info.st_dev;
    inode_ = info.st_ino;
    offset_ = 0;
    skipping_line_.reset();
    on_reset();
    return read_new(on_reset, on_line, on_problem);
  }

  /// Forgets the file: the next `follow` starts from the beginning.
  void reset() noexcept {
    fd_.reset();
    offset_ = 0;
    skipping_line_.reset();
  }

  /// Where the next read starts (bytes of whole lines read so far).
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  template <class OnReset, class OnLine, class OnProblem>
  std::error_code read_new(OnReset& on_reset, OnLine& on_line, OnProblem& on_problem) {
    struct stat info {};
    if (::fstat(fd_.get(), &info) != 0) return errno_code();
    std::uint64_t size = static_cast<std::uint64_t>(info.st_size);
    if (size < offset_) {
      // Cut back below what was read: not this writer's doing (it only cuts
      // a torn tail, never a whole line); read it again from the start.
      offset_ = 0;
      skipping_line_.reset();
      on_reset();
    }
    if (size == offset_) return {};
    try {
      // Lines are read in blocks; a line that straddles two stays in `buffer`.
      // Only the `size` bytes fstat saw are read: a torn tail the writer cuts
      // off and replaces meanwhile is never glued to what follows it (the next
      // call reads from the start of that line again).
      std::string buffer;
      std::uint64_t position = offset_;  // file offset of buffer[0]
      std::uint64_t read_to = offset_;
      const std::size_t most = 1 << 20;
      // Inside an oversized line: drop until its newline. One reported before
      // and still unfinished is skipped on from where the last call stopped.
      bool skipping = false;
      if (skipping_line_ && *skipping_line_ == offset_ && skipped_to_ <= size) {
        skipping = true;
        position = read_to = skipped_to_;
      }
      while (read_to < size) {
        const std::size_t block = static_cast<std::size_t>(std::min<std::uint64_t>(most, size - read_to));
        const std::size_t old = buffer.size();
        buffer.resize(old + block);
        ssize_t got;
        do got = ::pread(fd_.get(), &buffer[old], block, static_cast<off_t>(read_to));
        while (got < 0 && errno == EINTR);
        if (got < 0) {
          buffer.resize(old);
          return errno_code();
        }
        buffer.resize(old + static_cast<std::size_t>(got));
        if (got == 0) break;  // cut below `size` meanwhile: the next call looks again
        read_to += static_cast<std::uint64_t>(got);
        std::size_t start = 0;
        for (;;) {
          const void* found = std::memchr(buffer.data() + start, '\n', buffer.size() - start);
          if (found == nullptr) break;
          const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(found) - buffer.data());
          if (skipping) {
            skipping = false;
            skipping_line_.reset();
          } else if (end - start > max_journal_line) {
            on_problem(JournalProblem{position + start, "oversized line", "a line of more than 1 MiB is not read"});
          } else {
            on_line(std::string_view(buffer.data() + start, end - start), position + start);
          }
          start = end + 1;
          offset_ = position + start;
        }
        buffer.erase(0, start);
        position += start;
        if (!skipping && buffer.size() > max_journal_line) {
          on_problem(JournalProblem{position, "oversized line", "a line of more than 1 MiB is not read"});
          skipping = true;
          skipping_line_ = position;
        }
        if (skipping) {
          position += buffer.size();
          skipped_to_ = position;
          buffer.clear();
        }
      }
      return {};
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }

  OwnedFd fd_;
  dev_t device_ = 0;
  ino_t inode_ = 0;
  std::uint64_t offset_ = 0;
  std::optional<std::uint64_t> skipping_line_;  ///< start of an oversized line reported, its end not read yet
  std::uint64_t skipped_to_ = 0;                ///< how far into it the last call read
};

/// A worker's latest line, parsed when first asked for.
struct JournalWorker {
  std::string id;
  std::string line;            ///< its latest line (without the newline)
  std::uint64_t offset = 0;    ///< where that line starts
  bool parsed = false;
  bool ok = false;             ///< the line is a usable record (after parsing)
  WorkerInfo info;             ///< the record (when `ok`)
  /// `info.argv` once more, shared: what readers hand out as the worker's
  /// command (`WorkerStatus::argv`), made once per line rather than at every
  /// merge of the worker (when `ok`).
  std::shared_ptr<const std::vector<std::string>> argv;
  std::optional<std::chrono::system_clock::time_point> updated_at;
  std::string problem;         ///< why not (when parsed and not `ok`)
};

/// The fold of a journal: the job's latest record and each worker's latest
/// line, in the order workers first appeared. Worker lines are only split
/// off by their `id` as they arrive (the writer puts `"type":"worker","id"`
/// first); each worker's latest line is parsed once, when it is first asked
/// for, so folding a long journal costs a scan, not a parse of every line.
class JournalFold {
 public:
  /// Starts anew (the journal was replaced).
  void reset() {
    header_seen_ = false;
    schema_version_ = 0;
    generation_ = 0;
    job_id_.clear();
    job_.reset();
    job_problem_.clear();
    workers_.clear();
    index_.clear();
    changed_.clear();
    problems_.clear();
    ++resets_;
  }

  /// Takes one whole line (without its newline) found at `offset`.
  void apply(std::string_view line, std::uint64_t offset) {
    static constexpr std::string_view worker_prefix = "{\"type\":\"worker\",\"id\":\"";
    if (line.size() > worker_prefix.size() && line.compare(0, worker_prefix.size(), worker_prefix) == 0) {
      const std::size_t end = line.find('"', worker_prefix.size());
      if (end != std::string_view::npos) {
        std::string id(line.substr(worker_prefix.size(), end - worker_prefix.size()));
        if (is_valid_id(id)) {
          take_worker(std::move(id), line, offset);
          return;
        }
      }
    }
    nlohmann::json document = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (document.is_discarded() || !document.is_object()) {
      problems_.push_back({offset, "not valid JSON", printable_text(line, 120)});
      return;
    }
    auto type = document.find("type");
    if (type == document.end() || !type->is_string()) {
      problems_.push_back({offset, "wrong shape", "no \"type\""});
      return;
    }
    const std::string& kind = type->get_ref<const std::string&>();
    if (kind == "worker") {
      auto id = document.find("id");
      if (id == document.end() || !id->is_string() || !is_valid_id(id->get<std::string>())) {
        problems_.push_back({offset, "wrong shape", "a worker line without a valid \"id\""});
        return;
      }
      take_worker(id->get<std::string>(), line, offset);
    } else if (kind == "job") {
      JobRecord record;
      std::string problem;
      if (job_record_from_json(document, record, problem)) {
        job_ = std::move(record);
        job_problem_.clear();
      } else {
        job_problem_ = problem;
        problems_.push_back({offset, "wrong shape", problem});
      }
      job_changed_ = true;
    } else if (kind == "journal") {
      if (offset != 0) {
        // Only the first line is the header: one further down cannot
        // switch the job to another version or generation.
        problems_.push_back({offset, "wrong shape", "a journal header that is not the first line"});
        return;
      }
      FieldReader fields(document);
      schema_version_ = static_cast<int>(fields.integer("schema_version", 0, 1'000'000).value_or(0));
      generation_ = fields.unsigned_integer("generation").value_or(0);
      job_id_ = fields.string("job_id").value_or("");
      header_seen_ = true;
      if (!fields.ok()) problems_.push_back({offset, "wrong shape", fields.problem()});
    }
    // Any other type: a later version's record; skipped.
  }

  /// Whether the first line was seen, and its fields.
  bool header_seen() const noexcept { return header_seen_; }
  int schema_version() const noexcept { return schema_version_; }
  std::uint64_t generation() const noexcept { return generation_; }
  const std::string& job_id() const noexcept { return job_id_; }

  /// The job's latest record, if a usable job line was read.
  const std::optional<JobRecord>& job() const noexcept { return job_; }
  /// Why the latest job line was unusable (empty when it was fine).
  const std::string& job_problem() const noexcept { return job_problem_; }

  /// The workers, in the order they first appeared.
  std::size_t worker_count() const noexcept { return workers_.size(); }
  /// The `i`th worker, its latest line parsed.
  const JournalWorker& worker(std::size_t i) { return parse(workers_[i]); }
  /// The `i`th worker's id and latest line as text (without the newline),
  /// unparsed: what a compaction copies.
  const std::string& worker_id(std::size_t i) const { return workers_[i].id; }
  const std::string& worker_line(std::size_t i) const { return workers_[i].line; }
  /// The worker `id`, or nullptr.
  const JournalWorker* find(const std::string& id) {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &parse(workers_[it->second]);
  }
  /// The index of worker `id`, or -1.
  long index_of(const std::string& id) const {
    auto it = index_.find(id);
    return it == index_.end() ? -1 : static_cast<long>(it->second);
  }

  /// The indexes of the workers whose line changed since the last call
  /// (each once), and whether the job's line did.
  std::vector<std::size_t> take_changed_workers() {
    std::vector<std::size_t> out;
    out.swap(changed_);
    for (std::size_t i : out) workers_[i].changed_listed = false;
    return out;
  }
  bool take_job_changed() noexcept { return std::exchange(job_changed_, false); }

  /// Records a problem the follower found (an oversized line).
  void note(JournalProblem problem) { problems_.push_back(std::move(problem)); }

  /// Lines that could not be used, in the order found.
  const std::vector<JournalProblem>& problems() const noexcept { return problems_; }

  /// How many times the fold was started anew.
  std::uint64_t resets() const noexcept { return resets_; }

 private:
  struct Slot : JournalWorker {
    bool changed_listed = false;
  };

  void take_worker(std::string id, std::string_view line, std::uint64_t offset) {
    auto it = index_.find(id);
    std::size_t i;
    if (it == index_.end()) {
      i = workers_.size();
      workers_.emplace_back();
      workers_.back().id = id;
      index_.emplace(std::move(id), i);
    } else {
      i = it->second;
    }
    Slot& slot = workers_[i];
    slot.line.assign(line.data(), line.size());
    slot.offset = offset;
    slot.parsed = false;
    if (!slot.changed_listed) {
      slot.changed_listed = true;
      changed_.push_back(i);
    }
  }

  static JournalWorker& parse(Slot& slot) {
    if (slot.parsed) return slot;
    slot.parsed = true;
    slot.ok = false;
    slot.info = WorkerInfo{};
    slot.argv.reset();
    slot.updated_at.reset();
    slot.problem.clear();
    nlohmann::json document =
        nlohmann::json::parse(slot.line.begin(), slot.line.end(), nullptr, /*allow_exceptions=*/false);
    if (document.is_discarded()) {
      slot.problem = "not valid JSON";
      return slot;
    }
    std::string problem;
    if (!worker_line_from_json(document, slot.info, slot.updated_at, problem)) {
      slot.problem = "wrong shape: " + problem;
      return slot;
    }
    if (slot.info.id != slot.id) {
      slot.problem = "wrong shape: id is not \"" + slot.id + "\"";
      return slot;
    }
    slot.argv = std::make_shared<const std::vector<std::string>>(slot.info.argv);
    slot.ok = true;
    return slot;
  }

  bool header_seen_ = false;
  int schema_version_ = 0;
  std::uint64_t generation_ = 0;
  std::string job_id_;
  std::optional<JobRecord> job_;
  std::string job_problem_;
  bool job_changed_ = false;
  std::deque<Slot> workers_;  // grows without moving its (large) slots
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::size_t> changed_;
  std::vector<JournalProblem> problems_;
  std::uint64_t resets_ = 0;
};

/// Reads a whole journal into `fold` (a reader that reads once: recovery,
/// `jobwarden stop`, `list`, `clean`). Errors as `JournalFollower::follow`.
inline std::error_code read_journal(int job_dir_fd, JournalFold& fold) {
  JournalFollower follower;
  try {
    return follower.follow(
        job_dir_fd, [&] { fold.reset(); }, [&](std::string_view line, std::uint64_t offset) { fold.apply(line, offset); },
        [&](JournalProblem problem) { fold.note(std::move(problem)); });
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

/// Why a journal is not read by this version: its first line names another
/// `schema_version`. Empty when it names this one, or when there is no first
/// line yet (a journal being created). Readers answer
/// `errc::unsupported_layout` for such a journal, as for a schema 1 directory.
inline std::string journal_schema_problem(const JournalFold& fold) {
  if (!fold.header_seen() || fold.schema_version() == journal_schema_version) return {};
  return "schema_version " + std::to_string(fold.schema_version()) + " is not " +
         std::to_string(journal_schema_version) + ", the only one this version reads";
}

/// Whether the job directory `job_dir_fd` holds a schema 1 job (a `job.json`
/// and no journal): readers answer `errc::unsupported_layout` for it.
inline bool is_legacy_job_dir(int job_dir_fd) noexcept {
  struct stat info {};
  if (::fstatat(job_dir_fd, journal_file_name, &info, AT_SYMLINK_NOFOLLOW) == 0) return false;
  return ::fstatat(job_dir_fd, legacy_job_file_name, &info, AT_SYMLINK_NOFOLLOW) == 0;
}

/// Whether the job directory `job_dir_fd` holds a schema 1 job that had
/// finished: its `job.json` names a terminal state. Only such a job may be
/// replaced by a new one under its id (`replace_finished_job`): recovery does
/// not read schema 1, so a job that never finished may still have workers
/// running, and its `job.json` is then the only record of them.
inline bool is_finished_legacy_job(int job_dir_fd) noexcept {
  try {
    if (!is_legacy_job_dir(job_dir_fd)) return false;
    std::string text;
    if (read_file_at(job_dir_fd, legacy_job_file_name, text)) return false;
    const nlohmann::json document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!document.is_object()) return false;
    const auto state = document.find("state");
    if (state == document.end() || !state->is_string()) return false;
    const auto parsed = job_state_from_string(state->get_ref<const std::string&>());
    return parsed && is_terminal(*parsed);
  } catch (...) {
    return false;
  }
}

}  // namespace jobwarden::detail
