"""A GNU make jobserver client: share make's ``-jN`` with the jobs make runs.

make hands out parallelism as tokens: single bytes in a pipe (or, since make
4.4, a named fifo) whose address it puts in ``MAKEFLAGS``, as
``--jobserver-auth=R,W`` (``--jobserver-fds=R,W`` before make 4.2) or
``--jobserver-auth=fifo:PATH``.  Every recipe make starts already holds one
slot, the implicit one; a client that wants to run more jobs at once reads a
token for each extra job and writes the very same byte back when that job
ends.  A token not written back is lost to the whole build.

This client never blocks on the jobserver: it reads tokens from an open file
description of its own, non-blocking (the fifo opened by path; for the pipe
form, ``/proc/self/fd/R`` reopened, on Linux), and the reactor waits for a
token by watching that fd in its selector.  Setting O_NONBLOCK on the
inherited descriptor instead would change it for make and every other client
sharing it; for the same reason a token is given back without ever
changing the flags of make's write end: when the pipe is full and that end
is non-blocking, the client waits for room with poll() and writes again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import shlex
import stat
import warnings
from typing import Final

__all__ = ["Jobserver", "from_makeflags"]

_AUTH: Final = re.compile(r"^--jobserver-(?:auth|fds)=(.+)$")


class Jobserver:
    """Tokens from make's jobserver: ``try_take()`` one, ``give_back()`` it."""

    def __init__(self, read_fd: int, write_fd: int, where: str) -> None:
        self._read = read_fd  # ours: non-blocking, close-on-exec
        self._write = write_fd
        self.where = where
        self.broken = False

    def fileno(self) -> int:
        """Readable when a token may be there to take."""
        return self._read

    def try_take(self) -> bytes | None:
        """One token byte if one is free now, else None.  Never blocks."""
        if self.broken:
            return None
        try:
            token = os.read(self._read, 1)
        except BlockingIOError:
            return None
        if not token:
            # Every writer is gone: make has exited.  No more tokens, ever;
            # the implicit slot still runs one job at a time.
            self.broken = True
            return None
        return token

    def give_back(self, token: bytes) -> None:
        """Return a token taken earlier: the same byte, as make requires."""
        while True:
            try:
                os.write(self._write, token)
                return
            except InterruptedError:
                continue
            except BlockingIOError:
                # A pipe holding make's tokens has room for them all; this
                # means a full pipe nobody drains.  Wait for room rather than
                # lose the token, but never by making our fd blocking: it is a
                # dup of make's, sharing its open file description, so that
                # would make make's own write end blocking too.
                _wait_writable(self._write)
            except BrokenPipeError:
                return  # make has exited: nobody to give it back to

    def close(self) -> None:
        for fd in {self._read, self._write}:
            if fd >= 0:
                os.close(fd)
        self._read = self._write = -1

    def __repr__(self) -> str:
        return f"<Jobserver {self.where}>"


def _wait_writable(fd: int) -> None:
    """Block until the pipe ``fd`` writes to has room, or has no reader left
    (then the next write says so: EPIPE).  Leaves the fd's flags alone."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll()  # retried by Python after a signal (PEP 475)
    else:
        select.select([], [fd], [])


def from_makeflags(makeflags: str | None = None) -> Jobserver | None:
    """The jobserver ``MAKEFLAGS`` names, opened; None if it names none.

    A jobserver that is named but unusable (make did not pass the pipe to
    this recipe: mark it with ``+`` in the Makefile, or call ``$(MAKE)``) gives
    a RuntimeWarning and a jobserver with no tokens: one job at a time, the
    implicit slot, as make itself does in that case.
    """
    if makeflags is None:
        makeflags = os.environ.get("MAKEFLAGS", "")
    auth = None
    try:
        words = shlex.split(makeflags)
    except ValueError:
        words = makeflags.split()
    for word in words:
        match = _AUTH.match(word)
        if match:
            auth = match.group(1)  # the last one wins, as in make
    if auth is None:
        return None
    try:
        if auth.startswith("fifo:"):
            return _open_fifo(auth[len("fifo:"):])
        read_fd, write_fd = (int(part) for part in auth.split(","))
        return _open_pipe(read_fd, write_fd)
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"MAKEFLAGS names a jobserver ({auth}) that cannot be used ({exc}); running one "
            "job at a time.  Mark the recipe with '+' so that make passes its jobserver on.",
            RuntimeWarning,
            stacklevel=3,
        )
        unusable = Jobserver(-1, -1, auth)
        unusable.broken = True
        return unusable


def _open_fifo(path: str) -> Jobserver:
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISFIFO(os.fstat(read_fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a fifo")
        write_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(read_fd)
        raise
    return Jobserver(read_fd, write_fd, f"fifo:{path}")


def _open_pipe(read_fd: int, write_fd: int) -> Jobserver:
    if read_fd < 0 or write_fd < 0:
        raise ValueError(f"negative descriptors {read_fd},{write_fd}")
    for fd, modes in ((read_fd, (os.O_RDONLY, os.O_RDWR)), (write_fd, (os.O_WRONLY, os.O_RDWR))):
        # The numbers may be stale: make closes them for recipes it does not
        # trust, and they may since belong to some unrelated file.
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, f"fd {fd} is not a pipe")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE not in modes:
            raise OSError(errno.EBADF, f"fd {fd} is open the wrong way for a jobserver")
    try:
        # A description of our own, so that O_NONBLOCK is ours alone.
        own_read = os.open(f"/proc/self/fd/{read_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        # No /proc (the BSDs, macOS): share make's description and make it
        # non-blocking, for make and the other clients too: the lesser evil
        # than a reactor blocked in read() by a token another client took.
        own_read = os.dup(read_fd)
        os.set_blocking(own_read, False)
    try:
        own_write = os.dup(write_fd)
    except BaseException:
        os.close(own_read)
        raise
    return Jobserver(own_read, own_write, f"{read_fd},{write_fd}")
