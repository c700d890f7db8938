"""A parent running a reactor with N long children, each with a grandchild
in its process group; every second child ignores SIGTERM.  Prints the pids
(children and grandchildren) as "pids P1 P2 ...", then "ready", and runs
until interrupted; on KeyboardInterrupt prints "interrupted" and exits 130.
Usage: interrupted_parent.py N KILL_GRACE"""

import sys

import pipereactor as pr

n, grace = int(sys.argv[1]), float(sys.argv[2])
CHILD = (
    "import signal, subprocess, sys, time\n"
    "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "gc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(gc.pid, flush=True)\n"
    "time.sleep(120)\n"
)
pids = []
try:
    with pr.Reactor() as reactor:
        jobs = [
            reactor.spawn([sys.executable, "-c", CHILD, "stubborn" if i % 2 else "meek"],
                          stdout=pr.LineSink(lambda line: pids.append(int(line))),
                          kill_grace=grace)
            for i in range(n)
        ]
        while len(pids) < n:
            reactor.step(1)
        print("pids", *[job.pid for job in jobs], *pids, flush=True)
        print("ready", flush=True)
        reactor.run()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
