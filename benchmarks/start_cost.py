"""What one start costs the parent: subprocess.Popen against pipereactor's own start.

Starts /bin/true one at a time, its stdout and stderr on /dev/null, in a new
session (spawn()'s default), and times the parent's thread CPU of the start
alone (the reap is not counted).  ``Popen`` and ``_spawn.start_child`` (which
calls ``fork_exec`` without Popen's Python around it) alternate, run by run.

    python benchmarks/start_cost.py [--reps 5] [--starts 1000]

Prints medians (min-max) of microseconds per start.  Not a target: W3 in
bench.py is the throughput comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.environ.get("PIPEREACTOR_BENCH_LIB") or os.path.dirname(HERE)))

from pipereactor._spawn import start_child  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--starts", type=int, default=1000)
    args = parser.parse_args()
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    argv = ["/bin/true"]

    def popen() -> Any:
        return subprocess.Popen(argv, stdout=null, stderr=null, start_new_session=True, bufsize=0)

    def ours() -> Any:
        return start_child(argv, [None, null, null], {"start_new_session": True})

    systems: dict[str, Callable[[], Any]] = {"subprocess.Popen": popen, "pipereactor": ours}
    samples: dict[str, list[float]] = {name: [] for name in systems}
    for rep in range(args.reps):
        order = list(systems.items())
        if rep % 2:
            order.reverse()
        for name, start in order:
            cpu = 0.0
            for _ in range(args.starts):
                before = time.thread_time()
                child = start()
                cpu += time.thread_time() - before
                child.wait()
            samples[name].append(cpu / args.starts * 1e6)
    os.close(null)
    print(f"parent thread CPU per start, us; {args.reps} runs of {args.starts} starts, "
          f"Python {sys.version.split()[0]}")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.1f} "
              f"({min(values):.1f}-{max(values):.1f}) |")


if __name__ == "__main__":
    main()
