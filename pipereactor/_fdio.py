"""The parent's pipe ends, the syscall error vocabulary, and stdin sources.

Every pipe end the reactor holds is an ``Fd``: made non-blocking once, closed
once, and set to -1 on close so that a number the kernel has since handed to
someone else is never read, written or closed by us.

``read_chunk`` and ``write_some`` are the only places that call ``os.read``
and ``os.write`` on a pipe; they turn errno into the three answers the
reactor cares about: data, "not now", and "gone".
"""

from __future__ import annotations

import fcntl
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Final, Union

__all__ = [
    "CHUNK", "BIG_PIPE", "Fd", "make_pipe", "grow_pipe", "release_pipe", "read_chunk", "splice_some", "write_some",
    "Feed", "BytesFeed", "IterFeed", "ReaderFeed", "StdinWriter", "StdinSource",
]

#: Bytes asked for per read.  A Linux pipe holds 64 KiB by default, so one
#: read usually empties it.
CHUNK: Final = 65536

#: ``Feed.pull`` result: nothing to write now, but more may come (PIPE stdin).
WAIT: Final = b""


class Fd:
    """One pipe end the reactor holds, non-blocking while it holds it.

    Either a bare descriptor the reactor made (``Fd.own``), closed with
    ``os.close``; or a file object's, borrowed: the file stays the owner, so
    ``close()`` goes through it (its finaliser then never closes the number
    twice) and ``release()`` hands it back untouched, blocking again if it was.
    """

    __slots__ = ("fd", "_file", "_was_blocking", "charged")

    def __init__(self, file: IO[Any]) -> None:
        self._file: IO[Any] | None = file
        self.fd = file.fileno()
        # O_NONBLOCK is per open-file description: it is set only on pipe ends
        # created for a child, and undone by release() on borrowed ones.
        self._was_blocking = os.get_blocking(self.fd)
        os.set_blocking(self.fd, False)
        self.charged = 0  # bytes grow_pipe added to this pipe

    @classmethod
    def own(cls, fd: int) -> Fd:
        """A pipe end just made (blocking, no other flags): one fcntl, not three."""
        self = cls.__new__(cls)
        self._file = None
        self.fd = fd
        self._was_blocking = True
        self.charged = 0
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        return self

    def grow(self) -> int:
        """Grow the pipe (see ``grow_pipe``); return its capacity."""
        size, charged = grow_pipe(self.fd)
        self.charged += charged
        return size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if self.charged:
                release_pipe(self.charged)
                self.charged = 0
            if self._file is None:
                os.close(fd)
                return
            try:
                self._file.close()
            except BrokenPipeError:
                pass  # a text wrapper flushing into a pipe nobody reads

    def release(self) -> None:
        """Give the file back open, in its original blocking mode."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if self.charged:  # no longer ours to account for
                release_pipe(self.charged)
                self.charged = 0
            if self._was_blocking:
                os.set_blocking(fd, True)

    def __repr__(self) -> str:
        return f"<Fd {self.fd}>"


def make_pipe(size: int | None = None) -> tuple[int, int]:
    """A new pipe (read end, write end), both close-on-exec; with ``size``,
    its capacity set where the system allows (``F_SETPIPE_SZ``)."""
    r, w = os.pipe()
    if size is not None and size > 0 and hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
        except OSError:
            pass  # EPERM above /proc/sys/fs/pipe-max-size: keep the default
    return r, w


def read_chunk(fd: int, size: int = CHUNK) -> bytes | None:
    """Read what the pipe holds (up to ``size`` bytes).

    Returns:
        the bytes read; ``b""`` at EOF (every writer has closed); ``None`` when
        the pipe is empty for now.
    """
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None


def _pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return min(int(f.read()), BIG_PIPE)
    except (OSError, ValueError):
        return BIG_PIPE


#: What a busy pipe is grown to: a 1 MiB pipe lets the child write, and us
#: read, 16 times more per wake-up than the default 64 KiB.
BIG_PIPE: Final = 1 << 20


def grow_pipe(fd: int) -> tuple[int, int]:
    """Enlarge a busy pipe toward ``BIG_PIPE`` (``F_SETPIPE_SZ``, capped by
    ``/proc/sys/fs/pipe-max-size``), never shrinking it; return its capacity
    now (CHUNK when it cannot be told or changed) and the bytes it was grown
    by, to be given back with ``release_pipe`` once it is closed.

    Unprivileged users have a pipe-memory quota (``pipe-user-pages-soft``,
    64 MiB by default) and, once over it, every new pipe they make gets only
    8 KiB: so grown pipes get at most a quarter of the quota between them,
    and ``release_pipe`` gives a closed pipe's share back.
    """
    global _PIPE_MAX, _grown
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    getsz = getattr(fcntl, "F_GETPIPE_SZ", None)
    if setsz is None or getsz is None:
        return CHUNK, 0
    if _PIPE_MAX is None:
        _PIPE_MAX = _pipe_max_size()
    try:
        current = int(fcntl.fcntl(fd, getsz))
        if current >= _PIPE_MAX or _grown + _PIPE_MAX > _grow_budget():
            return current, 0
        size = int(fcntl.fcntl(fd, setsz, _PIPE_MAX))
    except OSError:
        return CHUNK, 0  # EPERM: over the quota after all; the default will do
    _grown += size - current
    return size, size - current


def release_pipe(size: int) -> None:
    """A pipe that ``grow_pipe`` grew to ``size`` bytes was closed."""
    global _grown
    _grown = max(0, _grown - size)


def _grow_budget() -> float:
    global _BUDGET
    if _BUDGET is None:
        _BUDGET = math.inf
        if os.geteuid() != 0:  # root is not held to the soft quota
            try:
                with open("/proc/sys/fs/pipe-user-pages-soft") as f:
                    pages = int(f.read())
                if pages > 0:
                    _BUDGET = pages * os.sysconf("SC_PAGE_SIZE") / 4
            except (OSError, ValueError):
                _BUDGET = 16 * BIG_PIPE
    return _BUDGET


_PIPE_MAX: int | None = None
_BUDGET: float | None = None
_grown = 0  # bytes of pipe capacity grown and not yet released, this process

#: splice() flags: move pages where the kernel can, never block on the pipe.
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


def splice_some(fd: int, out_fd: int, size: int) -> int | None:
    """Move up to ``size`` bytes from pipe ``fd`` to ``out_fd`` in the kernel.

    Returns the count moved (0 at EOF), or None when the pipe is empty now.
    Raises OSError when the target cannot take a splice (then read instead).
    """
    try:
        return os.splice(fd, out_fd, size, flags=_SPLICE_FLAGS)
    except BlockingIOError:
        return None


def write_some(fd: int, data: memoryview) -> int | None:
    """Write as much of ``data`` as the pipe takes without blocking.

    Returns:
        the number of bytes written (0 when the pipe is full), or ``None`` when
        the reader has gone (EPIPE): the child stopped reading, which is not an
        error; the caller drops the rest of the input.
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except BrokenPipeError:
        return None


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
        data = self._file.read(CHUNK)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not data:
            self._file = None
            return None
        return bytes(data)


class StdinWriter(Feed):
    """``job.stdin`` for ``stdin=PIPE``: queue input while the reactor runs.

    ``write(data)`` queues and returns at once; the reactor writes the queue in
    non-blocking pieces as the child reads.  ``close()`` ends the input: the
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
            self.pending = 0
            return data
        return None if self._closed else WAIT

    def _break(self) -> None:
        """The child is gone: drop what is queued and whatever comes later."""
        self._broken = True
        self._queue.clear()
        self.pending = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StdinWriter {state}, {self.pending} bytes pending>"


StdinSource = Union[None, int, bytes, bytearray, memoryview, str, IO[bytes], Iterable[bytes]]
