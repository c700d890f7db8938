"""pipereactor against every stdlib way of running children, workload by workload.

    python benchmarks/bench.py                 # full size, 5 repetitions (several minutes)
    python benchmarks/bench.py --reps 7 --only W1d,W3
    python benchmarks/bench.py --smoke         # tiny sizes, one repetition: correctness only
    python benchmarks/bench.py --compare-with ../before   # this library against another checkout

With ``--compare-with PATH`` (the root of another checkout of the library,
e.g. ``git worktree add ../before <commit>``), every pipereactor system also
runs as "SYSTEM (before)" with PATH's ``pipereactor`` package (same
workloads, this file's children), interleaved with the rest; a last section
gives the paired after/before ratios of each workload's headline figure and
of parent CPU.

Every measurement runs in a fresh interpreter (``--one SYSTEM WORKLOAD``), so
that one system's heap, threads or page cache of the parent cannot favour the
next.  Within a repetition the systems run one after another in a rotated
order, after one discarded warm-up run (the first run after another workload
pays for that workload's memory and page cache); ratios are taken pair by pair inside a repetition (the machine's speed
drifts between them), and the table gives medians with min-max.  Every
output is checked: hashes where it is kept, byte counts where it is
discarded.  Parent peak memory is VmHWM from /proc/self/status, reset just
before the run (``ru_maxrss`` would carry the orchestrator's across exec).
Threads are sampled from outside, every 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import hashlib
import json
import os
import platform
import resource
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
#: The library measured: this checkout's, or another's for --compare-with.
LIB = os.path.abspath(os.environ.get("PIPEREACTOR_BENCH_LIB") or os.path.dirname(HERE))
sys.path.insert(0, LIB)

import pipereactor as pr  # noqa: E402  (imported before any timing starts)

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 65536
WRITER = os.path.join(HERE, "writer.py")
ECHO = os.path.join(HERE, "echo.py")
TRICKLE = os.path.join(HERE, "trickle.py")
TRICKLE_SIZE = 100  # bytes per chunk
TRICKLE_DELAY = 0.0002  # seconds between chunks: the parent reads each alone
BLOCK = bytes(range(256)) * 4096  # writer.py's pattern


def pattern(n: int) -> bytes:
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


_digests: dict[int, str] = {}


def pattern_digest(n: int) -> str:
    if n not in _digests:
        h = hashlib.sha256()
        left = n
        while left:
            piece = min(left, len(BLOCK))
            h.update(BLOCK[:piece])
            left -= piece
        _digests[n] = h.hexdigest()
    return _digests[n]


# -- workloads ------------------------------------------------------------------


@dataclass
class Job:
    argv: list[str]
    out: int  # bytes expected on stdout
    err: int = 0
    stdin: bytes | None = None
    expect_out: bytes | None = None  # exact stdout, when it is not the pattern


@dataclass
class Workload:
    name: str
    what: str
    make_jobs: Callable[[float], list[Job]]
    parallel: int
    mode: str  # "discard", "keep" or "file"
    systems: list[str]
    metric: str  # the headline figure: "MB/s", "jobs/s", "wall s", "RSS growth MiB"
    payload: Callable[[float], int] = lambda scale: 0
    targets: list[tuple[str, str, str, float]] = field(default_factory=list)
    # (metric key, comparator ">=" or "<=", peer or "" for absolute, bound)
    columns: tuple[str, ...] = ("parent CPU s", "peak RSS MiB", "threads")
    # The first of ``systems`` is the one the others are compared with.


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _size(n: int, scale: float) -> int:
    return max(1, int(n * scale))


def _trickle_chunks(scale: float) -> int:
    return max(20, int(10_000 * scale))


ONE = ["pipereactor", "communicate", "threads", "asyncio", "selectors"]
MANY = ["pipereactor", "threadpool", "asyncio", "selectors"]

WORKLOADS = {
    w.name: w
    for w in [
        Workload("W1d", "one child writes 1 GiB to stdout; the parent discards it",
                 lambda s: [Job(_py(WRITER, str(_size(GiB, s))), _size(GiB, s))], 1, "discard",
                 ONE, "MB/s", lambda s: _size(GiB, s),
                 [("MB/s", ">=", "threads", 2.0), ("MB/s", ">=", "asyncio", 2.0)]),
        Workload("W1k", "one child writes 256 MiB; the parent keeps it",
                 lambda s: [Job(_py(WRITER, str(_size(256 * MiB, s))), _size(256 * MiB, s))], 1,
                 "keep", ONE, "MB/s", lambda s: _size(256 * MiB, s),
                 [("MB/s", ">=", "communicate", 1.0), ("peak RSS / payload", "<=", "", 1.25)]),
        Workload("W1f", "one child writes 1 GiB; the parent sends it to a file",
                 lambda s: [Job(_py(WRITER, str(_size(GiB, s))), _size(GiB, s))], 1, "file",
                 ["pipereactor", "shell"], "MB/s", lambda s: _size(GiB, s),
                 [("MB/s", ">=", "shell", 0.9)]),
        Workload("W2", "64 children, 16 MiB on stdout and 16 MiB on stderr each, 16 at a time; all kept",
                 lambda s: [Job(_py(WRITER, str(_size(16 * MiB, s)), str(_size(16 * MiB, s))),
                                _size(16 * MiB, s), _size(16 * MiB, s)) for _ in range(64)],
                 16, "keep", MANY, "wall s", lambda s: 64 * 2 * _size(16 * MiB, s),
                 [("wall s", "<=", "selectors", 0.8), ("parent CPU s", "<=", "threadpool", 0.5)]),
        Workload("W3", "2,000 runs of /bin/true, stdout and stderr piped, 16 at a time",
                 lambda s: [Job(["/bin/true"], 0) for _ in range(max(16, int(2000 * s)))], 16, "keep",
                 MANY, "jobs/s", lambda s: 0,
                 [("jobs/s", ">=", "selectors", 1.0), ("jobs/s", ">=", "asyncio", 1.3)]),
        Workload("W4", "1,000 children alive at once; each sleeps 1 s and prints a line",
                 lambda s: [Job(["/bin/sh", "-c", "sleep 1; echo line"], 5, expect_out=b"line\n")
                            for _ in range(max(8, int(1000 * s)))], 100000, "keep", MANY, "wall s",
                 lambda s: 0,
                 [("threads", "<=", "", 1.0), ("wall s", "<=", "selectors", 1.05)]),
        Workload("W5", "128 MiB fed to a cat-like child that echoes it and writes 64 MiB to stderr",
                 lambda s: [Job(_py(ECHO, str(_size(64 * MiB, s))), _size(128 * MiB, s),
                                _size(64 * MiB, s), stdin=pattern(_size(128 * MiB, s)))], 1, "keep",
                 ONE, "MB/s", lambda s: _size(128 * MiB, s),
                 [("MB/s", ">=", "threads", 1.0)]),
        Workload("W6", "RingBuffer(64 KiB) on a child writing 1 GiB: parent RSS growth",
                 lambda s: [Job(_py(WRITER, str(_size(GiB, s))), _size(GiB, s))], 1, "ring",
                 ["pipereactor"], "RSS growth MiB", lambda s: _size(GiB, s),
                 [("RSS growth MiB", "<=", "", 16.0)]),
        Workload("W7", f"a child trickles 10,000 chunks of {TRICKLE_SIZE} B, {TRICKLE_DELAY * 1e3:g} ms "
                 "apart, into a CallbackSink (through Python reads): parent CPU per chunk read, "
                 "pipesize 1 MiB against 64 KiB",
                 lambda s: [Job(_py(TRICKLE, str(_trickle_chunks(s)), str(TRICKLE_SIZE),
                                    str(TRICKLE_DELAY)), _trickle_chunks(s) * TRICKLE_SIZE)],
                 1, "count", ["pipereactor 1 MiB", "pipereactor 64 KiB"], "CPU us per read",
                 targets=[("CPU us per read", "<=", "pipereactor 64 KiB", 1.2)],
                 columns=("reads", "parent CPU s", "wall s")),
        Workload("W3c", "W3 with each job in a cgroup of its own (Reactor(contain=True)) "
                 "against W3 in process groups",
                 lambda s: [Job(["/bin/true"], 0) for _ in range(max(16, int(2000 * s)))], 16, "keep",
                 ["pipereactor contained", "pipereactor"], "jobs/s",
                 targets=[("jobs/s", ">=", "pipereactor", 0.5)],
                 columns=("parent CPU s", "wall s")),
    ]
}


# -- the systems: each runs jobs, returns [(stdout, stderr)] ------------------------
# stdout/stderr: bytes when kept, a byte count when discarded, a path for "file".


#: What the measured process counted, beyond its results ("reads": sink writes).
COUNTERS: dict[str, int] = {}


def run_pipereactor(jobs: list[Job], parallel: int, mode: str, tmp: str,
                    pipesize: int | None = None, contain: bool = False,
                    popen_kwargs: dict[str, Any] | None = None) -> list[tuple[Any, Any]]:
    counts: dict[tuple[int, str], int] = {}
    COUNTERS["reads"] = 0

    def counter(key: tuple[int, str]) -> Callable[[bytes], None]:
        counts[key] = 0

        def count(data: bytes) -> None:
            counts[key] += len(data)
            COUNTERS["reads"] += 1
        return count

    def sink(stream: str, i: int) -> Any:
        if mode == "count":  # every byte through a Python read (no splice)
            return pr.CallbackSink(counter((i, stream)))
        if mode == "keep":
            return pr.BytesSink()
        if mode == "file":
            return pr.FileSink(os.path.join(tmp, f"{stream}{i}"))
        if mode == "ring":
            return pr.RingBuffer(65536)
        return pr.NullSink()

    extra: dict[str, Any] = dict(popen_kwargs or {})
    if pipesize is not None:
        extra["pipesize"] = pipesize
    # contain= only when asked: a --compare-with library may predate it.
    options: dict[str, Any] = {"contain": True} if contain else {}
    with pr.Reactor(max_parallel=parallel, **options) as reactor:
        handles = [
            reactor.spawn(job.argv, stdin=job.stdin, stdout=sink("out", i), stderr=sink("err", i),
                          **extra)
            for i, job in enumerate(jobs)
        ]
    results = []
    for i, h in enumerate(handles):
        if h.returncode != 0:
            raise RuntimeError(f"job {i} exited {h.returncode}")
        if mode == "keep":
            results.append((h.stdout.getvalue(), h.stderr.getvalue()))
        elif mode == "file":
            results.append((os.path.join(tmp, f"out{i}"), os.path.join(tmp, f"err{i}")))
        elif mode == "count":
            results.append((counts[i, "out"], counts[i, "err"]))
        else:
            results.append((h.stdout.total, h.stderr.total))
    return results


def run_communicate(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    (job,) = jobs
    with subprocess.Popen(job.argv, stdin=subprocess.PIPE if job.stdin is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        out, err = p.communicate(job.stdin)
    if mode == "discard":
        return [(len(out), len(err))]
    return [(out, err)]


def _drain(stream: Any, mode: str, into: list[Any]) -> None:
    if mode == "keep":
        chunks = []
        while True:
            data = stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)
            if not data:
                break
            chunks.append(data)
        into.append(b"".join(chunks))
    else:
        total = 0
        fd = stream.fileno()
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                break
            total += len(data)
        into.append(total)


def run_threads(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    """One child: a thread per pipe."""
    (job,) = jobs
    p = subprocess.Popen(job.argv, stdin=subprocess.PIPE if job.stdin is not None else None,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    out: list[Any] = []
    err: list[Any] = []
    threads = [threading.Thread(target=_drain, args=(p.stdout, mode, out)),
               threading.Thread(target=_drain, args=(p.stderr, mode, err))]
    if job.stdin is not None:
        def feed() -> None:
            assert p.stdin is not None
            view = memoryview(job.stdin)  # type: ignore[arg-type]
            try:
                while view:
                    view = view[p.stdin.write(view[:CHUNK]) or 0:]
            except BrokenPipeError:
                pass
            p.stdin.close()
        threads.append(threading.Thread(target=feed))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.stdout.close()  # type: ignore[union-attr]
    p.stderr.close()  # type: ignore[union-attr]
    p.wait()
    return [(out[0], err[0])]


def run_threadpool(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    """Many children: ThreadPoolExecutor + subprocess.run, as most code does."""
    def one(job: Job) -> tuple[Any, Any]:
        done = subprocess.run(job.argv, input=job.stdin, capture_output=True)
        return done.stdout, done.stderr
    with concurrent.futures.ThreadPoolExecutor(min(parallel, len(jobs))) as pool:
        return list(pool.map(one, jobs))


def run_asyncio(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    async def read_all(stream: asyncio.StreamReader) -> Any:
        if mode == "keep":
            return await stream.read()
        total = 0
        while True:
            data = await stream.read(CHUNK)
            if not data:
                return total
            total += len(data)

    async def one(job: Job, gate: asyncio.Semaphore) -> tuple[Any, Any]:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                *job.argv, stdin=subprocess.PIPE if job.stdin is not None else None,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if job.stdin is not None and mode == "keep":
                out, err = await proc.communicate(job.stdin)
                return out, err
            assert proc.stdout is not None and proc.stderr is not None
            out, err = await asyncio.gather(read_all(proc.stdout), read_all(proc.stderr))
            await proc.wait()
            return out, err

    async def main() -> list[tuple[Any, Any]]:
        gate = asyncio.Semaphore(parallel)
        return list(await asyncio.gather(*(one(job, gate) for job in jobs)))

    return asyncio.run(main())


def run_selectors(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    """A careful hand-written loop: non-blocking 64 KiB reads and writes, one
    selector for every pipe, at most ``parallel`` children at once."""
    sel = selectors.DefaultSelector()
    results: list[list[Any]] = [[None, None] for _ in jobs]
    queue = list(range(len(jobs)))
    queue.reverse()
    running: dict[int, dict[str, Any]] = {}

    def start(i: int) -> None:
        job = jobs[i]
        p = subprocess.Popen(job.argv, stdin=subprocess.PIPE if job.stdin is not None else None,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        state: dict[str, Any] = {"p": p, "open": 2, "out": [], "err": [], "nout": 0, "nerr": 0}
        for name, f in (("out", p.stdout), ("err", p.stderr)):
            assert f is not None
            os.set_blocking(f.fileno(), False)
            sel.register(f.fileno(), selectors.EVENT_READ, (i, name))
        if job.stdin is not None:
            assert p.stdin is not None
            os.set_blocking(p.stdin.fileno(), False)
            state["in"] = memoryview(job.stdin)
            state["open"] += 1
            sel.register(p.stdin.fileno(), selectors.EVENT_WRITE, (i, "in"))
        running[i] = state

    def finish(i: int) -> None:
        state = running.pop(i)
        p = state["p"]
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()
        p.wait()
        for k, name in ((0, "out"), (1, "err")):
            results[i][k] = b"".join(state[name]) if mode == "keep" else state["n" + name]

    while queue or running:
        while queue and len(running) < parallel:
            start(queue.pop())
        for key, _ in sel.select():
            i, name = key.data
            state = running[i]
            if name == "in":
                view = state["in"]
                try:
                    n = os.write(key.fd, view[:CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    n, view = len(view), view[:0]
                state["in"] = view = view[n:]
                if not view:
                    sel.unregister(key.fd)
                    state["p"].stdin.close()
                    state["p"].stdin = None
                    state["open"] -= 1
            else:
                try:
                    data = os.read(key.fd, CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    if mode == "keep":
                        state[name].append(data)
                    else:
                        state["n" + name] += len(data)
                    continue
                sel.unregister(key.fd)
                state["open"] -= 1
            if state["open"] == 0:
                finish(i)
    sel.close()
    return [(r[0], r[1]) for r in results]


def run_shell(jobs: list[Job], parallel: int, mode: str, tmp: str) -> list[tuple[Any, Any]]:
    """The floor for W1f: the child writes straight to the file."""
    (job,) = jobs
    out = os.path.join(tmp, "out0")
    with open(out, "wb") as f:
        subprocess.run(job.argv, stdout=f, check=True)
    return [(out, None)]


SYSTEMS: dict[str, Callable[[list[Job], int, str, str], list[tuple[Any, Any]]]] = {
    "pipereactor": run_pipereactor,
    "pipereactor 1 MiB": functools.partial(run_pipereactor, pipesize=MiB),
    "pipereactor 64 KiB": functools.partial(run_pipereactor, pipesize=64 * 1024),
    "pipereactor contained": functools.partial(run_pipereactor, contain=True),
    "communicate": run_communicate,
    "threads": run_threads,
    "threadpool": run_threadpool,
    "asyncio": run_asyncio,
    "selectors": run_selectors,
    "shell": run_shell,
}


# -- one measurement, in a fresh process -----------------------------------------------


def _status(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _check(job: Job, got: Any, n: int, expect: bytes | None, mode: str) -> None:
    if mode in ("discard", "ring", "count"):
        if got != n:
            raise AssertionError(f"{got} bytes, expected {n}")
        return
    if mode == "file":
        if got is None:
            return
        h = hashlib.sha256()
        size = 0
        with open(got, "rb") as f:
            while data := f.read(MiB):
                h.update(data)
                size += len(data)
        digest = h.hexdigest()
    else:
        size, digest = len(got), hashlib.sha256(got).hexdigest()
    want = hashlib.sha256(expect).hexdigest() if expect is not None else pattern_digest(n)
    if (size, digest) != (n, want if n else hashlib.sha256(b"").hexdigest()):
        raise AssertionError(f"{size} bytes, expected {n}, or the content differs")


def measure(system: str, workload: str, scale: float) -> dict[str, Any]:
    w = WORKLOADS[workload]
    jobs = w.make_jobs(scale)
    with tempfile.TemporaryDirectory(prefix="pr-bench-") as tmp:
        rss_before = _status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = SYSTEMS[system](jobs, w.parallel, w.mode, tmp)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        hwm = _status("VmHWM")
        for job, (out, err) in zip(jobs, results):
            _check(job, out, job.out, job.expect_out, w.mode)
            if w.mode != "file" or err is not None:
                _check(job, err, job.err, None, w.mode)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    payload = w.payload(scale)
    reads = COUNTERS.get("reads", 0)
    return {
        "reads": reads,
        "CPU us per read": cpu / reads * 1e6 if reads else 0.0,
        "wall s": wall,
        "parent CPU s": cpu,
        "MB/s": payload / wall / 1e6 if payload else 0.0,
        "jobs/s": len(jobs) / wall,
        "peak RSS MiB": hwm / MiB,
        "peak RSS / payload": hwm / payload if payload else 0.0,
        "RSS growth MiB": (hwm - rss_before) / MiB,
    }


# -- orchestration -------------------------------------------------------------------------


BEFORE = " (before)"  # a system run with the --compare-with checkout's library


def run_one(system: str, workload: str, scale: float, before: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PIPEREACTOR_BENCH_LIB", None)
    if system.endswith(BEFORE):
        assert before is not None
        system = system[:-len(BEFORE)]
        env["PIPEREACTOR_BENCH_LIB"] = before
    p = subprocess.Popen([sys.executable, __file__, "--one", system, workload, "--scale", str(scale)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    threads = 0
    while p.poll() is None:  # sample the measured process's thread count from outside
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        threads = max(threads, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.005)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"{system} {workload} failed:\n{err}")
    result: dict[str, Any] = json.loads(out)
    result["threads"] = threads
    return result


def fmt(values: list[float]) -> str:
    med = statistics.median(values)
    digits = 2 if med < 10 else 1 if med < 100 else 0
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


HIGHER_IS_BETTER = {"MB/s", "jobs/s"}


def report(runs: dict[str, dict[str, list[dict[str, Any]]]], reps: int, scale: float) -> tuple[str, list[str]]:
    lines = []
    verdicts = []
    for name, by_system in runs.items():
        w = WORKLOADS[name]
        lines.append(f"\n### {name}: {w.what}\n")
        metrics = [w.metric] + [m for m in w.columns if m != w.metric]
        lines.append("| system | " + " | ".join(metrics) + f" | {w.systems[0]}'s {w.metric} / this one's |")
        lines.append("|---|" + "---|" * (len(metrics) + 1))
        base = by_system.get(w.systems[0], [])
        for system, samples in by_system.items():
            cells = [fmt([s[m] for s in samples]) for m in metrics]
            if system == w.systems[0] or not base:
                ratio = ""
            else:
                ratios = [b[w.metric] / s[w.metric] for b, s in zip(base, samples) if s[w.metric]]
                ratio = fmt(ratios) + "x" if ratios else ""
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {ratio} |")
        for metric, op, peer, bound in w.targets:
            if peer:
                if peer not in by_system:
                    continue
                ratios = [b[metric] / s[metric] for b, s in zip(base, by_system[peer]) if s[metric]]
                value = statistics.median(ratios)
                shown = f"{fmt(ratios)}x {peer}"
            else:
                values = [b[metric] for b in base]
                value = statistics.median(values)
                shown = fmt(values)
            met = value >= bound if op == ">=" else value <= bound
            verdicts.append(
                f"- {name} {metric} {op} {bound}{'x ' + peer if peer else ''}: "
                f"{'met' if met else 'NOT met'} ({shown})"
            )
    return "\n".join(lines), verdicts


def compare(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """After (this checkout) against before, pair by pair, oriented so that
    above 1 means better after: the headline figure, and parent CPU."""
    lines = []
    for name, by_system in runs.items():
        w = WORKLOADS[name]
        for system in w.systems:
            after, before = by_system.get(system), by_system.get(system + BEFORE)
            if not after or not before:
                continue
            cells = []
            for metric in dict.fromkeys([w.metric, "parent CPU s"]):
                if metric in HIGHER_IS_BETTER:
                    ratios = [a[metric] / b[metric] for a, b in zip(after, before) if b[metric]]
                else:
                    ratios = [b[metric] / a[metric] for a, b in zip(after, before) if a[metric]]
                if ratios:
                    cells.append((metric, ratios))
            if not cells:
                continue
            verdict = "not slower" if statistics.median(cells[0][1]) >= 1.0 else "SLOWER"
            lines.append(f"- {name} {system}: " + ", ".join(f"{m} {fmt(r)}x" for m, r in cells)
                         + f": {verdict}")
    return lines


def describe(path: str) -> str:
    """A checkout's root, with its commit when it is a git work tree."""
    try:
        commit = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{path} ({commit})" if commit else path


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            pipe_max = f.read().strip()
    except OSError:
        pipe_max = "?"
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, pipe-max-size {pipe_max}")


