"""Where a child's output goes: the sink protocol, the sink classes, and coercion.

A sink is anything with ``write(bytes)``.  The reactor calls ``write`` with each
chunk it reads from a pipe, in order, and calls ``close()`` (when the sink has
one) exactly once when that stream's output ends: at EOF, when ``eof_grace``
gives up on a pipe a grandchild still holds, or when a kill ends the job.

Nothing in this module touches a file descriptor of the reactor's; sinks are
plain objects and can be tested without a child process.
"""

from __future__ import annotations

import codecs
import io
import os
import stat
from collections.abc import Callable
from typing import IO, Final, Protocol, Union, runtime_checkable

__all__ = [
    "Sink",
    "BytesSink",
    "TextSink",
    "FileSink",
    "CallbackSink",
    "LineSink",
    "RingBuffer",
    "Tee",
    "NullSink",
    "as_sink",
]


@runtime_checkable
class Sink(Protocol):
    """The one method a sink must have.  ``close()`` is optional."""

    def write(self, data: bytes, /) -> object: ...


class _TextWriter(Protocol):
    def write(self, text: str, /) -> object: ...


class BytesSink:
    """Keep every byte; ``getvalue()`` returns them.  Memory grows with the output.

    ``getvalue()`` does not copy: the bytes it returns share the buffer (an
    ``io.BytesIO``'s), so keeping N bytes costs about N, not 2N, at the end.
    """

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._size += self._buf.write(data)

    def getvalue(self) -> bytes:
        return self._buf.getvalue()

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<BytesSink {self._size} bytes>"


