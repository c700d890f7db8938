"""The one owner of our stdout and stderr (in the manner of ninja's LinePrinter).

Everything goes out through ``os.write`` on fds 1 and 2, never through
``sys.stdout``/``sys.stderr`` buffers, so a status line is on the terminal (or
erased from it) before any job output follows, whatever Python's buffering.

The status line is drawn only on a terminal (or with ``--progress``), and
overprinted: ``\\r``, erase to end of line, the text cut to the width.  It
may be an area of several lines (the running jobs, ``_live``): each is cut
to the width, so none wraps, and the cursor stays at the end of the last;
erasing goes up to the first and clears to the end of the screen.  Job
output is printed "on a new line": if a job's output left the terminal in
the middle of a line, a newline goes to stderr (never into stdout's bytes)
before the next status line, so the status never erases it.

When a write to stdout fails (EPIPE: ``| head``; ENOSPC), ``stdout_gone``
and ``stdout_error`` are set and further output to it is dropped; the caller
decides what to do (stop).  A failing stderr is dropped quietly.  Nothing
here raises: it runs inside the reactor's callbacks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat

from ._live import fit

__all__ = ["Console"]

_ERASE = b"\r\x1b[K"


class Console:
    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.stdout_gone = False
        self.stdout_error: OSError | None = None
        self.stderr_gone = False
        self._status = b""
        self.label = ""  # put before every status line ("[shard 2/4] "): the runner's to set
        self._rows = 0  # lines the status on the terminal takes
        # Whether fds 1 and 2 are the terminal the status line is drawn on.
        self._tty = {fd: _isatty(fd) for fd in (1, 2)}
        self._mid_line = False  # the terminal's cursor is after unterminated output

    def tty(self, fd: int) -> bool:
        """Whether fd 1 or 2 was a terminal when we started."""
        return self._tty[fd]

    def grow_stdout_pipe(self, size: int = 1 << 20) -> None:
        """When stdout is a pipe, make it hold ``size`` bytes (as the reactor
        does for busy pipes): one write of a read's worth of lines then wakes
        the reader once, not sixteen times.  Best effort."""
        setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
        getsz = getattr(fcntl, "F_GETPIPE_SZ", None)
        if setsz is None or getsz is None:
            return
        try:
            if stat.S_ISFIFO(os.fstat(1).st_mode) and fcntl.fcntl(1, getsz) < size:
                fcntl.fcntl(1, setsz, size)
        except OSError:
            pass  # over the pipe quota, or not ours to change: as it is

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` to fd 1 or 2, erasing the status line first
        (unless it goes elsewhere than the status's terminal)."""
        if not data or (self.stdout_gone if fd == 1 else self.stderr_gone):
            return
        if self._status and self._shares_status(fd):
            self._erase()
        if not self._raw(fd, data):
            return
        if self.progress and self._tty[fd]:
            self._mid_line = data[-1:] != b"\n"

    def sendfile(self, fd: int, src: int, count: int) -> None:
        """Copy ``count`` bytes from ``src`` (a regular file, from its current
        offset) to fd 1 or 2, without a copy through Python where the kernel can."""
        if count <= 0 or (self.stdout_gone if fd == 1 else self.stderr_gone):
            return
        if self._status and self._shares_status(fd):
            self._erase()
        last = b""
        offset = os.lseek(src, 0, os.SEEK_CUR)
        end = offset + count
        try:
            while offset < end:
                try:
                    sent = os.sendfile(fd, src, offset, min(end - offset, 1 << 30))
                except BlockingIOError:
                    select.select([], [fd], [])
                    continue
                if sent == 0:
                    break
                offset += sent
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                self._gone(fd, exc)
                return
            # sendfile refused this pair (an fd in append mode): copy by hand.
            while offset < end:
                chunk = os.pread(src, min(end - offset, 1 << 20), offset)
                if not chunk or not self._raw(fd, chunk):
                    break
                offset += len(chunk)
        if self.progress and self._tty[fd]:
            last = os.pread(src, 1, end - 1) if count else b""
            self._mid_line = last != b"\n"

    def status(self, text: str, width: int | None = None) -> None:
        """Show ``text`` as the status line (cut to the terminal's width)."""
        self.status_area([text], width)

    def status_area(self, lines: list[str], width: int | None = None) -> None:
        """Show ``lines`` as the status, in place of the one shown (each cut
        to the terminal's width).  One write; nothing when it is unchanged."""
        if not self.progress or self.stderr_gone or not lines:
            return
        cols = width if width is not None else terminal_width()
        lines = [self.label + lines[0], *lines[1:]]
        encoded = "\n".join(fit(line, cols) for line in lines).encode("utf-8", "replace")
        if encoded == self._status:
            return
        prefix = b""
        if self._mid_line:
            prefix = b"\n"  # keep the job's unterminated line on the terminal
            self._mid_line = False
        if self._raw(2, prefix + self._erasing() + encoded):
            self._status = encoded
            self._rows = len(lines)

    def done(self) -> None:
        """Erase the status line (at the end, before the summary)."""
        if self._status:
            self._erase()

    def _shares_status(self, fd: int) -> bool:
        """Whether output to ``fd`` may land where the status is drawn.  Not
        when the status is on a terminal and our stdout is not (a file, a
        pipe): erasing there would only make the status flicker."""
        return not (fd == 1 and self._tty[2] and not self._tty[1])

    def _erasing(self) -> bytes:
        """What erases the status shown, leaving the cursor where it began."""
        if self._status and self._rows > 1:
            return b"\r\x1b[%dA\x1b[J" % (self._rows - 1)
        return _ERASE

    def _erase(self) -> None:
        erase = self._erasing()
        self._status = b""
        self._rows = 0
        self._raw(2, erase)

    def _raw(self, fd: int, data: bytes | memoryview) -> bool:
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    # Our stdout was left non-blocking by someone else: wait.
                    select.select([], [fd], [])
        except OSError as exc:
            # EPIPE (| head), EIO (the terminal went), ENOSPC: never raised
            # into the reactor; the run loop looks at stdout_error.
            self._gone(fd, exc)
            return False
        return True

    def _gone(self, fd: int, exc: OSError) -> None:
        if fd == 1:
            self.stdout_gone = True
            self.stdout_error = exc
        else:
            self.stderr_gone = True
            self._status = b""
            self._rows = 0


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def terminal_size() -> tuple[int, int]:
    """stderr's terminal (columns, rows): columns 80 when unknown or 0,
    rows 0 when unknown (then the status is one line)."""
    try:
        size = os.get_terminal_size(2)
    except OSError:
        return 80, 0
    return (size.columns if size.columns > 0 else 80), max(size.lines, 0)


def terminal_width() -> int:
    """stderr's terminal width; 80 when unknown or reported as 0."""
    try:
        cols = os.get_terminal_size(2).columns
    except OSError:
        return 80
    return cols if cols > 0 else 80
