"""Benchmark child: write N chunks of SIZE bytes to stdout, one write each,
sleeping DELAY seconds after each, so that the parent wakes up for, and
reads, one small chunk at a time.
Usage: trickle.py N SIZE DELAY"""

import os
import sys
import time

n, size, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
chunk = b"t" * size
for _ in range(n):
    os.write(1, chunk)
    time.sleep(delay)
