"""The parent's pipe ends, and the readers and writers that move bytes through them.

Every pipe end the reactor holds is an ``Fd``: made non-blocking once, closed
once, and set to -1 on close so that a number the kernel has since handed to
someone else is never read, written or closed by us.

A ``Reader`` or ``Writer`` is told that its fd is ready (``on_ready``), does
the I/O and says what happened, as ninja's ``Subprocess::OnPipeReady``: the
reactor never sees errno.  BlockingIOError means "not now"; EOF and EPIPE
mean the stream is over; EPIPE on stdin is not an error (the child stopped
reading, and the rest of the input is dropped).

This module sits below ``_job``: a reader or writer carries its job only as
an opaque owner (``job``), for the lifecycle to find it again.
"""

from __future__ import annotations

import enum
import fcntl
import math
import os
import subprocess
from collections.abc import Callable
from typing import IO, Any, Final

from ._feeds import Feed
from ._sinks import Sink, child_fd, count, discards

__all__ = [
    "CHUNK", "BIG_PIPE", "Fd", "make_pipe", "grow_pipe", "release_pipe", "read_chunk",
    "Ready", "Reader", "Writer", "make_job_pipes", "write_position",
]

#: Bytes asked for per read while a pipe trickles.  A Linux pipe holds 64 KiB
#: by default, so one read usually empties it.
CHUNK: Final = 65536

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


