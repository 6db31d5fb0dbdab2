#!/usr/bin/env python3
"""The Python baseline of bench_spawn: the Python status-file design jobwarden is measured against (asyncio, one JSON status file per worker, atomic writes), standard library only.

N workers through asyncio.create_subprocess_exec, at most CONCURRENCY at once
(an asyncio.Semaphore), each with a JSON status file written atomically
(temporary file + os.replace) when it starts and when it ends.

    python_asyncio_baseline.py --n 1000 --concurrency 2 --status-dir DIR [--no-status] [--fsync]
    python_asyncio_baseline.py --serve

With --fsync every status file is flushed and fsync'ed before its rename (the
durable form of the same design; the directory is not fsync'ed, so this is
the lighter side of "durable").

Prints one JSON object: {"elapsed_seconds": ..., "n": ..., "failed": ...}.
The time covers the event loop's work only (not the interpreter's start-up),
which is the part a long-lived Python service pays per job.

With --serve it stays up and reads one request per line from stdin,
"N CONCURRENCY STATUS_DIR|- FIRST_ID [fsync]", answering each with that JSON object
on one line (bench_spawn interleaves it chunk by chunk with the other
variants); it exits at end of input.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time


def write_status_atomically(directory, job_id, status, fsync=False):
    """The atomic status write of that design: a temporary file, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{job_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(status, out)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, os.path.join(directory, f"{job_id}.json"))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


async def run_one(job_id, argv, semaphore, status_dir, fsync=False):
    async with semaphore:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
        if status_dir:
            write_status_atomically(status_dir, job_id, {
                "id": job_id, "state": "running", "pid": proc.pid,
                "started_at": time.time()}, fsync)
        code = await proc.wait()
        if status_dir:
            write_status_atomically(status_dir, job_id, {
                "id": job_id, "state": "succeeded" if code == 0 else "failed",
                "pid": proc.pid, "exit_code": code, "ended_at": time.time()}, fsync)
        return code


async def run_all(n, concurrency, argv, status_dir, first_id=1, fsync=False):
    semaphore = asyncio.Semaphore(concurrency)
    tasks = [run_one(str(first_id + i), argv, semaphore, status_dir, fsync) for i in range(n)]
    return await asyncio.gather(*tasks)


def count_failures(codes, status_dir, expected_files):
    failed = sum(1 for code in codes if code != 0)
    if status_dir:
        files = [name for name in os.listdir(status_dir) if name.endswith(".json")]
        if len(files) < expected_files:
            failed += expected_files - len(files)
    return failed


def serve(argv):
    """One event loop for the process; one request per input line."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for line in sys.stdin:
            fields = line.split()
            if len(fields) not in (4, 5):
                continue
            n, concurrency, status_dir, first_id = int(fields[0]), int(fields[1]), fields[2], int(fields[3])
            fsync = len(fields) == 5 and fields[4] == "fsync"
            status_dir = "" if status_dir == "-" else status_dir
            start = time.perf_counter()
            codes = loop.run_until_complete(run_all(n, concurrency, argv, status_dir, first_id, fsync))
            elapsed = time.perf_counter() - start
            failed = count_failures(codes, status_dir, first_id + n - 1)
            sys.stdout.write(json.dumps({"elapsed_seconds": elapsed, "n": n, "concurrency": concurrency,
                                         "failed": failed, "status_files": bool(status_dir),
                                         "fsync": fsync}) + "\n")
            sys.stdout.flush()
    finally:
        loop.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--status-dir", default="")
    parser.add_argument("--no-status", action="store_true")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--fsync", action="store_true", help="fsync every status file before its rename")
    parser.add_argument("argv", nargs="*", default=["/bin/true"])
    args = parser.parse_args()
    if args.serve:
        return serve(args.argv)
    status_dir = "" if args.no_status else args.status_dir
    if not args.no_status and not status_dir:
        parser.error("--status-dir is required unless --no-status")

    start = time.perf_counter()
    codes = asyncio.run(run_all(args.n, args.concurrency, args.argv, status_dir, fsync=args.fsync))
    elapsed = time.perf_counter() - start

    failed = count_failures(codes, status_dir, args.n)
    json.dump({"elapsed_seconds": elapsed, "n": args.n, "concurrency": args.concurrency,
               "failed": failed, "status_files": bool(status_dir)}, sys.stdout)
    sys.stdout.write("\n")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
