"""The jobs' deadlines: one heap, no syscalls.

Each entry is (when, seq, kind, weak reference to the job).  A deadline
that no longer means anything for its job (the job finished before its
timeout, say) is not removed when that happens: it is dropped when it
reaches the top, or swept in bulk when stale entries outnumber live jobs, so
that an hour-long timeout on thousands of short jobs cannot pile up.

The reference is weak because only live jobs have deadlines that matter,
and the reactor holds those: a stale entry must not keep a done job (and
whatever the caller let go of) alive until it reaches the top.

Deadlines that come in the order they are made (every job's WATCH, a fixed
delay after its start) skip the heap: they queue in a FIFO, which costs
nothing to keep in order.  Most of them are stale by the time they come (the
job was done long before), so this is a per-job cost saved, not a feature.
"""

from __future__ import annotations

import enum
import heapq
import weakref
from collections import deque
from collections.abc import Iterator

from ._job import Job, JobState

__all__ = ["Deadlines", "Due"]


class Due(enum.Enum):
    TIMEOUT = 0  #: the job's ``timeout`` expired: stop it
    KILL = 1  #: ``kill_grace`` after a stop: SIGKILL what is left
    EOF = 2  #: ``eof_grace`` after the exit: stop waiting for pipe EOF
    WATCH = 3  #: a job with output pipes still runs: watch for its exit from now on
    TREE = 4  #: a contained job has exited: is its cgroup empty yet?


def _still_due(kind: Due, ref: weakref.ref[Job]) -> bool:
    """Whether a deadline still means something for the job's current state."""
    job = ref()
    if job is None:
        return False
    if kind is Due.EOF or kind is Due.TREE:
        return job.state is JobState.EXITED
    if kind is Due.WATCH:
        return job.state is JobState.RUNNING
    # A timeout covers the whole job: a grandchild holding a pipe past it
    # is stopped with the rest of the group.
    return job.state is JobState.RUNNING or job.state is JobState.EXITED


class Deadlines:
    __slots__ = ("_heap", "_seq", "_fifo")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Due, weakref.ref[Job]]] = []
        self._seq = 0  # ties are taken in the order they were scheduled
        self._fifo: deque[tuple[float, Due, weakref.ref[Job]]] = deque()

    def schedule(self, when: float, kind: Due, job: Job, live: int) -> None:
        """Add a deadline; ``live`` is the number of unfinished jobs."""
        heap = self._heap
        if len(heap) > 64 and len(heap) > 4 * live:
            heap[:] = [entry for entry in heap if _still_due(entry[2], entry[3])]
            heapq.heapify(heap)
        self._seq += 1
        heapq.heappush(heap, (when, self._seq, kind, weakref.ref(job)))

    def schedule_in_order(self, when: float, kind: Due, job: Job, live: int) -> None:
        """As ``schedule``, for a deadline that is usually no earlier than the
        last one given this way (a fixed delay from now): O(1) then."""
        fifo = self._fifo
        if fifo and when < fifo[-1][0]:
            self.schedule(when, kind, job, live)
        else:
            fifo.append((when, kind, weakref.ref(job)))

    def next_when(self) -> float | None:
        """When the nearest deadline that still matters falls, or None."""
        heap, fifo = self._heap, self._fifo
        while heap and not _still_due(heap[0][2], heap[0][3]):
            heapq.heappop(heap)  # stale: drop it rather than wake up for it
        while fifo and not _still_due(fifo[0][1], fifo[0][2]):
            fifo.popleft()
        if heap and (not fifo or heap[0][0] <= fifo[0][0]):
            return heap[0][0]
        return fifo[0][0] if fifo else None

    def due(self, now: float) -> bool:
        """Whether a deadline (maybe a stale one) has come."""
        heap, fifo = self._heap, self._fifo
        return bool(heap) and heap[0][0] <= now or bool(fifo) and fifo[0][0] <= now

    def pop_due(self, now: float) -> Iterator[tuple[Due, Job]]:
        """Take the deadlines that have come, in order; stale ones are skipped."""
        heap, fifo = self._heap, self._fifo
        while True:
            if heap and heap[0][0] <= now and not (fifo and fifo[0][0] < heap[0][0]):
                _, _, kind, ref = heapq.heappop(heap)
            elif fifo and fifo[0][0] <= now:
                _, kind, ref = fifo.popleft()
            else:
                return
            job = ref()
            if job is not None and _still_due(kind, ref):
                yield kind, job

    def clear(self) -> None:
        self._heap.clear()
        self._fifo.clear()

    def __len__(self) -> int:
        return len(self._heap) + len(self._fifo)
