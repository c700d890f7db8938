"""The reactor: one selector, many jobs, one thread.

The path of a byte: a child writes to its pipe; the pipe's read end (an
``Fd`` in a ``_Reader``) is registered in the selector; ``_turn`` wakes from
``select()``, ``_on_readable`` reads one chunk and hands it to the sink.  At
EOF the reader is closed and the sink's ``close()`` called; once the child has
exited and every reader is closed, ``_finish`` marks the job done and calls
``on_exit``.  stdin goes the other way through ``_on_writable``.

Time is a heap of deadlines (a job's timeout, its SIGKILL escalation, its
eof_grace) plus the poll tick for children no fd reports on; ``select()``
sleeps until the nearest one.  Nothing else blocks, except waits for
children that were just sent SIGKILL (when killing everything, or undoing a
start that failed half-way).

Errors: any exception that escapes a turn (a sink or callback raising,
KeyboardInterrupt) first kills and reaps every job (``_kill_all``), then
propagates.  So the caller's ``except`` clause sees a reactor with no
children left, consistent and still usable.
"""

from __future__ import annotations

import fcntl
import heapq
import math
import os
import selectors
import signal
import stat
import subprocess
import sys
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any, Final

from . import _childwatch, _fdlimit, _jobserver
from ._fdio import (
    Fd, Feed, StdinSource, StdinWriter, make_pipe, read_chunk, splice_some, write_some,
)
from ._job import Args, Job, JobCancelled, JobState, Rusage, _ExitWatch, _Reader, _Writer
from ._sinks import FileSink, NullSink, OutputTarget, Sink
from ._spawnargs import check_args, check_popen_kwargs, check_seconds, make_feed, output_target

__all__ = ["Reactor"]

#: Defaults for ``spawn``: trio's escalation delay; a short wait for pipe EOF.
KILL_GRACE: Final = 5.0
EOF_GRACE: Final = 2.0

# Deadline kinds, in the heap as (when, seq, kind, job).
_TIMEOUT, _KILL, _EOF = 0, 1, 2

# Mark the watcher's shared fd (kqueue) and make's jobserver in the selector.
_SHARED = object()
_JOBSERVER = object()

#: When ``eof_grace`` expires, what is already in a pipe is still delivered,
#: but no more than this many chunks: a grandchild may keep writing forever.
_FINAL_DRAIN_CHUNKS: Final = 16

#: Writes to one stdin pipe per readiness event, at most (see _on_writable).
_WRITES_PER_EVENT: Final = 64

#: A start that found no fd is tried again when a job is done, or after this
#: many seconds (the fds may have been held by someone else meanwhile).
_STARVED_RETRY: Final = 0.5

#: Below this many entries, the completion queue is not searched for jobs
#: that were only weakly held and are gone.
_COMPACT_MIN: Final = 256

#: The longest single wait in select(): epoll refuses more than ~24.8 days,
#: and a longer deadline is simply waited for in several turns.
_MAX_WAIT: Final = 86400.0


