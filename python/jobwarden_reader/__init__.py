"""Read a jobwarden job directory without jobwarden: standard library only.

An importable module (a web host imports it instead of copying it):

    import jobwarden_reader
    status = jobwarden_reader.read_job("/var/lib/jobs", "scan-42")
    print(status["done"], "of", status["total"], "done")

`read_job(root, job_id)` and `aggregate(job_dir)` return the aggregated status
as a dict; `summary_lines(status)` gives the human-readable lines. From a
shell: `python3 -m jobwarden_reader ...`, the `jobwarden-read-job` command of
`pip install python/`, or examples/python/read_job.py, all the same program:

This is what a web endpoint in another language (a FastAPI
`GET /scan/{job_id}`) does to show a job: fold the supervisor's journal
(`journal.jsonl`), read the workers' own reports (`workers/<id>.status.json`),
merge them with the same rules as the C++ StatusAggregator
(docs/job-directory.md), and print "X of Y done", what runs, what failed and
why. `--json` prints the aggregated status (docs/contract.md) instead
(schemas/aggregated-status.schema.json).

    python3 -m jobwarden_reader /var/lib/jobs/scan-42
    python3 -m jobwarden_reader --root /var/lib/jobs --job scan-42 --json

Like the C++ reader it never follows a symlink inside the job directory, never
reads a status file larger than 1 MiB or a journal line longer than 1 MiB,
never creates anything (the lock file is probed, not created), and reports a
bad file or a bad journal line instead of failing. Of the journal it reads
whole lines only: a last line without its newline is being written (or was
torn by a crash) and is left alone. Of a log file it reads only the last
2 KiB, for `stderr_tail`. A job directory of an older jobwarden (schema 1:
`job.json` and a directory per worker) is refused with a message that says so.
"""

import argparse
import datetime
import errno
import fcntl
import json
import os
import re
import socket
import stat
import sys

# The aggregated status this prints (schemas/aggregated-status.schema.json).
SCHEMA_VERSION = 1
# The journal's format (its first line) and a worker's status file
# (include/jobwarden/detail/job_files.hpp).
JOURNAL_SCHEMA_VERSION = 2
STATUS_SCHEMA_VERSION = 1
MAX_FILE_SIZE = 1 << 20
MAX_JOURNAL_LINE = 1 << 20
ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
TERMINAL = {"succeeded", "failed", "crashed", "timed_out", "stalled", "cancelled", "spawn_failed", "lost"}
WORKER_STATES = TERMINAL | {"pending", "running"}
JOB_STATES = {"pending", "running", "idle", "succeeded", "failed", "cancelled", "lost"}
JOB_TERMINAL = {"succeeded", "failed", "cancelled", "lost"}

# The names on disk (include/jobwarden/detail/job_files.hpp).
JOURNAL_FILE, LOCK_FILE, WORKERS_DIR = "journal.jsonl", "supervisor.lock", "workers"
LEGACY_JOB_FILE = "job.json"
STATUS_SUFFIX, STDOUT_SUFFIX, STDERR_SUFFIX = ".status.json", ".stdout.log", ".stderr.log"
# What a worker line starts with: its id can be split off without parsing it.
WORKER_PREFIX = b'{"type":"worker","id":"'
# Most bytes of a stderr log quoted as `stderr_tail`.
STDERR_TAIL_BYTES = 2048


class UnsupportedLayout(Exception):
    """A job directory written by an older jobwarden (schema 1)."""


class BadFile(Exception):
    """A file that cannot be used; `error` is the short phrase for `errors`."""

    def __init__(self, error, detail=""):
        super().__init__(error)
        self.error, self.detail = error, detail


def parse_time(text):
    """An RFC 3339 timestamp as an aware datetime, or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def format_time(moment):
    """RFC 3339 UTC with milliseconds: 2026-11-21T10:00:00.123Z."""
    if moment is None:
        return None
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def open_dir(name, dir_fd=None):
    """Opens a directory without following a symlink."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ENOTDIR and dir_fd is not None:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise BadFile("symbolic link not followed") from e
            raise BadFile("not a directory") from e
        if e.errno == errno.ELOOP:
            raise BadFile("symbolic link not followed") from e
        raise


