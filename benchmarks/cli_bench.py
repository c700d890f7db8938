"""The command-line runner against its peers, measured side by side.

    python benchmarks/cli_bench.py [--reps 5] [--only ROW ...] [--smoke]

Rows (issue 13, point 5 and point 3):

- ``lines``: four jobs printing LINES lines each through ``--line-buffer -j 4``,
  against GNU parallel ``--line-buffer``: MB/s of output into a file in
  $TMPDIR; afterwards (untimed) every line is checked whole and counted.
- ``true``: JOBS x ``/bin/true`` at ``-j 16`` against ``xargs -P 16`` (and GNU
  parallel): jobs per second.
- ``latency``: slow input: a runner is started, left idle, then given one line;
  milliseconds from that line to the first byte of its job's output, against
  ``xargs`` (and GNU parallel).  The input stays open meanwhile.
- ``gcc``: 300 ``gcc -O2 -c`` commands from a file at ``-j 4`` against
  ``make -j4`` on the same sources: wall time (lower is better).
- ``memory``: the runner's peak RSS (VmHWM, read inside the runner process
  at its end) for SMALL and BIG numbers of trivial jobs at ``-j 16``.

Each repetition runs every system once, in a rotated order; medians with
min-max, and ratios paired per repetition.  Nothing is installed: GNU
parallel is the Debian package ``parallel`` (``apt-get install parallel``);
when it is missing its rows say so and are skipped.
"""

from __future__ import annotations

import argparse
import math
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "PYTHONPATH": ROOT}
PR = [sys.executable, "-m", "pipereactor"]
PARALLEL = shutil.which("parallel")
NO_PARALLEL = ("GNU parallel: not installed here, row skipped "
               "(Debian/Ubuntu: apt-get install parallel)")


def fmt(values: list[float], digits: int = 0) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def ratio(ours: list[float], theirs: list[float], higher_is_better: bool = True) -> str:
    r = [a / b if higher_is_better else b / a for a, b in zip(ours, theirs)]
    return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def interleave(systems: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {name: [] for name in systems}
    names = list(systems)
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            values[name].append(systems[name]())
    return values


def table(title: str, unit: str, values: dict[str, list[float]], digits: int = 0,
          higher_is_better: bool = True) -> None:
    print(f"\n### {title}\n")
    print(f"| system | {unit} | pipereactor vs this (>1: pipereactor better) |")
    print("|---|---|---|")
    base = values["pipereactor"]
    for name, v in values.items():
        r = "" if name == "pipereactor" else ratio(base, v, higher_is_better)
        print(f"| {name} | {fmt(v, digits)} | {r} |")


# -- lines ---------------------------------------------------------------------------

def run_lines(argv: list[str], n: int) -> float:
    """Run ``argv`` (fed a,b,c,d) with its output to a file; return MB/s.
    Then, untimed, check that every line of the file is whole and that each
    job's lines are all there."""
    patterns = [(c * 20 + "\n").encode() for c in "abcd"]
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        subprocess.run(argv, input=b"a\nb\nc\nd\n", stdout=out, check=True, env=ENV)
        elapsed = time.perf_counter() - start
        total = out.tell()
        out.seek(0)
        counts = [0, 0, 0, 0]
        carry = b""
        while chunk := out.read(1 << 22):
            data = carry + chunk
            end = data.rfind(b"\n") + 1
            body, carry = data[:end], data[end:]
            rest = body
            for i, pat in enumerate(patterns):
                counts[i] += body.count(pat)
                rest = rest.replace(pat, b"")
            if rest:
                raise SystemExit(f"{argv[:3]}: a line was cut or mixed: {rest[:60]!r}")
    if carry or counts != [n] * 4:
        raise SystemExit(f"{argv[:3]}: line counts {counts}, leftover {carry[:40]!r}")
    return total / elapsed / 1e6


def row_lines(reps: int, n: int) -> None:
    child = [sys.executable, os.path.join(HERE, "lines.py"), str(n)]
    systems: dict[str, Callable[[], float]] = {
        "pipereactor": lambda: run_lines([*PR, "--line-buffer", "-j", "4", "--", *child], n),
    }
    if PARALLEL:
        systems["GNU parallel"] = lambda: run_lines(
            [PARALLEL, "--line-buffer", "-j", "4", *child, "{}"], n)
    table(f"lines: 4 jobs x {n:,} lines of 21 bytes, --line-buffer -j 4, every line checked",
          "MB/s", interleave(systems, reps), 0)
    if not PARALLEL:
        print(f"\n{NO_PARALLEL}")


# -- true ---------------------------------------------------------------------------------

def row_true(reps: int, jobs: int) -> None:
    lines = "".join(f"{i}\n" for i in range(jobs)).encode()

    def timed(argv: list[str]) -> Callable[[], float]:
        def go() -> float:
            start = time.perf_counter()
            subprocess.run(argv, input=lines, check=True, env=ENV, stdout=subprocess.DEVNULL)
            return jobs / (time.perf_counter() - start)
        return go

    systems = {
        "pipereactor": timed([*PR, "-j", "16", "--", "/bin/true"]),
        # The default, --contain auto, puts each job in a cgroup where it can.
        "pipereactor --contain no": timed([*PR, "-j", "16", "--contain", "no", "--", "/bin/true"]),
        "xargs -P 16": timed(["xargs", "-P", "16", "-n", "1", "/bin/true"]),
    }
    if PARALLEL:
        systems["GNU parallel"] = timed([PARALLEL, "-j", "16", "/bin/true"])
    table(f"true: {jobs:,} x /bin/true at -j 16", "jobs/s", interleave(systems, reps), 0)
    if not PARALLEL:
        print(f"\n{NO_PARALLEL}")


# -- latency -------------------------------------------------------------------------------

LATENCY_LIMIT = 10.0  # seconds: a runner silent this long gets "inf"


def first_output_ms(argv: list[str]) -> float:
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
    assert p.stdin is not None and p.stdout is not None
    try:
        time.sleep(1.0)  # let it start up and wait for input: not what is measured
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ)
            start = time.perf_counter()
            p.stdin.write(b"hello\n")
            p.stdin.flush()
            if not sel.select(LATENCY_LIMIT):
                return math.inf  # it waits for more input (or its end)
            elapsed = time.perf_counter() - start
        data = os.read(p.stdout.fileno(), 100)
        if not data.startswith(b"hello"):
            raise SystemExit(f"{argv[:3]}: unexpected first output {data!r}")
        return elapsed * 1000
    finally:
        p.stdin.close()
        p.stdout.close()
        p.wait()


