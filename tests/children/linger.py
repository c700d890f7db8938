"""Close stdout early, then keep running until stdin reaches EOF."""

import os
import sys

sys.stdout.write("bye\n")
sys.stdout.flush()
os.close(1)
sys.stdin.buffer.read()
sys.exit(7)
