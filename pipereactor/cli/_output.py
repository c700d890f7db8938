"""How a job's output reaches the user: grouped (spilled), by line, tagged.

- :class:`SpillBuffer` holds one stream of a job, grouped: in memory up to
  ``SPILL_AT`` bytes (while all streams of the run hold less than their
  :class:`Budget`), then in an unlinked temporary file in ``$TMPDIR``
  (``tempfile.TemporaryFile``), so every byte is kept in bounded memory.  With
  a cap (``--max-output``) only the last ``cap`` bytes are kept, on disk too.
  If the spill file cannot be written (disk full), ``error`` is set and the
  rest of the stream is counted, not kept: the job is then reported failed.
- :class:`LineWriter` is the ``--line-buffer`` sink: each read's whole lines
  go out in one write; an unfinished line waits (in a SpillBuffer, so a
  giant line costs no memory) and is printed as is when the stream ends.
- :class:`HeadLineWriter` is ``-k --line-buffer``'s sink: a LineWriter for
  the head job, a SpillBuffer for the others until each becomes the head.
- :class:`Tagger` puts ``--tag``'s prefix at the start of each line: after
  each ``\\n``, nowhere else (``\\r`` is not a line end).

Nothing here adds or changes a byte of the job's output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from ._console import Console

__all__ = ["Budget", "SPILL_AT", "SpillBuffer", "LineWriter", "HeadLineWriter", "Tagger",
           "TAIL_BYTES"]

#: Bytes of one stream kept in memory before it spills to a file.
SPILL_AT = 256 << 10
#: Bytes all streams together keep in memory before they spill.
MEMORY_BUDGET = 32 << 20
#: Bytes of a stream kept for a failed job's summary (its last lines).
TAIL_BYTES = 8192
_COPY = 1 << 20


class Tagger:
    """Inserts ``prefix`` at the start of every line of a stream, across writes."""

    def __init__(self, prefix: bytes | None) -> None:
        self.prefix = prefix
        self.at_start = True

    def __call__(self, data: bytes) -> bytes:
        prefix = self.prefix
        if prefix is None or not data:
            return data
        ends = data.endswith(b"\n")
        out = data.replace(b"\n", b"\n" + prefix)
        if ends:
            out = out[: -len(prefix)]  # the next line may never come
        if self.at_start:
            out = prefix + out
        self.at_start = ends
        return out


class Budget:
    """Bytes that all the SpillBuffers of a run may hold in memory together:
    past it, streams spill sooner, so memory stays bounded whatever ``-j``."""

    def __init__(self, limit: int = MEMORY_BUDGET) -> None:
        self.limit = limit
        self.used = 0


class SpillBuffer:
    """One stream of a job, kept whole (or its last ``cap`` bytes) in bounded memory.

    A sink without ``close()``: the reactor leaves it open at the stream's end,
    the runner prints it and then calls ``discard()`` (which closes the file).
    """

    def __init__(self, cap: int | None = None, spill_at: int = SPILL_AT,
                 budget: Budget | None = None) -> None:
        self.cap = cap
        self.spill_at = spill_at
        self.budget = budget or Budget()
        self.total = 0  # bytes the job wrote
        self.error: OSError | None = None
        self._mem = bytearray()
        self._file: object | None = None  # the TemporaryFile, kept to close it
        self._fd = -1
        self._size = 0  # bytes in the file

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if self.error is not None:
            return
        if self._fd < 0:
            b = self.budget
            if (len(self._mem) + len(data) <= self.spill_at
                    and b.used + len(data) <= b.limit):
                before = len(self._mem)
                self._mem += data
                if self.cap is not None and len(self._mem) > 2 * self.cap:
                    del self._mem[: -self.cap]
                b.used += len(self._mem) - before
                return
            try:
                f = tempfile.TemporaryFile(buffering=0)
            except OSError as exc:
                self._fail(exc)
                return
            self._file, self._fd = f, f.fileno()
            pending = bytes(self._mem) + data
            self._release_memory()
            self._append(pending)
        else:
            self._append(data)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, self._size)
                self._size += n
                view = view[n:]
            if self.cap is not None and self._size > max(2 * self.cap, self.spill_at):
                self._compact()
        except OSError as exc:
            self._fail(exc)

    def _compact(self) -> None:
        """Keep the file's last ``cap`` bytes, moved to its start (forward, in
        chunks: the source is always ahead of the destination)."""
        assert self.cap is not None
        src, dst = self._size - self.cap, 0
        while src < self._size:
            chunk = os.pread(self._fd, min(_COPY, self._size - src), src)
            os.pwrite(self._fd, chunk, dst)
            src += len(chunk)
            dst += len(chunk)
        os.ftruncate(self._fd, dst)
        self._size = dst

    def _fail(self, exc: OSError) -> None:
        self.error = exc

    @property
    def size(self) -> int:
        """Bytes held now (memory or file)."""
        return self._size if self._fd >= 0 else len(self._mem)

    @property
    def spilled(self) -> bool:
        return self._fd >= 0

    @property
    def dropped(self) -> int:
        """Bytes written but not kept: cut by the cap, or lost to an error."""
        return self.total - self.kept

    @property
    def kept(self) -> int:
        return self.size if self.cap is None else min(self.size, self.cap)

    def emit(self, console: Console, fd: int, tag: Tagger) -> None:
        """Write what is kept to fd 1 or 2 (through ``tag``)."""
        skip = self.size - self.kept
        if self._fd < 0:
            if self._mem:
                data = bytes(self._mem[skip:]) if skip else bytes(self._mem)
                console.write(fd, tag(data))
            return
        if tag.prefix is None:
            os.lseek(self._fd, skip, os.SEEK_SET)
            console.sendfile(fd, self._fd, self._size - skip)
            return
        pos = skip
        while pos < self._size:
            chunk = os.pread(self._fd, min(_COPY, self._size - pos), pos)
            if not chunk:
                break
            console.write(fd, tag(chunk))
            pos += len(chunk)

    def chunks(self, size: int = _COPY) -> Iterator[bytes]:
        """What is kept, in order, at most ``size`` bytes at a time (read
        from the spill file chunk by chunk: never all in memory)."""
        skip = self.size - self.kept
        if self._fd < 0:
            if len(self._mem) > skip:
                yield bytes(self._mem[skip:])
            return
        pos = skip
        while pos < self._size:
            chunk = os.pread(self._fd, min(size, self._size - pos), pos)
            if not chunk:
                break
            yield chunk
            pos += len(chunk)

    def _release_memory(self) -> None:
        self.budget.used -= len(self._mem)
        self._mem = bytearray()

    def take_memory(self) -> bytes | None:
        """Everything held, and empty the buffer, when it is all in memory."""
        if self._fd >= 0:
            return None
        data = bytes(self._mem)
        self._release_memory()
        return data

    def tail(self, nbytes: int = TAIL_BYTES) -> bytes:
        """The last ``nbytes`` kept."""
        nbytes = min(nbytes, self.kept)
        if nbytes <= 0:
            return b""
        if self._fd < 0:
            return bytes(self._mem[-nbytes:])
        start = max(self._size - nbytes, 0)
        try:
            return os.pread(self._fd, self._size - start, start)
        except OSError:
            return b""

    def discard(self) -> None:
        """Drop everything held and close the spill file.  Idempotent."""
        self._release_memory()
        f, self._file, self._fd, self._size = self._file, None, -1, 0
        if f is not None:
            f.close()  # type: ignore[attr-defined]


class LineWriter:
    """``--line-buffer``: print whole lines as they come, one write per read.

    On the stream's end (``close()``, called by the reactor), a last line
    without ``\\n`` is printed as is.  ``total`` counts the bytes seen;
    ``tail()`` is the end of what was printed, for a failed job's summary.
    """

    def __init__(self, console: Console, fd: int, tag: Tagger,
                 budget: Budget | None = None) -> None:
        self.console = console
        self.fd = fd
        self.tagger = tag
        self.total = 0
        self._partial = SpillBuffer(budget=budget)
        self._tail = b""

    def write(self, data: bytes) -> None:
        self.total += len(data)
        self._tail = (self._tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]
        self._lines(data)

    def _lines(self, data: bytes) -> None:
        """Print ``data``'s whole lines (after what waits), keep its unfinished one."""
        end = data.rfind(b"\n")
        if end < 0:
            self._partial.write(data)
            return
        # A view, not a copy: a read brings up to 1 MiB.
        whole: bytes | memoryview = memoryview(data)[: end + 1]
        if self._partial.size:
            held = self._partial.take_memory()
            if held is None:  # a long line, spilled: its start first
                self._partial.emit(self.console, self.fd, self.tagger)
                self._partial.discard()
            else:
                whole = held + whole
        if self.tagger.prefix is not None:
            whole = self.tagger(bytes(whole))
        self.console.write(self.fd, whole)
        if end + 1 < len(data):
            self._partial.write(data[end + 1:])

    def close(self) -> None:
        self._partial.emit(self.console, self.fd, self.tagger)
        self._partial.discard()

    def tail(self, nbytes: int = TAIL_BYTES) -> bytes:
        return self._tail[-nbytes:]

    def discard(self) -> None:
        self._partial.discard()
        self._tail = b""


