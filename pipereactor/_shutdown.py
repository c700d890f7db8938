"""Ending every job at once: on an exception escaping the loop, on ``close()``,
from the garbage collector, and in a child forked from the reactor's process.

``kill_all`` is the only place where the reactor blocks on something other
than its selector: it waits for children it has just signalled, within their
``kill_grace`` (or not at all when ``graceful`` is false), and reaps them.
User code (sink ``close()``, ``on_exit``) runs only after every child is
reaped and every fd closed; what it raises is collected, and the cleanup goes
on.
"""

from __future__ import annotations

import math
import os
import selectors
import signal
import time
from typing import Final

from . import _childwatch
from ._job import Job, JobState, Stop
from ._lifecycle import Lifecycle, call_quietly

__all__ = ["kill_all", "detach_after_fork"]

#: The longest single wait in select(): epoll refuses more than ~24.8 days.
MAX_WAIT: Final = 86400.0
#: How long kill_all waits for a killed cgroup to empty.
_TREE_EMPTY_WAIT: Final = 5.0


def kill_all(lc: Lifecycle, *, graceful: bool = True) -> list[BaseException]:
    """Cancel queued jobs; stop, reap and finish running ones.

    Every job's process group gets SIGTERM, then SIGKILL after the job's
    kill_grace (a job whose child exited already included: its group may
    still hold a grandchild); with ``graceful`` false, SIGKILL at once.
    Errors are returned, except an interrupt (KeyboardInterrupt and the like),
    re-raised at the end.
    """
    errors: list[BaseException] = []
    pending = lc.admission.take_all()
    live = list(lc.live)
    # Nothing waits for a token any more: stop watching the jobserver (only
    # exit watches may wake _reap_within), and give back the tokens of jobs
    # already gone.
    errors.extend(call_quietly(lc.admission.settle, len(lc.live)))
    if not pending and not live:
        return errors
    try:
        for job in pending:
            errors.extend(call_quietly(lc.cancel_queued, job))
        # Closing our read ends first unblocks children stuck writing to
        # a full pipe, so that SIGTERM finds them able to exit.
        for job in live:
            errors.extend(call_quietly(_begin_kill, lc, job, graceful))
        # An interrupt (before or during the grace) cuts it short.
        graceful = graceful and not any(not isinstance(e, Exception) for e in errors)
        errors.extend(call_quietly(_reap_within, lc, live, graceful))
        for job in live:
            errors.extend(call_quietly(_kill_and_reap, lc, job))
            errors.extend(call_quietly(_retire, lc, job))
        for job in (*live, *pending):
            errors.extend(lc.settle(job))
    finally:
        errors.extend(call_quietly(lc.admission.settle, len(lc.live)))
    interrupts = [e for e in errors if not isinstance(e, Exception)]
    if interrupts:
        raise interrupts[0]
    return errors


def _begin_kill(lc: Lifecycle, job: Job, graceful: bool) -> None:
    if job._stop is Stop.NO:
        job._stop = Stop.STOPPING
        job.cancelled = True  # stopped by us, not by its timeout
    lc.fds.close(job)
    lc.ensure_watched(job)  # only exit watches wake _reap_within
    quick = not graceful or job.kill_grace <= 0
    job._signal_group(signal.SIGKILL if quick else signal.SIGTERM)


def _retire(lc: Lifecycle, job: Job) -> None:
    """-> DONE, for a reaped job of kill_all's (no user code)."""
    popen = job._popen
    if job.state is JobState.RUNNING and popen is not None and popen.returncode is not None:
        # Reaped by the fallback wait in _kill_and_reap after reap() failed.
        job.returncode = popen.returncode
        job.exited_at = time.monotonic()
    lc.fds.close(job)
    lc.exits.unwatch(job)
    lc.release_tree(job)
    job.state = JobState.DONE
    lc.live.discard(job)


