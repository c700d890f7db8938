"""A job's life: start, streams ending, exit, finish; stop and escalate.

The transitions, each in one method:

``start``        PENDING -> RUNNING: pipes made, child started, fds registered.
                 On failure the job is PENDING again with no fd open.
``reap``         RUNNING -> EXITED, once the child has exited (no user code).
``finish``       EXITED (or PENDING) -> DONE, once every output pipe is
                 closed and a contained job's cgroup is empty; then
                 ``settle`` runs the user-facing end: sinks closed,
                 ``on_exit`` called.  The state is final before any user
                 code runs.
``stop``         a RUNNING or EXITED job gets SIGTERM now and SIGKILL after
                 ``kill_grace`` (``Stop.STOPPING``); once its child is a
                 zombie, what is left of its group is SIGKILLed (``SWEPT``).
                 A contained job's tree gets the whole ``kill_grace``.

Done means exited *and* drained (Twisted's processEnded, asyncio's
``_try_finish``): ``eof_grace`` bounds the wait for the drain when a
grandchild holds a pipe open, and, for a contained job, the wait for what
the child left in its cgroup (then ``cgroup.kill``).
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from typing import Any, Final

from . import _childwatch, _fdlimit
from ._admission import Admission
from ._cgroup import Containment, Tree
from ._deadlines import Deadlines, Due
from ._exits import Exits
from ._feeds import StdinWriter
from ._job import Job, JobCancelled, JobState, Rusage, Stop
from ._jobfds import JobFds
from ._pipes import Reader, make_job_pipes, write_position
from ._sinks import Sink, count
from ._spawn import ChildProcess, start_child
from ._spawnargs import resolved_argv

__all__ = ["Lifecycle", "call_quietly"]

#: A job with output pipes is watched for its exit once it ran this long (``register``).
_WATCH_AFTER: Final = 0.05

#: When ``eof_grace`` expires, what is already in a pipe is still delivered,
#: but no more than this many chunks: a grandchild may keep writing forever.
_FINAL_DRAIN_CHUNKS: Final = 16

#: After a contained job's tree was killed, how long its pipes may stay open
#: (held by a process outside the tree, given the fd over a socket, say).
_PIPES_AFTER_KILL: Final = 1.0


class Lifecycle:
    """Moves jobs between states; owns the set of live jobs and their fds."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        exits: Exits,
        admission: Admission,
        completed: Callable[[Job], None],
        contain: Containment | None = None,
    ) -> None:
        self.contain = contain
        self.selector = selector
        self.fds = JobFds(selector)
        self.exits = exits
        self.admission = admission
        self.deadlines = Deadlines()
        self.live: set[Job] = set()  # RUNNING or EXITED
        self._completed = completed
        self.devnull = -1  # opened for the first sink spliced to it

    # -- starting ----------------------------------------------------------------

    def start(self, job: Job) -> None:
        """PENDING -> RUNNING: make the pipes, create the process, register its fds.

        Raises whatever pipe(), Popen (see ``_spawn``) or the registration raises; then the job
        is PENDING again, its child (if any) killed and reaped, no fd open.
        """
        launch = job._launch
        assert launch is not None
        try:
            stdio, child_ends = make_job_pipes(
                job, launch.stdio, launch.feed, launch.sinks,
                launch.popen_kwargs.get("pipesize"), self._devnull,
            )
        except BaseException:
            self.fds.close(job, retry=True)
            raise
        args, kwargs, tree = job.args, launch.popen_kwargs, None
        try:
            if self.contain is not None:
                argv = resolved_argv(args, kwargs)
                tree = self.contain.new_job()
                args, env = tree.wrap(argv, kwargs.get("env"))
                kwargs = {k: v for k, v in kwargs.items() if k not in ("shell", "executable")}
                kwargs["env"] = env
            popen = start_child(args, stdio, kwargs)
        except BaseException:
            if tree is not None:
                tree.remove()
            self.fds.close(job, retry=True)
            raise
        finally:
            for fd in child_ends:  # the child has its copies, or never will
                os.close(fd)
        try:
            job._popen = popen
            job._cgroup = tree
            job.pid = popen.pid
            job.started_at = time.monotonic()
            job.state = JobState.RUNNING
            self.live.add(job)
            self.register(job, popen.pid)
            if job.timeout is not None:
                self.schedule(job.started_at + job.timeout, Due.TIMEOUT, job)
        except BaseException:
            # Registration failed (ENOSPC from epoll, an interrupt): back to never started.
            self._undo_start(job, popen)
            raise
        job._launch = None  # the child runs: its arguments are no longer needed

    def _devnull(self) -> int:
        """/dev/null, for sinks that discard: their pipes are spliced there."""
        if self.devnull < 0 and hasattr(os, "splice"):
            self.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self.devnull

    def register(self, job: Job, pid: int) -> None:
        """Register a RUNNING job's pipe ends, and its exit, with the loop.

        A job with output pipes is watched for its exit (a pidfd) only if it
        still runs after ``_WATCH_AFTER``, or once its pipes have ended first:
        most short jobs end with their pipes (EOF, then a reap that finds them
        gone), and need no watch at all.  A child that exits while a
        grandchild keeps its pipes open is noticed at most that much later.
        """
        self.fds.register(job)
        if job._readers:
            self.deadlines.schedule_in_order(
                time.monotonic() + _WATCH_AFTER, Due.WATCH, job, len(self.live)
            )
        else:
            self.exits.watch(job, pid)

    def ensure_watched(self, job: Job) -> None:
        """Watch a RUNNING job's exit from now on, if nothing does yet."""
        if job.state is JobState.RUNNING and not self.exits.watching(job):
            assert job.pid is not None
            self.exits.watch(job, job.pid)

    def _undo_start(self, job: Job, popen: ChildProcess) -> None:
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
        tree, job._cgroup = job._cgroup, None
        if tree is not None:
            tree.signal(signal.SIGKILL)  # a grandchild forked already dies too
            tree.remove()  # else close() tries again
        self.fds.close(job, retry=True)
        self.exits.unwatch(job)
        self.live.discard(job)
        job.state = JobState.PENDING
        job.pid = job.started_at = job._popen = None

    def start_now(self, job: Job) -> None:
        """``spawn()``'s start: a job that finds no fd while others run goes
        back to the queue; any other failure is raised (the job never existed
        for the caller)."""
        try:
            self.start(job)
        except BaseException as exc:
            if _fdlimit.is_exhaustion(exc) and self.live:
                self.admission.starve(job)  # back-pressure: it starts when a job is done
                return
            self.abandon(job)
            if isinstance(exc, OSError) and _fdlimit.is_exhaustion(exc):
                raise self.exhaustion_error(job, exc) from exc
            raise

    def admit(self) -> None:
        """Start queued jobs while admission lets them.  A start that finds
        no fd while jobs run goes back to the queue (back-pressure); any
        other failure finishes that job with ``error`` set."""
        admission = self.admission
        admission.begin_round()
        try:
            while admission.pending and admission.has_slot(len(self.live)):
                job = admission.pending.popleft()
                try:
                    self.start(job)
                except Exception as exc:
                    if isinstance(exc, OSError) and _fdlimit.is_exhaustion(exc):
                        if self.live:
                            admission.starve(job)
                            return
                        exc = self.exhaustion_error(job, exc)
                    job.error = exc
                    self.finish(job)
                except BaseException:
                    # An interrupt: back to the queue's head, so the cleanup cancels it too.
                    admission.pending.appendleft(job)
                    raise
        finally:
            admission.settle(len(self.live))

    def exhaustion_error(self, job: Job, exc: OSError) -> OSError:
        """The OSError for a start that found no fd with nothing to wait for."""
        ours = sum(
            len(j._readers) + (j._writer is not None) + (j._exit_watch is not None)
            for j in self.live
        )
        ours += (getattr(self.selector, "fileno", None) is not None) + (
            self.exits.watcher.fileno() is not None
        )
        return _fdlimit.exhaustion_error(job.args, exc, ours)

    # -- streams ---------------------------------------------------------------------

    def end_stream(self, reader: Reader) -> None:
        """EOF (or given up on): close the pipe end, then the sink, once."""
        job = reader.job
        self.selector.unregister(reader.fd.fd)
        reader.fd.close()
        job._readers.remove(reader)
        if job.state is JobState.RUNNING and not job._readers:
            # Every output pipe closed: the child has usually just exited.
            if not self.reap(job):
                self.ensure_watched(job)
        # A sink shared by stdout and stderr is closed when the second ends.
        sink = reader.sink
        for other in job._readers:
            if other.sink is sink:
                break
        else:
            job._open_sinks.remove(sink)
            _close_sink(sink)
        self.maybe_finish(job)

    # -- exits and finishing ---------------------------------------------------------

    def check_exit(self, job: Job) -> None:
        """RUNNING -> EXITED if the child has exited; DONE too if its pipes are closed."""
        if self.reap(job):
            self.maybe_finish(job)

    def check_reported(self) -> None:
        """The watcher's shared fd (kqueue) is readable: look at the jobs it names."""
        for job in self.exits.reported():
            self.check_exit(job)
            if job.state is JobState.RUNNING:
                # kqueue reports once, maybe before waitpid can reap: poll from here.
                self.exits.not_yet_reapable(job)

    def on_time(self, now: float) -> None:
        """Run the poll tick if it has come, and fire the deadlines that have."""
        if self.exits.polled:
            polled = self.exits.poll_due(now)
            if polled:
                for job in polled:
                    self.check_exit(job)
                self.exits.after_poll(now, polled)
        if self.deadlines.due(now):
            for kind, job in self.deadlines.pop_due(now):
                self.fire(kind, job)

    def reap(self, job: Job) -> bool:
        """RUNNING -> EXITED, if the child has exited (reaping it).  No user code."""
        popen = job._popen
        assert popen is not None
        if job.state is not JobState.RUNNING:
            return False
        zombie = None
        if job._stop is Stop.STOPPING and job._sweeps() and popen.returncode is None:
            zombie = _childwatch.exited_unreaped(popen.pid)
            if zombie is False:
                return False  # alive: its exit will be reported, then we sweep
            if zombie:
                # The leader is a zombie, so its group id is still reserved:
                # the last moment to SIGKILL what is left of a stopped job's
                # group without risking a recycled id.
                sweep(job)
        if job._reaper is None:
            usage = _childwatch.reap(popen)
            if usage is not None:
                job.rusage = Rusage.from_wait4(usage)
            if popen.returncode is None:
                return False
        elif not job._reaper(popen):
            return False
        job.returncode = popen.returncode
        job.exited_at = time.monotonic()
        job.state = JobState.EXITED
        if job._cgroup is not None:
            job._cgroup.child_gone()  # its cgroup's emptiness is final from now on
        self.exits.unwatch(job)
        if job._stop is Stop.STOPPING and job._sweeps():
            # No waitid, or reaped elsewhere (ECHILD): sweep just after the reap instead.
            sweep(job)
        if job._writer is not None:
            self.fds.end_input(job._writer)
        tree = job._cgroup
        if tree is not None and tree.populated():
            # What the child left in its cgroup gets eof_grace, as held pipes do.
            self.schedule(job.exited_at + tree.next_tick(), Due.TREE, job)
        elif not job._readers:
            return True
        if job.eof_grace is not None:
            self.schedule(job.exited_at + job.eof_grace, Due.EOF, job)
        return True

    def maybe_finish(self, job: Job) -> None:
        """Finish an exited job whose pipes are closed and whose cgroup, if
        it has one, is empty: a contained job is done when its tree is."""
        if job.state is JobState.EXITED and not job._readers:
            if job._cgroup is None or not job._cgroup.populated():
                self.finish(job)

    def finish(self, job: Job) -> None:
        """-> DONE: the state is final before any user code runs."""
        self.release_tree(job)
        job.state = JobState.DONE
        self.live.discard(job)
        errors = call_quietly(self.admission.job_done, len(self.live))
        errors.extend(self.settle(job))
        if errors:
            raise errors[0]

    def settle(self, job: Job) -> list[BaseException]:
        """The user-facing end of a DONE job: queue it for as_completed, close
        the sinks still open (those of a job that never started, or was
        killed), call on_exit.  Each runs even if another raised; what they
        raised is returned.  The job lets go of everything the caller cannot
        reach, so that holding done jobs holds no buffers."""
        self._completed(job)
        direct, job._direct = job._direct, []
        for sink, fd, start in direct:
            try:  # the child wrote to the file itself: count how far it got
                count(sink, write_position(fd) - start)
            except OSError:
                pass
        launch, job._launch = job._launch, None
        feed = launch.feed if launch is not None else None
        if isinstance(feed, StdinWriter):
            feed._break()
            feed._wake = None
        job._driver = None
        job._reaper = None
        job._popen = None  # reaped: only a run()/communicate() caller's own Popen lives on
        errors: list[BaseException] = []
        sinks, job._open_sinks = job._open_sinks, []
        for sink in sinks:
            errors.extend(call_quietly(_close_sink, sink))
        if job.on_exit is not None:
            errors.extend(call_quietly(job.on_exit, job))
        return errors

    def release_tree(self, job: Job) -> None:
        """A contained job's usage from its cgroup, then the cgroup removed
        (left to ``close()`` if processes are still in it).  No user code."""
        tree, job._cgroup = job._cgroup, None
        if tree is None:
            return
        user, system, peak = tree.usage()
        if peak is None:
            peak = job.rusage.max_rss if job.rusage is not None else 0
        job.rusage = Rusage(user, system, peak)
        tree.remove()

    def abandon(self, job: Job) -> None:
        """A job whose ``spawn()`` raised: it never existed for the caller,
        but its sinks are owed a close (their streams end before they began)."""
        job._launch = job._driver = None
        sinks, job._open_sinks = job._open_sinks, []
        for sink in sinks:
            call_quietly(_close_sink, sink)

    def cancel(self, job: Job) -> None:
        """``Job.cancel()``: off the queue (DONE, with JobCancelled), or stop it."""
        if job.state is JobState.PENDING:
            self.admission.pending.remove(job)
            job.cancelled = True
            job.error = JobCancelled(f"job {job.args!r} was cancelled before it started")
            self.finish(job)
        elif job.state is not JobState.DONE:
            job.cancelled = True
            self.stop(job)

    def cancel_queued(self, job: Job) -> None:
        """PENDING -> DONE without starting (no user code)."""
        try:
            job.cancelled = True
            job.error = JobCancelled(f"job {job.args!r} was cancelled before it started")
        finally:
            job.state = JobState.DONE  # whatever happens, it is not left queued

    # -- stopping and deadlines ------------------------------------------------------

    def stop(self, job: Job) -> None:
        """SIGTERM the job's group now, SIGKILL after kill_grace if not done.

        If the job is done sooner, what is left of its group is SIGKILLed then.
        """
        if job._stop is Stop.NO:
            job._stop = Stop.STOPPING
        job._signal_group(signal.SIGKILL if job.kill_grace <= 0 else signal.SIGTERM)
        self.schedule(time.monotonic() + job.kill_grace, Due.KILL, job)

    def schedule(self, when: float, kind: Due, job: Job) -> None:
        self.deadlines.schedule(when, kind, job, len(self.live))

    def fire(self, kind: Due, job: Job) -> None:
        """A deadline of the job's has come."""
        if kind is Due.TIMEOUT:
            if job._stop is Stop.NO:  # a job already stopping (cancelled) did not time out
                job.timed_out = True
                self.stop(job)
        elif kind is Due.WATCH:
            self.ensure_watched(job)
        elif kind is Due.KILL:
            job._signal_group(signal.SIGKILL)
            if job.state is JobState.EXITED:
                if job._cgroup is not None:
                    self._tree_killed(job)
                else:
                    # Whoever still holds the pipes escaped the group (setsid):
                    # a stopped job does not wait for them, eof_grace or not.
                    self.give_up_eof(job)
        elif kind is Due.TREE:
            tree = job._cgroup
            if tree is None or not tree.populated():
                self.maybe_finish(job)
            else:
                self.schedule(time.monotonic() + tree.next_tick(), Due.TREE, job)
        else:
            tree = job._cgroup
            if tree is None or tree.state is not Tree.LIVE or not tree.populated():
                self.give_up_eof(job)
            elif job._stop is Stop.NO:  # a stopped job's tree has its kill_grace
                tree.signal(signal.SIGKILL)  # eof_grace is over for what outlived the child
                self._tree_killed(job)

    def _tree_killed(self, job: Job) -> None:
        """After ``cgroup.kill`` on an exited job: the pipes end as their
        holders die; a holder outside the tree gets ``_PIPES_AFTER_KILL``."""
        tree = job._cgroup
        assert tree is not None
        now = time.monotonic()
        self.schedule(now + tree.next_tick(), Due.TREE, job)
        if job._readers:
            self.schedule(now + _PIPES_AFTER_KILL, Due.EOF, job)

    def give_up_eof(self, job: Job) -> None:
        """eof_grace expired: deliver what the pipes hold now, then close them."""
        for reader in list(job._readers):
            reader.drain(_FINAL_DRAIN_CHUNKS)
            self.end_stream(reader)

def sweep(job: Job) -> None:
    """SIGKILL what is left of a stopped job's group, once (see Job._signal_group)."""
    job._signal_group(signal.SIGKILL)
    job._stop = Stop.SWEPT


def _close_sink(sink: Sink) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()


def call_quietly(fn: Callable[..., object], *args: object) -> list[BaseException]:
    """Call user code during cleanup; return what it raised instead of raising."""
    try:
        fn(*args)
    except BaseException as exc:
        return [exc]
    return []
