"""Where a W3 job's parent CPU goes: pipereactor against the hand-written loop.

W3 (2,000 runs of /bin/true, 16 at a time) is decided by the parent: it
waits in vfork for each child's exec, and spends the rest of its time in
Python.  This splits the parent's own CPU (thread time) per job into what
Popen costs and everything else, so that the reactor's share can be compared
with the loop's.  The loop lets Popen make its pipes (and wrap them in file
objects), where pipereactor makes them itself: compare the sums too.

    python benchmarks/w3_cost.py [--reps 11] [--jobs 2000]

Prints medians (min-max) of microseconds per job.  Not a target: the
throughput comparison is W3 in bench.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (this directory's, with the library on sys.path)

_in_popen = [0.0]


class _TimedPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        start = time.thread_time()
        try:
            super().__init__(*args, **kwargs)
        finally:
            _in_popen[0] += time.thread_time() - start


def _measure(run: Any, jobs: list[bench.Job]) -> tuple[float, float]:
    """(Popen, the rest) of the parent's thread CPU, microseconds per job."""
    _in_popen[0] = 0.0
    start = time.thread_time()
    run(jobs, 16, "keep", "/tmp")
    total = time.thread_time() - start
    n = len(jobs)
    return _in_popen[0] / n * 1e6, (total - _in_popen[0]) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    jobs = [bench.Job(["/bin/true"], 0) for _ in range(args.jobs)]
    systems = {"pipereactor": bench.run_pipereactor, "selectors": bench.run_selectors}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
    subprocess.Popen = _TimedPopen  # type: ignore[misc]
    for _ in range(args.reps):
        for name, run in systems.items():  # interleaved, as bench.py does
            samples[name].append(_measure(run, jobs))

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"

    print(f"parent thread CPU per job, us; {args.reps} runs of {args.jobs} jobs, "
          f"Python {sys.version.split()[0]}")
    print("| system | in Popen | the rest | sum |")
    print("|---|---|---|---|")
    for name, rows in samples.items():
        popen = [p for p, _ in rows]
        rest = [r for _, r in rows]
        print(f"| {name} | {cell(popen)} | {cell(rest)} | {cell([p + r for p, r in rows])} |")


if __name__ == "__main__":
    main()