def row_latency(reps: int) -> None:
    systems = {
        "pipereactor": lambda: first_output_ms([*PR, "-j", "4", "--", "echo"]),
        "xargs": lambda: first_output_ms(["xargs", "-P", "4", "-n", "1", "echo"]),
    }
    if PARALLEL:
        systems["GNU parallel"] = lambda: first_output_ms([PARALLEL, "-j", "4", "echo"])
    values = interleave(systems, reps)
    print("\n### latency: one line into an idle runner whose input stays open, "
          "to the first byte of output\n")
    print("| system | ms | pipereactor minus this, ms (paired) |")
    print("|---|---|---|")
    base = values["pipereactor"]
    for name, v in values.items():
        if any(math.isinf(x) for x in v):
            print(f"| {name} | no output {LATENCY_LIMIT:.0f} s after the line in "
                  f"{sum(map(math.isinf, v))} of {len(v)} runs | |")
            continue
        d = [a - b for a, b in zip(base, v)]
        diff = "" if name == "pipereactor" else \
            f"{statistics.median(d):+.1f} ({min(d):+.1f} to {max(d):+.1f})"
        print(f"| {name} | {fmt(v, 1)} | {diff} |")
    if not PARALLEL:
        print(f"\n{NO_PARALLEL}")


# -- gcc -------------------------------------------------------------------------------------

SOURCE = """
#include <string.h>
struct item {{ int key; double value; char name[32]; }};
static int cmp_{n}(const void *a, const void *b) {{
    const struct item *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}}
double work_{n}(struct item *items, int count) {{
    double sum = 0;
    for (int i = 0; i < count; i++) {{
        for (int j = 0; j < {n} % 7 + 3; j++) sum += items[i].value * j / (items[i].key + 1.0);
        if (strlen(items[i].name) > {n} % 5) sum -= 1;
    }}
    return sum + cmp_{n}(items, items + 1);
}}
"""


