"""Benchmark child: write N lines of 20 times CHAR (and a newline) to stdout,
10,000 lines per write.  Usage: lines.py N CHAR"""

import os
import sys

n, char = int(sys.argv[1]), sys.argv[2]
line = (char * 20 + "\n").encode()
block = memoryview(line * 10000)
for start in range(0, n, 10000):
    piece = block[: len(line) * min(10000, n - start)]
    while piece:
        piece = piece[os.write(1, piece):]
