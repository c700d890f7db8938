"""Start a grandchild that inherits stdout and sleeps, print its pid, then
exit (or, with 'stay', sleep too).  The grandchild holds the pipe open."""

import subprocess
import sys
import time

gc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(gc.pid, flush=True)
if sys.argv[1:] == ["stay"]:
    time.sleep(60)
