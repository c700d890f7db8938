"""Ignore SIGTERM, say so, and sleep: only SIGKILL ends this."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.stdout.write("ready\n")
sys.stdout.flush()
time.sleep(60)