def open_regular(dir_fd, name):
    """A descriptor of the regular file `name` in `dir_fd` (never through a
    symbolic link, never blocking on a FIFO), None if it is missing; BadFile
    otherwise. The caller closes it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise BadFile("symbolic link not followed") from e
        raise BadFile("unreadable", e.strerror) from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadFile("not a regular file")
    return fd


def read_json(dir_fd, name):
    """The parsed JSON object in `name`, None if it is missing; BadFile otherwise."""
    fd = open_regular(dir_fd, name)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if info.st_size > MAX_FILE_SIZE:
            raise BadFile("oversized", f"{info.st_size} bytes, more than the limit of {MAX_FILE_SIZE}")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_FILE_SIZE:
                raise BadFile("oversized")
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        document = json.loads(b"".join(chunks))
    except ValueError as e:
        raise BadFile("not valid JSON", str(e)) from e
    if not isinstance(document, dict):
        raise BadFile("wrong shape", "not a JSON object")
    if document.get("schema_version") != STATUS_SCHEMA_VERSION:
        raise BadFile("wrong shape", f"unsupported schema_version {document.get('schema_version')!r}")
    return document


def lock_held(job_fd):
    """True/False when the supervisor lock can be probed, None when it cannot."""
    try:
        fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=job_fd)
    except OSError:
        return None
    try:
        # Shared: two readers probing at once must not take each other for a supervisor.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)


def same_process(pid, start_time):
    """Whether pid still is the process that started at start_time, and still
    runs: a zombie (state Z or X) has exited (Linux /proc)."""
    if not isinstance(pid, int) or pid <= 0 or not start_time:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return False
    fields = text[text.rfind(")") + 2:].split()
    return len(fields) > 19 and fields[19] == str(start_time) and fields[0] not in ("Z", "X")


def string_or_none(value):
    return value if isinstance(value, str) else None


def optional_float(value):
    """A number field that may be absent or null (None then)."""
    return None if value is None else float(value)


class JournalFold:
    """The fold of a journal: its header, the job's latest usable record, and
    each worker's latest line (the last line of a worker wins, even when it
    is unusable: then the worker has no record and `errors` says why), in the
    order workers first appeared. Bad lines go to `problems` as
    (offset, error, detail) and are skipped; lines of an unknown `type` are
    skipped without a word (a later version may add some)."""

    def __init__(self):
        self.header = None
        self.job = None
        self.workers = {}  # id -> (offset, line bytes), first appearance order
        self.problems = []

    def apply(self, line, offset):
        if line.startswith(WORKER_PREFIX):
            end = line.find(b'"', len(WORKER_PREFIX))
            if end >= 0:
                worker_id = line[len(WORKER_PREFIX):end].decode("utf-8", "replace")
                if ID_PATTERN.match(worker_id):
                    self.workers[worker_id] = (offset, line)
                    return
        try:
            document = json.loads(line)
        except ValueError:
            self.problems.append((offset, "not valid JSON", printable(line)))
            return
        if not isinstance(document, dict):
            self.problems.append((offset, "not valid JSON", printable(line)))
            return
        kind = document.get("type")
        if not isinstance(kind, str):
            self.problems.append((offset, "wrong shape", 'no "type"'))
        elif kind == "worker":
            worker_id = document.get("id")
            if not isinstance(worker_id, str) or not ID_PATTERN.match(worker_id):
                self.problems.append((offset, "wrong shape", 'a worker line without a valid "id"'))
                return
            self.workers[worker_id] = (offset, line)
        elif kind == "job":
            problem = job_line_problem(document)
            if problem:
                self.problems.append((offset, "wrong shape", problem))
            else:
                self.job = document
        elif kind == "journal":
            if offset != 0:
                # Only the first line is the header.
                self.problems.append((offset, "wrong shape", "a journal header that is not the first line"))
            else:
                self.header = document


def printable(line, limit=120):
    text = line[:limit].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text) + ("..." if len(line) > limit else "")


def job_line_problem(document):
    """Why a job line cannot be used, or None."""
    state = document.get("state")
    if state not in JOB_STATES:
        if state is None:
            return "state is missing"
        return f'state "{state[:40]}" is not a job state' if isinstance(state, str) else "state is not a string"
    for key in ("created_at", "updated_at", "ended_at", "resumed_at"):
        if document.get(key) is not None and parse_time(document.get(key)) is None:
            return f"{key} is not a timestamp"
    if document.get("halted") is not None and not isinstance(document.get("halted"), str):
        return "halted is not a string"
    supervisor = document.get("supervisor")
    if supervisor is not None and not isinstance(supervisor, dict):
        return "supervisor is not an object"
    code = (supervisor or {}).get("exit_status")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool) or abs(code) > 0x7fffffff):
        return "supervisor.exit_status is not an integer"
    return None


def worker_line_problem(document, worker_id):
    """Why a worker line cannot be used, or None."""
    state = document.get("state")
    if state not in WORKER_STATES:
        if state is None:
            return "state is missing"
        return f'state "{state[:40]}" is not a worker state' if isinstance(state, str) else "state is not a string"
    if document.get("id") != worker_id:
        return f'id is not "{worker_id}"'
    for key in ("started_at", "ended_at", "updated_at"):
        if document.get(key) is not None and parse_time(document.get(key)) is None:
            return f"{key} is not a timestamp"
    for key in ("attempt", "pid", "process_start_time", "exit_code"):
        value = document.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{key} is not an integer"
    if document.get("paused") is not None and not isinstance(document.get("paused"), bool):
        return "paused is not true or false"
    usage = document.get("usage")
    if usage is not None and not isinstance(usage, dict):
        return "usage is not an object"
    argv = document.get("argv")
    if argv is not None:
        if not isinstance(argv, list):
            return "argv is not an array"
        if not all(isinstance(arg, str) for arg in argv):
            return "argv is not an array of strings"
    label = document.get("label")
    if label is not None and not isinstance(label, str):
        return "label is not a string"
    return None


def read_journal(job_fd):
    """The fold of the job's journal, None when there is none; BadFile when
    it cannot be read. Whole lines only: what follows the last newline is a
    line being written (or torn) and is left for a later read. A compaction
    renames a new journal over the name; the descriptor read here keeps the
    file it opened, whose lines (up to its last newline) are a whole journal."""
    fd = open_regular(job_fd, JOURNAL_FILE)
    if fd is None:
        return None
    fold = JournalFold()
    try:
        pending, position, skipping = b"", 0, False  # file offset of pending[0]
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            pending += chunk
            start = 0
            while True:
                newline = pending.find(b"\n", start)
                if newline < 0:
                    break
                if skipping:
                    pass
                elif newline - start > MAX_JOURNAL_LINE:
                    fold.problems.append((position + start, "oversized line", "a line of more than 1 MiB is not read"))
                else:
                    fold.apply(pending[start:newline], position + start)
                skipping = False
                start = newline + 1
            pending = pending[start:]
            position += start
            if not skipping and len(pending) > MAX_JOURNAL_LINE:
                fold.problems.append((position, "oversized line", "a line of more than 1 MiB is not read"))
                skipping = True
            if skipping:
                position += len(pending)
                pending = b""
    except OSError as e:
        raise BadFile("unreadable", e.strerror) from e
    finally:
        os.close(fd)
    return fold


def is_legacy_job_dir(job_fd):
    """A schema 1 job: a `job.json` and no journal."""
    def exists(name):
        try:
            os.stat(name, dir_fd=job_fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False
    return not exists(JOURNAL_FILE) and exists(LEGACY_JOB_FILE)


def aggregate(job_dir, stale_after=30.0, now=None):
    """The aggregated status (docs/contract.md) for the job directory
    `job_dir`. UnsupportedLayout for a schema 1 job directory or a journal of
    another schema version."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    job_id = os.path.basename(os.path.abspath(job_dir))
    errors = []
    job_fd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if is_legacy_job_dir(job_fd):
            raise UnsupportedLayout(
                f"{job_dir}: job directory of an older jobwarden (schema 1: job.json and "
                "workers/<id>/process.json); read it with that version, or remove it")
        fold, journal_bad = None, False
        try:
            fold = read_journal(job_fd)
        except BadFile as bad:
            journal_bad = True
            errors.append({"path": JOURNAL_FILE, "error": bad.error, "detail": bad.detail})
        if fold is not None:
            header = fold.header
            if header is None:
                if fold.job is not None or fold.workers:
                    errors.append({"path": JOURNAL_FILE, "error": "wrong shape",
                                   "detail": "line at byte 0: the first line is not the journal's header"})
            elif header.get("schema_version") != JOURNAL_SCHEMA_VERSION:
                raise UnsupportedLayout(
                    f"{job_dir}: {JOURNAL_FILE} names schema_version {header.get('schema_version')!r}; "
                    f"this reader reads {JOURNAL_SCHEMA_VERSION} only")
            for offset, error, detail in fold.problems:
                errors.append({"path": JOURNAL_FILE, "error": error, "detail": f"line at byte {offset}: {detail}"})
        record = fold.job if fold is not None else None
        # No job line at all: only when nothing else could have been it (a
        # bad line, an unreadable journal, which `errors` already names).
        record_missing = record is None and not journal_bad and not (fold and fold.problems)
        supervisor = (record or {}).get("supervisor") or {}
        held = lock_held(job_fd)
        if held is None:
            local = supervisor.get("hostname") in (None, "", socket.gethostname())
            alive = same_process(supervisor.get("pid"), supervisor.get("start_time")) if local else True
        else:
            alive = held
        if record_missing and not alive:
            errors.append({"path": JOURNAL_FILE, "error": "missing", "detail":
                           "no supervisor recorded this job: its start was interrupted, or its journal was removed"
                           if fold is None else
                           "no job line: no supervisor recorded this job, or its start was interrupted"})
        # The supervisor's records: each worker's latest line, parsed.
        lines = {}
        for worker_id, (offset, line) in (fold.workers.items() if fold is not None else ()):
            try:
                document = json.loads(line)
                problem = None if isinstance(document, dict) else "not valid JSON"
            except ValueError:
                document, problem = None, "not valid JSON"
            if problem is None:
                problem = worker_line_problem(document, worker_id)
                problem = problem and "wrong shape: " + problem
            if problem is None:
                lines[worker_id] = document
            else:
                lines[worker_id] = None
                error, _, detail = problem.partition(": ")
                errors.append({"path": JOURNAL_FILE, "error": error,
                               "detail": f"line at byte {offset}: worker {worker_id}" + (f": {detail}" if detail else "")})
        # The workers' own files: one flat directory, `<id>.status.json`,
        # `<id>.stdout.log`, `<id>.stderr.log`.
        files = {}
        try:
            workers_fd = open_dir(WORKERS_DIR, job_fd)
        except FileNotFoundError:
            workers_fd = None
        except BadFile as bad:
            workers_fd = None
            errors.append({"path": WORKERS_DIR, "error": bad.error, "detail": bad.detail})
        workers, any_unfinished = [], False
        try:
            if workers_fd is not None:
                for name in sorted(os.listdir(workers_fd)):
                    if name.startswith("."):
                        continue  # a temporary of an atomic write
                    for suffix in (STATUS_SUFFIX, STDOUT_SUFFIX, STDERR_SUFFIX):
                        if name.endswith(suffix) and len(name) > len(suffix):
                            worker_id = name[:-len(suffix)]
                            if ID_PATTERN.match(worker_id):  # anything else is not a worker's file
                                files.setdefault(worker_id, set()).add(suffix)
                            break
            # A worker is one with a journal line or a file of its own.
            ids = set(lines) | set(files)
            for worker_id in sorted(ids, key=natural_key):
                worker, unfinished = read_worker(workers_fd, worker_id, lines.get(worker_id), alive, stale_after,
                                                 now, errors, os.path.join(job_dir, WORKERS_DIR))
                workers.append(worker)
                any_unfinished = any_unfinished or unfinished
        finally:
            if workers_fd is not None:
                os.close(workers_fd)
    finally:
        os.close(job_fd)

    summary = {"total": len(workers), "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "done": 0}
    lists = {"running": [], "pending": [], "completed": [], "failed": []}
    for worker in workers:
        state = worker["state"]
        if state in ("pending", "running"):
            summary[state] += 1
            lists[state].append(worker["id"])
        else:
            summary["done"] += 1
            key = "succeeded" if state == "succeeded" else "failed"
            summary[key] += 1
            lists["completed" if state == "succeeded" else "failed"].append(worker["id"])
    recorded_state = (record or {}).get("state")
    if recorded_state in JOB_TERMINAL:
        state = recorded_state
    elif alive and recorded_state == "idle" and summary["done"] == summary["total"]:
        state = "idle"  # alive with nothing to do, as its supervisor wrote, and no worker says otherwise
    elif alive:
        state = "pending" if summary["pending"] == summary["total"] else "running"
    elif any_unfinished or not workers or record_missing:
        state = "lost"  # its supervisor died before it finished, or before it started its journal
    elif any(w["state"] == "lost" for w in workers):
        state = "lost"
    elif any(w["state"] == "cancelled" for w in workers):
        state = "cancelled"
    elif summary["failed"]:
        state = "failed"
    else:
        state = "succeeded"
    times = [parse_time((record or {}).get("updated_at"))] + [parse_time(w["last_update"]) for w in workers]
    last_update = max((t for t in times if t), default=None)
    created_at, ended_at = parse_time((record or {}).get("created_at")), parse_time((record or {}).get("ended_at"))
    # A resumed job's elapsed time is its latest run's.
    start = parse_time((record or {}).get("resumed_at")) or created_at
    if state == "lost":
        # How long it ran: to its last sign of life (a worker still running: now).
        until = now if lists["running"] else (last_update or start)
        if ended_at and until and ended_at < until:
            until = ended_at
    else:
        until = ended_at if (ended_at and state in JOB_TERMINAL) else now
    elapsed = max(0.0, round((until - start).total_seconds(), 3)) if (start and until) else 0.0
    return {
        "schema_version": SCHEMA_VERSION, "job_id": job_id, "state": state, "summary": summary,
        "elapsed_seconds": elapsed, "last_update": format_time(last_update),
        "created_at": format_time(created_at), "ended_at": format_time(ended_at),
        "supervisor": {"pid": supervisor.get("pid"), "alive": alive, "hostname": supervisor.get("hostname", ""),
                       "exit_status": supervisor.get("exit_status")},
        "workers": workers, **lists, "errors": errors,
    }


def log_file(workers_fd, name, want_tail):
    """(exists, tail) of log `name`: BadFile for a symlink or a special file.
    The tail is the last STDERR_TAIL_BYTES bytes, from a line start when they
    hold one, as text with invalid UTF-8 replaced (docs/contract.md)."""
    try:
        info = os.stat(name, dir_fd=workers_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False, None
    if stat.S_ISLNK(info.st_mode):
        raise BadFile("symbolic link not followed")
    if not stat.S_ISREG(info.st_mode):
        raise BadFile("not a regular file")
    if not want_tail:
        return True, None
    fd = open_regular(workers_fd, name)
    if fd is None:
        return False, None
    try:
        info = os.fstat(fd)
        cut = info.st_size > STDERR_TAIL_BYTES
        start = info.st_size - STDERR_TAIL_BYTES - 1 if cut else 0
        end = os.pread(fd, info.st_size - start, start)
    finally:
        os.close(fd)
    whole = not cut
    if cut and end:
        whole, end = end[:1] == b"\n", end[1:]
    if not whole:
        newline = end.find(b"\n")
        if 0 <= newline < len(end) - 1:
            end = end[newline + 1:]
        else:
            for _ in range(3):  # at least not half a character
                if end and end[0] & 0xC0 == 0x80:
                    end = end[1:]
    text = end.decode("utf-8", errors="replace")
    while len(text.encode("utf-8")) > STDERR_TAIL_BYTES:
        text = text[1:]
    return True, text


def read_worker(workers_fd, name, process, supervisor_alive, stale_after, now, errors, workers_dir=None):
    """One worker merged from its latest journal line (`process`, None when
    it has none or it is unusable) and its `<id>.status.json` (see
    docs/job-directory.md), with its log paths (`workers_dir` joined with the
    log's name) and, when it ended without succeeding, the end of its stderr log."""
    status = None
    status_name = name + STATUS_SUFFIX
    if workers_fd is not None:
        try:
            status = read_json(workers_fd, status_name)
        except BadFile as bad:
            errors.append({"path": f"{WORKERS_DIR}/{status_name}", "error": bad.error, "detail": bad.detail})
    if status is not None and status.get("state") not in WORKER_STATES | {None}:
        errors.append({"path": f"{WORKERS_DIR}/{status_name}", "error": "wrong shape", "detail": "state"})
        status = None
    if process and status and (status.get("attempt") or 0) and (process.get("attempt") or 0) > status["attempt"]:
        status = None  # a report from an earlier attempt

    worker = {"id": name, "state": "pending", "pid": None, "attempt": 0, "exit_code": None, "signal": None,
              "core_dumped": False, "progress": None, "message": None, "result": None, "error": None,
              "started_at": None, "ended_at": None, "last_update": None, "stale": False,
              "reported_state": None, "seq": 0, "usage": None, "stdout_log": None, "stderr_log": None,
              "stderr_tail": None, "argv": None, "label": None, "paused": False}
    times, sign_of_life = [], []
    if process:
        # The supervisor's record is authoritative for state, pid and exit.
        for key in ("state", "pid", "exit_code", "signal"):
            worker[key] = process.get(key)
        for key in ("started_at", "ended_at"):
            worker[key] = format_time(parse_time(process.get(key)))
        worker["attempt"] = process.get("attempt") or 0
        worker["core_dumped"] = bool(process.get("core_dumped"))
        worker["error"] = string_or_none(process.get("error")) or None
        # The command and label come from the journal alone; an empty label is none.
        worker["argv"] = list(process.get("argv") or [])
        worker["label"] = process.get("label") or None
        worker["paused"] = process.get("paused") is True
        usage = process.get("usage")
        if worker["ended_at"] and isinstance(usage, dict):
            worker["usage"] = {"user_cpu_seconds": float(usage.get("user_cpu_seconds") or 0),
                               "system_cpu_seconds": float(usage.get("system_cpu_seconds") or 0),
                               "max_rss_kib": int(usage.get("max_rss_kib") or 0),
                               # The whole tree's, from the worker's cgroup: null without one.
                               "tree_user_cpu_seconds": optional_float(usage.get("tree_user_cpu_seconds")),
                               "tree_system_cpu_seconds": optional_float(usage.get("tree_system_cpu_seconds"))}
        times += [parse_time(process.get(k)) for k in ("updated_at", "started_at", "ended_at")]
        sign_of_life.append(parse_time(process.get("started_at")))
    if status:
        worker.update(progress=status.get("progress"), message=string_or_none(status.get("message")),
                      result=status.get("result"), reported_state=status.get("state"), seq=status.get("seq") or 0)
        worker["error"] = worker["error"] or string_or_none(status.get("error"))
        times.append(parse_time(status.get("updated_at")))
        sign_of_life.append(parse_time(status.get("updated_at")))
        if not process:
            worker.update(state=status.get("state") or "running", pid=status.get("pid"), attempt=status.get("attempt") or 0)
        elif worker["state"] == "pending" and status.get("state") == "running":
            worker["state"] = "running"
    unfinished = worker["state"] not in TERMINAL
    if unfinished and not supervisor_alive:
        runs = (process and same_process(process.get("pid"), process.get("process_start_time"))) or \
               (status and same_process(status.get("pid"), status.get("process_start_time")))
        worker["state"] = "running" if runs else "lost"
    if worker["state"] != "running":
        worker["paused"] = False  # a flag of running workers only
    if workers_fd is not None:
        for suffix, key in ((STDOUT_SUFFIX, "stdout_log"), (STDERR_SUFFIX, "stderr_log")):
            log_name = name + suffix
            want_tail = suffix == STDERR_SUFFIX and worker["state"] in TERMINAL - {"succeeded"}
            try:
                exists, tail = log_file(workers_fd, log_name, want_tail)
            except BadFile as bad:
                errors.append({"path": f"{WORKERS_DIR}/{log_name}", "error": bad.error, "detail": bad.detail})
                continue
            if exists:
                worker[key] = os.path.join(workers_dir, log_name) if workers_dir else log_name
                if want_tail:
                    worker["stderr_tail"] = tail
    moments = [t for t in times if t]
    worker["last_update"] = format_time(max(moments)) if moments else None
    alive_at = [t for t in sign_of_life if t]
    if worker["state"] == "running" and alive_at:
        worker["stale"] = (now - max(alive_at)).total_seconds() > stale_after
    return worker, unfinished


def natural_key(name):
    """'2' before '10': digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def name_of(worker):
    """The worker's id, and its label when it has one (on one line)."""
    label = worker.get("label")
    return f"{worker['id']} ({' '.join(label.split())})" if label else worker["id"]


def why(worker):
    """How a finished worker ended, in words."""
    state = worker["state"]
    if state == "failed":
        text = f"exit code {worker['exit_code']}"
    elif state == "crashed":
        text = f"killed by {worker['signal']}" + (" (core dumped)" if worker["core_dumped"] else "")
    else:
        text = state.replace("_", " ")
    return text + (f": {worker['error']}" if worker["error"] else "")


def describe_progress(progress):
    if isinstance(progress, dict) and isinstance(progress.get("done"), (int, float)) and progress.get("total"):
        return f"{progress['done']}/{progress['total']}"
    return json.dumps(progress) if progress is not None else ""


def summary_lines(status):
    """The human-readable summary of an aggregated status, as lines: "X of Y
    done", what runs, what failed and why, what could not be read."""
    s = status["summary"]
    lines = [f"{status['job_id']}: {status['state']} - {s['done']} of {s['total']} done "
             f"({s['succeeded']} succeeded, {s['failed']} failed), {s['running']} running, {s['pending']} pending, "
             f"{status['elapsed_seconds']:.1f}s"]
    if not status["supervisor"]["alive"] and status["state"] not in ("succeeded", "failed", "cancelled"):
        lines.append(f"  supervisor (pid {status['supervisor']['pid']}) is not running")
    for worker in status["workers"]:
        if worker["state"] == "running":
            line = f"  running {name_of(worker)}: {describe_progress(worker['progress'])} {worker['message'] or ''}"
            lines.append(line.rstrip() + ("  [stale]" if worker["stale"] else ""))
    for worker in status["workers"]:
        if worker["state"] not in ("pending", "running", "succeeded"):
            lines.append(f"  failed {name_of(worker)}: {why(worker)}")
    for error in status["errors"]:
        lines.append(f"  unreadable {error['path']}: {error['error']}")
    return lines


def print_summary(status, file=None):
    for line in summary_lines(status):
        print(line, file=file or sys.stdout)


def read_job(root, job_id, stale_after=30.0, now=None):
    """The aggregated status of job `job_id` under the root directory `root`.
    ValueError for an id that is not a job id (it could name a path outside
    `root`); UnsupportedLayout and OSError as for `aggregate`."""
    if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return aggregate(os.path.join(root, job_id), stale_after, now)


def main(argv=None, prog=None):
    """The command line: prints the summary, or the aggregated JSON with
    `--json`. Returns the exit status (0, or 2 when the job cannot be read)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("job_dir", nargs="?", help="the job directory (<root>/<job id>)")
    parser.add_argument("--root", help="the root directory of the jobs")
    parser.add_argument("--job", help="the job id (with --root)")
    parser.add_argument("--json", action="store_true", help="print the aggregated JSON")
    parser.add_argument("--stale", type=float, default=30.0, help="seconds of silence before a worker is stale")
    args = parser.parse_args(argv)
    if args.job_dir:
        job_dir = args.job_dir
    elif args.root and args.job:
        if not ID_PATTERN.match(args.job):
            parser.error(f"invalid job id {args.job!r}")
        job_dir = os.path.join(args.root, args.job)
    else:
        parser.error("give a job directory, or --root and --job")
    try:
        status = aggregate(job_dir, args.stale)
    except UnsupportedLayout as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{parser.prog}: cannot read {job_dir}: {e.strerror}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_summary(status)
    return 0


__all__ = ["aggregate", "read_job", "summary_lines", "print_summary", "main",
           "UnsupportedLayout", "BadFile", "SCHEMA_VERSION", "JOB_STATES", "WORKER_STATES"]
