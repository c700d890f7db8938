"""Say "ready"; on each SIGTERM say "term" and carry on: only SIGKILL ends this."""

import signal
import sys
import time


def on_term(signum: int, frame: object) -> None:
    sys.stdout.write("term\n")
    sys.stdout.flush()


signal.signal(signal.SIGTERM, on_term)
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    time.sleep(60)
