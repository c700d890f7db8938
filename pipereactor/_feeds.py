"""Where a child's stdin comes from: the feeds the reactor pulls bytes from.

A feed is asked for bytes only when the child's stdin pipe has room
(``pull``), so a lazy source (an iterable, a file) is read no faster than the
child consumes it.  ``StdinWriter`` is the one feed the caller pushes into
(``stdin=PIPE``): its ``pending`` counts bytes not yet in the pipe, so a caller
can use it for back-pressure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final, Union

__all__ = ["WAIT", "Feed", "BytesFeed", "IterFeed", "ReaderFeed", "StdinWriter", "StdinSource"]

#: Bytes asked of a file per pull.
_READ_SIZE: Final = 65536

#: ``Feed.pull`` result: nothing to write now, but more may come (PIPE stdin).
WAIT: Final = b""


class Feed:
    """A source of bytes for a child's stdin, pulled only when the pipe has room.

    ``pull()`` returns the next bytes to write, ``WAIT`` (empty) when there is
    nothing now but more may come, or ``None`` when the input has ended.
    Only a StdinWriter can be woken later; for other feeds an empty pull just
    means "ask again next turn".
    """

    def pull(self) -> bytes | memoryview | None:
        raise NotImplementedError


class BytesFeed(Feed):
    """Bytes (or a byte view, written without a copy) given in one piece."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._data: bytes | memoryview | None = data

    def pull(self) -> bytes | memoryview | None:
        data, self._data = self._data, None
        return data or None


class IterFeed(Feed):
    def __init__(self, items: Iterable[bytes]) -> None:
        self._items: Iterator[bytes] | None = iter(items)

    def pull(self) -> bytes | None:
        while self._items is not None:
            try:
                item = next(self._items)
            except StopIteration:
                self._items = None
                break
            if not isinstance(item, (bytes, bytearray, memoryview)):
                self._items = None
                raise TypeError(
                    f"stdin iterable must yield bytes, not {type(item).__name__}"
                )
            return bytes(item)
        return None


class ReaderFeed(Feed):
    def __init__(self, file: IO[bytes]) -> None:
        self._file: IO[bytes] | None = file

    def pull(self) -> bytes | None:
        if self._file is None:
            return None
        data = self._file.read(_READ_SIZE)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not data:
            self._file = None
            return None
        return bytes(data)


class StdinWriter(Feed):
    """``job.stdin`` for ``stdin=PIPE``: queue input while the reactor runs.

    ``write(data)`` queues and returns at once; the reactor writes the queue in
    non-blocking pieces as the child reads.  ``pending`` is the number of
    queued bytes not yet written into the pipe: it stays up while the child
    is not reading, so a producer can wait for it to fall (back-pressure).  ``close()`` ends the input: the
    child sees EOF once the queue is written.  Once the child has stopped
    reading (or exited), further writes are dropped, as the reactor drops any
    input the child never read.

    Use it from the thread that runs the reactor.
    """

    def __init__(self) -> None:
        self._queue: deque[bytes] = deque()
        self._closed = False
        self._broken = False
        self.pending = 0
        #: Set by the reactor: called when there is new data for an idle pipe.
        self._wake: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue ``data``; returns ``len(data)``.

        Raises:
            ValueError: after ``close()``.
            TypeError: if ``data`` is not bytes-like.
        """
        if self._closed:
            raise ValueError("write to closed stdin")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"stdin.write() needs bytes, not {type(data).__name__}")
        n = len(data)
        if n and not self._broken:
            self._queue.append(bytes(data))
            self.pending += n
            if self._wake is not None:
                self._wake()
        return n

    def close(self) -> None:
        """End the input.  Idempotent."""
        if not self._closed:
            self._closed = True
            if self._wake is not None:
                self._wake()

    def pull(self) -> bytes | None:
        if self._queue:
            data = self._queue.popleft() if len(self._queue) == 1 else b"".join(self._queue)
            self._queue.clear()
            return data  # still pending until the reactor reports it written
        return None if self._closed else WAIT

    def _sent(self, n: int) -> None:
        """The reactor wrote ``n`` pulled bytes into the pipe."""
        self.pending -= n

    def _break(self) -> None:
        """The child is gone: drop what is queued and whatever comes later."""
        self._broken = True
        self._queue.clear()
        self.pending = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StdinWriter {state}, {self.pending} bytes pending>"


StdinSource = Union[None, int, bytes, bytearray, memoryview, str, IO[bytes], Iterable[bytes]]
