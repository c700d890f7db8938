"""Who may start next: the FIFO queue, ``max_parallel``, make's jobserver
tokens, and back-pressure when the process runs out of fds.

A queued job starts when every one of these agrees:

- fewer than ``max_parallel`` jobs are live;
- under make's jobserver, the first live job runs on the slot make gave us,
  each further one holds a token read from make (given back when a job is
  done: tokens beyond ``live - 1`` are returned at once);
- no start found the fd table full since the last job was done (or within
  ``_STARVED_RETRY``: the fds may have been held by someone else meanwhile).

No user code runs here, and no job is started here: the reactor asks.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from typing import Final

from . import _jobserver
from ._job import Job

__all__ = ["Admission", "JOBSERVER"]

#: A start that found no fd is tried again when a job is done, or after this
#: many seconds.
_STARVED_RETRY: Final = 0.5

#: Marks make's jobserver fd in the selector.
JOBSERVER: Final = object()


class Admission:
    def __init__(
        self,
        max_parallel: int | None,
        jobserver: _jobserver.Jobserver | None,
        selector: selectors.BaseSelector,
    ) -> None:
        self.max_parallel = max_parallel
        self.pending: deque[Job] = deque()
        self._jobserver = jobserver
        self._selector = selector
        self._tokens: list[bytes] = []  # one per live job beyond the first
        self._token_wanted = False  # a start waits for a token
        self._token_wait = False  # the jobserver's fd is in the selector
        self._starved = False
        self._starved_until = 0.0

    def has_slot(self, live: int) -> bool:
        """Whether one more job may start now, with ``live`` jobs live."""
        if self._starved and live and time.monotonic() < self._starved_until:
            return False
        if self.max_parallel is not None and live >= self.max_parallel:
            return False
        return self._jobserver is None or self._take_token(live)

    def _take_token(self, live: int) -> bool:
        assert self._jobserver is not None
        if len(self._tokens) >= live:
            return True
        token = self._jobserver.try_take()
        if token is None:
            self._token_wanted = True
            return False
        self._tokens.append(token)
        return True

    def begin_round(self) -> None:
        """Before a round of starts: nothing waits for a token yet."""
        self._token_wanted = False

    def settle(self, live: int) -> None:
        """Give back the tokens no live job needs, and watch the jobserver
        for a token only while a start waits for one."""
        js = self._jobserver
        if js is None:
            return
        while len(self._tokens) > max(0, live - 1):
            js.give_back(self._tokens[-1])  # then forget it: an interrupt loses none
            self._tokens.pop()
        want = self._token_wanted and bool(self.pending) and not js.broken
        if want != self._token_wait:
            if want:
                self._selector.register(js.fileno(), selectors.EVENT_READ, JOBSERVER)
            else:
                self._selector.unregister(js.fileno())
            self._token_wait = want

    def starve(self, job: Job) -> None:
        """No fd to start ``job``: back to the head of the queue; nothing
        starts until a running job is done and has freed its fds."""
        self.pending.appendleft(job)
        self._starved = True
        self._starved_until = time.monotonic() + _STARVED_RETRY

    def job_done(self, live: int) -> None:
        """A job is done (``live`` jobs are left): its fds are closed, so a
        starved start may try again, and its token goes back to make now."""
        self._starved = False
        self.settle(live)

    def next_retry(self) -> float | None:
        """When a starved start is worth another try, if one waits."""
        if self._starved and self.pending and self._starved_until > time.monotonic():
            return self._starved_until
        return None

    def take_all(self) -> list[Job]:
        """Empty the queue (everything is being killed); returns what was in it."""
        pending, self.pending = list(self.pending), deque()
        self._starved = False
        self._token_wanted = False
        return pending

    def release(self) -> None:
        """Give make back every token still held, and close our jobserver fds."""
        js, self._jobserver = self._jobserver, None
        if js is None:
            return
        try:
            while self._tokens:
                js.give_back(self._tokens[-1])
                self._tokens.pop()
        finally:
            js.close()

    def forget(self) -> None:
        """In a forked child: the tokens are the parent's to give back."""
        self.pending.clear()
        self._tokens.clear()
        js, self._jobserver = self._jobserver, None
        if js is not None:
            js.close()
