"""Done jobs waiting to be yielded by ``as_completed()``.

Held strongly while an ``as_completed()`` generator runs (it will yield them),
weakly otherwise: a long-lived reactor driven by ``run()`` and ``on_exit``
must not keep every finished job, and a caller who still holds a job gets it
from a later ``as_completed()``.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Final

from ._job import Job

__all__ = ["Completions"]

#: Below this many entries, the queue is not searched for jobs that were
#: only weakly held and are gone.
_COMPACT_MIN: Final = 256


class Completions:
    __slots__ = ("_queue", "consumers", "_compact_at")

    def __init__(self) -> None:
        self._queue: deque[Job | weakref.ref[Job]] = deque()
        self.consumers = 0  # as_completed() generators running
        self._compact_at = _COMPACT_MIN

    def record(self, job: Job) -> None:
        if self.consumers:
            self._queue.append(job)
            return
        self._queue.append(weakref.ref(job))
        if len(self._queue) >= self._compact_at:
            # Drop the jobs nobody holds any more; amortised O(1) per job.
            self._queue = deque(
                e for e in self._queue if not isinstance(e, weakref.ref) or e() is not None
            )
            self._compact_at = max(_COMPACT_MIN, 2 * len(self._queue))

    def pop(self) -> Job | None:
        """The next done job still alive, or None when there is none."""
        while self._queue:
            entry = self._queue.popleft()
            job = entry() if isinstance(entry, weakref.ref) else entry
            if job is not None:
                return job
        return None

    def clear(self) -> None:
        self._queue.clear()
