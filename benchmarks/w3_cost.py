"""Where a W3 job's parent CPU goes: pipereactor against the hand-written loop.

W3 (2,000 runs of /bin/true, 16 at a time) is decided by the parent: it
waits in vfork for each child's exec, and spends the rest of its time in
Python.  This splits the parent's own CPU (thread time) per job into what
``fork_exec`` costs (the C function that forks and execs, which both call),
what Popen costs beyond it, and everything else, so that the reactor's share
can be compared with the loop's.  The loop lets Popen make its pipes (and
wrap them in file objects); pipereactor makes them itself and mostly calls
``fork_exec`` without Popen (see pipereactor/_spawn.py): compare the sums.

    python benchmarks/w3_cost.py [--reps 11] [--jobs 2000]

Prints medians (min-max) of microseconds per job.  Not a target: the
throughput comparison is W3 in bench.py.

A second table follows each job's wall time: the parent's own CPU, the time
it spends blocked in vfork (the wall time of ``fork_exec`` less its CPU: the
parent waits there until the child has exec'd, and the child first has to get
a CPU), and the rest, when it waits in the selector for jobs to end.
"""

from __future__ import annotations

import _posixsubprocess
import argparse
import functools
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
_fork_exec = _posixsubprocess.fork_exec
_in_fork_exec = [0.0, 0.0]  # wall, thread CPU


def _timed_fork_exec(*args: Any) -> Any:
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        return _fork_exec(*args)
    finally:
        _in_fork_exec[0] += time.perf_counter() - wall
        _in_fork_exec[1] += time.thread_time() - cpu


class _TimedPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        start = time.thread_time()
        try:
            super().__init__(*args, **kwargs)
        finally:
            _in_popen[0] += time.thread_time() - start


def _measure(run: Any, jobs: list[bench.Job]) -> tuple[float, float, float, float, float]:
    """Microseconds per job: (Popen, the rest) of the parent's thread CPU,
    the wall time, the wall time blocked in vfork, and fork_exec's CPU."""
    _in_popen[0] = 0.0
    _in_fork_exec[:] = [0.0, 0.0]
    wall_start, cpu_start = time.perf_counter(), time.thread_time()
    run(jobs, 16, "keep", "/tmp")
    total = time.thread_time() - cpu_start
    wall = time.perf_counter() - wall_start
    n = len(jobs)
    blocked = _in_fork_exec[0] - _in_fork_exec[1]
    return (_in_popen[0] / n * 1e6, (total - _in_popen[0]) / n * 1e6, wall / n * 1e6,
            blocked / n * 1e6, _in_fork_exec[1] / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    jobs = [bench.Job(["/bin/true"], 0) for _ in range(args.jobs)]
    systems: dict[str, Any] = {"pipereactor": bench.run_pipereactor}
    if sys.version_info >= (3, 11):
        # Each child in a process group of its own, in our session, instead
        # of leading a session (the default): what the session costs.
        systems["pipereactor, process_group=0"] = functools.partial(
            bench.run_pipereactor, popen_kwargs={"process_group": 0})
    systems["selectors"] = bench.run_selectors
    samples: dict[str, list[tuple[float, float, float, float, float]]] = {
        name: [] for name in systems
    }
    subprocess.Popen = _TimedPopen  # type: ignore[misc]
    # Popen calls fork_exec through a module global from 3.11 on, and through
    # the module before.
    _posixsubprocess.fork_exec = _timed_fork_exec
    if hasattr(subprocess, "_fork_exec"):
        subprocess._fork_exec = _timed_fork_exec
    for _ in range(args.reps):
        for name, run in systems.items():  # interleaved, as bench.py does
            samples[name].append(_measure(run, jobs))

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"

    print(f"parent thread CPU per job, us; {args.reps} runs of {args.jobs} jobs, "
          f"Python {sys.version.split()[0]}")
    print("| system | in fork_exec | in Popen, beyond fork_exec | the rest | sum |")
    print("|---|---|---|---|---|")
    for name, rows in samples.items():
        fork = [r[4] for r in rows]
        popen = [max(0.0, r[0] - r[4]) if r[0] else 0.0 for r in rows]  # fork_exec inside Popen
        rest = [r[1] - (0.0 if r[0] else r[4]) for r in rows]  # or called without Popen
        print(f"| {name} | {cell(fork)} | {cell(popen)} | {cell(rest)} "
              f"| {cell([r[0] + r[1] for r in rows])} |")
    print()
    print("wall time per job, us: the parent's CPU, blocked in vfork, and the rest "
          "(waiting for jobs to end)")
    print("| system | wall | parent CPU | blocked in vfork | the rest |")
    print("|---|---|---|---|---|")
    for name, rows in samples.items():
        cpu = [r[0] + r[1] for r in rows]
        waiting = [r[2] - c - r[3] for r, c in zip(rows, cpu)]
        print(f"| {name} | {cell([r[2] for r in rows])} | {cell(cpu)} "
              f"| {cell([r[3] for r in rows])} | {cell(waiting)} |")


if __name__ == "__main__":
    main()
