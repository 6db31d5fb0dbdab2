#!/usr/bin/env python3
"""Tests of python/jobwarden_reader (and its command line
examples/python/read_job.py), the standard-library reader of a job directory, on crafted job directories (docs/job-directory.md, "The journal:
a contract for readers in other languages"). Needs no build:

    python3 tests/cli/test_read_job.py -v

tests/cli/test_cli.py compares it with the C++ reader on real jobs.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
READER = os.path.join(SOURCE, "examples", "python", "read_job.py")
PACKAGE_DIR = os.path.join(SOURCE, "python")
sys.path.insert(0, PACKAGE_DIR)
import jobwarden_reader as read_job  # noqa: E402  (the module hosts import, found through the path above)

NOW = datetime.datetime(2026, 12, 2, 10, 1, 0, tzinfo=datetime.timezone.utc)


def header(generation=1, version=2, job="scan"):
    return json.dumps({"type": "journal", "schema_version": version, "job_id": job, "generation": generation},
                      separators=(",", ":")) + "\n"


def job_line(state, updated="2026-12-02T10:00:00.000Z", ended=None, pid=999999999, start_time=1):
    return json.dumps({"type": "job", "job_id": "scan", "state": state, "created_at": "2026-12-02T10:00:00.000Z",
                       "updated_at": updated, "ended_at": ended,
                       "supervisor": {"pid": pid, "start_time": start_time, "hostname": "", "cgroup": None},
                       "summary": None}, separators=(",", ":")) + "\n"


def worker_line(worker_id, state, attempt=1, exit_code=None, ended=None, pid=None, start_time=None, label=None,
                argv=None, paused=False):
    # The writer's field order: "type" and "id" first (job_format.hpp, worker_line_text); "label" last, only
    # when there is one.
    line = {"type": "worker", "id": worker_id, "attempt": attempt, "state": state, "paused": paused, "pid": pid,
            "process_start_time": start_time, "exit_code": exit_code, "signal": None,
            "core_dumped": False, "error": None, "started_at": "2026-12-02T10:00:01.000Z",
            "ended_at": ended, "updated_at": ended or "2026-12-02T10:00:01.000Z",
            "usage": {"max_rss_kib": 512, "system_cpu_seconds": 0.25, "user_cpu_seconds": 0.5}
            if ended else None, "argv": ["scan", worker_id] if argv is None else argv}
    if label is not None:
        line["label"] = label
    return json.dumps(line, separators=(",", ":")) + "\n"


class ReadJob(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="read-job-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.job = os.path.join(self.tmp, "scan")
        os.makedirs(os.path.join(self.job, "workers"))

    def write(self, name, text, mode="w"):
        with open(os.path.join(self.job, name), mode) as f:
            f.write(text)

    def read(self):
        return read_job.aggregate(self.job, now=NOW)

    def worker(self, status, worker_id):
        return next(w for w in status["workers"] if w["id"] == worker_id)

    def test_the_last_line_of_each_worker_and_of_the_job_wins(self):
        self.write("journal.jsonl", header() + job_line("running") + worker_line("1", "pending", attempt=0) +
                   worker_line("2", "pending", attempt=0) + worker_line("1", "running", pid=4) +
                   worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:05.000Z") +
                   job_line("succeeded", ended="2026-12-02T10:00:06.000Z"))
        status = self.read()
        self.assertEqual(status["state"], "succeeded")  # the supervisor's verdict
        # Never started, and its supervisor is gone (no lock): lost.
        self.assertEqual([(w["id"], w["state"]) for w in status["workers"]], [("1", "succeeded"), ("2", "lost")])
        # A line without the whole tree's CPU (an older writer's) reads it as unknown, as C++ does.
        self.assertEqual(self.worker(status, "1")["usage"],
                         {"user_cpu_seconds": 0.5, "system_cpu_seconds": 0.25, "max_rss_kib": 512,
                          "tree_user_cpu_seconds": None, "tree_system_cpu_seconds": None})
        self.assertEqual(status["elapsed_seconds"], 6.0)
        self.assertEqual(status["errors"], [])

    def test_a_torn_last_line_is_left_unread(self):
        whole = header() + job_line("running") + worker_line("1", "running", pid=4)
        torn = worker_line("1", "failed", exit_code=3, ended="2026-12-02T10:00:05.000Z")
        self.write("journal.jsonl", whole + torn[:40])
        status = self.read()
        self.assertEqual(self.worker(status, "1")["state"], "lost")  # no supervisor lock: nothing runs it
        self.assertEqual(status["errors"], [])
        self.write("journal.jsonl", torn[40:], mode="a")  # the line completed
        self.assertEqual(self.worker(self.read(), "1")["state"], "failed")

    def test_bad_lines_are_errors_with_their_offset_and_unknown_types_are_skipped(self):
        before = header() + job_line("running")
        self.write("journal.jsonl", before + "not json at all\n" + '{"type":"from-the-future","x":1}\n' +
                   '{"no_type":1}\n' + worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z") +
                   job_line("succeeded", ended="2026-12-02T10:00:03.000Z"))
        status = self.read()
        offset = len(before.encode())
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]],
                         [("journal.jsonl", "not valid JSON"), ("journal.jsonl", "wrong shape")])
        self.assertTrue(status["errors"][0]["detail"].startswith(f"line at byte {offset}:"), status["errors"][0])
        self.assertEqual(self.worker(status, "1")["state"], "succeeded")

    def test_a_job_line_with_a_halted_that_is_not_text_is_unusable(self):
        # As the C++ reader (job_format.hpp): `halted` is a string or absent.
        halted = job_line("failed", ended="2026-12-02T10:00:03.000Z").replace('"summary":null', '"summary":null,"halted":3')
        before = header() + job_line("running")
        self.write("journal.jsonl", before + halted)
        status = self.read()
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]], [("journal.jsonl", "wrong shape")])
        self.assertIn("halted is not a string", status["errors"][0]["detail"])
        self.assertEqual(status["state"], "lost")  # the running line stands; nothing holds the lock
        text = job_line("failed", ended="2026-12-02T10:00:03.000Z").replace('"summary":null', '"summary":null,"halted":"why"')
        self.write("journal.jsonl", before + text)
        self.assertEqual((self.read()["state"], self.read()["errors"]), ("failed", []))

    def test_an_unusable_worker_line_is_an_error_and_leaves_the_worker_without_a_record(self):
        bad = '{"type":"worker","id":"7","state":"dancing"}\n'
        self.write("journal.jsonl", header() + job_line("running") + worker_line("7", "running", pid=4) + bad)
        self.write("workers/7.status.json", json.dumps({"schema_version": 1, "state": "running", "message": "m"}))
        status = self.read()
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]], [("journal.jsonl", "wrong shape")])
        self.assertIn('worker 7: state "dancing" is not a worker state', status["errors"][0]["detail"])
        self.assertEqual(self.worker(status, "7")["message"], "m")  # taken as its report says

    def test_an_oversized_line_is_skipped(self):
        self.write("journal.jsonl", header() + job_line("running") + "x" * (3 << 20) + "\n" +
                   worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z"))
        status = self.read()
        self.assertEqual([e["error"] for e in status["errors"]], ["oversized line"])
        self.assertEqual(self.worker(status, "1")["state"], "succeeded")

    def test_a_whole_line_just_over_the_limit_is_skipped_too(self):
        self.write("journal.jsonl", header() + job_line("running") + "y" * ((1 << 20) + 10) + "\n" +
                   worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z"))
        status = self.read()
        self.assertEqual([e["error"] for e in status["errors"]], ["oversized line"])
        self.assertEqual(self.worker(status, "1")["state"], "succeeded")

    def test_only_the_first_line_is_the_header(self):
        self.write("journal.jsonl", header() + job_line("running") + header(version=3, generation=9) +
                   worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z"))
        status = self.read()
        self.assertEqual([(e["error"], e["detail"].split(": ", 1)[1]) for e in status["errors"]],
                         [("wrong shape", "a journal header that is not the first line")])
        self.assertEqual(self.worker(status, "1")["state"], "succeeded")

    def test_a_journal_of_another_schema_version_is_not_read(self):
        self.write("journal.jsonl", header(version=3) + job_line("succeeded") + worker_line("1", "running"))
        with self.assertRaisesRegex(read_job.UnsupportedLayout, "schema_version 3"):
            self.read()
        result = subprocess.run([sys.executable, READER, self.job], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("schema_version 3", result.stderr)

    def test_a_compacted_journal_reads_like_the_long_one(self):
        lines = [worker_line("1", "running", attempt=a, pid=4) for a in range(1, 4)]
        last = worker_line("1", "failed", attempt=3, exit_code=1, ended="2026-12-02T10:00:05.000Z")
        end = job_line("failed", ended="2026-12-02T10:00:06.000Z")
        self.write("journal.jsonl", header() + job_line("running") + "".join(lines) + last + end)
        long = self.read()
        self.write("journal.jsonl", header(generation=2) + end + last)
        self.assertEqual(self.read(), long)

    def test_status_files_and_logs_are_flat_in_workers(self):
        self.write("journal.jsonl", header() + job_line("running") +
                   worker_line("1", "failed", exit_code=2, ended="2026-12-02T10:00:02.000Z") +
                   worker_line("2", "running", pid=4) + worker_line("3", "succeeded", exit_code=0,
                                                                   ended="2026-12-02T10:00:02.000Z"))
        self.write("workers/1.stderr.log", "first\nboom\n")
        self.write("workers/2.stdout.log", "out\n")
        self.write("workers/2.status.json", json.dumps({"schema_version": 1, "attempt": 1, "state": "running",
                                                        "progress": {"done": 1, "total": 4}}))
        self.write("workers/.2.status.json.tmp", "half")
        os.symlink("/etc/passwd", os.path.join(self.job, "workers", "3.stdout.log"))
        status = self.read()
        one, two, three = (self.worker(status, i) for i in ("1", "2", "3"))
        self.assertEqual((one["stderr_log"], one["stderr_tail"]),
                         (os.path.join(self.job, "workers", "1.stderr.log"), "first\nboom\n"))
        self.assertEqual(two["stdout_log"], os.path.join(self.job, "workers", "2.stdout.log"))
        self.assertEqual(two["progress"], {"done": 1, "total": 4})
        self.assertIsNone(three["stdout_log"])
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]],
                         [("workers/3.stdout.log", "symbolic link not followed")])

    def test_labels_and_argv_come_from_the_latest_journal_line(self):
        label = 'repo "core"\nsecond line\\ \u00e9t\u00e9'
        self.write("journal.jsonl", header() + job_line("running") +
                   worker_line("a", "pending", attempt=0, label=label, argv=["/bin/sh", "-c", "scan 'a b'"]) +
                   worker_line("a", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z", label=label,
                               argv=["/bin/sh", "-c", "scan 'a b'"]) +
                   worker_line("b", "succeeded", exit_code=0, ended="2026-12-02T10:00:02.000Z", label="") +
                   worker_line("c", "running", pid=4, label=7) +
                   worker_line("e", "failed", exit_code=3, ended="2026-12-02T10:00:02.000Z", label="two\nlines"))
        self.write("workers/d.status.json", json.dumps({"schema_version": 1, "state": "running"}))
        status = self.read()
        a, b, c, d = (self.worker(status, i) for i in "abcd")
        self.assertEqual((a["label"], a["argv"]), (label, ["/bin/sh", "-c", "scan 'a b'"]))
        self.assertEqual((b["label"], b["argv"]), (None, ["scan", "b"]))  # an empty label is none
        # A label that is not a string makes the line unusable, as the C++ reader says.
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]], [("journal.jsonl", "wrong shape")])
        self.assertIn("worker c: label is not a string", status["errors"][0]["detail"])
        self.assertEqual((c["label"], c["argv"]), (None, None))
        self.assertEqual((d["label"], d["argv"]), (None, None))  # known only by its own report
        self.assertEqual(self.worker(status, "e")["label"], "two\nlines")
        # The text printed for people names the label, on one line.
        text = subprocess.run([sys.executable, READER, self.job], capture_output=True, text=True, timeout=60).stdout
        self.assertIn("  failed e (two lines): exit code 3\n", text)
        self.assertIn("  failed d: lost\n", text)

    def test_paused_is_a_flag_of_running_workers_from_the_journal_line(self):
        # With its supervisor gone, a worker reads running only while its process runs: this one's.
        with open("/proc/self/stat") as f:
            own_start = int(f.read().rsplit(")", 1)[1].split()[19])
        self.write("journal.jsonl", header() + job_line("running") +
                   worker_line("a", "running", pid=os.getpid(), start_time=own_start, paused=True) +
                   worker_line("b", "running", pid=5) +
                   worker_line("c", "failed", exit_code=1, ended="2026-12-02T10:00:02.000Z", paused=True) +
                   worker_line("d", "running", pid=6, paused="yes"))
        status = self.read()
        self.assertEqual([self.worker(status, i)["state"] for i in "abc"], ["running", "lost", "failed"])
        self.assertEqual([self.worker(status, i)["paused"] for i in "abc"], [True, False, False])
        # Not true or false: the line is unusable, as the C++ reader says.
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]], [("journal.jsonl", "wrong shape")])
        self.assertIn("worker d: paused is not true or false", status["errors"][0]["detail"])
        self.assertFalse(self.worker(status, "d")["paused"])

    def test_a_symlinked_journal_is_refused(self):
        target = os.path.join(self.tmp, "elsewhere.jsonl")
        with open(target, "w") as f:
            f.write(header() + job_line("succeeded"))
        os.symlink(target, os.path.join(self.job, "journal.jsonl"))
        status = self.read()
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]],
                         [("journal.jsonl", "symbolic link not followed")])
        self.assertNotEqual(status["state"], "succeeded")

    def test_no_journal_and_no_live_supervisor_reads_lost(self):
        status = self.read()
        self.assertEqual(status["state"], "lost")
        self.assertEqual([(e["path"], e["error"]) for e in status["errors"]], [("journal.jsonl", "missing")])

    def test_idle_while_a_live_supervisor_says_so_and_no_worker_is_active(self):
        import fcntl
        lock = os.open(os.path.join(self.job, "supervisor.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        self.addCleanup(os.close, lock)
        fcntl.flock(lock, fcntl.LOCK_EX)  # a live supervisor holds it
        self.write("journal.jsonl", header() + job_line("idle"))
        self.assertEqual(self.read()["state"], "idle")  # no worker at all
        self.write("journal.jsonl", worker_line("1", "succeeded", exit_code=0, ended="2026-12-02T10:00:05.000Z") +
                   job_line("idle"), mode="a")
        self.assertEqual(self.read()["state"], "idle")  # finished workers only
        # A worker submitted since the idle job line: the workers decide.
        self.write("journal.jsonl", worker_line("2", "pending", attempt=0), mode="a")
        self.assertEqual(self.read()["state"], "running")
        self.write("journal.jsonl", worker_line("2", "succeeded", exit_code=0, ended="2026-12-02T10:00:07.000Z") +
                   job_line("idle"), mode="a")
        self.assertEqual(self.read()["state"], "idle")
        # The supervisor gone: idle is not final; what the workers imply.
        fcntl.flock(lock, fcntl.LOCK_UN)
        self.assertEqual(self.read()["state"], "succeeded")

    def test_a_schema_1_directory_is_refused_by_name(self):
        shutil.rmtree(os.path.join(self.job, "workers"))
        self.write("job.json", json.dumps({"schema_version": 1, "state": "succeeded"}))
        with self.assertRaises(read_job.UnsupportedLayout):
            self.read()
        result = subprocess.run([sys.executable, READER, self.job], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("schema 1", result.stderr)
        self.assertIn("job.json", result.stderr)


class AggregatedSchema(unittest.TestCase):
    """schemas/aggregated-status.schema.json accepts what the reader prints,
    labels and argv included."""

    def test_a_labelled_job(self):
        try:
            import jsonschema
        except ImportError:
            self.skipTest("SKIPPED: the jsonschema module is not installed")
        path = os.path.join(os.path.dirname(READER), "..", "..", "schemas", "aggregated-status.schema.json")
        with open(path) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        tmp = tempfile.mkdtemp(prefix="read-job-schema-")
        self.addCleanup(shutil.rmtree, tmp, True)
        job = os.path.join(tmp, "scan")
        os.makedirs(os.path.join(job, "workers"))
        with open(os.path.join(job, "journal.jsonl"), "w") as f:
            f.write(header() + job_line("running") + worker_line("1", "running", pid=4, label="a\nb") +
                    worker_line("2", "failed", exit_code=3, ended="2026-12-02T10:00:05.000Z"))
        with open(os.path.join(job, "workers", "3.status.json"), "w") as f:
            f.write(json.dumps({"schema_version": 1, "state": "running"}))
        status = read_job.aggregate(job, now=NOW)
        self.assertEqual([(w["label"], w["argv"]) for w in status["workers"]],
                         [("a\nb", ["scan", "1"]), (None, ["scan", "2"]), (None, None)])
        self.assertEqual(list(validator.iter_errors(status)), [])
        status["workers"][0]["label"] = 5
        self.assertNotEqual(list(validator.iter_errors(status)), [])


class JournalLineSchema(unittest.TestCase):
    """schemas/journal-line.schema.json accepts what the writer writes (as
    the tests above craft it) and refuses what readers report."""

    def setUp(self):
        try:
            import jsonschema
        except ImportError:
            self.skipTest("SKIPPED: the jsonschema module is not installed")
        path = os.path.join(os.path.dirname(READER), "..", "..", "schemas", "journal-line.schema.json")
        with open(path) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        self.validator = jsonschema.Draft202012Validator(schema)

    def test_lines(self):
        good = [header(), job_line("running"), worker_line("1", "pending", attempt=0),
                worker_line("1", "failed", exit_code=3, ended="2026-12-02T10:00:05.000Z"),
                worker_line("1", "running", label="repo \"x\"\nline"), worker_line("1", "running", paused=True),
                '{"type":"from-the-future","x":1}']
        for line in good:
            with self.subTest(line=line):
                self.assertEqual(list(self.validator.iter_errors(json.loads(line))), [])
        bad = [header(version=1), '{"type":"worker","id":"../x","state":"running"}',
               '{"type":"worker","id":"1","state":"dancing"}', '{"type":"job","job_id":"scan"}', '{"x":1}',
               worker_line("1", "running", label=7), worker_line("1", "running", label=""),
               worker_line("1", "running", paused="yes")]
        for line in bad:
            with self.subTest(line=line):
                self.assertNotEqual(list(self.validator.iter_errors(json.loads(line))), [])


class ImportableModule(unittest.TestCase):
    """The reader is a module a host imports (not a file it copies), and its
    command lines (`python3 -m`, the example script, the installed command)
    are one program."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="read-job-module-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "jobs")
        job = os.path.join(self.root, "scan")
        os.makedirs(os.path.join(job, "workers"))
        with open(os.path.join(job, "journal.jsonl"), "w") as f:
            f.write(header())
            f.write(job_line("failed", ended="2026-12-02T10:00:09.000Z"))
            f.write(worker_line("a", "succeeded", exit_code=0, ended="2026-12-02T10:00:05.000Z"))
            f.write(worker_line("b", "failed", exit_code=3, ended="2026-12-02T10:00:06.000Z"))

    def run_python(self, args, env=None):
        return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=60,
                              env=env, cwd=self.tmp)

    def test_read_job_by_root_and_id(self):
        status = read_job.read_job(self.root, "scan", now=NOW)
        self.assertEqual(status["state"], "failed")
        self.assertEqual((status["summary"]["done"], status["summary"]["total"]), (2, 2))
        self.assertIn("  failed b: exit code 3", read_job.summary_lines(status))

    def test_a_bad_job_id_is_refused_before_any_path_is_built(self):
        for bad in ["../scan", "", "a/b", ".hidden", None]:
            with self.assertRaisesRegex(ValueError, "invalid job id"):
                read_job.read_job(self.root, bad)

    def test_python_m_and_the_example_script_print_the_same(self):
        env = dict(os.environ, PYTHONPATH=PACKAGE_DIR)
        by_module = self.run_python(["-m", "jobwarden_reader", "--root", self.root, "--job", "scan", "--json"], env)
        by_script = self.run_python([READER, "--root", self.root, "--job", "scan", "--json"])
        self.assertEqual(by_module.returncode, 0, by_module.stderr)
        self.assertEqual(by_script.returncode, 0, by_script.stderr)
        drop = lambda text: {k: v for k, v in json.loads(text).items() if k != "elapsed_seconds"}
        self.assertEqual(drop(by_module.stdout), drop(by_script.stdout))
        self.assertEqual(json.loads(by_module.stdout)["summary"]["failed"], 1)
        missing = self.run_python(["-m", "jobwarden_reader", os.path.join(self.root, "nope")], env)
        self.assertEqual(missing.returncode, 2)
        self.assertTrue(missing.stderr.startswith("jobwarden_reader: cannot read"), missing.stderr)

    def test_the_package_version_is_the_project_version(self):
        with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
            cmake = f.read()
        with open(os.path.join(PACKAGE_DIR, "pyproject.toml")) as f:
            pyproject = f.read()
        import re
        project = re.search(r"project\(jobwarden\s+VERSION\s+([0-9.]+)", cmake).group(1)
        package = re.search(r'^version = "([0-9.]+)"', pyproject, re.M).group(1)
        self.assertEqual(package, project)

    def test_pip_installs_it_as_a_package_with_its_command(self):
        # This Python, else the system's (scripts/install-deps.sh installs its pip, setuptools and wheel).
        python = next((p for p in [sys.executable, "/usr/bin/python3"]
                       if os.path.exists(p) and subprocess.run([p, "-c", "import setuptools, wheel, pip"],
                                                               capture_output=True, timeout=60).returncode == 0),
                      None)
        if python is None:
            self.skipTest("no Python here has pip, setuptools and wheel to build the package offline")
        target = os.path.join(self.tmp, "site")
        # A copy of the package's sources: pip may write build files beside them.
        sources = os.path.join(self.tmp, "src")
        shutil.copytree(PACKAGE_DIR, sources, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                                  "--disable-pip-version-check", "--target", target, sources],
                                 capture_output=True, text=True, timeout=300, cwd=self.tmp)
        self.assertEqual(install.returncode, 0, install.stderr)
        env = dict(os.environ, PYTHONPATH=target)
        imported = subprocess.run([python, "-c", "import jobwarden_reader, sys; "
                                   "s = jobwarden_reader.read_job(sys.argv[1], 'scan'); "
                                   "print(jobwarden_reader.__file__); print(s['summary']['succeeded'])",
                                   self.root], capture_output=True, text=True, timeout=60, env=env, cwd=self.tmp)
        self.assertEqual(imported.returncode, 0, imported.stderr)
        where, succeeded = imported.stdout.split()
        self.assertTrue(where.startswith(target), where)
        self.assertEqual(succeeded, "1")
        command = subprocess.run([os.path.join(target, "bin", "jobwarden-read-job"), "--root", self.root,
                                  "--job", "scan"], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(command.returncode, 0, command.stderr)
        self.assertIn("scan: failed - 2 of 2 done", command.stdout)


if __name__ == "__main__":
    unittest.main()
