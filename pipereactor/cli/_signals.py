"""SIGINT, SIGTERM and SIGHUP as stop requests, seen by the run loop.

While a :class:`StopSignals` is entered, those signals only record their
number and wake the loop (``signal.set_wakeup_fd`` on a pipe the loop
selects on): no exception is raised into whatever code was running (between
``Popen()`` returning and the job being recorded, say).  A signal that was
ignored when we started (``nohup``, a background job's SIGINT) stays
ignored.  On exit every handler and the previous wakeup fd are restored.
Outside the main thread nothing is installed (signals go to the main thread
anyway) and ``fileno()`` is None.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, Any] = {}
        self._old_wakeup: int | None = None
        self._pipe: tuple[int, int] | None = None

    def fileno(self) -> int | None:
        """Readable after a stop signal arrived (drain it with ``drain()``)."""
        return self._pipe[0] if self._pipe else None

    def drain(self) -> None:
        assert self._pipe is not None
        try:
            while os.read(self._pipe[0], 512):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe = (r, w)
        try:
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            for sig in STOP_SIGNALS:
                old = signal.getsignal(sig)
                if old == signal.SIG_IGN:
                    continue  # nohup: the user asked us to ignore it
                self._old[sig] = old
                signal.signal(sig, self._on_signal)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()
        if self._old_wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._old_wakeup = None
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
