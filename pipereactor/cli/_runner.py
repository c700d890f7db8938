"""The run loop: input lines become jobs as slots free up, output goes out,
signals and a vanished stdout stop the run, a status line shows progress.

One ``selectors`` loop waits on the reactor's fd (``Reactor.fileno()``), the
input fd (only while a job could use another line) and the stop-signal pipe,
for at most ``Reactor.next_timeout()``; then one ``Reactor.step(0)``.  So the
first job starts as soon as its line is complete, and input is read no
further ahead than ``LOOKAHEAD`` jobs per slot.

- **End of input** ends the run once the jobs it made are done (and, with
  ``-k``, printed).
- **A stop signal** (SIGINT, SIGTERM, SIGHUP) starts nothing more and stops
  every job: SIGTERM to its process group, SIGKILL after ``--kill-grace``; a
  second one SIGKILLs at once.  Exit status 128+N.
- **EPIPE on stdout** (``| head``) stops the same way; exit status 141, as a
  pipeline member killed by SIGPIPE.
- **A failure under --halt-on-error** starts nothing more; running jobs
  finish; queued ones are not run.
- A line that cannot be a command, or a program that cannot be started,
  fails that job only (127 "not found" and 126 as the shell reports them).
- **Job k** (0-based, in input order) has sequence number k+1 whatever
  ``--shard`` leaves to other runners and ``--resume`` skips; a failed job
  waits in a :class:`~._retry.RetryQueue` for its next run (``--retries``).

What a finished job leaves behind is its :class:`~.report.Outcome` (then
only counters) and its job log row: memory stays flat in the number of jobs.
"""

from __future__ import annotations

import errno
import os
import selectors
import time
from subprocess import DEVNULL
from typing import Any, Literal

from .. import FileSink, Job, JobState, Reactor
from ._args import Options
from ._console import Console
from ._color import job_env
from ._live import LastLine, Watched
from ._order import Printer
from ._output import Budget, HeadLineWriter, LineWriter, SpillBuffer, Tagger
from ._report import JobLog, Outcome, Report, describe_signal
from ._resume import read_joblog
from ._retry import RetryQueue, retry_wait
from ._signals import StopSignals
from ._slots import Slots
from ._source import Command, LineReader, build_command, no_job
from ._status import show_status
from ._task import Task, output_tail
from ._template import ArgList, Records, Template

__all__ = ["Runner", "LOOKAHEAD", "STATUS_EVERY"]

#: Jobs that may exist, per slot, beyond the running ones (queued in the
#: reactor, or finished and waiting for their turn to print with -k).
LOOKAHEAD = 2
#: Seconds between two redraws of the status line.
STATUS_EVERY = 0.1
#: The exit status after EPIPE on stdout: 128 + SIGPIPE.
EPIPE_STATUS = 141

_INPUT, _REACTOR, _SIGNAL = "input", "reactor", "signal"
#: --contain's words, as Reactor(contain=...) takes them.
_CONTAIN: dict[str, bool | Literal["auto"]] = {"auto": "auto", "yes": True, "no": False}