def write_position(fd: int) -> int:
    """Where the next write to ``fd`` lands: its offset, or the end of the
    file for O_APPEND (whose offset only moves once written to).  Anything
    else written there meanwhile (through the same description, or to the
    same O_APPEND file) counts too."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
        return os.fstat(fd).st_size
    return os.lseek(fd, 0, os.SEEK_CUR)


def make_job_pipes(
    job: Any,
    stdio_in: tuple[object, object, object],
    feed: Feed | None,
    sinks: tuple[Sink | None, Sink | None],
    size: int | None,
    devnull: Callable[[], int],
) -> tuple[list[Any], list[int]]:
    """The pipes for a job's PIPE streams: our ends go on the job (as its
    writer and readers), the child's ends are returned with what Popen
    gets for each stream.

    Made here, not by Popen: Python 3.10's Popen leaks the pipes it made
    when a later one fails (EMFILE), and back-pressure retries would pile
    the leaks up.  Every fd is owned by the job (or in the list of child
    ends, closed here) the moment it exists, so the caller's cleanup of the
    job closes them all after a failure at any point.
    """
    stdio = list(stdio_in)
    sized = size is not None and size > 0
    child_ends: list[int] = []
    job._direct = []
    try:
        if stdio[0] == subprocess.PIPE:
            assert feed is not None
            r, w = make_pipe(size)
            child_ends.append(r)
            job._writer = Writer(job, Fd.own(w), feed, sized=sized)
            stdio[0] = r
        for i in (1, 2):
            sink = sinks[i - 1]
            if stdio[i] != subprocess.PIPE:
                continue
            assert sink is not None
            direct = child_fd(sink)
            if direct >= 0:
                # The child writes to the file itself, as with the
                # shell's ">": no pipe, no copy through us.
                stdio[i] = direct
                if all(d[0] is not sink for d in job._direct):
                    job._direct.append((sink, direct, write_position(direct)))
                continue
            splice_to = devnull() if discards(sink) else -1
            r, w = make_pipe(size)
            child_ends.append(w)
            job._readers.append(Reader(job, Fd.own(r), sink, splice_to, size))
            stdio[i] = w
    except BaseException:
        for fd in child_ends:
            os.close(fd)
        raise
    return stdio, child_ends



class Ready(enum.Enum):
    """What a reader or writer did when told its fd was ready."""

    MORE = "more"  #: moved bytes, or found none yet: stay registered
    IDLE = "idle"  #: (writer) nothing to write until the feed is woken: unregister
    END = "end"  #: EOF, EPIPE, or the input is over: close the pipe end


# The answers as plain module globals: an Enum member lookup costs more than
# the comparison itself, and these run once per chunk.
_MORE, _IDLE, _END = Ready.MORE, Ready.IDLE, Ready.END

#: Writes to one stdin pipe per readiness event, at most: a child that reads
#: as fast as we write never fills the pipe, and other pipes need their turn.
_WRITES_PER_EVENT: Final = 64


class Reader:
    """The parent's end of a child's stdout or stderr, and where its bytes go.

    Reads are sized to the flow, not to the pipe: ``CHUNK`` while the child
    trickles, the pipe's whole capacity while a read keeps finding it full.
    CPython allocates the size asked for before the read, so asking a 1 MiB
    pipe for 1 MiB on every 100-byte chunk would cost a fresh mapping each
    time.
    """

    __slots__ = ("job", "fd", "sink", "size", "capacity", "grown", "splice_to")

    def __init__(
        self, job: Any, fd: Fd, sink: Sink, splice_to: int = -1, size: int | None = None
    ) -> None:
        self.job = job
        self.fd = fd
        self.sink = sink
        #: The pipe's capacity, as far as we know, and the size of the next read.
        self.capacity = max(CHUNK, size or 0)
        self.size = CHUNK
        #: Grown once (or sized by the caller, whose choice is kept).
        self.grown = size is not None and size > 0
        #: An fd to splice() the output to instead of reading it (a NullSink's
        #: /dev/null), or -1.
        self.splice_to = splice_to

    def on_ready(self) -> Ready:
        """The pipe is readable: move what it holds to the sink (which may raise)."""
        fd = self.fd.fd
        if fd < 0:
            return _MORE  # closed earlier in this same turn
        if self.splice_to >= 0:
            return self._splice(fd)
        try:
            data = os.read(fd, self.size)
        except BlockingIOError:
            return _MORE
        n = len(data)
        if not n:
            return _END
        if n == self.size:
            self._full()
        elif n < CHUNK:
            self.size = CHUNK  # trickling again
        self.sink.write(data)
        return _MORE

    def _full(self) -> None:
        """A read found the pipe full: the child outpaces us.  A bigger pipe
        (once) lets both sides do more per wake-up; read it whole from now on."""
        if not self.grown:
            self.grown = True
            self.capacity = max(self.capacity, self.fd.grow())
        self.size = self.capacity

    def _splice(self, fd: int) -> Ready:
        """The bytes go from the pipe to the target in the kernel, never
        through us; the sink only counts them."""
        try:
            n = os.splice(fd, self.splice_to, self.capacity, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return _MORE
        except OSError:
            self.splice_to = -1  # this target refuses splice: read from now on
            return _MORE  # the pipe is still readable: the next turn reads it
        if not n:
            return _END
        count(self.sink, n)
        if n == self.capacity and not self.grown:
            self._full()
        return _MORE

    def drain(self, chunks: int) -> None:
        """Deliver what the pipe holds now, at most ``chunks`` reads of it."""
        for _ in range(chunks):
            data = read_chunk(self.fd.fd, self.capacity)
            if not data:
                return
            self.sink.write(data)


class Writer:
    """The parent's end of a child's stdin, and the input still to write."""

    __slots__ = ("job", "fd", "feed", "view", "registered", "grown", "_sent")

    def __init__(self, job: Any, fd: Fd, feed: Feed, *, sized: bool = False) -> None:
        self.job = job
        self.fd = fd
        self.feed = feed
        self.view: memoryview | None = None
        self.registered = False
        self.grown = sized  # the caller chose the size: keep it
        self._sent = getattr(feed, "_sent", None)  # StdinWriter's pending count

    def on_ready(self) -> Ready:
        """The pipe has room: write what the feed gives, without blocking."""
        fd = self.fd.fd
        if fd < 0:
            return _MORE
        for _ in range(_WRITES_PER_EVENT):
            if not self.view:
                data = self.feed.pull()
                if data is None:
                    return _END
                if not data:
                    return _IDLE
                self.view = memoryview(data)
            try:
                n = os.write(fd, self.view)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                return _END  # the child stopped reading: drop the rest
            if self._sent is not None:
                self._sent(n)
            self.view = self.view[n:]
            if self.view:
                if not self.grown:  # the pipe is full: make it bigger, once
                    self.grown = True
                    self.fd.grow()
                return _MORE
        return _MORE

    def rest(self) -> bytes | memoryview | None:
        """What is left of the input, taken from the feed (for a retry)."""
        return self.view if self.view else self.feed.pull()
