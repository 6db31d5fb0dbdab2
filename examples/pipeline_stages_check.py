#!/usr/bin/env python3
"""Runs examples/pipeline_stages and checks it from the outside.

  pipeline_stages_check.py PATH_TO_PIPELINE_STAGES PATH_TO_READ_JOB_PY

Runs it twice, with the host's own poll() loop and with --wait-all, each time
keeping the job directory in a fresh temporary root, and checks:

- it exits 0 and says stage 2 ran as designed;
- its output says every fetch that succeeded was followed by its index, that
  gamma's fetch failed (exit 3, the mirror's message quoted) and nothing was
  submitted for it, that finish() was called once every fetch had ended, and
  that the job was `failed` with 7 workers while the supervisor was still
  alive (read back by the example: only finish() lets a live supervisor
  write a final state; the job directory alone cannot show it, as the
  supervisor's destructor writes one too);
- the job directory, read with examples/python/read_job.py (not with
  jobwarden), holds exactly the fetches and the indexes of the items whose
  fetch succeeded, no index of gamma, each index's stdout log holds that
  item's distinct words in order, and the job's final state is `failed`;
- every index started after its own fetch had ended (the journal's times).

Also: an unknown argument is refused with exit 2 and one line on stderr.
Standard library only; no time is asserted except "it did not hang".
"""
import json
import os
import re
import subprocess
import sys
import tempfile

# The example's items: what each fetch writes, and whether it is designed to fail.
WORDS = {
    "alpha": ["pear", "plum", "apple", "pear", "fig"],
    "beta": ["oak", "ash", "elm", "oak"],
    "gamma": None,  # its fetch fails: its index must never run
    "delta": ["rye", "oat", "barley", "rye", "oat"],
}
HANG_LIMIT = 90  # seconds: only "it did not hang"


def run(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=HANG_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def said(lines, pattern):
    """The output lines (without their "[1.234s] " stamp) that match `pattern`."""
    found = []
    for line in lines:
        text = re.sub(r"^\[\s*[0-9.]+s\] ", "", line)
        if re.fullmatch(pattern, text):
            found.append(text)
    return found


def check_output(code, out, err):
    failures = []
    lines = out.splitlines()
    if code != 0:
        failures.append(f"exit status {code}, expected 0; stderr: {err.strip()!r}")
    if not lines or lines[-1] != "Stage 2 ran for exactly the items whose stage 1 succeeded, as designed.":
        failures.append(f"last line {lines[-1] if lines else None!r}: not the as-designed verdict")
    for item, words in WORDS.items():
        if words is None:
            if not said(lines, rf"fetch-{item} failed \(exit 3\): fetch: mirror unreachable "
                               rf"\(connection refused\) -> nothing submitted for {item}"):
                failures.append(f"no line saying fetch-{item} failed with exit 3 and nothing was submitted")
            if any(f"index-{item}" in line for line in lines):
                failures.append(f"index-{item} is mentioned: stage 2 ran (or was submitted) for a failed fetch")
            continue
        if not said(lines, rf"fetch-{item} succeeded -> submitting index-{item}"):
            failures.append(f"no line saying index-{item} was submitted after fetch-{item} succeeded")
        distinct = " ".join(sorted(set(words)))
        if not said(lines, rf"index-{item} succeeded \(exit 0\): {re.escape(distinct)}"):
            failures.append(f"no line saying index-{item} succeeded with {distinct!r}")
    if "job pipeline: failed, 7 workers" not in lines:
        failures.append("no line saying the live job was failed with 7 workers (finish() not called?)")
    if len(said(lines, r"every fetch has ended: finish\(\), no more work will be submitted")) != 1:
        failures.append("finish() was not reported exactly once")
    return failures


def check_job_directory(read_job, root):
    failures = []
    code, out, err = run([sys.executable, read_job, "--root", root, "--job", "pipeline", "--json"])
    if code != 0:
        return [f"read_job.py exited {code}: {err.strip()}"]
    job = json.loads(out)
    if job.get("state") != "failed":
        failures.append(f"job state {job.get('state')!r}, expected 'failed' (final: gamma's fetch failed)")
    workers = {w["id"]: w for w in job.get("workers", [])}
    expected = {f"fetch-{item}" for item in WORDS}
    expected |= {f"index-{item}" for item, words in WORDS.items() if words is not None}
    if set(workers) != expected:
        failures.append(f"workers {sorted(workers)}, expected {sorted(expected)}")
    for item, words in WORDS.items():
        fetch = workers.get(f"fetch-{item}", {})
        want = "failed" if words is None else "succeeded"
        if fetch.get("state") != want:
            failures.append(f"fetch-{item} is {fetch.get('state')!r}, expected {want!r}")
        log = os.path.join(root, "pipeline", "workers", f"index-{item}.stdout.log")
        if words is None:
            if os.path.exists(log):
                failures.append(f"{log} exists: stage 2 ran for the failed fetch")
            continue
        index = workers.get(f"index-{item}", {})
        if index.get("state") != "succeeded":
            failures.append(f"index-{item} is {index.get('state')!r}, expected 'succeeded'")
        try:
            with open(log) as f:
                got = f.read().splitlines()
        except OSError as e:
            got = f"unreadable: {e}"
        if got != sorted(set(words)):
            failures.append(f"index-{item}'s stdout log: {got!r}, expected {sorted(set(words))!r}")
        started, fetch_ended = index.get("started_at"), fetch.get("ended_at")
        if not started or not fetch_ended or started < fetch_ended:
            failures.append(f"index-{item} started at {started!r}, before fetch-{item} ended at {fetch_ended!r}")
    return failures


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, read_job = sys.argv[1], sys.argv[2]
    failures = []
    for mode in ([], ["--wait-all"]):
        name = " ".join(["pipeline_stages"] + mode)
        with tempfile.TemporaryDirectory(prefix="pipeline-stages-check-") as root:
            code, out, err = run([binary, "--root", root] + mode)
            print(f"--- {name}\n{out}", end="")
            failures += [f"{name}: {f}" for f in check_output(code, out, err)]
            failures += [f"{name}: {f}" for f in check_job_directory(read_job, root)]
    code, out, err = run([binary, "--bogus"])
    if code != 2 or out or len(err.splitlines()) != 1 or "--bogus" not in err:
        failures.append(f"--bogus: exit {code}, stdout {out!r}, stderr {err!r}; expected exit 2 and one line naming it")
    for failure in failures:
        print("FAILED:", failure)
    if failures:
        return 1
    print("pipeline_stages: stage 2 ran for exactly the successful stage-1 items, both loops, job directory as designed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
