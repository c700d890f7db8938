"""``python -m pipereactor``: run a batch of commands in parallel, xargs -P / GNU parallel style.

Commands come one per line from a file (``-a FILE``) or stdin, each run by
``/bin/sh -c``; or, with a template after ``--``, each input line fills the
template's ``{}`` (appended when there is none), run without a shell.

Output is grouped by default: each job's stdout and stderr are printed whole
when it ends, never interleaved mid-line with another job's; only the last
``--max-output`` bytes of each stream are kept.  ``--line-buffer`` prints
whole lines as they come, ``--tag`` prefixes them, ``-k`` keeps input order,
``--results DIR`` saves every job's full output to files instead.

Exit status: 0 when every job succeeded; otherwise the number of failed jobs
(a job killed or timed out counts), at most 100; 130 after Ctrl-C, which
stops new jobs, kills the running ones with their children, and prints the
summary.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from subprocess import DEVNULL

from ._job import Job, JobState
from ._reactor import Reactor
from ._sinks import FileSink, LineSink, RingBuffer, Sink

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pipereactor",
        description="Run commands in parallel from one thread, with grouped output, timeouts "
        "that kill process trees, and a job log.",
        epilog="Examples: pipereactor -j 8 -a commands.txt;  "
        "find . -name '*.png' | pipereactor -j 4 --tag -- optipng {}",
    )
    p.add_argument("-a", "--arg-file", metavar="FILE",
                   help="read input lines from FILE instead of stdin")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="run at most N jobs at once (default: the CPU count, %(default)s)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop a job (its whole process group) after SECONDS")
    p.add_argument("--kill-grace", type=float, default=5.0, metavar="SECONDS",
                   help="SIGKILL a stopped job this long after SIGTERM (default: %(default)s)")
    p.add_argument("--halt-on-error", action="store_true",
                   help="start no new job after the first failure; let the running ones finish")
    p.add_argument("--line-buffer", action="store_true",
                   help="print output line by line as it comes, instead of per job")
    p.add_argument("--tag", action="store_true",
                   help="prefix each output line with the job's input (or command) and a tab")
    p.add_argument("-k", "--keep-order", action="store_true",
                   help="print jobs' output in input order (grouped output only)")
    p.add_argument("--max-output", type=int, default=1 << 20, metavar="BYTES",
                   help="keep at most the last BYTES of each stream of a job (default: 1 MiB)")
    p.add_argument("--results", metavar="DIR",
                   help="save each job's full stdout and stderr to DIR/<seq>.stdout|.stderr")
    p.add_argument("--tail", type=int, default=10, metavar="N",
                   help="lines of a failed job's output to show in the summary (default: 10)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a status line (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--joblog", metavar="FILE",
                   help="write a tab-separated row per job, in GNU parallel's format")
    p.add_argument("--shell", action="store_true",
                   help="run the template through /bin/sh -c (the input line shell-quoted)")
    p.add_argument("template", nargs=argparse.REMAINDER,
                   help="after --: the command to run per input line; {} is the line")
    return p


class _Spec:
    """One input line, and the command it became."""

    __slots__ = ("seq", "tag", "args", "shell")

    def __init__(self, seq: int, tag: str, args: Any, shell: bool) -> None:
        self.seq = seq
        self.tag = tag
        self.args = args
        self.shell = shell

    def command(self) -> str:
        return self.args if isinstance(self.args, str) else shlex.join(self.args)


def _specs(lines: Iterable[str], template: list[str], shell: bool) -> Iterator[_Spec]:
    seq = 0
    for raw in lines:
        line = raw.rstrip("\n")
        if template:
            if not line.strip():
                continue
            seq += 1
            if shell:
                quoted = shlex.quote(line)
                words = [w.replace("{}", quoted) for w in template]
                if not any("{}" in w for w in template):
                    words.append(quoted)
                yield _Spec(seq, line, " ".join(words), True)
            else:
                argv = [w.replace("{}", line) for w in template]
                if not any("{}" in w for w in template):
                    argv.append(line)
                yield _Spec(seq, line, argv, False)
        else:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            seq += 1
            yield _Spec(seq, line, line, True)


class _Console:
    """Our stdout/stderr, with the status line kept out of the jobs' output."""

    def __init__(self, progress: bool) -> None:
        self.out: IO[bytes] = sys.stdout.buffer
        self.err: IO[bytes] = sys.stderr.buffer
        self.progress = progress
        self._status = ""
        self.closed: set[IO[bytes]] = set()

    def _clear(self) -> None:
        if self._status:
            self.err.write(b"\r\x1b[K")
            self._status = ""

    def write(self, stream: IO[bytes], data: bytes) -> None:
        if stream in self.closed:
            return
        self._clear()
        try:
            stream.write(data)
            stream.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop writing there, quietly,
            # and let the jobs finish as other tools do.
            self.closed.add(stream)
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except OSError:
                pass

    def status(self, text: str) -> None:
        if not self.progress:
            return
        width = _terminal_width()
        text = text[: width - 1]
        if text != self._status:
            self.err.write(b"\r\x1b[K" + text.encode("utf-8", "replace"))
            self.err.flush()
            self._status = text

    def done(self) -> None:
        if self.progress:
            self._clear()
            self.err.flush()


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(2).columns
    except OSError:
        return 80


