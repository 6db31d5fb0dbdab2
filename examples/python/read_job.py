#!/usr/bin/env python3
"""Read a jobwarden job directory without jobwarden: the command line of the
importable module python/jobwarden_reader (this file only finds it beside the
repository's examples and runs it; a program of yours imports the module).

    read_job.py /var/lib/jobs/scan-42
    read_job.py --root /var/lib/jobs --job scan-42 --json
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import jobwarden_reader  # noqa: E402  (found through the path above)

if __name__ == "__main__":
    sys.exit(jobwarden_reader.main(prog="read_job.py"))