def _kill_and_reap(lc: Lifecycle, job: Job) -> None:
    """SIGKILL the job's group and reap its child.

    An interrupt cannot stop it (the wait after SIGKILL is short; the first
    interrupt is re-raised at the end); after any other error it falls back
    to a plain ``Popen.wait()``.
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
                # Wait for the exit without reaping, so that reap() sweeps
                # the group while the leader's id is still reserved.
                _childwatch.wait_exited(popen.pid)
                plain_wait = not lc.reap(job)  # no waitid on this system
        except Exception as exc:
            error = error or exc
            plain_wait = True
        except BaseException as exc:
            interrupt = interrupt or exc
    if interrupt is not None:
        raise interrupt
    if error is not None:
        raise error


def _reap_within(lc: Lifecycle, jobs: list[Job], graceful: bool) -> None:
    """Wait for these jobs' children to exit (reaping them) and for the
    groups of those that had exited already to empty; SIGKILL each that is
    still there once its own kill_grace is over (at once if not ``graceful``)."""
    for job in jobs:
        lc.fds.close(job)  # again, if an interrupt cut _begin_kill short
        lc.ensure_watched(job)
    now = time.monotonic()
    kill_at = {job: now + (job.kill_grace if graceful else 0.0) for job in jobs}
    # A killed cgroup empties as its processes die: wait for that (bounded,
    # for one stuck in the kernel), so that close() can remove it.
    empty_by: dict[Job, float] = {}
    while True:
        for job in jobs:
            lc.reap(job)
        now = time.monotonic()
        # A child that exited before the kill (EXITED) leaves a group to
        # watch: a grandchild may hold our pipe and ignore SIGTERM.
        waiting = [
            job for job in jobs
            if job.state is JobState.RUNNING
            or (kill_at[job] != math.inf and job._group_alive())
            or (empty_by.get(job, 0.0) > now and job._group_alive())
        ]
        if not waiting:
            return
        for job in waiting:
            if kill_at[job] <= now:
                job._signal_group(signal.SIGKILL)
                kill_at[job] = math.inf
                if job._cgroup is not None:
                    empty_by[job] = now + _TREE_EMPTY_WAIT
        wait = max(0.0, min(kill_at[job] for job in waiting) - now)
        if lc.exits.polled or any(job.state is not JobState.RUNNING for job in waiting):
            wait = min(wait, _childwatch.POLL_MAX)  # nothing wakes us for these
        # Only exit watches are registered now: any event is an exit.
        lc.selector.select(min(wait, MAX_WAIT))
        for reported in lc.exits.reported():
            if reported.state is JobState.RUNNING:
                lc.exits.start_polling(reported)  # reported, maybe not yet reapable


def release(lc: Lifecycle) -> None:
    """Close the reactor's own fds (the selector, the watcher's, /dev/null),
    and give make back every token still held."""
    try:
        lc.admission.release()
        if lc.contain is not None:
            lc.contain.close()
    finally:
        lc.selector.close()
        lc.exits.watcher.close()
        if lc.devnull >= 0:
            os.close(lc.devnull)
            lc.devnull = -1


def detach_after_fork(lc: Lifecycle) -> None:
    """In a child forked from the reactor's process, drop everything quietly.

    The selector's epoll instance and the children belong to the parent:
    unregistering an fd here would unregister it there, and signals would
    kill the parent's jobs.  Only our copies of the fds are closed.
    """
    for job in lc.live:
        for fd in (*(r.fd for r in job._readers), *([job._writer.fd] if job._writer else [])):
            fd.close()
        if job._exit_watch is not None:
            os.close(job._exit_watch.handle)
        if job._popen is not None and job._popen.returncode is None:
            # Not our child: keep its Popen copy from warning, or from being
            # waited for, when it is collected here.
            job._popen.returncode = 0
    lc.live.clear()
    lc.admission.forget()
    if lc.contain is not None:
        lc.contain.forget()  # our copy of its lock's fd; the cgroup is the parent's to remove
        lc.contain = None
    # A kqueue is not inherited across fork (and Pythons before 3.12.1 do not
    # know it): closing "ours", even by collecting it, could close an
    # unrelated fd.  Such objects are kept alive for good.
    kqueue_selector = getattr(selectors, "KqueueSelector", None)
    if kqueue_selector is not None and isinstance(lc.selector, kqueue_selector):
        _FORKED_KQUEUES.append(lc.selector)
    else:
        lc.selector.close()  # our copy of the epoll fd; no epoll_ctl
    if lc.devnull >= 0:
        os.close(lc.devnull)  # our copy
        lc.devnull = -1
    watcher = lc.exits.watcher
    if watcher.fileno() is None:
        watcher.close()
    else:
        _FORKED_KQUEUES.append(watcher)


#: In a forked child: kqueue objects inherited as dead numbers, never closed.
_FORKED_KQUEUES: list[object] = []