def _tagged(data: bytes, tag: str | None) -> bytes:
    if tag is None or not data:
        return data
    prefix = tag.encode("utf-8", "surrogateescape") + b"\t"
    lines = data.splitlines(keepends=True)
    return b"".join(prefix + line for line in lines)


def _describe(job: Job) -> str:
    rc = job.returncode
    if job.error is not None:
        return f"did not start: {job.error}"
    if rc is None:
        return "did not finish"
    how = f"exit {rc}" if rc >= 0 else f"killed by {_signame(-rc)}"
    if job.timed_out:
        how += ", timed out"
    return how


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _tail_lines(data: bytes, n: int) -> list[bytes]:
    return data.splitlines()[-n:] if n > 0 else []


class _Runner:
    def __init__(self, args: argparse.Namespace, specs: list[_Spec], console: _Console) -> None:
        self.args = args
        self.specs = specs
        self.console = console
        self.by_job: dict[Job, _Spec] = {}
        self.finished: list[Job] = []
        self.failed: list[Job] = []
        self.printed_upto = 0  # -k: jobs printed so far, by seq
        self.ready: dict[int, Job | None] = {}
        self.joblog: IO[str] | None = None
        self.halted = False
        self.not_started = 0  # spawn() itself failed (a missing program)
        self.not_run = 0  # cancelled before they started
        self.started = time.monotonic()

    # -- sinks ------------------------------------------------------------------

    def _sinks(self, spec: _Spec) -> tuple[Sink, Sink]:
        a = self.args
        if a.results:
            return (FileSink(os.path.join(a.results, f"{spec.seq}.stdout")),
                    FileSink(os.path.join(a.results, f"{spec.seq}.stderr")))
        if a.line_buffer:
            tag = spec.tag if a.tag else None
            return (self._line_printer(self.console.out, tag),
                    self._line_printer(self.console.err, tag))
        return RingBuffer(a.max_output), RingBuffer(a.max_output)

    def _line_printer(self, stream: IO[bytes], tag: str | None) -> Sink:
        console = self.console

        def emit(line: str) -> None:
            console.write(stream, _tagged(line.encode("utf-8", "surrogateescape") + b"\n", tag))

        return LineSink(emit, errors="surrogateescape", max_line=self.args.max_output)

    # -- job end ------------------------------------------------------------------

    def on_exit(self, job: Job) -> None:
        spec = self.by_job[job]
        if job.cancelled and job.started_at is None:
            self.not_run += 1  # --halt-on-error or Ctrl-C came first
            return
        self.finished.append(job)
        # A job the runner stopped (Ctrl-C) failed, whatever it exited with.
        ok = job.returncode == 0 and job.error is None and not (job.timed_out or job.cancelled)
        if not ok:
            self.failed.append(job)
            if self.args.halt_on_error and not self.halted:
                self.halted = True
                for other in list(self.by_job):
                    if other.state is JobState.PENDING:
                        other.cancel()
        self._log(job, spec)
        if self.args.line_buffer or self.args.results:
            return
        if self.args.keep_order:
            self._ordered(spec.seq, job)
        else:
            self._print_group(job)

    def _ordered(self, seq: int, job: Job | None) -> None:
        """-k: print each job once every job before it was printed (None: a
        job that never started, nothing to print)."""
        if not self.args.keep_order or self.args.line_buffer or self.args.results:
            return
        self.ready[seq] = job
        while self.printed_upto + 1 in self.ready:
            self.printed_upto += 1
            ready = self.ready.pop(self.printed_upto)
            if ready is not None:
                self._print_group(ready)

    def _print_group(self, job: Job) -> None:
        spec = self.by_job[job]
        tag = spec.tag if self.args.tag else None
        for ring, stream in ((job.stdout, self.console.out), (job.stderr, self.console.err)):
            if not isinstance(ring, RingBuffer):
                continue
            data = ring.getvalue()
            if ring.dropped:
                self.console.write(self.console.err, _tagged(
                    f"[pipereactor: job {spec.seq}: first {ring.dropped} bytes of its "
                    f"{'stdout' if ring is job.stdout else 'stderr'} not kept]\n".encode(), tag))
            if data:  # as the job wrote it: no newline added (binary output)
                self.console.write(stream, _tagged(data, tag))
        if job.returncode == 0 and job.error is None:
            # Printed: keep nothing of a job that succeeded, or memory would
            # grow with the number of jobs despite --max-output.
            job.stdout = job.stderr = None

    def _log(self, job: Job, spec: _Spec) -> None:
        if self.joblog is None:
            return
        start = time.time() - (time.monotonic() - job.started_at) if job.started_at else 0.0
        runtime = job.duration or 0.0
        rc = job.returncode
        exitval = rc if rc is not None and rc >= 0 else (-1 if job.error is not None else 0)
        sig = -rc if rc is not None and rc < 0 else 0
        received = sum(_bytes_seen(s) for s in (job.stdout, job.stderr))
        self.joblog.write(
            f"{spec.seq}\t:\t{start:.3f}\t{runtime:.3f}\t0\t{received}\t{exitval}\t{sig}\t"
            f"{spec.command()}\n"
        )
        self.joblog.flush()

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        interrupted = False
        stopped_by: list[int] = []

        def stop(signum: int, frame: Any) -> None:
            # The jobs lead their own sessions: nothing else would stop them.
            stopped_by.append(signum)
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        if a.joblog:
            self.joblog = open(a.joblog, "w", encoding="utf-8", errors="surrogateescape")
            self.joblog.write("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n")
        try:
            with Reactor(max_parallel=a.jobs) as reactor:
                for spec in self.specs:
                    out, err = self._sinks(spec)
                    kwargs: dict[str, Any] = {"shell": True} if spec.shell else {}
                    try:
                        # Jobs read no input of ours (as with xargs): stdin
                        # may be the command list itself.
                        job = reactor.spawn(spec.args, stdin=DEVNULL, stdout=out, stderr=err,
                                            timeout=a.timeout, kill_grace=a.kill_grace,
                                            on_exit=self.on_exit, **kwargs)
                    except OSError as exc:
                        self.console.write(self.console.err,
                                           f"pipereactor: cannot start {spec.command()}: {exc}\n".encode("utf-8", "surrogateescape"))
                        self.not_started += 1
                        self._ordered(spec.seq, None)  # -k must not wait for it
                        continue
                    self.by_job[job] = spec
                try:
                    while reactor.step(0.1 if self.console.progress else None):
                        self._status()
                except KeyboardInterrupt:
                    interrupted = True
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.console.done()
            if self.joblog is not None:
                self.joblog.close()
        self._summary(interrupted)
        if stopped_by:
            return 128 + stopped_by[0]
        if interrupted:
            return 130
        return min(len(self.failed) + self.not_started, 100)

    def _status(self) -> None:
        running = [j for j in self.by_job if j.state in (JobState.RUNNING, JobState.EXITED)]
        text = f"[{len(self.finished)}/{len(self.specs)}] running {len(running)}, failed {len(self.failed)}"
        if running:
            oldest = min(running, key=lambda j: j.started_at or 0.0)
            text += f", longest {(oldest.duration or 0.0):.0f}s: {self.by_job[oldest].command()}"
        self.console.status(text)

    def _summary(self, interrupted: bool) -> None:
        wall = time.monotonic() - self.started
        failed_jobs = self.failed
        if not (self.console.progress or self.failed or self.not_started or interrupted):
            return
        err = self.console.err
        for job in failed_jobs[:10]:
            spec = self.by_job[job]
            lines = [f"pipereactor: job {spec.seq} failed ({_describe(job)}): {spec.command()}\n"
                     .encode("utf-8", "surrogateescape")]
            for name, data in (("stdout", _tail_of(job.stdout)), ("stderr", _tail_of(job.stderr))):
                for line in _tail_lines(data, self.args.tail):
                    lines.append(f"  {name}| ".encode() + line + b"\n")
            self.console.write(err, b"".join(lines))
        ok = len(self.finished) - len(self.failed)
        timed_out = sum(1 for j in self.finished if j.timed_out)
        not_run = f", {self.not_run} not run" if self.not_run else ""
        text = (f"pipereactor: {ok} ok, {len(self.failed) + self.not_started} failed "
                f"({timed_out} timed out){not_run}"
                f"{', interrupted' if interrupted else ''} of {len(self.specs)} in {wall:.1f}s")
        slow = sorted((j for j in self.finished if j.duration is not None),
                      key=lambda j: j.duration or 0.0, reverse=True)[:3]
        if slow and self.console.progress:
            parts = []
            for j in slow:
                usage = f", cpu {j.rusage.user + j.rusage.system:.1f}s, {j.rusage.max_rss >> 20} MiB" \
                    if j.rusage else ""
                parts.append(f"{self.by_job[j].command()} {j.duration:.1f}s{usage}")
            text += "; slowest: " + "; ".join(parts)
        self.console.write(err, text.encode("utf-8", "surrogateescape") + b"\n")


