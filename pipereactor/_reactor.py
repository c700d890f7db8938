"""The reactor: one selector, many jobs, one thread.

The path of a byte: a child writes to its pipe; a turn wakes from
``select()`` and tells the pipe's ``Reader`` (``_pipes``) that its fd is
ready; the reader reads a chunk and hands it to the sink (``_sinks``).  At
EOF the lifecycle closes the reader and the sink; once the child has exited
and every reader is closed, the job is done (``_lifecycle``).

Here: ``spawn``, the drivers, the dispatch of ready fds, embedding, closing.
An exception escaping a turn (a sink or callback raising, Ctrl-C) first
kills and reaps every job (``_shutdown``), then propagates.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final, Literal

from . import _childwatch, _fdlimit, _jobserver
from ._admission import JOBSERVER, Admission
from ._cgroup import open_containment
from ._completions import Completions
from ._exits import SHARED, ExitWatch, Exits
from ._feeds import StdinSource
from ._job import Args, Job, JobState
from ._lifecycle import Lifecycle
from ._pipes import Ready, Reader, Writer
from ._shutdown import MAX_WAIT, detach_after_fork, kill_all, release
from ._sinks import OutputTarget
from ._spawnargs import check_reactor_args, make_job

__all__ = ["Reactor", "KILL_GRACE", "EOF_GRACE"]

_END, _IDLE = Ready.END, Ready.IDLE  # once per chunk: a global, not an Enum lookup
#: Defaults for ``spawn``: trio's escalation delay; a short wait for pipe EOF.
KILL_GRACE: Final = 5.0
EOF_GRACE: Final = 2.0

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
        contain: each job in a cgroup v2 of its own (Linux): a job is its
            whole process tree, however its processes detach.  A stop SIGTERMs
            every process in it, then ``cgroup.kill`` after ``kill_grace``; a
            job is done once its cgroup is empty (what outlives the child gets
            ``eof_grace``); ``rusage`` counts the tree.  True: RuntimeError
            naming what is missing where it cannot be had; "auto": process
            groups there (see ``job.contained``); False (default): groups.

    When a spawn finds no free fd (EMFILE, ENFILE) while other jobs run, the
    job waits in the queue and starts when one of them is done; only with
    nothing running does it fail, with an OSError that says why.

    Raises:
        NotImplementedError: on Windows, whose selectors cannot poll pipes.

    Use it as a context manager.  Leaving the block normally waits for every
    job (``run()``); leaving it by an exception kills and reaps every job.
    Either way the reactor is then closed.  A reactor the garbage collector
    finds unclosed gives a ResourceWarning and SIGKILLs its jobs at once:
    the collector must not wait out a ``kill_grace``.
    """

    def __init__(
        self,
        max_parallel: int | None = None,
        *,
        watcher: str = "auto",
        selector: type[selectors.BaseSelector] | None = None,
        raise_fd_limit: bool = False,
        jobserver: bool = False,
        contain: bool | Literal["auto"] = False,
    ) -> None:
        self._closed = True  # until construction succeeds; read by __del__
        selector = check_reactor_args(max_parallel, watcher, selector, raise_fd_limit,
                                      jobserver, contain)
        containment = open_containment(contain)
        try:  # the cgroup made, nothing after it may leak it
            if raise_fd_limit:
                _fdlimit.raise_soft_limit()
            self._selector = selector()
            self._exits = Exits(_childwatch.make_watcher(watcher), self._selector)
            self._completions = Completions()
            self._admission = Admission(
                max_parallel, _jobserver.from_makeflags() if jobserver else None, self._selector
            )
        except BaseException:
            if containment is not None:
                containment.close()
            raise
        self._lc = Lifecycle(self._selector, self._exits, self._admission,
                             self._completions.record, containment)
        self._in_turn = False
        self._stopping_all = False  # inside kill_all: spawn() is refused
        self._pid = os.getpid()
        self._closed = False

    @property
    def max_parallel(self) -> int | None:
        """At most this many children run at once (None: no limit)."""
        return self._admission.max_parallel

    @max_parallel.setter
    def max_parallel(self, value: int | None) -> None:
        self._admission.max_parallel = value

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
            popen_kwargs: ``subprocess.Popen``'s keywords (cwd, env, shell, pass_fds,
                ...), with Popen's meaning and errors (see ``_spawn``).  The child
                leads a new session, hence its own process group
                (``start_new_session=True``) unless you pass ``start_new_session``
                or ``process_group``; without its own group, only it is signalled.

        Raises:
            TypeError, ValueError: naming the argument, for bad input.
            OSError: the child could not be started now (FileNotFoundError
                for a missing program, as subprocess).  A job that starts later,
                from the queue, records such an error in ``job.error`` instead.
        """
        self._check_open()
        if self._stopping_all:
            raise RuntimeError("spawn() called while the reactor is stopping every job")
        job = make_job(self, args, popen_kwargs, stdin, stdout, stderr, timeout, kill_grace,
                       eof_grace, on_exit)
        admission, lc = self._admission, self._lc
        job.contained = lc.contain is not None
        admission.begin_round()
        try:
            if admission.pending or not admission.has_slot(len(lc.live)):
                admission.pending.append(job)
            else:
                lc.start_now(job)
        finally:
            admission.settle(len(lc.live))
        return job

    # -- what Job needs of us (JobDriver) ------------------------------------------------

    def _wait_job(self, job: Job, timeout: float | None) -> None:
        self._drive_until(lambda: job.state is JobState.DONE, timeout, job.args)

    def _cancel_job(self, job: Job) -> None:
        self._lc.cancel(job)

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
        return self._unfinished()

    def run(self, timeout: float | None = None) -> None:
        """Drive the loop until every job is done.

        Raises:
            TimeoutExpired: if ``timeout`` seconds pass first.  Nothing is
                killed; call run() again to go on.  ``cmd`` lists the unfinished
                jobs' args.
            whatever a sink or callback raised, or KeyboardInterrupt; every job
                is killed and reaped first.
        """
        self._drive_until(lambda: not self._unfinished(), timeout, None)

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
        completions = self._completions
        completions.consumers += 1
        try:
            while True:
                job = completions.pop()
                while job is not None:
                    yield job
                    job = completions.pop()
                if not self._unfinished():
                    return
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                # At least one turn, even with timeout=0: a poll must see news.
                if turned and remaining == 0.0:
                    raise subprocess.TimeoutExpired(self._unfinished_args(), timeout or 0.0)
                with self._guard():
                    self._turn(remaining)
                turned = True
        finally:
            completions.consumers -= 1

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
                if not self._unfinished():
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
        return [job.args for job in (*self._lc.live, *self._admission.pending)]

    def _unfinished(self) -> bool:
        return bool(self._lc.live or self._admission.pending)

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
        """Start what may start, wait for the first event or deadline, handle
        every ready fd, fire what is due, and start what the turn freed."""
        lc, admission = self._lc, self._admission
        if admission.pending:
            lc.admit()
        if not (lc.live or admission.pending):
            return
        wait = self._next_deadline()
        if wait is not None:
            wait = max(0.0, wait - time.monotonic())
            if timeout is not None:
                wait = min(wait, timeout)
        else:
            wait = timeout
        if wait is not None and wait > MAX_WAIT:
            wait = MAX_WAIT
        for key, _ in self._selector.select(wait):
            data = key.data
            kind = type(data)
            if kind is Reader:
                if data.on_ready() is _END:
                    lc.end_stream(data)
            elif kind is Writer:
                ready = data.on_ready()
                if ready is _END:
                    lc.fds.end_input(data)
                elif ready is _IDLE:
                    lc.fds.idle(data)
            elif kind is ExitWatch:
                if data.job._exit_watch is data:
                    lc.check_exit(data.job)
            elif data is JOBSERVER:
                pass  # a token may be free: the _admit() below takes it
            elif data is SHARED:
                lc.check_reported()
        lc.on_time(time.monotonic())
        if admission.pending:
            lc.admit()

    def _next_deadline(self) -> float | None:
        when = self._lc.deadlines.next_when()
        other = self._exits.next_poll()
        if other is not None and (when is None or other < when):
            when = other
        other = self._admission.next_retry()
        if other is not None and (when is None or other < when):
            when = other
        return when

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

    def _kill_all(self, *, graceful: bool = True) -> list[BaseException]:
        self._stopping_all = True
        try:
            return kill_all(self._lc, graceful=graceful)
        finally:
            self._stopping_all = False

    def _release(self) -> None:
        """Close the reactor's own fds (the selector, the watcher's), and give
        make back every token still held."""
        self._closed = True
        release(self._lc)

    def _forked(self) -> bool:
        """In a child forked from the reactor's process, drop everything
        quietly (see ``_shutdown.detach_after_fork``)."""
        if os.getpid() == self._pid:
            return False
        if not self._closed:
            self._closed = True
            detach_after_fork(self._lc)
        return True

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
        return int(fileno())

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
        # would otherwise end __del__ and leak the children.  No grace: the
        # garbage collector must not block for a kill_grace.
        try:
            self._in_turn = False
            try:
                self._kill_all(graceful=False)
            finally:
                self._release()
        except Exception:
            pass
        warnings.warn(message, ResourceWarning, source=self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<Reactor {state} running={len(self._lc.live)} "
            f"pending={len(self._admission.pending)} watcher={self._exits.watcher.name}>"
        )
