"""Which running jobs may have exited: the reactor's side of ``_childwatch``.

A job is watched in one of three ways, as the watcher answers ``watch(pid)``:
by an fd of its own in the selector (a pidfd), by the watcher's shared fd
(kqueue; ``collect()`` names the pids), or by the poll tick.  This module only
says *which* jobs to look at; looking (reaping) is the lifecycle's.
"""

from __future__ import annotations

import selectors
import time
from typing import Final

from . import _childwatch
from ._job import Job, JobState

__all__ = ["ExitWatch", "Exits", "SHARED"]

#: Marks the watcher's shared fd (kqueue) in the selector.
SHARED: Final = object()


class ExitWatch:
    """A per-child fd (a pidfd) in the selector, readable once the child exits."""

    __slots__ = ("job", "handle")

    def __init__(self, job: Job, handle: int) -> None:
        self.job = job
        self.handle = handle


class Exits:
    def __init__(self, watcher: _childwatch.ChildWatcher, selector: selectors.BaseSelector) -> None:
        self.watcher = watcher
        self._selector = selector
        shared = watcher.fileno()
        if shared is not None:
            selector.register(shared, selectors.EVENT_READ, SHARED)
        self._by_pid: dict[int, Job] = {}  # children covered by the shared fd
        self.polled: set[Job] = set()  # RUNNING children nothing tells us about
        self._confirming: set[Job] = set()  # polled once, then left to kqueue
        self._interval = _childwatch.POLL_MIN
        self._poll_at: float | None = None

    def watch(self, job: Job, pid: int) -> None:
        """Start watching a RUNNING job's child for its exit."""
        handle = self.watcher.watch(pid)
        if handle is None:
            self.start_polling(job)
        elif handle == _childwatch.SHARED:
            self._by_pid[pid] = job
            # kqueue reports only exits after registration: one poll tick
            # catches a child that was gone before (see poll_tick).
            self._confirming.add(job)
            self.start_polling(job)
        else:
            # On the job at once, so that unwatch releases it whatever happens.
            watch = job._exit_watch = ExitWatch(job, handle)
            self._selector.register(handle, selectors.EVENT_READ, watch)

    def watching(self, job: Job) -> bool:
        return job._exit_watch is not None or job in self.polled or job.pid in self._by_pid

    def unwatch(self, job: Job) -> None:
        watch = job._exit_watch
        if watch is not None:
            job._exit_watch = None
            try:
                self._selector.unregister(watch.handle)
            except KeyError:
                pass  # never registered: the start failed before it
            self.watcher.release(watch.handle)
        self.polled.discard(job)
        self._confirming.discard(job)
        if job.pid is not None:
            self._by_pid.pop(job.pid, None)

    def start_polling(self, job: Job) -> None:
        self.polled.add(job)
        self._interval = _childwatch.POLL_MIN
        self._poll_at = time.monotonic() + self._interval

    def next_poll(self) -> float | None:
        return self._poll_at if self.polled else None

    def reported(self) -> list[Job]:
        """The jobs the shared fd (kqueue) says exited."""
        jobs = []
        for pid in self.watcher.collect():
            job = self._by_pid.get(pid)
            if job is not None:
                jobs.append(job)
        return jobs

    def not_yet_reapable(self, job: Job) -> None:
        """The shared fd reported an exit that waitpid cannot see yet, and it
        reports only once: poll from here."""
        self._confirming.discard(job)
        self.start_polling(job)

    def poll_due(self, now: float) -> list[Job]:
        """The polled jobs to look at, if the tick has come; else none."""
        if not self.polled or self._poll_at is None or self._poll_at > now:
            return []
        return list(self.polled)

    def after_poll(self, now: float, jobs: list[Job]) -> None:
        """Set the next tick once ``jobs`` were looked at: back off while
        nothing exits (a spawn or an exit resets it)."""
        exited = False
        for job in jobs:
            if job.state is not JobState.RUNNING:
                exited = True
            elif job in self._confirming:
                # Alive after its kqueue registration: kqueue will report it.
                self._confirming.discard(job)
                self.polled.discard(job)
        if exited:
            self._interval = _childwatch.POLL_MIN
        else:
            self._interval = min(self._interval * 2, _childwatch.POLL_MAX)
        self._poll_at = now + self._interval
