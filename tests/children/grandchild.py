"""Start a grandchild that inherits stdout and sleeps, print its pid, then
exit (or, with 'stay', sleep too).  The grandchild holds the pipe open.
Started with SIGTERM blocked (conftest.sigterm_held), each unblocks it once
ready: the grandchild at once, this one once the pid is out."""

import signal
import subprocess
import sys
import time

gc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                       "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM}); "
                       "time.sleep(60)"])
print(gc.pid, flush=True)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
if sys.argv[1:] == ["stay"]:
    time.sleep(60)