class Runner:
    """One run of the command line: the jobs ``records`` make, run as the
    module docstring says.  :meth:`run` once; it returns the exit status."""

    def __init__(self, opts: Options, console: Console, reader: LineReader | ArgList,
                 records: Records | None = None) -> None:
        self.opts = opts
        self.console = console
        self.reader = reader
        self.records = records if records is not None else Records(reader, [])
        self.template = (Template(opts.template, opts.replace, opts.shell)
                         if opts.template else None)
        label = opts.shard.label if opts.shard is not None else ""
        console.label = f"[{label}] " if label else ""
        self.report = Report(opts.tail, label)
        self.budget = Budget()  # memory for all grouped output together
        self.joblog: JobLog | None = None
        self.active: dict[Job, Task] = {}  # spawned, not yet done: O(-j)
        # -k: in input order (not with --results: each job's output is in its files).
        self.printer = Printer(console, opts.keep_order and not opts.results)
        self.seen = 0  # commands made from input lines so far (ours: this shard's, not skipped)
        self.made = 0  # jobs in the input so far, whoever runs them: the next is job k=made
        self.skip: set[int] = set()  # --resume: the sequence numbers the job log has
        self.retries: RetryQueue[Task] = RetryQueue()
        self.slots = Slots(self.template is not None and self.template.uses_slot)
        self.unretired = 0  # made, and not yet finished (-k: printed)
        # Jobs made and not yet finished (-k: printed) at most.  -j 0: no limit.
        self.window = (1 + LOOKAHEAD) * opts.jobs or 1 << 62
        # --results opens a job's files when it is spawned, and {%} is known
        # only when a job can start at once: then spawn only into a free slot
        # (see _slot_free).  Jobs waiting for their turn to print hold none.
        self.tight = bool(opts.results) or self.slots.used
        self.halted = False  # start nothing more
        self.stop_signal: int | None = None
        self.epipe = False
        self.input_done = False
        self._killed = False
        # -k --line-buffer: the head job prints live, the others wait for their turn.
        self.head_mode = self.printer.ordered and opts.line_buffer
        # --color: the jobs' environment (None: ours, unchanged).
        self.env = job_env(opts.color, console.tty(1), os.environ)

    # -- making jobs ---------------------------------------------------------------

    def _fill(self, reactor: Reactor) -> bool:
        """Make jobs from the lines at hand while there is room; True when
        another line is wanted and must be read first."""
        o = self.opts
        while not self.halted and not self.input_done and self._room():
            items = self.records.next()
            if items is None:
                if self.records.done:
                    self.input_done = True
                    break
                if self.reader.always_ready:
                    self.reader.fill()
                    continue
                return True
            if no_job(items, self.template):
                continue
            k = self.made
            self.made += 1
            if o.shard is not None and not o.shard.takes(k):
                continue
            if k + 1 in self.skip:
                self.report.skipped += 1
                continue
            self.seen += 1
            if o.dry_run:
                # {%} cycles 1..-j, as if the jobs ran -j at a time: GNU parallel
                # 20221122 dry-runs its jobs, so its {%} varies from run to run.
                slot = (self.seen - 1) % o.jobs + 1 if o.jobs else self.seen
                self._dry_run(build_command(k + 1, items, self.template, slot))
                continue
            slot = self.slots.take()
            self.unretired += 1
            self._spawn(reactor, build_command(k + 1, items, self.template, slot), slot)
        return False

    def _slot_free(self) -> bool:
        """Whether a job spawned now would start at once, when it must (see
        ``tight``); always True otherwise (the reactor queues it)."""
        jobs = self.opts.jobs
        return not self.tight or not jobs or len(self.active) < jobs

    def _room(self) -> bool:
        """Whether another job may be made from the input now."""
        return self.unretired < self.window and self._slot_free()

    def _dry_run(self, cmd: Command) -> None:
        """--dry-run: the command as it would run, one per line (after
        ``--tag``'s prefix, as GNU parallel prints it); nothing runs."""
        if cmd.error is not None:
            self.console.write(2, f"pipereactor: cannot run line {cmd.seq}: {cmd.error}\n"
                               .encode("utf-8", "surrogateescape"))
            return
        tag = cmd.line + "\t" if self.opts.tag else ""
        self.console.write(1, f"{tag}{cmd.text()}\n".encode("utf-8", "surrogateescape"))

    def _sinks(self, cmd: Command, order: int) -> tuple[Any, Any, Tagger | None]:
        o = self.opts
        prefix = cmd.line.encode("utf-8", "surrogateescape") + b"\t" if o.tag else None
        if o.results:
            base = os.path.join(o.results, str(cmd.seq))
            out = FileSink(base + ".stdout")
            try:
                err = FileSink(base + ".stderr")
            except BaseException:
                out.close()
                raise
            return out, err, Tagger(prefix)
        if self.head_mode:
            live = self.printer.is_head(order)
            return (HeadLineWriter(self.console, 1, Tagger(prefix), self.budget, live),
                    HeadLineWriter(self.console, 2, Tagger(prefix), self.budget, live),
                    Tagger(prefix))
        if o.line_buffer:
            return (LineWriter(self.console, 1, Tagger(prefix), self.budget),
                    LineWriter(self.console, 2, Tagger(prefix), self.budget), Tagger(prefix))
        return (SpillBuffer(o.max_output, budget=self.budget),
                SpillBuffer(o.max_output, budget=self.budget), Tagger(prefix))

    def _spawn(self, reactor: Reactor, cmd: Command, slot: int = 0,
               task: Task | None = None) -> None:
        """Start ``cmd`` (queued in the reactor until a slot is free); ``task``
        is the job's own from its earlier run when it runs again."""
        o = self.opts
        if task is None:
            task = Task(cmd, None, None, Tagger(None))
            task.order = self.seen
        task.cmd, task.slot = cmd, slot
        if cmd.error is not None:
            self._not_a_job(task, f"cannot run line {cmd.seq}: {cmd.error}", -1)
            return
        try:
            task.out, task.err, task.tagger = self._sinks(cmd, task.order)
        except OSError as exc:
            task.out = task.err = None
            self._not_a_job(task, f"cannot open its --results files: {exc}", -1)
            return
        stdout, stderr = task.out, task.err
        if self.console.progress and not isinstance(task.out, FileSink):
            # The view shows each job's last line.  Not with --results: the
            # job writes to its files itself, no byte passes through us.
            task.last = LastLine()
            stdout, stderr = Watched(task.out, task.last, 1), Watched(task.err, task.last, 2)
        try:
            # Jobs read no input of ours (as with xargs): stdin may be the
            # command list itself.
            job = reactor.spawn(cmd.args, stdin=DEVNULL, stdout=stdout, stderr=stderr,
                                timeout=o.timeout, kill_grace=o.kill_grace,
                                on_exit=self._on_exit, shell=cmd.shell, env=self.env)
        except (OSError, ValueError) as exc:  # the reactor closed the sinks
            self._cannot_start(task, exc)
            return
        self.active[job] = task
        if self.head_mode:
            self.printer.started(task)

    def _run_again(self, reactor: Reactor) -> None:
        """The failed jobs whose wait is over, run again (with a new {%}),
        before any new job; when a job must start as it is spawned, only as
        many as there are free slots (the others wait for one)."""
        limit = None
        if self.tight and self.opts.jobs:
            limit = max(self.opts.jobs - len(self.active), 0)
        for task in self.retries.due(limit):
            task.run_again()  # only the last run's output counts, once the next one starts
            task.runs += 1
            self.report.retried += 1
            slot = self.slots.take()
            cmd = task.cmd
            if self.slots.used:
                cmd = build_command(cmd.seq, cmd.items, self.template, slot)
            self._spawn(reactor, cmd, slot, task)

    def _cannot_start(self, task: Task, exc: BaseException) -> None:
        """As the shell reports an exec failure: 127 not found, 126 otherwise."""
        prog = task.cmd.args[0] if isinstance(task.cmd.args, list) else "/bin/sh"
        if isinstance(exc, FileNotFoundError):
            self._not_a_job(task, f"{prog}: not found", 127)
        elif isinstance(exc, OSError):
            self._not_a_job(task, f"{prog}: {exc.strerror or exc}", 126)
        else:
            self._not_a_job(task, f"cannot start: {exc}", -1)

    def _not_a_job(self, task: Task, message: str, exitval: int) -> None:
        """A job that failed without running: its message at its turn."""
        self.slots.give(task.slot)
        task.slot = 0
        task.note = f"pipereactor: {message}\n".encode("utf-8", "surrogateescape")
        how = f"exit {exitval}: {message}" if exitval >= 0 else message
        self._finished(task, Outcome(task.cmd.seq, task.cmd.text(), False, how,
                                     started=time.time(), exitval=exitval))

    # -- jobs ending -------------------------------------------------------------------

    def _on_exit(self, job: Job) -> None:
        o = self.opts
        task = self.active.pop(job)
        self.slots.give(task.slot)
        task.slot = 0
        cmd = task.cmd
        if job.cancelled and job.started_at is None and task.outcome is not None:
            task.never_ran_again()  # a run again that never started: the last counts
            self._finished(task, task.outcome)
            return
        task.ran()
        if job.cancelled and job.started_at is None:
            self.report.not_run += 1  # --halt-on-error or a stop came first
            task.discard()
            self.unretired -= self.printer.not_run(task.order)
            return
        if job.error is not None:
            self._cannot_start(task, job.error)
            return
        rc = job.returncode
        if rc is None:
            how = "did not finish"
        elif rc >= 0:
            how = f"exit {rc}"
        else:
            how = f"killed by {describe_signal(-rc)}"
        if job.timed_out:
            how += ", timed out"
        if task.stopped:
            how += ", stopped by us"
        ok = rc == 0 and not task.stopped
        for name, sink in (("stdout", task.out), ("stderr", task.err)):
            if isinstance(sink, (SpillBuffer, HeadLineWriter)) and sink.error is not None:
                ok = False
                how += f", {name} lost: cannot write its spill file in $TMPDIR: {sink.error}"
                task.note += (f"pipereactor: job {cmd.seq}: {sink.dropped} bytes of its {name} "
                              f"lost: cannot write its spill file: {sink.error}\n").encode()
        started = time.time() - (time.monotonic() - job.started_at) if job.started_at else None
        usage = ""
        if job.rusage is not None:
            u = job.rusage
            usage = f", cpu {u.user + u.system:.1f}s, {u.max_rss >> 20} MiB"
        outcome = Outcome(
            cmd.seq, cmd.text(), ok, how, started=started, runtime=job.duration or 0.0,
            received=sum(getattr(s, "total", 0) for s in (task.out, task.err)),
            exitval=rc if rc is not None and rc >= 0 else 0,
            signal=-rc if rc is not None and rc < 0 else 0,
            timed_out=job.timed_out, usage=usage,
        )
        if not ok and task.runs < o.retries and not task.stopped and not self.halted:
            task.outcome = outcome  # what counts if it never runs again (a stop)
            self.retries.add(task, retry_wait(o.retry_delay, task.runs))
            if self.head_mode:
                self.printer.run_again_later(task)
            return
        self._finished(task, outcome)

    def _finished(self, task: Task, outcome: Outcome) -> None:
        task.ran()  # a run again that could not start: it counts
        if not outcome.ok:
            outcome.out_tail = output_tail(task.out)
            outcome.err_tail = output_tail(task.err) + task.note
        self.report.add(outcome)
        if self.joblog is not None:
            self.joblog.row(outcome)
        if not outcome.ok and self.opts.halt_on_error:
            self._halt()
        self.unretired -= self.printer.finished(task)

    # -- stopping ---------------------------------------------------------------------

    def _halt(self) -> None:
        """Start nothing more; jobs not yet started are not run; a job
        waiting to run again ends with its last run."""
        self.halted = True
        self._no_more_runs()
        for job in list(self.active):
            if job.state is JobState.PENDING:
                job.cancel()

    def _stop(self) -> None:
        """Stop everything: the queued are not run, the running get SIGTERM
        (SIGKILL after the grace); a second request SIGKILLs at once."""
        self.halted = True
        self._no_more_runs()
        for job, task in list(self.active.items()):
            if job.state is JobState.PENDING:
                job.cancel()
            elif not job.done:
                task.stopped = True
                if self._killed:
                    job.kill()
                else:
                    job.cancel()
        self._killed = True

    def _no_more_runs(self) -> None:
        for task in self.retries.drain():
            assert task.outcome is not None
            self._finished(task, task.outcome)

    def _check_stops(self, signals: StopSignals) -> None:
        while signals.received:
            sig = signals.received.pop(0)
            if self.stop_signal is None:
                self.stop_signal = sig
            self._stop()
        if self.console.stdout_gone and not self.epipe:
            self.epipe = True
            self._stop()

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run every job the input makes; return the exit status."""
        o = self.opts
        if o.line_buffer:
            self.console.grow_stdout_pipe()
        if o.joblog:
            resuming = o.resume or o.resume_failed
            try:
                if resuming:
                    self.skip = read_joblog(o.joblog, o.resume_failed)
                if not o.dry_run:  # --dry-run --resume: what would run, the log untouched
                    self.joblog = JobLog(o.joblog, append=resuming)
            except OSError as exc:
                self.console.write(2, f"pipereactor: cannot use the --joblog file: {exc}\n"
                                   .encode("utf-8", "surrogateescape"))
                return 2
        try:
            reactor = Reactor(max_parallel=o.jobs or None,  # -j 0: no limit
                              contain=_CONTAIN[o.contain])
        except RuntimeError as exc:  # --contain yes, where it cannot be had
            self.console.write(2, f"pipereactor: --contain yes: {exc}\n".encode())
            return 2
        try:
            with StopSignals() as signals, selectors.DefaultSelector() as sel:
                self._loop(reactor, signals, sel)
        finally:
            reactor.close()  # already closed, unless the loop never began
            for task in self.active.values():
                task.discard()
            self.printer.discard()
            self.console.done()
            if self.joblog is not None:
                self.joblog.close()
        interrupted = self.stop_signal is not None or self.epipe
        if self.console.progress or self.report.failed or interrupted:
            # After EPIPE the reader has what it wanted: the total only.
            details = not self.epipe
            for line in self.report.lines(self.seen, interrupted, self.console.progress, details,
                                          dry_run=self.opts.dry_run):
                self.console.write(2, line)
        if self.reader.error is not None:
            # Treated as the end of input (EIO: the terminal went away), but said.
            self.console.write(2, f"pipereactor: reading the input failed: {self.reader.error}\n"
                               .encode("utf-8", "surrogateescape"))
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        if self.epipe:
            err = self.console.stdout_error
            return EPIPE_STATUS if err is None or err.errno == errno.EPIPE else 1
        if self.reader.error is not None and not self.report.failed:
            return 2
        return min(self.report.failed, 100)

    def _loop(self, reactor: Reactor, signals: StopSignals, sel: selectors.BaseSelector) -> None:
        with reactor:
            sel.register(reactor.fileno(), selectors.EVENT_READ, _REACTOR)
            wake = signals.fileno()
            if wake is not None:
                sel.register(wake, selectors.EVENT_READ, _SIGNAL)
            reading = False
            next_status = 0.0
            while True:
                self._check_stops(signals)
                self._run_again(reactor)
                want = self._fill(reactor)
                if want != reading:
                    if want:
                        try:
                            sel.register(self.reader.fd, selectors.EVENT_READ, _INPUT)
                        except PermissionError:
                            # epoll refuses files that never block (/dev/null).
                            self.reader.always_ready = True
                            continue
                    else:
                        sel.unregister(self.reader.fd)
                    reading = want
                if (self.input_done or self.halted) and not self.active and not self.retries:
                    break
                timeout = reactor.next_timeout()
                # A run again that is due but has no slot waits for a job to
                # end (the reactor's fd), not for the clock.
                again = self.retries.timeout() if self._slot_free() else None
                if again is not None:
                    timeout = again if timeout is None else min(timeout, again)
                if self.console.progress:
                    wait = max(0.0, next_status - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                for key, _ in sel.select(timeout):
                    if key.data is _INPUT:
                        self.reader.fill()
                    elif key.data is _SIGNAL:
                        signals.drain()
                reactor.step(0)
                if self.console.progress and time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + STATUS_EVERY
            if reading:
                sel.unregister(self.reader.fd)

    def _status_text(self, running: int) -> str:
        """The status line's counters (the area's header): composed here only."""
        r = self.report
        if self.opts.dry_run:
            return f"[{self.seen} printed] --dry-run: nothing runs"
        text = f"[{r.done}/{self.seen}] running {running}, failed {r.failed}"
        if self.retries:  # neither running nor done: say so, or the wait looks like a hang
            text += f", {len(self.retries)} to run again"
        return text

    def _status(self) -> None:
        """Redraw the status (``_status``).  O(-j): ``active`` holds at most
        the window's jobs, whatever the number seen."""
        running = [(j, t) for j, t in self.active.items()
                   if j.state in (JobState.RUNNING, JobState.EXITED)]
        show_status(self.console, self._status_text(len(running)), running)
