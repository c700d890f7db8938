"""Write our pid (and, with a third argument, that text) to PIDFILE, then wait
until FIFO is opened for writing and closed: a job the test releases.
Usage: hold.py PIDFILE FIFO [TEXT]"""

import os
import sys

with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\n")
if len(sys.argv) > 3:
    print(sys.argv[3], flush=True)
with open(sys.argv[2], "rb") as fifo:
    fifo.read()
