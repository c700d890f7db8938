"""A job for -k --line-buffer: some output on both streams (stderr's last
line unfinished), then wait until FIFODIR/NAME is opened for writing and
closed, then more, ending stdout without a newline.
Usage: head_job.py FIFODIR NAME"""

import os
import sys

name = sys.argv[2]
out, err = sys.stdout.buffer, sys.stderr.buffer
out.write(f"{name}-o1\n".encode())
out.flush()
err.write(f"{name}-e1\n{name}-ep".encode())
err.flush()
with open(os.path.join(sys.argv[1], name), "rb") as fifo:
    fifo.read()
out.write(f"{name}-o2\n".encode())
out.flush()
err.write(f"{name}-e2\n".encode())
err.flush()
out.write(f"{name}-end".encode())
out.flush()
