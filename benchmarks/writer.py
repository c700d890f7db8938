"""Benchmark child: write OUT bytes of the fixed pattern to stdout and ERR to
stderr, interleaved in 1 MiB pieces, from a preallocated buffer.
Usage: writer.py OUT [ERR]"""

import os
import sys

BLOCK = bytes(range(256)) * 4096  # 1 MiB: the pattern the parent checks
view = memoryview(BLOCK)
left = [int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0]
while left[0] or left[1]:
    for fd in (1, 2):
        n = min(left[fd - 1], len(BLOCK))
        piece = view[:n]
        while piece:
            piece = piece[os.write(fd, piece):]
        left[fd - 1] -= n
