"""`python3 -m jobwarden_reader`: the reader's command line."""

import sys

from jobwarden_reader import main

sys.exit(main(prog="jobwarden_reader"))
