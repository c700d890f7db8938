"""What is kept of finished jobs: counters, the job log, the final summary.

A finished job leaves an :class:`Outcome`; :class:`Report` keeps counters,
the first ``SHOWN_FAILURES`` failures (with the last lines of their output)
and the three slowest jobs: bounded, whatever the number of jobs.  The job
log (``--joblog``) gets one row per job as it finishes, flushed at once.
"""

from __future__ import annotations

import heapq
import signal
import time
from dataclasses import dataclass
from typing import IO

__all__ = ["Outcome", "Report", "JobLog", "describe_signal", "SHOWN_FAILURES"]

SHOWN_FAILURES = 10


@dataclass
class Outcome:
    """One finished job (or one that never started)."""

    seq: int
    command: str
    ok: bool
    how: str  # "exit 3", "killed by SIGTERM, timed out", "could not run: ..."
    started: float | None = None  # time.time() at start
    runtime: float = 0.0
    received: int = 0
    exitval: int = 0
    signal: int = 0
    timed_out: bool = False
    usage: str = ""  # ", cpu 1.2s, 30 MiB" for the slowest jobs
    out_tail: bytes = b""
    err_tail: bytes = b""


def describe_signal(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


class JobLog:
    """GNU parallel's ``--joblog`` format, one flushed row per job."""

    HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

    def __init__(self, path: str, append: bool = False) -> None:
        """``append`` (``--resume``): add rows after the old ones, the header
        only if the file is new or empty; else start the file afresh."""
        self._file: IO[str] = open(path, "a" if append else "w", encoding="utf-8",
                                   errors="surrogateescape")
        if self._file.tell() == 0:
            self._file.write(self.HEADER)
            self._file.flush()
        elif append and _last_byte(path) != b"\n":
            # A row cut short (we died while writing it): ours start on a line of their own.
            self._file.write("\n")
            self._file.flush()

    def row(self, o: Outcome) -> None:
        command = o.command.replace("\n", " ")
        self._file.write(
            f"{o.seq}\t:\t{o.started or 0.0:.3f}\t{o.runtime:.3f}\t0\t{o.received}\t"
            f"{o.exitval}\t{o.signal}\t{command}\n"
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1)


class Report:
    """Counters and a bounded memory of finished jobs, for the status line and summary."""

    def __init__(self, tail_lines: int, label: str = "") -> None:
        self.tail_lines = tail_lines
        self.label = label  # "shard 2/4" with --shard
        self.skipped = 0  # --resume: in the job log already
        self.retried = 0  # runs after a failed one (--retries)
        self.ok = 0
        self.failed = 0
        self.timed_out = 0
        self.not_run = 0
        self.failures: list[Outcome] = []
        self._slowest: list[tuple[float, int, str]] = []  # a min-heap of 3
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.not_run

    def add(self, o: Outcome) -> None:
        if o.timed_out:
            self.timed_out += 1
        if o.ok:
            self.ok += 1
        else:
            self.failed += 1
            if len(self.failures) < SHOWN_FAILURES:
                self.failures.append(o)
        if o.started is not None:
            entry = (o.runtime, -o.seq, f"{o.command} {o.runtime:.1f}s{o.usage}")
            if len(self._slowest) < 3:
                heapq.heappush(self._slowest, entry)
            elif entry > self._slowest[0]:
                heapq.heapreplace(self._slowest, entry)

    def lines(self, seen: int, interrupted: bool, verbose: bool, details: bool = True,
              dry_run: bool = False) -> list[bytes]:
        """The summary: each shown failure with its last lines (``details``),
        then a total (with the slowest jobs when ``verbose``).  ``dry_run``:
        the ``seen`` commands were printed, none ran."""
        label = f"{self.label}: " if self.label else ""
        wall = time.monotonic() - self.started
        if dry_run:
            text = f"pipereactor: {label}--dry-run: {seen} commands printed, none run in {wall:.1f}s"
            if self.skipped:
                text += f"; {self.skipped} skipped (done in the job log)"
            return [text.encode("utf-8", "surrogateescape") + b"\n"]
        out: list[bytes] = []
        for o in self.failures if details else []:
            out.append(f"pipereactor: job {o.seq} failed ({o.how}): {o.command}\n"
                       .encode("utf-8", "surrogateescape"))
            for name, data in (("stdout", o.out_tail), ("stderr", o.err_tail)):
                for line in data.splitlines()[-self.tail_lines:] if self.tail_lines else []:
                    out.append(f"  {name}| ".encode() + line + b"\n")
        if details and self.failed > len(self.failures):
            out.append(f"pipereactor: ({self.failed - len(self.failures)} more failed jobs "
                       "not shown)\n".encode())
        not_run = f", {self.not_run} not run" if self.not_run else ""
        text = (f"pipereactor: {label}{self.ok} ok, {self.failed} failed "
                f"({self.timed_out} timed out)"
                f"{not_run}{', interrupted' if interrupted else ''} of {seen} in {wall:.1f}s")
        if self.skipped:
            text += f"; {self.skipped} skipped (done in the job log)"
        if self.retried:
            text += f"; {self.retried} runs again after a failure (--retries)"
        if verbose and self._slowest:
            ranked = sorted(self._slowest, reverse=True)
            text += "; slowest: " + "; ".join(e[2] for e in ranked)
        out.append(text.encode("utf-8", "surrogateescape") + b"\n")
        return out