class Reactor:
    """Run many child processes from one thread, feeding and draining them.

    Args:
        max_parallel: at most this many children run at once; further spawns
            wait in FIFO order and start as slots free.  None: no limit.
        watcher: how child exits are detected: "auto" (pidfd on Linux, kqueue
            on the BSDs and macOS, else polling), "pidfd", "kqueue" or "poll".
        selector: a ``selectors.BaseSelector`` subclass; default
            ``DefaultSelector`` (epoll on Linux).  ``SelectSelector`` is refused:
            select() cannot watch an fd numbered 1024 or more.
        raise_fd_limit: raise this process's RLIMIT_NOFILE soft limit to its
            hard limit, for good (it is process-wide, and children inherit
            it).  Each running child costs up to four fds.  Off by default: a
            library should not change process-wide limits unasked.
        jobserver: under GNU make (``MAKEFLAGS`` names a jobserver), share
            make's ``-jN``: the reactor runs one job on the slot make gave it,
            takes a token from make for each further job, and gives each token
            back when its job is done, and every token on close, whatever
            happened.  ``max_parallel`` still applies too.  Without a jobserver
            in ``MAKEFLAGS`` this does nothing; with one make did not pass on
            (a recipe not marked ``+``), a RuntimeWarning, and one job at a time.

    When a spawn finds no free fd (EMFILE, ENFILE) while other jobs run, the
    job waits in the queue and starts when one of them is done; only with
    nothing running does it fail, with an OSError that says why.

    Raises:
        NotImplementedError: on Windows, whose selectors cannot poll pipes.

    Use it as a context manager.  Leaving the block normally waits for every
    job (``run()``); leaving it by an exception kills and reaps every job.
    Either way the reactor is then closed.
    """

    def __init__(
        self,
        max_parallel: int | None = None,
        *,
        watcher: str = "auto",
        selector: type[selectors.BaseSelector] | None = None,
        raise_fd_limit: bool = False,
        jobserver: bool = False,
    ) -> None:
        self._closed = True  # until construction succeeds; read by __del__
        if sys.platform == "win32":
            raise NotImplementedError(
                "pipereactor needs a POSIX system: on Windows, selectors cannot poll pipes"
            )
        if max_parallel is not None:
            if isinstance(max_parallel, bool) or not isinstance(max_parallel, int):
                raise TypeError(
                    f"max_parallel must be an int or None, not {type(max_parallel).__name__}"
                )
            if max_parallel < 1:
                raise ValueError(f"max_parallel must be >= 1, not {max_parallel}")
        if selector is None:
            selector = selectors.DefaultSelector
        elif not (isinstance(selector, type) and issubclass(selector, selectors.BaseSelector)):
            raise TypeError(f"selector must be a selectors.BaseSelector subclass, not {selector!r}")
        if issubclass(selector, selectors.SelectSelector):
            raise ValueError("selector=SelectSelector cannot watch fds >= 1024; use the default")
        if not isinstance(watcher, str):
            raise TypeError(f"watcher must be a str, not {type(watcher).__name__}")
        if not isinstance(raise_fd_limit, bool):
            raise TypeError(f"raise_fd_limit must be a bool, not {type(raise_fd_limit).__name__}")
        if raise_fd_limit:
            _fdlimit.raise_soft_limit()
        if not isinstance(jobserver, bool):
            raise TypeError(f"jobserver must be a bool, not {type(jobserver).__name__}")
        self._watcher = _childwatch.make_watcher(watcher)
        self._selector = selector()
        self._jobserver = _jobserver.from_makeflags() if jobserver else None
        self._tokens: list[bytes] = []  # one per live job beyond the first
        self._token_wanted = False  # a start waits for a token
        self._token_wait = False  # the jobserver's fd is in the selector
        shared = self._watcher.fileno()
        if shared is not None:
            self._selector.register(shared, selectors.EVENT_READ, _SHARED)

        self.max_parallel = max_parallel
        self._pending: deque[Job] = deque()
        self._live: set[Job] = set()  # RUNNING or EXITED
        self._by_pid: dict[int, Job] = {}  # children covered by the shared fd
        self._polled: set[Job] = set()  # RUNNING children nothing tells us about
        self._confirming: set[Job] = set()  # polled once, then left to kqueue
        self._poll_interval = _childwatch.POLL_MIN
        self._poll_at: float | None = None
        self._deadlines: list[tuple[float, int, int, Job]] = []
        self._seq = 0
        # Done jobs not yet yielded by as_completed(): held strongly while an
        # as_completed() runs, else weakly (see _record_completion).
        self._completed: deque[Job | weakref.ref[Job]] = deque()
        self._consumers = 0  # as_completed() generators running
        self._compact_at = _COMPACT_MIN
        self._in_turn = False
        self._stopping_all = False  # inside _kill_all: spawn() is refused
        # A start failed for want of fds: start nothing until a job is done,
        # or until _starved_until (the fds may have been someone else's).
        self._fd_starved = False
        self._starved_until = 0.0
        self._devnull = -1  # opened for the first NullSink spliced to it
        self._pid = os.getpid()
        self._closed = False

    # -- spawning --------------------------------------------------------------

    def spawn(
        self,
        args: Args,
        *,
        stdin: StdinSource = None,
        stdout: OutputTarget = None,
        stderr: OutputTarget = None,
        timeout: float | None = None,
        kill_grace: float = KILL_GRACE,
        eof_grace: float | None = EOF_GRACE,
        on_exit: Callable[[Job], object] | None = None,
        **popen_kwargs: Any,
    ) -> Job:
        """Start ``args`` as a child process (or queue it); return its Job.

        Args:
            args: as for ``subprocess.Popen``.
            stdin: None (inherit), DEVNULL, PIPE (then write to ``job.stdin``),
                bytes, str (sent as UTF-8), a binary file or an iterable of
                bytes (pulled lazily, as the child reads).  A file with a real
                descriptor, or a descriptor, is given to the child directly.
            stdout: None (inherit), DEVNULL, PIPE (a new BytesSink), a file
                descriptor (given to the child), or a sink: see ``as_sink``.
            stderr: as stdout, or STDOUT to merge it into stdout's pipe, in the
                order the kernel delivers it.
            timeout: seconds from start; then the job's process group gets
                SIGTERM, ``timed_out`` is set, and SIGKILL follows after
                ``kill_grace`` seconds if the job is still not done.
            kill_grace: seconds between SIGTERM and SIGKILL when the reactor
                stops a job (timeout, cancel, or an exception escaping).
            eof_grace: seconds to wait, after the child exits, for its pipes to
                reach EOF.  Grandchildren that keep a pipe open are left
                running, but their later output is not read.  None: wait for EOF.
            on_exit: called as ``on_exit(job)`` once, when the job is done.
            popen_kwargs: passed to ``subprocess.Popen`` (cwd, env, shell,
                pass_fds, ...).  The child leads a new session, hence its own
                process group (``start_new_session=True``) unless you pass
                ``start_new_session`` or ``process_group``; without its own
                group, only the child itself is signalled.

        Raises:
            TypeError, ValueError: naming the argument, for bad input.
            OSError: the child could not be started now (FileNotFoundError
                for a missing program, as subprocess).  A job that starts later,
                from the queue, records such an error in ``job.error`` instead.
        """
        self._check_open()
        if self._stopping_all:
            raise RuntimeError("spawn() called while the reactor is stopping every job")
        check_args(args)
        check_popen_kwargs(popen_kwargs)
        if "process_group" not in popen_kwargs:
            popen_kwargs.setdefault("start_new_session", True)
        if on_exit is not None and not callable(on_exit):
            raise TypeError(f"on_exit must be callable or None, not {type(on_exit).__name__}")
        job = Job(
            self,
            args,
            popen_kwargs,
            make_feed(stdin),
            output_target(stdout, "stdout", allow_stdout=False),
            output_target(stderr, "stderr", allow_stdout=True),
            check_seconds(timeout, "timeout", allow_none=True),
            check_seconds(kill_grace, "kill_grace", allow_none=False) or 0.0,
            check_seconds(eof_grace, "eof_grace", allow_none=True),
            on_exit,
        )
        if self._pending or not self._has_slot():
            self._pending.append(job)
            self._settle_tokens()
            return job
        try:
            self._start(job)
        except BaseException as exc:
            if _fdlimit.is_exhaustion(exc) and self._live:
                self._starve(job)  # back-pressure: it starts when a job is done
                return job
            # The streams end before they began: their sinks are owed a close.
            sinks, job._open_sinks = job._open_sinks, []
            for sink in sinks:
                _call_quietly(_close_sink, sink)
            if isinstance(exc, OSError) and _fdlimit.is_exhaustion(exc):
                raise self._exhaustion_error(job, exc) from exc
            raise
        finally:
            self._settle_tokens()
        return job

    def _has_slot(self) -> bool:
        if self._fd_starved and self._live and time.monotonic() < self._starved_until:
            return False
        if self.max_parallel is not None and len(self._live) >= self.max_parallel:
            return False
        return self._jobserver is None or self._take_token()

    # -- make's jobserver -------------------------------------------------------

    def _take_token(self) -> bool:
        """Whether one more job may start as far as make is concerned: the
        first job runs on make's implicit slot, each further one on a token."""
        assert self._jobserver is not None
        if len(self._tokens) >= len(self._live):
            return True
        token = self._jobserver.try_take()
        if token is None:
            self._token_wanted = True
            return False
        self._tokens.append(token)
        return True

    def _settle_tokens(self) -> None:
        """Give back the tokens no live job needs, and watch the jobserver
        for a token only while a start waits for one."""
        js = self._jobserver
        if js is None:
            return
        while len(self._tokens) > max(0, len(self._live) - 1):
            js.give_back(self._tokens[-1])  # then forget it: an interrupt loses none
            self._tokens.pop()
        want = self._token_wanted and bool(self._pending) and not js.broken
        if want != self._token_wait:
            if want:
                self._selector.register(js.fileno(), selectors.EVENT_READ, _JOBSERVER)
            else:
                self._selector.unregister(js.fileno())
            self._token_wait = want

    def _starve(self, job: Job) -> None:
        """No fd to start ``job``: it goes back to the head of the queue, and
        nothing starts until a running job is done and has freed its fds."""
        self._pending.appendleft(job)
        self._fd_starved = True
        self._starved_until = time.monotonic() + _STARVED_RETRY

    def _exhaustion_error(self, job: Job, exc: OSError) -> OSError:
        ours = sum(
            len(j._readers) + (j._writer is not None) + (j._exit_watch is not None)
            for j in self._live
        )
        ours += (getattr(self._selector, "fileno", None) is not None) + (
            self._watcher.fileno() is not None
        )
        return _fdlimit.exhaustion_error(job.args, exc, ours)

    def _admit(self) -> None:
        """Start queued jobs while slots are free."""
        self._token_wanted = False
        try:
            self._admit_queued()
        finally:
            self._settle_tokens()

    def _admit_queued(self) -> None:
        while self._pending and self._has_slot():
            job = self._pending.popleft()
            try:
                self._start(job)
            except Exception as exc:
                if isinstance(exc, OSError) and _fdlimit.is_exhaustion(exc):
                    if self._live:
                        self._starve(job)
                        return
                    exc = self._exhaustion_error(job, exc)
                job.error = exc
                self._finish(job)
            except BaseException:
                # An interrupt: the job goes back to the head of the queue, so
                # that the cleanup that follows cancels it like the others.
                self._pending.appendleft(job)
                raise

    def _start(self, job: Job) -> None:
        """PENDING -> RUNNING: make the pipes, create the process, register its fds.

        Raises whatever pipe(), Popen or the registration raises; then the job
        is PENDING again, its child (if any) killed and reaped, no fd open.
        """
        stdio, child_ends = self._make_pipes(job)
        try:
            popen = subprocess.Popen(
                job.args, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], bufsize=0,
                **job._popen_kwargs,
            )
        except BaseException:
            self._close_fds(job, retry=True)
            raise
        finally:
            for fd in child_ends:  # the child has its copies, or never will
                os.close(fd)
        try:
            job._popen = popen
            job.pid = popen.pid
            job.started_at = time.monotonic()
            job.state = JobState.RUNNING
            self._live.add(job)
            self._watch_job(job, popen.pid)
            if job.timeout is not None:
                self._schedule(job.started_at + job.timeout, _TIMEOUT, job)
        except BaseException:
            # Registration failed (ENOSPC from epoll, an interrupt): undo it
            # all, back to a job that never started.
            self._undo_start(job, popen)
            raise

    def _make_pipes(self, job: Job) -> tuple[list[Any], list[int]]:
        """The pipes for a job's PIPE streams: our ends go on the job (as its
        writer and readers), the child's ends are returned with what Popen
        gets for each stream.

        Made here, not by Popen: Python 3.10's Popen leaks the pipes it made
        when a later one fails (EMFILE), and back-pressure retries would pile
        the leaks up.
        """
        stdio = list(job._popen_stdio)
        size = job._popen_kwargs.get("pipesize")
        child_ends: list[int] = []
        job._direct = []
        try:
            if stdio[0] == subprocess.PIPE:
                assert job._feed is not None
                r, w = make_pipe(size)
                child_ends.append(r)
                job._writer = _Writer(job, Fd.own(w), job._feed)
                job._writer.grown = size is not None and size > 0
                stdio[0] = r
            for i, sink in ((1, job._sinks[0]), (2, job._sinks[1])):
                if stdio[i] == subprocess.PIPE:
                    assert sink is not None
                    direct = _direct_fd(sink)
                    if direct >= 0:
                        # The child writes to the file itself, as with the
                        # shell's ">": no pipe, no copy through us.
                        stdio[i] = direct
                        if all(d[0] is not sink for d in job._direct):
                            job._direct.append((sink, direct, _write_position(direct)))
                        continue
                    r, w = make_pipe(size)
                    child_ends.append(w)
                    reader = _Reader(job, Fd.own(r), sink, self._splice_target(sink))
                    if size is not None and size > 0:
                        reader.grown = True  # the caller chose the size: keep it
                        reader.size = max(reader.size, size)
                    job._readers.append(reader)
                    stdio[i] = w
        except BaseException:
            for fd in child_ends:
                os.close(fd)
            self._close_fds(job, retry=True)
            raise
        return stdio, child_ends

    def _splice_target(self, sink: Sink) -> int:
        """Where a sink's bytes can be spliced to, bypassing Python: /dev/null
        for a NullSink; else -1."""
        if type(sink) is NullSink and hasattr(os, "splice"):
            if self._devnull < 0:
                self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            return self._devnull
        return -1

    def _undo_start(self, job: Job, popen: subprocess.Popen[bytes]) -> None:
        """Kill and reap a child just started, close its pipes.  Interrupts
        cannot cut this short (the caller re-raises the first one)."""
        while popen.returncode is None:  # unreaped: pid and group id are its own
            try:
                try:
                    if job._own_group:
                        os.killpg(popen.pid, signal.SIGKILL)
                    else:
                        os.kill(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                popen.wait()
            except Exception:
                break  # EPERM (a setuid child), say: it is beyond our reach
            except BaseException:
                continue  # an interrupt: kill (again) and wait again
        self._close_fds(job, retry=True)
        self._unwatch(job)
        self._live.discard(job)
        job.state = JobState.PENDING
        job.pid = job.started_at = job._popen = None

    def _watch_job(self, job: Job, pid: int) -> None:
        """Register a RUNNING job's pipe ends and its exit with the loop."""
        for reader in job._readers:
            self._selector.register(reader.fd.fd, selectors.EVENT_READ, reader)
        writer = job._writer
        if writer is not None:
            if isinstance(writer.feed, StdinWriter):
                writer.feed._wake = lambda: self._want_write(writer)
            self._want_write(writer)
        # On the job at once, so that _unwatch releases it whatever happens.
        handle = self._watcher.watch(pid)
        watch = job._exit_watch = None if handle is None or handle < 0 else _ExitWatch(job, handle)
        if handle is None:
            self._start_polling(job)
        elif handle == _childwatch.SHARED:
            self._by_pid[pid] = job
            # kqueue reports only exits after registration: one poll tick
            # catches a child that was gone before (see _poll_tick).
            self._confirming.add(job)
            self._start_polling(job)
        else:
            self._selector.register(handle, selectors.EVENT_READ, watch)

    # -- borrowing a caller's Popen (for pipereactor.communicate) -----------------

    def _adopt(
        self,
        popen: subprocess.Popen[Any],
        stdin: tuple[IO[Any], Feed] | None,
        stdout: tuple[IO[Any], Sink] | None,
        stderr: tuple[IO[Any], Sink] | None,
        eof_grace: float | None,
        exited_at: float | None = None,
        *,
        reap: bool = True,
    ) -> Job:
        """Drive a Popen someone else started, as a RUNNING (or EXITED) job.

        Its pipe files are borrowed: non-blocking until ``_detach`` hands them
        back, closed through the file at EOF (as ``Popen.communicate`` does).
        The child is reaped by ``popen.poll()`` and never signalled: the job has
        no timeout and is not its own process group as far as we know.
        ``exited_at`` carries the eof_grace clock over from an earlier call.
        With ``reap=False``, a child seen to exit is left unreaped (a zombie)
        for the caller, where ``waitid`` can tell an exit without reaping.
        """
        job = Job(
            self, popen.args, {},
            (None, stdin[1] if stdin else None),
            (None, stdout[1] if stdout else None, None),
            (None, stderr[1] if stderr else None, None),
            None, 0.0, eof_grace, None,
        )
        job._popen = popen
        job._adopted = True
        job._leave_zombie = not reap
        job.pid = popen.pid
        job.started_at = time.monotonic()
        job.state = JobState.RUNNING
        self._live.add(job)
        try:
            for pair in (stdout, stderr):
                if pair is not None:
                    job._readers.append(_Reader(job, Fd(pair[0]), pair[1]))
            if stdin is not None:
                job._writer = _Writer(job, Fd(stdin[0]), stdin[1])
            if popen.returncode is None:
                self._watch_job(job, popen.pid)
            else:  # reaped already (by an earlier call, or the caller's wait())
                job.returncode = popen.returncode
                job.exited_at = time.monotonic() if exited_at is None else exited_at
                job.state = JobState.EXITED
                if job._writer is not None:
                    self._end_input(job._writer)
                for reader in job._readers:
                    self._selector.register(reader.fd.fd, selectors.EVENT_READ, reader)
                if job._readers and eof_grace is not None:
                    self._schedule(job.exited_at + eof_grace, _EOF, job)
                self._maybe_finish(job)
        except BaseException:
            self._detach(job)
            raise
        return job

    def _detach(self, job: Job) -> None:
        """Stop driving an adopted job and leave its process alone; the pipe
        files still open go back to their owner, in blocking mode again."""
        for reader in job._readers:
            self._unregister_quietly(reader.fd.fd)
            reader.fd.release()
        writer = job._writer
        if writer is not None:
            if writer.registered:
                self._unregister_quietly(writer.fd.fd)
                writer.registered = False
            writer.fd.release()
        self._unwatch(job)
        self._live.discard(job)

    # -- driving the loop ------------------------------------------------------

    def step(self, timeout: float | None = None) -> bool:
        """Run one turn of the loop: wait for I/O, exits or deadlines, handle them.

        Waits at most ``timeout`` seconds (None: until something happens),
        less if a job's deadline is nearer.  Returns at once if no job is
        unfinished.  An empty turn is normal.

        Returns:
            True while some job is unfinished (pending, running or draining).

        Raises:
            whatever a sink or callback raised, or KeyboardInterrupt; every job
            is killed and reaped first.
        """
        with self._guard():
            self._turn(timeout)
        return bool(self._live or self._pending)

    def run(self, timeout: float | None = None) -> None:
        """Drive the loop until every job is done.

        Raises:
            TimeoutExpired: if ``timeout`` seconds pass first.  Nothing is
                killed; call run() again to go on.  ``cmd`` lists the unfinished
                jobs' args.
            whatever a sink or callback raised, or KeyboardInterrupt; every job
                is killed and reaped first.
        """
        self._drive_until(lambda: not (self._live or self._pending), timeout, None)

    def as_completed(self, timeout: float | None = None) -> Iterator[Job]:
        """Yield each job once, as it becomes done, in completion order.

        Jobs spawned while iterating are included; jobs that finished earlier
        and were not yet yielded come first, if you still hold a reference to
        them: a job that becomes done while no ``as_completed()`` is running is
        remembered weakly, so that a long-lived reactor driven by ``run()``,
        ``step()`` or ``wait()`` (with ``on_exit`` callbacks, say) does not keep
        every finished job.  (Jobs only become done inside those calls, so
        "spawn, then iterate" never misses one.)  The generator ends when no
        job is unfinished.

        Raises:
            TimeoutExpired: if ``timeout`` seconds pass before the last job is
                done.  Nothing is killed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        turned = False
        self._consumers += 1
        try:
            while True:
                while self._completed:
                    entry = self._completed.popleft()
                    job = entry() if isinstance(entry, weakref.ref) else entry
                    if job is not None:
                        yield job
                if not (self._live or self._pending):
                    return
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                # At least one turn, even with timeout=0: a poll must see news.
                if turned and remaining == 0.0:
                    raise subprocess.TimeoutExpired(self._unfinished_args(), timeout or 0.0)
                with self._guard():
                    self._turn(remaining)
                turned = True
        finally:
            self._consumers -= 1

    def _record_completion(self, job: Job) -> None:
        if self._consumers:
            self._completed.append(job)
            return
        self._completed.append(weakref.ref(job))
        if len(self._completed) >= self._compact_at:
            # Drop the jobs nobody holds any more; amortised O(1) per job.
            self._completed = deque(
                e for e in self._completed if not isinstance(e, weakref.ref) or e() is not None
            )
            self._compact_at = max(_COMPACT_MIN, 2 * len(self._completed))

    def _drive_until(
        self, done: Callable[[], bool], timeout: float | None, cmd: Any
    ) -> None:
        if done():
            return  # also after close(): a finished job needs no loop
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._guard():
            # At least one turn, even with timeout=0: a poll must see news.
            remaining = timeout
            while True:
                self._turn(remaining)
                if done():
                    break
                if not (self._live or self._pending):
                    # Nothing left to drive: waiting would spin for ever.
                    raise RuntimeError(f"{cmd!r} can never finish: the reactor has no such job")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
        if not done():
            raise subprocess.TimeoutExpired(
                cmd if cmd is not None else self._unfinished_args(), timeout or 0.0
            )

    def _unfinished_args(self) -> Any:
        return [job.args for job in (*self._live, *self._pending)]

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """One driver at a time; an exception escaping kills and reaps every job."""
        self._check_open()
        if self._in_turn:
            raise RuntimeError(
                "the reactor is already running: a sink or callback cannot drive it "
                "(step, run, as_completed, wait)"
            )
        self._in_turn = True
        try:
            yield
        except BaseException:
            self._in_turn = False
            self._kill_all()
            raise
        finally:
            self._in_turn = False

    def _turn(self, timeout: float | None) -> None:
        self._admit()
        if not (self._live or self._pending):
            return
        now = time.monotonic()
        wait = self._next_deadline()
        if wait is not None:
            wait = max(0.0, wait - now)
            if timeout is not None:
                wait = min(wait, timeout)
        else:
            wait = timeout
        if wait is not None and wait > _MAX_WAIT:
            wait = _MAX_WAIT
        for key, _ in self._selector.select(wait):
            data = key.data
            if type(data) is _Reader:
                self._on_readable(data)
            elif type(data) is _Writer:
                self._on_writable(data)
            elif type(data) is _ExitWatch:
                if data.job._exit_watch is data:
                    self._check_exit(data.job)
            elif data is _JOBSERVER:
                pass  # a token may be free: the _admit() below takes it
            elif data is _SHARED:
                for pid in self._watcher.collect():
                    job = self._by_pid.get(pid)
                    if job is not None:
                        self._check_exit(job)
                        if job.state is JobState.RUNNING:
                            # kqueue may report the exit before waitpid can
                            # reap it, and it reports only once: poll from here.
                            self._confirming.discard(job)
                            self._start_polling(job)
        self._fire_deadlines(time.monotonic())
        self._admit()

    # -- output ----------------------------------------------------------------

    def _on_readable(self, reader: _Reader) -> None:
        fd = reader.fd.fd
        if fd < 0:
            return  # closed earlier in this same turn
        if reader.splice_to >= 0:
            self._splice(reader, fd)
            return
        data = read_chunk(fd, reader.size)
        if data:
            if len(data) == reader.size and not reader.grown:
                self._grow(reader, fd)
            reader.sink.write(data)
        elif data is not None:
            self._end_stream(reader)

    def _splice(self, reader: _Reader, fd: int) -> None:
        """The bytes go from the pipe to the sink's file in the kernel, never
        through us; the sink (NullSink, FileSink) only counts them."""
        try:
            n = splice_some(fd, reader.splice_to, reader.size)
        except OSError:
            reader.splice_to = -1  # this target refuses splice: read from now on
            return  # the pipe is still readable: the next turn reads it
        if n is None:
            return
        if n:
            reader.sink.total += n  # type: ignore[attr-defined]
            if n == reader.size and not reader.grown:
                self._grow(reader, fd)
        else:
            self._end_stream(reader)

    @staticmethod
    def _grow(reader: _Reader, fd: int) -> None:
        """A read found the pipe full: the child outpaces us.  A bigger pipe
        (once) lets both sides do more per wake-up."""
        reader.grown = True
        reader.size = max(reader.size, reader.fd.grow())

    def _end_stream(self, reader: _Reader) -> None:
        """EOF (or given up on): close the pipe end, then the sink, once."""
        job = reader.job
        self._selector.unregister(reader.fd.fd)
        reader.fd.close()
        job._readers.remove(reader)
        if job.state is JobState.RUNNING and not job._readers:
            # Every output pipe closed: the child has usually just exited.
            self._reap(job)
        # A sink shared by stdout and stderr is closed when the second ends.
        sink = reader.sink
        if all(other.sink is not sink for other in job._readers):
            job._open_sinks.remove(sink)
            _close_sink(sink)
        self._maybe_finish(job)

    # -- input -----------------------------------------------------------------

    def _want_write(self, writer: _Writer) -> None:
        """Watch stdin for room again (new data, or close, from a StdinWriter)."""
        if writer.fd.fd >= 0 and not writer.registered:
            self._selector.register(writer.fd.fd, selectors.EVENT_WRITE, writer)
            writer.registered = True

    def _on_writable(self, writer: _Writer) -> None:
        fd = writer.fd.fd
        if fd < 0:
            return
        # A child that reads as fast as we write never fills the pipe: bound
        # the work per event so that other pipes and deadlines get their turn.
        for _ in range(_WRITES_PER_EVENT):
            if not writer.view:
                data = writer.feed.pull()
                if data is None:
                    self._end_input(writer)
                    return
                if not data:
                    if isinstance(writer.feed, StdinWriter):
                        # Nothing queued: stop watching until write() or
                        # close() wakes us, or a writable pipe would spin.
                        self._selector.unregister(fd)
                        writer.registered = False
                    return
                writer.view = memoryview(data)
            n = write_some(fd, writer.view)
            if n is None:  # EPIPE: the child stopped reading; drop the rest
                self._end_input(writer)
                return
            writer.view = writer.view[n:]
            if writer.view:
                if not writer.grown:  # the pipe is full: make it bigger, once
                    writer.grown = True
                    writer.fd.grow()
                return  # the pipe is full

    def _end_input(self, writer: _Writer) -> None:
        if writer.registered:
            self._selector.unregister(writer.fd.fd)
            writer.registered = False
        writer.fd.close()
        writer.view = None
        writer.job._writer = None
        if isinstance(writer.feed, StdinWriter):
            writer.feed._break()
            writer.feed._wake = None  # it held the writer, hence the job

    # -- exits and finishing -----------------------------------------------------

    def _check_exit(self, job: Job) -> None:
        """RUNNING -> EXITED if the child has exited; DONE too if its pipes are closed."""
        if self._reap(job):
            self._maybe_finish(job)

    def _reap(self, job: Job) -> bool:
        """RUNNING -> EXITED, if the child has exited (reaping it).  No user code."""
        popen = job._popen
        assert popen is not None
        if job.state is not JobState.RUNNING:
            return False
        zombie = None
        if job._stopping and job._own_group and popen.returncode is None:
            zombie = _childwatch.exited_unreaped(popen.pid)
            if zombie is False:
                return False  # alive: its exit will be reported, then we sweep
            if zombie:
                # The leader is a zombie, so its group id is still reserved:
                # the last moment to SIGKILL what is left of a stopped job's
                # group without risking a recycled id.
                job._signal_group(signal.SIGKILL)
                job._swept = True
        if job._leave_zombie and popen.returncode is None:
            exited = _childwatch.exited_unreaped(popen.pid)
            if exited is False:
                return False
            if exited is None:
                popen.poll()  # no waitid here: reaping is the only way to know
                if popen.returncode is None:
                    return False
        elif job._adopted:
            popen.poll()  # the caller's Popen: it reaps, as it would itself
        else:
            usage = _childwatch.reap(popen)
            if usage is not None:
                job.rusage = Rusage.from_wait4(usage)
        if popen.returncode is None and not job._leave_zombie:
            return False
        job.returncode = popen.returncode
        job.exited_at = time.monotonic()
        job.state = JobState.EXITED
        self._unwatch(job)
        if zombie is None and job._stopping and job._own_group and not job._swept:
            # No waitid, or the child was reaped elsewhere (ECHILD): sweep
            # just after the reap instead (see above).
            job._signal_group(signal.SIGKILL)
            job._swept = True
        if job._writer is not None:
            self._end_input(job._writer)
        if job._readers and job.eof_grace is not None:
            self._schedule(job.exited_at + job.eof_grace, _EOF, job)
        return True

    def _unwatch(self, job: Job) -> None:
        watch = job._exit_watch
        if watch is not None:
            job._exit_watch = None
            self._unregister_quietly(watch.handle)
            self._watcher.release(watch.handle)
        self._polled.discard(job)
        self._confirming.discard(job)
        if job.pid is not None:
            self._by_pid.pop(job.pid, None)

    def _maybe_finish(self, job: Job) -> None:
        if job.state is JobState.EXITED and not job._readers:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        """-> DONE: the state is final before any user code runs."""
        job.state = JobState.DONE
        self._live.discard(job)
        self._fd_starved = False  # its fds are closed: queued jobs may try again
        errors = self._settle(job)
        if errors:
            raise errors[0]

    def _settle(self, job: Job) -> list[BaseException]:
        """The user-facing end of a DONE job: queue it for as_completed, close
        the sinks still open (those of a job that never started, or was
        killed), call on_exit.  Each runs even if another raised; what they
        raised is returned."""
        self._record_completion(job)
        direct, job._direct = job._direct, []
        for sink, fd, start in direct:
            try:  # the child wrote to the file itself: count how far it got
                sink.total += _write_position(fd) - start  # type: ignore[attr-defined]
            except OSError:
                pass
        if isinstance(job._feed, StdinWriter):
            job._feed._break()
            job._feed._wake = None
        errors: list[BaseException] = []
        sinks, job._open_sinks = job._open_sinks, []
        for sink in sinks:
            errors.extend(_call_quietly(_close_sink, sink))
        if job.on_exit is not None:
            errors.extend(_call_quietly(job.on_exit, job))
        return errors

    def _cancel(self, job: Job) -> None:
        if job.state is JobState.PENDING:
            self._pending.remove(job)
            job.cancelled = True
            job.error = JobCancelled(f"job {job.args!r} was cancelled before it started")
            self._finish(job)
        elif job.state is not JobState.DONE:
            job.cancelled = True
            self._stop(job)

    # -- deadlines ---------------------------------------------------------------

    def _schedule(self, when: float, kind: int, job: Job) -> None:
        heap = self._deadlines
        if len(heap) > 64 and len(heap) > 4 * len(self._live):
            # Finished jobs leave their timeouts behind; an hour-long timeout on
            # thousands of short jobs must not pile up until it is due.
            heap[:] = [entry for entry in heap if self._is_due(entry[2], entry[3])]
            heapq.heapify(heap)
        self._seq += 1
        heapq.heappush(heap, (when, self._seq, kind, job))

    @staticmethod
    def _is_due(kind: int, job: Job) -> bool:
        """Whether a deadline still means something for the job's current state."""
        if kind == _EOF:
            return job.state is JobState.EXITED
        # A timeout covers the whole job: a grandchild holding a pipe past it
        # is stopped with the rest of the group.
        return job.state is JobState.RUNNING or job.state is JobState.EXITED

    def _next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and not self._is_due(heap[0][2], heap[0][3]):
            heapq.heappop(heap)  # stale: drop it rather than wake up for it
        when = heap[0][0] if heap else None
        if self._polled and self._poll_at is not None:
            when = self._poll_at if when is None else min(when, self._poll_at)
        if self._fd_starved and self._pending and self._starved_until > time.monotonic():
            when = self._starved_until if when is None else min(when, self._starved_until)
        return when

    def _fire_deadlines(self, now: float) -> None:
        if self._polled and self._poll_at is not None and self._poll_at <= now:
            self._poll_tick(now)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, kind, job = heapq.heappop(heap)
            if not self._is_due(kind, job):
                continue
            if kind == _TIMEOUT:
                job.timed_out = True
                self._stop(job)
            elif kind == _KILL:
                job._signal_group(signal.SIGKILL)
                if job.state is JobState.EXITED:
                    # Whoever still holds the pipes escaped the group (setsid):
                    # a stopped job does not wait for them, eof_grace or not.
                    self._give_up_eof(job)
            else:
                self._give_up_eof(job)

    def _start_polling(self, job: Job) -> None:
        self._polled.add(job)
        self._poll_interval = _childwatch.POLL_MIN
        self._poll_at = time.monotonic() + self._poll_interval

    def _poll_tick(self, now: float) -> None:
        exited = False
        for job in list(self._polled):
            self._check_exit(job)
            if job.state is not JobState.RUNNING:
                exited = True
            elif job in self._confirming:
                # Alive after its kqueue registration: kqueue will report it.
                self._confirming.discard(job)
                self._polled.discard(job)
        # Back off while nothing exits; a spawn or an exit resets the tick.
        if exited:
            self._poll_interval = _childwatch.POLL_MIN
        else:
            self._poll_interval = min(self._poll_interval * 2, _childwatch.POLL_MAX)
        self._poll_at = now + self._poll_interval

    def _stop(self, job: Job) -> None:
        """SIGTERM the job's group now, SIGKILL after kill_grace if not done.

        If the job is done sooner, what is left of its group is SIGKILLed then.
        """
        job._stopping = True
        job._signal_group(signal.SIGKILL if job.kill_grace <= 0 else signal.SIGTERM)
        self._schedule(time.monotonic() + job.kill_grace, _KILL, job)

    def _give_up_eof(self, job: Job) -> None:
        """eof_grace expired: deliver what the pipes hold now, then close them."""
        for reader in list(job._readers):
            for _ in range(_FINAL_DRAIN_CHUNKS):
                data = read_chunk(reader.fd.fd)
                if not data:
                    break
                reader.sink.write(data)
            self._end_stream(reader)

    # -- shutting down -------------------------------------------------------------

    def close(self) -> None:
        """Kill and reap every job left, close every fd.  Idempotent.

        Running jobs' process groups get SIGTERM, then SIGKILL after their
        ``kill_grace``; queued jobs are cancelled.  Sinks are closed and
        ``on_exit`` is called for each job; if any of them raises, the rest
        still run, and the first error is raised at the end.
        """
        if self._closed or self._forked():
            return
        if self._in_turn:
            raise RuntimeError("close() called from a sink or callback while the reactor runs")
        errors: list[BaseException] = []
        try:
            errors = self._kill_all()
        finally:
            self._release()
        if errors:
            raise errors[0]

    def _release(self) -> None:
        """Close the reactor's own fds (the selector, the watcher's), and give
        make back every token still held."""
        self._closed = True
        js = self._jobserver
        try:
            if js is not None:
                try:
                    while self._tokens:
                        js.give_back(self._tokens[-1])
                        self._tokens.pop()
                finally:
                    self._jobserver = None
                    js.close()
        finally:
            self._selector.close()
            self._watcher.close()
            if self._devnull >= 0:
                os.close(self._devnull)
                self._devnull = -1

    def _forked(self) -> bool:
        """In a child forked from the reactor's process, drop everything quietly.

        The selector's epoll instance and the children belong to the parent:
        unregistering an fd here would unregister it there, and signals would
        kill the parent's jobs.  Only our copies of the fds are closed.
        """
        if os.getpid() == self._pid:
            return False
        if not self._closed:
            self._closed = True
            for job in self._live:
                for fd in (*(r.fd for r in job._readers), *([job._writer.fd] if job._writer else [])):
                    fd.close()
                if job._exit_watch is not None:
                    os.close(job._exit_watch.handle)
                if job._popen is not None and job._popen.returncode is None:
                    # Not our child: keep its Popen copy from warning, or
                    # from being waited for, when it is collected here.
                    job._popen.returncode = 0
            self._live.clear()
            self._pending.clear()
            if self._jobserver is not None:
                # The tokens are the parent's to give back, not ours.
                self._tokens.clear()
                self._jobserver.close()
                self._jobserver = None
            # A kqueue is not inherited across fork (and Pythons before 3.12.1
            # do not know it): closing "ours", even by collecting it, could
            # close an unrelated fd.  Such objects are kept alive for good.
            if _is_kqueue(self._selector):
                _FORKED_KQUEUES.append(self._selector)
            else:
                self._selector.close()  # our copy of the epoll fd; no epoll_ctl
            if self._devnull >= 0:
                os.close(self._devnull)  # our copy
                self._devnull = -1
            if self._watcher.fileno() is None:
                self._watcher.close()
            else:
                _FORKED_KQUEUES.append(self._watcher)
        return True

    def _kill_all(self) -> list[BaseException]:
        """Cancel queued jobs; stop, reap and finish running ones.

        Every job's process group gets SIGTERM, then SIGKILL after the job's
        kill_grace (a job whose child exited already included: its group may
        still hold a grandchild).  User code (sink close, on_exit) runs only
        after every child is reaped and every fd closed.  What anything raises
        is recorded and the cleanup goes on; errors are returned, except an
        interrupt (KeyboardInterrupt and the like), re-raised at the end.  No
        job can be spawned meanwhile.
        """
        errors: list[BaseException] = []
        pending, self._pending = list(self._pending), deque()
        live = list(self._live)
        self._fd_starved = False
        # Nothing waits for a token any more: stop watching the jobserver
        # (only exit watches may wake _reap_within), and give back the tokens
        # of jobs already gone.
        errors.extend(_call_quietly(self._settle_tokens))
        if not pending and not live:
            return errors
        self._stopping_all = True
        try:
            for job in pending:
                errors.extend(_call_quietly(self._cancel_queued, job))
            # Closing our read ends first unblocks children stuck writing to
            # a full pipe, so that SIGTERM finds them able to exit.
            for job in live:
                errors.extend(_call_quietly(self._begin_kill, job))
            # An interrupt (before or during the grace) cuts it short.
            graceful = not any(not isinstance(e, Exception) for e in errors)
            errors.extend(_call_quietly(self._reap_within, live, graceful))
            for job in live:
                errors.extend(_call_quietly(self._kill_and_reap, job))
                errors.extend(_call_quietly(self._retire, job))
            for job in (*live, *pending):
                errors.extend(self._settle(job))
        finally:
            self._stopping_all = False
            errors.extend(_call_quietly(self._settle_tokens))
        interrupts = [e for e in errors if not isinstance(e, Exception)]
        if interrupts:
            raise interrupts[0]
        return errors

    @staticmethod
    def _cancel_queued(job: Job) -> None:
        try:
            job.cancelled = True
            job.error = JobCancelled(f"job {job.args!r} was cancelled before it started")
        finally:
            job.state = JobState.DONE  # whatever happens, it is not left queued

    def _begin_kill(self, job: Job) -> None:
        job._stopping = True
        self._close_fds(job)
        job._signal_group(signal.SIGKILL if job.kill_grace <= 0 else signal.SIGTERM)

    def _retire(self, job: Job) -> None:
        """-> DONE, for a reaped job of _kill_all's (no user code)."""
        popen = job._popen
        if job.state is JobState.RUNNING and popen is not None and popen.returncode is not None:
            # Reaped by the fallback wait in _kill_and_reap after _reap failed.
            job.returncode = popen.returncode
            job.exited_at = time.monotonic()
        self._close_fds(job)
        self._unwatch(job)
        job.state = JobState.DONE
        self._live.discard(job)

    def _kill_and_reap(self, job: Job) -> None:
        """SIGKILL the job's group and reap its child.

        An interrupt cannot stop it (the wait after SIGKILL is short; the
        first interrupt is re-raised at the end); after any other error it
        falls back to a plain ``Popen.wait()``.
        """
        popen = job._popen
        assert popen is not None
        if job.state is not JobState.RUNNING:
            # Reaped already.  If _reap_within was cut short, what is left of
            # the group never got its SIGKILL.
            if job._group_alive():
                job._signal_group(signal.SIGKILL)
            return
        interrupt: BaseException | None = None
        error: Exception | None = None
        plain_wait = False
        while popen.returncode is None:
            try:
                if plain_wait:
                    popen.wait()
                else:
                    job._signal_group(signal.SIGKILL)
                    # Wait for the exit without reaping, so that _reap sweeps
                    # the group while the leader's id is still reserved.
                    _childwatch.wait_exited(popen.pid)
                    plain_wait = not self._reap(job)  # no waitid on this system
            except Exception as exc:
                error = error or exc
                plain_wait = True
            except BaseException as exc:
                interrupt = interrupt or exc
        if interrupt is not None:
            raise interrupt
        if error is not None:
            raise error

    def _reap_within(self, jobs: list[Job], graceful: bool = True) -> None:
        """Wait for these jobs' children to exit (reaping them) and for the
        groups of those that had exited already to empty; SIGKILL each that
        is still there once its own kill_grace is over (at once if not
        ``graceful``)."""
        for job in jobs:
            self._close_fds(job)  # again, if an interrupt cut _begin_kill short
        now = time.monotonic()
        kill_at = {job: now + (job.kill_grace if graceful else 0.0) for job in jobs}
        while True:
            for job in jobs:
                self._reap(job)
            now = time.monotonic()
            # A child that exited before the kill (EXITED) leaves a group to
            # watch: a grandchild may hold our pipe and ignore SIGTERM.
            waiting = [
                job for job in jobs
                if job.state is JobState.RUNNING
                or (kill_at[job] != math.inf and job._group_alive())
            ]
            if not waiting:
                return
            for job in waiting:
                if kill_at[job] <= now:
                    job._signal_group(signal.SIGKILL)
                    kill_at[job] = math.inf
            wait = max(0.0, min(kill_at[job] for job in waiting) - now)
            if self._polled or any(job.state is not JobState.RUNNING for job in waiting):
                wait = min(wait, _childwatch.POLL_MAX)  # nothing wakes us for these
            # Only exit watches are registered now: any event is an exit.
            self._selector.select(min(wait, _MAX_WAIT))
            for pid in self._watcher.collect():
                reported = self._by_pid.get(pid)
                if reported is not None and reported.state is JobState.RUNNING:
                    self._start_polling(reported)  # reported, maybe not yet reapable

    def _close_fds(self, job: Job, *, retry: bool = False) -> None:
        """Close every pipe end of the job's, without calling user code.

        Safe on a half-registered job.  With ``retry``, the job is going back
        to the queue (its start failed): its input is kept for the next start.
        """
        if retry:
            job._direct = []  # it never ran: nothing written to count
        for reader in job._readers:
            self._unregister_quietly(reader.fd.fd)
            reader.fd.close()
        job._readers.clear()
        writer = job._writer
        if writer is not None:
            if retry:
                self._unregister_quietly(writer.fd.fd)
                writer.registered = False
                writer.fd.close()
                job._writer = None
                if isinstance(writer.feed, StdinWriter):
                    writer.feed._wake = None  # the next start sets its own
            else:
                self._end_input(writer)

    def _unregister_quietly(self, fd: int) -> None:
        if fd >= 0:
            try:
                self._selector.unregister(fd)
            except KeyError:
                pass  # never registered: the start failed before it

    # -- embedding -------------------------------------------------------------------

    def fileno(self) -> int:
        """An fd that is readable when ``step()`` has I/O or exits to handle.

        To embed the reactor in another loop (asyncio's ``add_reader``), call
        ``step(0)`` when this fd is readable *and* when ``next_timeout()``
        seconds have passed: deadlines (timeouts, grace periods, the poll tick)
        do not make the fd readable.

        Raises:
            ValueError: if the selector has no fd of its own (PollSelector).
        """
        self._check_open()
        fileno = getattr(self._selector, "fileno", None)
        if fileno is None:
            raise ValueError(
                f"fileno() needs a selector with an fd; this reactor uses "
                f"{type(self._selector).__name__}"
            )
        result = fileno()
        assert isinstance(result, int)
        return result

    def next_timeout(self) -> float | None:
        """Seconds until the next deadline ``step()`` must handle, or None."""
        when = self._next_deadline()
        return None if when is None else max(0.0, when - time.monotonic())

    # -- lifecycle -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the reactor is closed")

    def __enter__(self) -> Reactor:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._forked():
            return
        if exc_type is None:
            try:
                self.run()
            finally:
                self.close()
        else:
            # The caller's exception wins over anything cleanup raises
            # (except a further interrupt, which _kill_all re-raises).
            try:
                self._kill_all()
            finally:
                self._release()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or self._forked():
            return
        message = f"unclosed {self!r}: use 'with Reactor()' or call close()"
        # Clean up before warning: with warnings turned into errors, the warning
        # would otherwise end __del__ and leak the children.
        try:
            self._in_turn = False
            self.close()
        except Exception:
            pass
        warnings.warn(message, ResourceWarning, source=self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<Reactor {state} running={len(self._live)} pending={len(self._pending)} "
            f"watcher={self._watcher.name}>"
        )


#: In a forked child: kqueue objects inherited as dead numbers, never closed.
_FORKED_KQUEUES: list[object] = []


def _is_kqueue(selector: selectors.BaseSelector) -> bool:
    kqueue_selector = getattr(selectors, "KqueueSelector", None)
    return kqueue_selector is not None and isinstance(selector, kqueue_selector)


def _direct_fd(sink: Sink) -> int:
    """The descriptor of a FileSink on a regular file, which the child can be
    given as its stdout or stderr directly; else -1."""
    if type(sink) is not FileSink:
        return -1
    fd = sink._direct_fd()
    try:
        if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    return -1


def _write_position(fd: int) -> int:
    """Where the next write to ``fd`` lands: its offset, or the end of the
    file for O_APPEND (whose offset only moves once written to).  Anything
    else written there meanwhile (through the same description, or to the
    same O_APPEND file) counts too."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
        return os.fstat(fd).st_size
    return os.lseek(fd, 0, os.SEEK_CUR)


def _close_sink(sink: Sink) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()


def _call_quietly(fn: Callable[..., object], *args: object) -> list[BaseException]:
    """Call user code during cleanup; return what it raised instead of raising."""
    try:
        fn(*args)
    except BaseException as exc:
        return [exc]
    return []
