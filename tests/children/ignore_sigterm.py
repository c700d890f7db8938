"""Ignore SIGTERM, say so, and sleep: only SIGKILL ends this.  (Started with
SIGTERM blocked, conftest.sigterm_held, a SIGTERM sent sooner is pending
until SIG_IGN discards it.)"""

import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.stdout.write("ready\n")
sys.stdout.flush()
time.sleep(60)