class HeadLineWriter(LineWriter):
    """``-k --line-buffer``: a LineWriter while its job is the head (the
    earliest in input order not yet printed); before that, everything it is
    given is held, as grouped output is (a SpillBuffer: in memory up to a
    bound, then in a temporary file), and nothing is printed.

    ``go_live()`` (the runner calls it when the job becomes the head) prints
    the whole lines held, in order, keeps an unfinished last one waiting for
    its end as a LineWriter does, and prints from then on as output comes.
    A stream that ended while held is then printed to its end, last line
    without ``\n`` included.  So stdout's held lines go out before stderr's,
    as GNU parallel prints them.

    If the hold's spill file cannot be written (disk full), ``error`` is set
    and ``dropped`` counts what was lost; the runner reports the job failed.
    """

    def __init__(self, console: Console, fd: int, tag: Tagger,
                 budget: Budget | None = None, live: bool = False) -> None:
        super().__init__(console, fd, tag, budget)
        self._held: SpillBuffer | None = None if live else SpillBuffer(budget=budget)
        self._ended = False
        self._error: OSError | None = None
        self._dropped = 0

    @property
    def error(self) -> OSError | None:
        """Why some of the held output could not be kept, or None."""
        return self._held.error if self._held is not None else self._error

    @property
    def dropped(self) -> int:
        """Bytes held output lost to ``error``."""
        return self._held.dropped if self._held is not None else self._dropped

    @property
    def live(self) -> bool:
        return self._held is None

    def write(self, data: bytes) -> None:
        if self._held is None:
            super().write(data)
            return
        self.total += len(data)
        self._tail = (self._tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]
        self._held.write(data)

    def close(self) -> None:
        self._ended = True
        if self._held is None:
            super().close()

    def go_live(self) -> None:
        """Print what is held (see the class); from now on print as it comes.  Idempotent."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self._error, self._dropped = held.error, held.dropped
            for chunk in held.chunks():
                self._lines(chunk)
        finally:
            held.discard()
        if self._ended:
            super().close()

    def discard(self) -> None:
        if self._held is not None:
            self._held.discard()
            self._held = None
        super().discard()