def _bytes_seen(sink: object) -> int:
    total = getattr(sink, "total", None)
    return int(total) if isinstance(total, int) else 0


def _tail_of(sink: object) -> bytes:
    if isinstance(sink, RingBuffer):
        return sink.getvalue()
    if isinstance(sink, FileSink) and isinstance(sink.name, str):
        try:
            with open(sink.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 65536))
                return f.read()
        except OSError:
            return b""
    return b""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    template = list(args.template)
    if template and template[0] == "--":
        template = template[1:]
    if args.jobs < 1:
        parser.error(f"-j/--jobs must be >= 1, not {args.jobs}")
    if args.timeout is not None and args.timeout <= 0:
        parser.error(f"--timeout must be > 0, not {args.timeout}")
    if args.kill_grace < 0:
        parser.error(f"--kill-grace must be >= 0, not {args.kill_grace}")
    if args.max_output < 1:
        parser.error(f"--max-output must be >= 1, not {args.max_output}")
    if args.line_buffer and args.keep_order:
        parser.error("-k/--keep-order works with grouped output only, not with --line-buffer")
    if args.shell and not template:
        parser.error("--shell needs a template after --")
    if args.results:
        os.makedirs(args.results, exist_ok=True)
    try:
        if args.arg_file:
            with open(args.arg_file, "rb") as f:
                raw = f.read()
        else:
            raw = sys.stdin.buffer.read()
        # Lines end at "\n" only, whatever the source, and bytes that are not
        # UTF-8 (file names) pass through unchanged.
        lines = raw.decode("utf-8", "surrogateescape").split("\n")
    except OSError as exc:
        parser.error(f"cannot read the input: {exc}")
    except KeyboardInterrupt:
        return 130
    specs = list(_specs(lines, template, args.shell))
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    console = _Console(progress)
    return _Runner(args, specs, console).run()
