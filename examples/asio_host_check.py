#!/usr/bin/env python3
"""Runs examples/asio_host and checks what it printed, line by line as it came.

  asio_host_check.py PATH_TO_ASIO_HOST

- every worker's stdout lines arrived whole, in order, prefixed with its id
  (the build worker's last line, which has no newline, included);
- they were streamed: lines of different workers interleave, and a worker's
  first and last lines reached this process well apart (the worker sleeps
  between them, so only a host that held lines back until a worker's end
  could deliver them together);
- the failing worker's stderr tail was printed, and the closing line says
  3 of 4 workers succeeded (exit status 1: not all did).

Also: SIGTERM sent while the workers run ends the host promptly, every worker
stopped. Standard library only; no time is asserted except "it did not hang"
and lower bounds the workers' own sleeps guarantee.
"""
import os
import signal
import subprocess
import sys
import time

EXPECTED = {
    "fetch": ["fetched part 1 of 4", "fetched part 2 of 4", "fetched part 3 of 4", "fetched part 4 of 4"],
    "build": ["compiled unit 1 of 3", "compiled unit 2 of 3", "compiled unit 3 of 3",
              "build finished (no newline)"],
    "test": ["running 3 tests"],
    "report": ["report started", "report written"],
}
HANG_LIMIT = 90  # seconds: only "it did not hang"


def run(binary, stop_after_first_line=False):
    """Returns [(seconds since start, line)], the exit status."""
    start = time.monotonic()
    proc = subprocess.Popen([binary], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines = []
    try:
        for raw in proc.stdout:
            lines.append((time.monotonic() - start, raw.decode(errors="replace").rstrip("\n")))
            if stop_after_first_line and len(lines) == 1:
                proc.send_signal(signal.SIGTERM)
            if time.monotonic() - start > HANG_LIMIT:
                break
        code = proc.wait(timeout=max(1, HANG_LIMIT - (time.monotonic() - start)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines, code


def check_run(binary):
    failures = []
    lines, code = run(binary)
    text = [line for _, line in lines]
    for _, line in lines:
        print(line)
    seen = {}  # worker -> [(time, text)]
    order = []  # worker ids of stdout lines, in arrival order
    for at, line in lines:
        if line.startswith("[") and "] " in line:
            worker, rest = line[1:].split("] ", 1)
            seen.setdefault(worker, []).append((at, rest))
            order.append(worker)
    for worker, expected in EXPECTED.items():
        got = [t for _, t in seen.get(worker, [])]
        if got != expected:
            failures.append(f"{worker}: lines {got!r}, expected {expected!r}")
    # Streamed: the id sequence switches worker more often than it would if
    # each worker's lines came in one block at its end.
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    if switches <= len(seen) - 1:
        failures.append(f"lines of different workers did not interleave: {order}")
    # fetch sleeps 0.3 s after each of its 4 lines: its first and last are
    # written at least 0.9 s apart, and a streaming host passes on most of that
    # even when it is slow to get going; lines held until fetch ended arrive together.
    fetch = seen.get("fetch", [])
    if len(fetch) == 4 and fetch[-1][0] - fetch[0][0] < 0.3:
        failures.append(f"fetch's lines arrived together ({fetch[-1][0] - fetch[0][0]:.2f} s apart): not streamed")
    if "test failed (exit 1)" not in text:
        failures.append("no line saying the test worker failed with exit 1")
    for quoted in ("  | test 2 of 3 failed", "  | expected 4, got 5 (tests/sum.sh:12)"):
        if quoted not in text:
            failures.append(f"the failing worker's stderr tail is missing {quoted!r}")
    if not text or text[-1] != "asio_host: 3 of 4 workers succeeded":
        failures.append(f"last line {text[-1] if text else None!r}, expected the succeeded count")
    if code != 1:
        failures.append(f"exit status {code}, expected 1 (one worker fails on purpose)")
    return failures


def check_sigterm(binary):
    lines, code = run(binary, stop_after_first_line=True)
    text = [line for _, line in lines]
    failures = []
    if "asio_host: SIGTERM, stopping every worker" not in text:
        failures.append(f"SIGTERM was not reported: {text}")
    if not text or not text[-1].startswith("asio_host: ") or "workers succeeded" not in text[-1]:
        failures.append(f"after SIGTERM the host did not end with its count: {text}")
    if code not in (0, 1):
        failures.append(f"after SIGTERM exit status {code}")
    if any(line.startswith("fetch succeeded") for line in text):
        failures.append("fetch ran to its end despite SIGTERM")
    return failures


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    failures = check_run(binary)
    print("--- SIGTERM while the workers run")
    failures += check_sigterm(binary)
    for failure in failures:
        print("FAILED:", failure)
    if failures:
        return 1
    print("asio_host: lines streamed from every worker, the failing worker's stderr tail shown, SIGTERM honoured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
