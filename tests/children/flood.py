"""Write a seeded payload to stdout and another to stderr, interleaved, in
random chunk sizes, with blocking writes: a parent that drains one pipe only
deadlocks.  Usage: flood.py OUT_BYTES ERR_BYTES SEED"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from patterns import chunk_sizes, payload  # noqa: E402

out_n, err_n, seed = map(int, sys.argv[1:4])
streams = []
for fd, n, s in ((1, out_n, seed), (2, err_n, seed + 1)):
    data = memoryview(payload(s, n))
    streams.append([fd, data, iter(chunk_sizes(s, n))])
while streams:
    for st in list(streams):
        fd, data, sizes = st
        size = next(sizes, None)
        if size is None:
            streams.remove(st)
            continue
        piece, st[1] = data[:size], data[size:]
        while piece:
            piece = piece[os.write(fd, piece):]
