"""A parent running a reactor with contain=True and N jobs, each of which
leaves a setsid'd process and a double-forked daemon behind and then sleeps.
Prints "cgroup PATH", then "pids P1 P2 ..." (every escaper's), then "ready",
and runs until interrupted; on KeyboardInterrupt prints "interrupted" and
exits 130.  Usage: contained_parent.py N KILL_GRACE"""

import sys

import pipereactor as pr

n, grace = int(sys.argv[1]), float(sys.argv[2])
ESCAPE = "setsid sleep 1000 & echo $!; ( sleep 1000 & echo $! ); exec sleep 1000"
pids: list[int] = []
try:
    with pr.Reactor(contain=True) as reactor:
        assert reactor._lc.contain is not None
        print("cgroup", reactor._lc.contain.path, flush=True)
        for _ in range(n):
            reactor.spawn(["/bin/sh", "-c", ESCAPE], kill_grace=grace,
                          stdout=pr.LineSink(lambda line: pids.append(int(line))))
        while len(pids) < 2 * n:
            reactor.step(1)
        print("pids", *pids, flush=True)
        print("ready", flush=True)
        reactor.run()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
