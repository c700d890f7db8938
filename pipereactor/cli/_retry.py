"""``--retries N``: a failed job runs again, at most N runs in all (GNU
parallel's meaning), after ``--retry-delay S`` before the second run,
doubling before each further one.  Only the last run counts: its output is
printed, its row goes to the job log, its exit status decides.

:class:`RetryQueue` only keeps time: which waiting job is due, and when the
next one will be; the run loop waits no longer than that.  The clock is a
parameter, so the doubling is tested without waiting.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["RetryQueue", "retry_wait"]

T = TypeVar("T")


def retry_wait(delay: float, runs_so_far: int) -> float:
    """Seconds to wait before run ``runs_so_far + 1``: ``delay`` before the
    second, then doubling (``delay * 2 ** (runs_so_far - 1)``)."""
    return delay * 2 ** (runs_so_far - 1) if runs_so_far >= 1 else 0.0


class RetryQueue(Generic[T]):
    """Jobs waiting to run again, by due time (ties: first come, first out)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, item: T, wait: float) -> None:
        heapq.heappush(self._heap, (self.clock() + wait, next(self._order), item))

    def due(self, limit: int | None = None) -> list[T]:
        """The items whose wait is over (at most ``limit`` of them), removed,
        in due order; the rest stay due."""
        now = self.clock()
        out: list[T] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
            out.append(heapq.heappop(self._heap)[2])
        return out

    def timeout(self) -> float | None:
        """Seconds until the next item is due (0 if one is), None when empty."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self.clock())

    def drain(self) -> list[T]:
        """Every waiting item, removed (a stop: they will not run again)."""
        out = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return out
