"""``{%}``: job slots, 1..``-j``; a job takes the lowest one free.

As in GNU parallel, a job's slot is a number no other running job has, so
jobs can share, say, ``-j`` devices or ports without colliding.  A slot is
given back when its job ends (or fails to start) and reused lowest first.
"""

from __future__ import annotations

import heapq

__all__ = ["Slots"]


class Slots:
    """The free slots.  ``used`` False (no ``{%}`` in the template): every
    job gets 0 and nothing is kept."""

    def __init__(self, used: bool) -> None:
        self.used = used
        self._free: list[int] = []  # given back, a heap
        self._made = 0  # slots handed out so far: 1.._made exist

    def take(self) -> int:
        """The lowest free slot (1-based), for a job about to start; 0 when unused."""
        if not self.used:
            return 0
        if self._free:
            return heapq.heappop(self._free)
        self._made += 1
        return self._made

    def give(self, slot: int) -> None:
        """``slot`` is free again (0: none was taken)."""
        if slot:
            heapq.heappush(self._free, slot)
