"""One child process as the reactor sees it: its state, its streams, its signals.

A ``Job`` is passive: it holds state and answers questions; the reactor's
lifecycle moves it from one state to the next, and ``wait()``/``cancel()``
reach the reactor only through the small ``JobDriver`` protocol (so this
module imports nothing of the reactor's).  The states, in order:

``PENDING``  spawned but waiting for a ``max_parallel`` slot; no process yet.
``RUNNING``  the child process is alive (or a zombie not yet noticed).
``EXITED``   the child has been reaped, but a pipe is still open (usually a
             grandchild holds it); ``eof_grace`` bounds this state.
``DONE``     final.  The child was reaped (or never started), every stream
             has ended and its sink was closed, ``on_exit`` has been called.

Across RUNNING and EXITED a job may also be *stopping* (``Stop``): told to
end by a timeout, ``cancel()`` or a kill of everything, then *swept* once what
was left of its process group got SIGKILL.  A DONE job keeps only what the
caller can read: the pipes, the feed, the Popen arguments and the driver are
let go.
"""

from __future__ import annotations

import enum
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Union

from ._cgroup import JobCgroup, Tree
from ._feeds import Feed, StdinWriter
from ._sinks import Sink
from ._spawn import ChildProcess

if TYPE_CHECKING:
    from ._pipes import Reader, Writer

__all__ = ["Job", "JobState", "JobCancelled", "Rusage", "JobDriver", "Launch", "Stop"]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Args = Union[StrOrBytesPath, Sequence[StrOrBytesPath]]


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    DONE = "done"


class JobCancelled(Exception):
    """Raised by ``Job.wait()`` and ``Job.check()`` for a job cancelled before it started."""


class Rusage(NamedTuple):
    """What a finished child used, as ``wait4()`` reports it.

    It counts the child and those of its descendants it waited for itself.
    ``max_rss`` is the peak resident set size in bytes; on Linux the kernel
    starts the count at exec from the parent's own peak, so a child of a
    parent bigger than itself reports (at least) the parent's size.
    """

    user: float  #: CPU seconds in user mode
    system: float  #: CPU seconds in the kernel on its behalf
    max_rss: int  #: peak resident set size, bytes

    @classmethod
    def from_wait4(cls, usage: resource.struct_rusage) -> Rusage:
        # Linux and the BSDs count ru_maxrss in KiB, macOS in bytes.
        scale = 1 if sys.platform == "darwin" else 1024
        return cls(usage.ru_utime, usage.ru_stime, usage.ru_maxrss * scale)


class Stop(enum.Enum):
    """How far the reactor got in stopping a job (RUNNING or EXITED)."""

    NO = "no"  #: nobody asked it to stop
    STOPPING = "stopping"  #: SIGTERM (or SIGKILL) sent; SIGKILL follows after kill_grace
    SWEPT = "swept"  #: what was left of its process group got SIGKILL; its id may be free now


class JobDriver(Protocol):
    """What a Job needs of the reactor that runs it."""

    def _wait_job(self, job: Job, timeout: float | None) -> None:
        """Drive the loop until ``job`` is done; TimeoutExpired after ``timeout``."""

    def _cancel_job(self, job: Job) -> None:
        """Take a pending job off the queue, or stop a running one."""


class Launch:
    """What starting a job takes, and nothing else: let go once it started."""

    __slots__ = ("popen_kwargs", "stdio", "feed", "sinks")

    def __init__(
        self,
        popen_kwargs: dict[str, Any],
        stdio: tuple[object, object, object],
        feed: Feed | None,
        sinks: tuple[Sink | None, Sink | None],
    ) -> None:
        self.popen_kwargs = popen_kwargs
        #: What Popen gets for each stream (PIPE where we make the pipe).
        self.stdio = stdio
        self.feed = feed
        self.sinks = sinks


