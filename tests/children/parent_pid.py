"""Print our parent's pid: tells whether a shell stood between us and the runner."""

import os

print(os.getppid())