class TextSink:
    """Decode incrementally and keep (or forward) the text.

    A character split across two reads is decoded whole.  Bytes that do not
    decode are handled by ``errors`` ("replace" by default, so output never
    raises).  No newline translation is done: ``"\\r\\n"`` stays as it came.

    With ``target=None`` the text is kept and ``getvalue()`` returns it.  With a
    text target (``io.StringIO``, a text file, ``sys.stdout``) each decoded piece
    is written to it; the target is flushed, never closed, when the stream ends,
    and ``getvalue()`` returns ``target.getvalue()`` where the target has one.
    """

    def __init__(
        self,
        target: _TextWriter | None = None,
        encoding: str = "utf-8",
        errors: str = "replace",
    ) -> None:
        if target is not None and not callable(getattr(target, "write", None)):
            raise TypeError(
                f"TextSink target must have a write(str) method, not {type(target).__name__}"
            )
        self._decoder = codecs.getincrementaldecoder(encoding)(errors)
        self.encoding = encoding
        self.errors = errors
        self.target = target
        self._parts: list[str] = []

    def write(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._emit(text)

    def close(self) -> None:
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        if text:
            self._emit(text)
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()

    def _emit(self, text: str) -> None:
        if self.target is None:
            self._parts.append(text)
        else:
            self.target.write(text)

    def getvalue(self) -> str:
        if self.target is None:
            if len(self._parts) > 1:
                self._parts[:] = ["".join(self._parts)]
            return self._parts[0] if self._parts else ""
        getvalue = getattr(self.target, "getvalue", None)
        if getvalue is None:
            raise TypeError("TextSink keeps no copy when its target has no getvalue()")
        result = getvalue()
        assert isinstance(result, str)
        return result


class FileSink:
    """Write to a file: a path (opened ``"wb"``, owned and closed by the sink),
    a binary file object, or a file descriptor.

    A file object or descriptor stays the caller's: at the end of the stream
    it is flushed, never closed.  Writes are blocking and complete; the
    descriptor's blocking mode is left as the caller set it.

    Given to ``spawn`` with a path, or a descriptor of a regular file, the
    child gets the file as its stdout (or stderr) itself, as the shell's
    ``>`` does: no pipe, no copy through the parent.  ``total`` is then set
    when the job is done, from how far the file offset moved; there is no
    ``eof_grace`` (no pipe), and a grandchild that inherited the file may
    write to it after the job is done.
    """

    def __init__(self, file: str | os.PathLike[str] | IO[bytes] | int) -> None:
        self._file: IO[bytes] | None = None
        self._fd = -1
        self._owned = False
        if isinstance(file, bool):
            raise TypeError("FileSink needs a path, a binary file or a file descriptor, not bool")
        if isinstance(file, int):
            if file < 0:
                raise ValueError(f"FileSink file descriptor must be >= 0, not {file}")
            self._fd = file
        elif isinstance(file, (str, os.PathLike)):
            self._fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            self._owned = True
        elif isinstance(file, io.TextIOBase):
            raise TypeError("FileSink needs a binary file; use TextSink for a text file")
        elif callable(getattr(file, "write", None)):
            self._file = file
        else:
            raise TypeError(
                "FileSink needs a path, a binary file or a file descriptor, "
                f"not {type(file).__name__}"
            )
        self.name = file
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        if self._fd < 0:
            raise ValueError("write to a closed FileSink")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _child_fd(self) -> int:
        """A descriptor the child may be given to write to itself: a regular
        file written through no file object, by a sink whose ``write`` is this
        class's own (a subclass that changes it sees every byte); else -1.
        The reactor then reports the bytes written through ``_count``."""
        if self._file is not None or self._fd < 0 or type(self).write is not FileSink.write:
            return -1
        try:
            return self._fd if stat.S_ISREG(os.fstat(self._fd).st_mode) else -1
        except OSError:
            return -1

    def _count(self, n: int) -> None:
        self.total += n

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
        elif self._owned and self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __repr__(self) -> str:
        return f"<FileSink {self.name!r} {self.total} bytes>"


class CallbackSink:
    """Call ``fn(chunk)`` for each chunk, as read (chunk boundaries are arbitrary)."""

    def __init__(self, fn: Callable[[bytes], object]) -> None:
        if not callable(fn):
            raise TypeError(f"CallbackSink needs a callable, not {type(fn).__name__}")
        self.fn = fn

    def write(self, data: bytes) -> None:
        self.fn(data)


class LineSink:
    """Call ``fn(line)`` once per complete line of decoded text.

    Lines are split on ``"\\n"``; the terminator (and a ``"\\r"`` before it) is
    not passed.  A line longer than ``max_line`` characters is delivered in
    pieces of ``max_line``, so memory stays bounded whatever the child writes.
    At the end of the stream, a last line without a terminator is delivered.
    """

    def __init__(
        self,
        fn: Callable[[str], object],
        encoding: str = "utf-8",
        errors: str = "replace",
        max_line: int = 65536,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"LineSink needs a callable, not {type(fn).__name__}")
        if isinstance(max_line, bool) or not isinstance(max_line, int):
            raise TypeError(f"LineSink max_line must be an int, not {type(max_line).__name__}")
        if max_line < 1:
            raise ValueError(f"LineSink max_line must be >= 1, not {max_line}")
        self.fn = fn
        self.max_line = max_line
        self._decoder = codecs.getincrementaldecoder(encoding)(errors)
        self._pending = ""

    def write(self, data: bytes) -> None:
        self._feed(self._decoder.decode(data))

    def close(self) -> None:
        self._feed(self._decoder.decode(b"", final=True))
        self._decoder.reset()
        if self._pending:
            line, self._pending = self._pending, ""
            self.fn(line)

    def _feed(self, text: str) -> None:
        if not text:
            return
        text = self._pending + text
        lines = text.split("\n")
        self._pending = ""
        rest = lines.pop()
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            self._emit_bounded(line)
        # What follows the last "\n" waits for its terminator; a "\r" at its
        # end may be the first half of "\r\n" split across two reads.
        limit = self.max_line
        # That "\r" does not count against max_line: a line of exactly
        # max_line characters must not depend on where the reads split it.
        while len(rest) - rest.endswith("\r") > limit:
            self.fn(rest[:limit])
            rest = rest[limit:]
        self._pending = rest

    def _emit_bounded(self, line: str) -> None:
        limit = self.max_line
        while len(line) > limit:
            self.fn(line[:limit])
            line = line[limit:]
        self.fn(line)


class RingBuffer:
    """Keep only the last ``capacity`` bytes.

    ``total`` counts every byte written, ``dropped`` those no longer kept.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"RingBuffer capacity must be an int, not {type(capacity).__name__}")
        if capacity < 1:
            raise ValueError(f"RingBuffer capacity must be >= 1, not {capacity}")
        self.capacity = capacity
        self.total = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if len(data) >= self.capacity:
            self._buf[:] = data[-self.capacity :]
            return
        self._buf += data
        excess = len(self._buf) - self.capacity
        if excess > 0:
            # CPython's bytearray drops a prefix by moving its start, not the data.
            del self._buf[:excess]

    @property
    def dropped(self) -> int:
        return self.total - len(self._buf)

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __repr__(self) -> str:
        return f"<RingBuffer {len(self._buf)}/{self.capacity} bytes, {self.dropped} dropped>"


class Tee:
    """Write each chunk to every sink in turn; close them all at the end.

    Each argument is coerced as ``spawn(stdout=...)`` would (a text file gets a
    decoder, a callable becomes a CallbackSink).  If closing one raises, the
    others are still closed and the first error is raised.
    """

    def __init__(self, *sinks: object) -> None:
        self.sinks = tuple(as_sink(s, "Tee argument") for s in sinks)

    def write(self, data: bytes) -> None:
        for sink in self.sinks:
            sink.write(data)

    def close(self) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first


class NullSink:
    """Discard everything; ``total`` counts the bytes.

    The reactor splices a NullSink's pipe to /dev/null where it can, so the
    bytes never pass through Python; ``total`` still counts them.
    """

    def __init__(self) -> None:
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)

    def _discards(self) -> bool:
        # A subclass that changes write() wants to see the bytes.
        return type(self).write is NullSink.write

    def _count(self, n: int) -> None:
        self.total += n


class _KeepOpen:
    """Adapter for a caller's file object: flushed at the end, never closed."""

    def __init__(self, file: Sink) -> None:
        self.write = file.write
        self._file = file

    def close(self) -> None:
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()


# -- what a sink can do besides write(), as the reactor asks it -------------------


def child_fd(sink: Sink) -> int:
    """A descriptor the child may write this stream to directly (a FileSink
    on a regular file, as the shell's ``>``), or -1: read the pipe."""
    fn = getattr(sink, "_child_fd", None)
    return int(fn()) if fn is not None else -1


def discards(sink: Sink) -> bool:
    """Whether the bytes may go to /dev/null unread (counted by ``count``)."""
    fn = getattr(sink, "_discards", None)
    return fn is not None and bool(fn())


def count(sink: Sink, n: int) -> None:
    """``n`` bytes reached the sink's destination without its ``write()``
    (spliced, or written by the child itself to ``child_fd``)."""
    sink._count(n)  # type: ignore[attr-defined]


#: What ``spawn(stdout=..., stderr=...)`` accepts (an int is PIPE, DEVNULL,
#: STDOUT or a file descriptor).
OutputTarget = Union[int, Sink, _TextWriter, Callable[[bytes], object], None]


_OWN_SINKS: Final = frozenset(
    {BytesSink, TextSink, FileSink, CallbackSink, LineSink, RingBuffer, Tee, NullSink}
)


def as_sink(obj: object, argname: str) -> Sink:
    """Turn what a caller passed as an output target into a Sink.

    - a text stream (``io.TextIOBase``: StringIO, a text file) is wrapped in a
      TextSink, and flushed rather than closed at the end;
    - another ``io.IOBase`` (BytesIO, a binary file) is written to as is, and
      flushed rather than closed at the end: the caller owns it;
    - any other object with ``write`` is used as is, ``close()`` included;
    - a callable without ``write`` becomes a CallbackSink.

    Raises:
        TypeError: naming ``argname``, for anything else.
    """
    if type(obj) in _OWN_SINKS:
        return obj  # type: ignore[return-value]  # and no ABC checks, the slow part
    if isinstance(obj, io.TextIOBase):
        return TextSink(obj)
    if callable(getattr(obj, "write", None)):
        if isinstance(obj, io.IOBase):
            return _KeepOpen(obj)
        return obj  # type: ignore[return-value]
    if callable(obj):
        return CallbackSink(obj)
    raise TypeError(
        f"{argname} must be None, DEVNULL, PIPE, a sink (an object with write(bytes)), "
        f"a text stream or a callable, not {type(obj).__name__}"
    )
