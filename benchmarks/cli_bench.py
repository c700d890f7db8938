"""The command-line runner against xargs -P (and GNU parallel, where installed):
N trivial jobs (/bin/true), J at a time, jobs per second.

    python benchmarks/cli_bench.py [--jobs 2000] [-j 16] [--reps 5]

Each repetition runs every system once, in a rotated order; medians with
min-max, and pipereactor's rate over each peer's, paired per repetition.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("-j", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    lines = "".join(f"{i}\n" for i in range(args.jobs)).encode()
    env = {**os.environ, "PYTHONPATH": ROOT}
    systems = {
        "pipereactor": [sys.executable, "-m", "pipereactor", "-j", str(args.j), "--", "/bin/true"],
        "xargs -P": ["xargs", "-P", str(args.j), "-n", "1", "/bin/true"],
    }
    if shutil.which("parallel"):
        systems["GNU parallel"] = ["parallel", "-j", str(args.j), "/bin/true"]
    rates: dict[str, list[float]] = {name: [] for name in systems}
    names = list(systems)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            start = time.perf_counter()
            subprocess.run(systems[name], input=lines, check=True, env=env,
                           stdout=subprocess.DEVNULL)
            rates[name].append(args.jobs / (time.perf_counter() - start))
    print(f"{args.jobs} runs of /bin/true, {args.j} at a time, {args.reps} repetitions "
          f"(`python benchmarks/cli_bench.py --jobs {args.jobs} -j {args.j} --reps {args.reps}`)\n")
    print("| runner | jobs/s | pipereactor / this |")
    print("|---|---|---|")
    base = rates["pipereactor"]
    for name, values in rates.items():
        ratio = "" if name == "pipereactor" else \
            f"{statistics.median(b / v for b, v in zip(base, values)):.2f}x"
        print(f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f}) | {ratio} |")
    if "GNU parallel" not in systems:
        print("\nGNU parallel is not installed here.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
