"""Append "S LABEL NS" to LOG, sleep SECONDS, append "E LABEL NS": a job whose
lifetime can be overlaid with others' (CLOCK_MONOTONIC is system-wide).
Usage: log_interval.py LOG LABEL SECONDS"""

import os
import sys
import time

log, label, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])


def note(kind: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {label} {time.monotonic_ns()}\n".encode())  # one write: atomic
    finally:
        os.close(fd)


note("S")
time.sleep(seconds)
note("E")
