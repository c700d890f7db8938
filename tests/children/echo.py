"""cat with a twist: copy stdin to stdout in random read sizes, and write a
seeded payload of ERR_BYTES to stderr spread over the copy (so both outputs
and the input flow at once).  Usage: echo.py ERR_BYTES SEED"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
from patterns import payload  # noqa: E402

err_n, seed = int(sys.argv[1]), int(sys.argv[2])
err = memoryview(payload(seed, err_n))
rng = random.Random(seed)


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


while True:
    chunk = os.read(0, rng.randint(1, 200000))
    if not chunk:
        break
    write_all(1, memoryview(chunk))
    if err:
        n = min(len(err), 4096)
        write_all(2, err[:n])
        err = err[n:]
write_all(2, err)
