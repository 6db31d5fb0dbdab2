#!/usr/bin/env python3
"""Drives examples/scan_service over HTTP and checks what a user of it relies on.

  scan_service_check.py PATH_TO_SCAN_SERVICE

- three scans posted at once (eight workers) under `--slots 2`: never more than
  two workers run at once in the whole service, as the workers themselves
  record it (SCAN_TRACE start/end lines with a monotonic clock), and every
  scan ends `succeeded` with the right file count for each directory;
- `GET /scans` never shows more than two slots in use, and `live` empties as
  finished scans retire themselves;
- `GET /scans/ID` answers for a finished, retired scan from its job directory;
  an unknown scan is 404, a bad body 400;
- `DELETE /scans/ID` stops a long scan: it ends `cancelled`;
- SIGTERM while a scan runs: the service exits 0 promptly and none of its
  workers is left.
Standard library only. No time is asserted except "it did not hang".
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HANG_LIMIT = 90  # seconds: only "it did not hang"


def request(port, method, path, body=None):
    data = body.encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def make_tree(base, name, files):
    path = os.path.join(base, name)
    os.makedirs(os.path.join(path, "sub"))
    for i in range(files):
        with open(os.path.join(path, "sub" if i % 2 else "", f"f{i}.txt"), "w") as f:
            f.write("x" * i)
    return path


def wait_for(predicate, what):
    deadline = time.monotonic() + HANG_LIMIT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def max_concurrency(trace_path):
    events = []
    with open(trace_path) as f:
        for line in f:
            what, pid, ns = line.split()
            events.append((int(ns), 0 if what == "end" else 1, what, pid))
    running, most, starts = 0, 0, 0
    for _, _, what, _ in sorted(events):  # an end before a start at the same instant
        running += 1 if what == "start" else -1
        starts += what == "start"
        most = max(most, running)
    return most, starts


def workers_left(binary):
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace") == binary and b"--worker" in argv:
            left.append(int(pid))
    return left


def main():
    binary = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="scan-service-check-")
    failures = []
    proc = None
    try:
        trees = os.path.join(tmp, "trees")
        dirs = {name: make_tree(trees, name, files) for name, files in
                [("a", 6), ("b", 9), ("c", 4), ("d", 7), ("e", 5), ("f", 8), ("g", 3), ("h", 6)]}
        long_dir = make_tree(trees, "long", 400)  # 400 files at 40 ms each: runs until stopped
        root = os.path.join(tmp, "jobs")
        os.makedirs(root)
        trace = os.path.join(tmp, "trace")
        env = dict(os.environ, SCAN_TRACE=trace)
        proc = subprocess.Popen([binary, "--port", "0", "--root", root, "--slots", "2", "--per-scan", "2",
                                 "--pace", "40"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
        first = proc.stdout.readline()
        print(first.rstrip())
        port = int(first.split("127.0.0.1:")[1].split()[0])

        # Three scans at once, from three request threads.
        groups = [["a", "b", "c"], ["d", "e", "f"], ["g", "h"]]
        answers = [None] * len(groups)

        def post(i):
            answers[i] = request(port, "POST", "/scans", "\n".join(dirs[n] for n in groups[i]) + "\n")
        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(groups))]
        for t in threads:
            t.start()
        slots_seen = 0
        while any(t.is_alive() for t in threads) or slots_seen == 0:
            code, listing = request(port, "GET", "/scans")
            slots_seen = max(slots_seen, listing["slots"]["in_use"])
            if listing["slots"]["in_use"] > 2:
                failures.append(f"GET /scans showed {listing['slots']['in_use']} slots in use, capacity 2")
            if slots_seen == 0:
                time.sleep(0.02)
        for t in threads:
            t.join()
        jobs = {}
        for i, (code, body) in enumerate(answers):
            if code != 202:
                failures.append(f"POST of {groups[i]}: {code} {body}")
                continue
            jobs[body["job_id"]] = groups[i]

        def all_done():
            code, listing = request(port, "GET", "/scans")
            if listing["slots"]["in_use"] > 2:
                failures.append(f"GET /scans showed {listing['slots']['in_use']} slots in use, capacity 2")
            states = {job["job_id"]: job["state"] for job in listing["jobs"]}
            return all(states.get(j) in ("succeeded", "failed", "cancelled", "lost") for j in jobs) and \
                not any(j in listing["live"] for j in jobs)
        wait_for(all_done, "the three scans to end and retire")

        for job_id, names in jobs.items():
            code, status = request(port, "GET", f"/scans/{job_id}")
            if code != 200 or status["state"] != "succeeded":
                failures.append(f"{job_id}: {code} {status.get('state')} {status.get('errors')}")
                continue
            summary = status["summary"]
            if (summary["done"], summary["total"]) != (len(names), len(names)):
                failures.append(f"{job_id}: {summary['done']} of {summary['total']} done, wanted {len(names)}")
            for worker in status["workers"]:
                name = os.path.basename(worker["label"] or "")
                want = sum(len(fs) for _, _, fs in os.walk(dirs[name])) if name in dirs else None
                got = (worker["result"] or {}).get("files")
                if got != want:
                    failures.append(f"{job_id} worker {worker['id']} ({name}): {got} files, wanted {want}")
        most, starts = max_concurrency(trace)
        print(f"workers started: {starts}; most running at once (seen from inside them): {most}")
        if starts != 8:
            failures.append(f"{starts} workers started, wanted 8")
        if most > 2:
            failures.append(f"{most} workers ran at once under a service-wide limit of 2")

        # Errors a client can make.
        code, body = request(port, "GET", "/scans/scan-999")
        if code != 404:
            failures.append(f"GET of an unknown scan: {code} {body}")
        code, body = request(port, "POST", "/scans", os.path.join(tmp, "no-such-dir") + "\n")
        if code != 400 or "not a directory" not in body.get("error", ""):
            failures.append(f"POST of a missing directory: {code} {body}")
        code, body = request(port, "POST", "/scans", "\n")
        if code != 400:
            failures.append(f"POST of an empty body: {code} {body}")

        # DELETE stops a long scan.
        code, body = request(port, "POST", "/scans", long_dir + "\n")
        long_job = body.get("job_id")
        wait_for(lambda: request(port, "GET", f"/scans/{long_job}")[1].get("summary", {}).get("running") == 1,
                 "the long scan to start")
        code, body = request(port, "DELETE", f"/scans/{long_job}")
        if code != 202:
            failures.append(f"DELETE {long_job}: {code} {body}")
        state = wait_for(lambda: (lambda s: s if s in ("cancelled", "succeeded", "failed") else None)(
            request(port, "GET", f"/scans/{long_job}")[1].get("state")), "the deleted scan to end")
        if state != "cancelled":
            failures.append(f"{long_job} after DELETE: {state}, wanted cancelled")
        code, body = request(port, "DELETE", f"/scans/{long_job}")
        if code != 404:
            failures.append(f"DELETE of an ended scan: {code} {body}")

        # SIGTERM while a scan runs.
        code, body = request(port, "POST", "/scans", long_dir + "\n")
        running_job = body.get("job_id")
        wait_for(lambda: request(port, "GET", f"/scans/{running_job}")[1].get("summary", {}).get("running") == 1,
                 "the last scan to start")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=HANG_LIMIT)
        code = proc.returncode
        print(rest.rstrip())
        if code != 0 or "every scan's workers reaped" not in rest:
            failures.append(f"after SIGTERM the service exited {code}: {rest!r}")
        left = workers_left(binary)
        if left:
            failures.append(f"workers left after the service stopped: {left}")
    except Exception as e:  # noqa: BLE001 - reported as a failure, then cleaned up
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers_left(binary):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    print("scan_service: ok" if not failures else f"scan_service: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
