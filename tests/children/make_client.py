"""A make recipe that runs N log_interval.py jobs through a reactor sharing
make's jobserver.  Usage: make_client.py LOG LABEL N SECONDS"""

import os
import sys

import pipereactor as pr

log, label, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
here = os.path.dirname(os.path.abspath(__file__))
with pr.Reactor(jobserver=True) as reactor:
    for i in range(n):
        reactor.spawn([sys.executable, os.path.join(here, "log_interval.py"), log, f"{label}{i}", seconds])