def row_gcc(reps: int, count: int) -> None:
    if not shutil.which("gcc") or not shutil.which("make"):
        print("\ngcc or make missing: gcc row skipped")
        return
    with tempfile.TemporaryDirectory() as d:
        names = [f"f{i}" for i in range(count)]
        for i, name in enumerate(names):
            with open(os.path.join(d, name + ".c"), "w") as f:
                f.write(SOURCE.format(n=i))
        cmds = [f"gcc -O2 -c {n}.c -o {n}.o" for n in names]
        with open(os.path.join(d, "commands"), "w") as f:
            f.write("".join(c + "\n" for c in cmds))
        with open(os.path.join(d, "Makefile"), "w") as f:
            f.write("all: " + " ".join(n + ".o" for n in names) + "\n")
            for n, c in zip(names, cmds):
                f.write(f"{n}.o: {n}.c\n\t{c}\n")

        def timed(argv: list[str]) -> Callable[[], float]:
            def go() -> float:
                for n in names:
                    try:
                        os.unlink(os.path.join(d, n + ".o"))
                    except FileNotFoundError:
                        pass
                start = time.perf_counter()
                subprocess.run(argv, cwd=d, check=True, env=ENV, stdout=subprocess.DEVNULL)
                elapsed = time.perf_counter() - start
                missing = [n for n in names if not os.path.exists(os.path.join(d, n + ".o"))]
                if missing:
                    raise SystemExit(f"{argv[:3]}: {len(missing)} objects missing")
                return elapsed
            return go

        values = interleave({
            "pipereactor": timed([*PR, "-j", "4", "-a", "commands"]),
            "make -j4": timed(["make", "-s", "-j4"]),
        }, reps)
    table(f"gcc: {count} x gcc -O2 -c from a file, -j 4 (commands run without /bin/sh)",
          "seconds", values, 2, higher_is_better=False)


# -- memory ------------------------------------------------------------------------------------

_HWM = ("import sys; from pipereactor.cli import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "sys.stderr.write(hwm); sys.exit(rc)")


def peak_kib(jobs: int) -> float:
    lines = "".join(f"{i}\n" for i in range(jobs)).encode()
    done = subprocess.run([sys.executable, "-c", _HWM, "-j", "16", "--", "/bin/true"],
                          input=lines, capture_output=True, env=ENV, check=True)
    return float(done.stderr.split()[-2])


def row_memory(reps: int, small: int, big: int) -> None:
    values = interleave({f"{small:,} jobs": lambda: peak_kib(small) / 1024,
                         f"{big:,} jobs": lambda: peak_kib(big) / 1024}, reps)
    a, b = values[f"{small:,} jobs"], values[f"{big:,} jobs"]
    print(f"\n### memory: the runner's peak RSS (VmHWM), /bin/true at -j 16\n")
    print("| jobs | peak RSS MiB |")
    print("|---|---|")
    for name, v in values.items():
        print(f"| {name} | {fmt(v, 1)} |")
    r = [y / x for x, y in zip(a, b)]
    print(f"\n{big:,} jobs / {small:,} jobs: {statistics.median(r):.3f}x "
          f"({min(r):.3f}-{max(r):.3f}), paired per repetition")


ROWS = ("lines", "true", "latency", "gcc", "memory")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--lines", type=int, default=5_000_000, help="lines per job (lines row)")
    p.add_argument("--jobs", type=int, default=5000, help="jobs (true row)")
    p.add_argument("--sources", type=int, default=300, help="C files (gcc row)")
    p.add_argument("--small", type=int, default=2000, help="jobs, memory row")
    p.add_argument("--big", type=int, default=200_000, help="jobs, memory row")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition: a check")
    a = p.parse_args()
    if a.smoke:
        a.reps, a.lines, a.jobs, a.sources, a.small, a.big = 1, 20000, 100, 8, 100, 400
    args = " ".join(sys.argv[1:])
    print(f"`python benchmarks/cli_bench.py {args}`; Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {a.reps} repetitions, systems interleaved")
    if not PARALLEL:
        print(f"\n{NO_PARALLEL}")
    for row in a.only:
        if row == "lines":
            row_lines(a.reps, a.lines)
        elif row == "true":
            row_true(a.reps, a.jobs)
        elif row == "latency":
            row_latency(a.reps)
        elif row == "gcc":
            row_gcc(a.reps, a.sources)
        elif row == "memory":
            row_memory(a.reps, a.small, a.big)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
