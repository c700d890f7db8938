"""Benchmark child: copy stdin to stdout, writing ERR bytes of the pattern
to stderr spread over the copy (one piece per input chunk).
Usage: echo.py ERR"""

import os
import sys

BLOCK = bytes(range(256)) * 4096
err = int(sys.argv[1])
piece = 256 * 1024


def write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


while True:
    chunk = os.read(0, 1 << 20)
    if not chunk:
        break
    write_all(1, memoryview(chunk))
    if err:
        n = min(err, piece)
        write_all(2, memoryview(BLOCK)[:n])
        err -= n
while err:
    n = min(err, len(BLOCK))
    write_all(2, memoryview(BLOCK)[:n])
    err -= n