class Job:
    """A child process run by a :class:`Reactor`.  Made by ``Reactor.spawn``.

    Attributes:
        args: the command, as given to ``spawn``.
        pid: the child's pid, or None while the job is pending.
        returncode: None until the child has been reaped; then its exit status,
            negative ``-N`` if signal N killed it (as with subprocess).
        state: a :class:`JobState`.
        stdout, stderr: the very object passed as that stream's target (a
            BytesSink made for ``PIPE``); None when the stream is not captured
            (None, DEVNULL, a file descriptor, or ``stderr=STDOUT``).
        stdin: a StdinWriter with ``stdin=PIPE``, else None.
        timed_out: True once ``timeout`` expired and the job was told to stop.
        cancelled: True once ``cancel()`` was called on an unfinished job, or
            once the reactor stopped it while killing every job (an exception
            escaping the loop, ``close()``) before its timeout did.
        error: the exception that kept a queued job from starting (for
            example FileNotFoundError), or JobCancelled; None otherwise.
        started_at: ``time.monotonic()`` when the child was started, or None.
        duration: seconds from start to the child's exit (so far, while it
            runs), on the monotonic clock; None if it never started.
        rusage: a :class:`Rusage` once the reactor has reaped the child; None
            before, and if the child was reaped elsewhere.  For a contained
            job, once it is done: the CPU of every process that ran in its
            cgroup, and their peak memory where the memory controller is on.
        contained: True if the job runs in a cgroup of its own (see
            ``Reactor(contain=...)``), so that stopping it stops its whole
            process tree; False if it relies on its process group.
    """

    # Slots keep a job small and its attributes quick to reach: a build tool
    # may queue thousands, and each one's objects are work for the garbage
    # collector.  ``__dict__`` stays, so callers may still tag jobs.
    __slots__ = (
        "args", "pid", "returncode", "state", "timed_out", "cancelled", "error",
        "started_at", "exited_at", "rusage", "timeout", "kill_grace", "eof_grace",
        "on_exit", "stdout", "stderr", "stdin", "contained",
        "_driver", "_launch", "_open_sinks", "_stop", "_popen", "_direct", "_reaper",
        "_readers", "_writer", "_exit_watch", "_cgroup", "_own_group",
        "__dict__", "__weakref__",
    )

    def __init__(
        self,
        reactor: JobDriver,
        args: Args,
        popen_kwargs: dict[str, Any],
        stdin: tuple[object, Feed | None],
        stdout: tuple[object, Sink | None, object],
        stderr: tuple[object, Sink | None, object],
        timeout: float | None,
        kill_grace: float,
        eof_grace: float | None,
        on_exit: Callable[[Job], object] | None,
    ) -> None:
        self.args = args
        self.pid: int | None = None
        self.returncode: int | None = None
        self.state = JobState.PENDING
        self.timed_out = False
        self.cancelled = False
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.exited_at: float | None = None
        self.rusage: Rusage | None = None
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.eof_grace = eof_grace
        self.on_exit = on_exit
        self.stdout: Any = stdout[2]
        self.stderr: Any = stderr[2]
        feed = stdin[1]
        self.stdin: StdinWriter | None = feed if isinstance(feed, StdinWriter) else None

        #: The reactor, until the job is done.
        self._driver: JobDriver | None = reactor
        #: What the start needs; None once the child runs (or never will).
        self._launch: Launch | None = Launch(
            popen_kwargs, (stdin[0], stdout[0], stderr[0]), feed, (stdout[1], stderr[1])
        )
        # Sinks whose close() is still owed: one entry per distinct sink, so a
        # sink shared by stdout and stderr is closed once.
        out, err = stdout[1], stderr[1]
        self._open_sinks: list[Sink] = [s for s in (out, err) if s is not None]
        if out is not None and out is err:
            del self._open_sinks[1]
        self._stop = Stop.NO
        self._popen: ChildProcess | None = None  # a Child, or a run()/communicate() Popen
        #: (sink, fd, offset at start) for streams the child writes to a file
        #: itself (see _sinks.child_fd); counted when the job is done.
        self._direct: list[tuple[Sink, int, int]] = []
        #: How the child is reaped: None for the reactor's own children
        #: (wait4, with rusage); run()/communicate() set their own.
        self._reaper: Any = None
        # Open pipe ends, and how we learn of the exit; emptied as they close.
        self._readers: list[Reader] = []
        self._writer: Writer | None = None
        self._exit_watch: Any = None
        #: The job's cgroup while it has one (see _cgroup), else None.
        self._cgroup: JobCgroup | None = None
        self.contained = False
        # Whether signals go to the child's whole process group.
        self._own_group = bool(popen_kwargs.get("start_new_session")) or (
            popen_kwargs.get("process_group") == 0
        )

    # -- what the caller reads -------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state is JobState.DONE

    @property
    def duration(self) -> float | None:
        """Seconds from start to the child's exit; while running, so far; None if never started."""
        if self.started_at is None:
            return None
        end = self.exited_at if self.exited_at is not None else time.monotonic()
        return end - self.started_at

    def __repr__(self) -> str:
        parts = [f"pid={self.pid}"] if self.pid is not None else []
        parts.append(self.state.value)
        if self.returncode is not None:
            parts.append(f"returncode={self.returncode}")
        if self.timed_out:
            parts.append("timed out")
        elif self.cancelled:
            parts.append("cancelled")
        return f"<Job {' '.join(parts)} {self.args!r}>"

    # -- waiting ---------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int:
        """Drive the reactor until this job is done; return its returncode.

        Other jobs make progress too (their output flows, their callbacks run).

        Raises:
            TimeoutExpired: if ``timeout`` seconds pass first.  Nothing is
                killed: the job keeps running, and ``wait`` may be called again.
            the job's ``error``: if it never started (the program was missing,
                say, or it was cancelled while queued).
            whatever a sink or callback raised while the reactor ran; every job
                is then killed and reaped before the exception reaches you.
        """
        if self._driver is not None:
            self._driver._wait_job(self, timeout)
        if self.error is not None:
            raise self.error
        if self.returncode is None:  # cancelled while an interrupt cut the cleanup short
            raise JobCancelled(f"job {self.args!r} never ran")
        return self.returncode

    def check(self) -> None:
        """Wait for the job, then raise CalledProcessError if it failed.

        The exception's ``output``/``stderr`` are the sinks' ``getvalue()`` where
        they have one (BytesSink, TextSink, RingBuffer), else None.
        """
        rc = self.wait()
        if rc:
            raise subprocess.CalledProcessError(
                rc, self.args, _captured(self.stdout), _captured(self.stderr)
            )

    # -- signals ---------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child process alone (as ``Popen.send_signal``).

        Does nothing once the child has been reaped, so a recycled pid is never
        signalled.
        """
        if self.state is JobState.RUNNING and self.pid is not None:
            # Not Popen.send_signal: it polls first and may reap the child
            # behind the reactor's back.  RUNNING means not reaped, so the pid
            # is still this child's.
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """SIGTERM to the job's process group (the child and its descendants);
        for a contained job, to every process in its cgroup.

        On a pending job, the same as ``cancel()``.  No escalation: see cancel().
        """
        self._signal_job(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the job's process group (``cgroup.kill`` for a contained
        job: its whole tree).  On a pending job, ``cancel()``."""
        self._signal_job(signal.SIGKILL)

    def cancel(self) -> None:
        """Stop the job, gracefully.

        A pending job is removed from the queue without starting: it becomes
        done with ``error`` set to JobCancelled, and ``on_exit`` is called.  A
        running job's process group gets SIGTERM, then SIGKILL ``kill_grace``
        seconds later if it is still not done.  A finished job is left alone.
        """
        if self._driver is not None:
            self._driver._cancel_job(self)

    def _signal_job(self, sig: int) -> None:
        if self.state is JobState.PENDING:
            self.cancel()
        else:
            self._signal_group(sig)

    def _sweeps(self) -> bool:
        """Whether the rest of the group is SIGKILLed as soon as a stopped
        job's child exits; a contained job's tree gets its kill_grace instead."""
        return self._own_group and self._cgroup is None

    def _group_alive(self) -> bool:
        """Whether the job's own process group may still have members
        (False once it was swept, or without a group of its own)."""
        if self._cgroup is not None:
            return self._cgroup.populated()
        if not self._own_group or self._stop is Stop.SWEPT or self._popen is None:
            return False
        try:
            os.killpg(self._popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def _signal_group(self, sig: int) -> None:
        """Signal the process group while any of it may live, else the child."""
        if self._popen is None or self.state is JobState.DONE:
            return
        if self._cgroup is not None and self._cgroup.state is not Tree.REMOVED:
            # The whole tree, however it detached; the child itself too
            # while unreaped (it may not have joined its cgroup yet).
            self._cgroup.signal(sig, self.pid if self.state is JobState.RUNNING else None)
        elif self._own_group:
            if self._stop is Stop.SWEPT:
                return  # the group was SIGKILLed; its id may be free by now
            # Known gap: a job whose child was reaped while the pipe holder had
            # left the group (setsid) has an empty group whose id may be
            # recycled; a kill in that window can reach the new owner.
            # The group outlives its leader while a grandchild is in it, and
            # its id cannot be reused meanwhile (POSIX).  Once the leader is
            # reaped and the group is empty, the id is free again: so the
            # lifecycle sends the SIGKILL sweep of a stopped job while the
            # leader is still an unreaped zombie (see _lifecycle.reap).
            try:
                os.killpg(self._popen.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        else:
            self.send_signal(sig)


def _captured(target: object) -> Any:
    getvalue = getattr(target, "getvalue", None)
    if getvalue is None:
        return None
    try:
        return getvalue()
    except Exception:
        return None