def table_order(name: str, before: str | None) -> list[str]:
    """A workload's systems, then (with --compare-with) its pipereactor ones before."""
    systems = WORKLOADS[name].systems
    if before is None:
        return list(systems)
    return systems + [s + BEFORE for s in systems if s.startswith("pipereactor")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--compare-with", metavar="PATH",
                        help="another checkout's root: also run each pipereactor system with its "
                             "library, and give after/before paired ratios")
    parser.add_argument("--one", nargs=2, metavar=("SYSTEM", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if not os.path.realpath(pr.__file__).startswith(os.path.realpath(LIB) + os.sep):
            raise RuntimeError(f"pipereactor came from {pr.__file__}, not from {LIB}")
        print(json.dumps(measure(args.one[0], args.one[1], args.scale)))
        return 0
    before = None
    if args.compare_with:
        before = os.path.abspath(args.compare_with)
        if not os.path.isfile(os.path.join(before, "pipereactor", "__init__.py")):
            parser.error(f"--compare-with: no pipereactor/__init__.py under {before}")
    if args.smoke:
        args.reps, args.scale = 1, 1 / 256
    names = [n for n in WORKLOADS if not args.only or n in args.only.split(",")]
    skipped = []
    try:
        pr.Reactor(contain=True).close()
    except RuntimeError as exc:
        if "W3c" in names:
            names.remove("W3c")
            skipped.append(f"W3c skipped: {exc}")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in names}
    started = time.monotonic()
    for rep in range(args.reps):
        for name in names:
            systems = table_order(name, before)
            order = systems[rep % len(systems):] + systems[:rep % len(systems)]  # rotate
            if not args.smoke:
                # The first run after another workload pays for its memory and
                # page cache (W1f swung 10x on position alone): warm up, discard.
                run_one(order[-1], name, args.scale, before)
            for system in order:
                runs[name].setdefault(system, [])
                result = run_one(system, name, args.scale, before)
                runs[name][system].append(result)
                print(f"rep {rep + 1}/{args.reps} {name} {system}: "
                      f"{WORKLOADS[name].metric} {result[WORKLOADS[name].metric]:.2f}",
                      file=sys.stderr, flush=True)
    for name, by_system in runs.items():  # in the workload's order: the base first
        for system in table_order(name, before):
            if system in by_system:
                by_system[system] = by_system.pop(system)
    table, verdicts = report(runs, args.reps, args.scale)
    command = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
    print(f"Machine: {machine()}")
    if before is not None:
        print(f"Library: after = {describe(LIB)}; before = {describe(before)}")
    print(f"Command: `{command.strip()}` ({args.reps} repetitions, scale {args.scale:g}, "
          f"{time.monotonic() - started:.0f} s)")
    print("\n".join(skipped))
    print(table)
    print("\nTargets (medians of per-repetition ratios):\n")
    print("\n".join(verdicts))
    if before is not None:
        print("\nAfter against before (medians of per-repetition ratios, above 1: better after):\n")
        print("\n".join(compare(runs)))
    print("\nEvery output was checked (hashes where kept, byte counts where discarded).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
