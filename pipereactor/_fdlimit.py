"""File descriptors as a budget: telling exhaustion apart, explaining it, raising the limit.

Each running child costs the parent up to four fds (three pipe ends and a
pidfd), plus two or three briefly while it is being started.  When the table
is full, ``spawn`` gets EMFILE (this process's limit) or ENFILE (the whole
system's) from ``pipe()``, ``pidfd_open()`` or Popen's own exec-error pipe.
The reactor treats that as back-pressure while some job runs (its fds come
back when it is done) and as an error only when nothing is running; this
module holds the pieces of that decision that are not the reactor's.
"""

from __future__ import annotations

import errno
import os
import resource
from typing import Final

__all__ = ["is_exhaustion", "exhaustion_error", "raise_soft_limit"]

_EXHAUSTION: Final = frozenset({errno.EMFILE, errno.ENFILE})

#: How many fd numbers we probe, at most, to count the open ones when even
#: listing /proc/self/fd needs an fd we do not have.
_PROBE_LIMIT: Final = 1 << 16


def is_exhaustion(exc: BaseException) -> bool:
    """Whether ``exc`` says the fd table (ours or the system's) is full."""
    return isinstance(exc, OSError) and exc.errno in _EXHAUSTION


def _count_open_fds(soft_limit: int) -> int | None:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listing it
    except OSError:
        pass
    if soft_limit > _PROBE_LIMIT or soft_limit == resource.RLIM_INFINITY:
        return None
    count = 0
    for fd in range(soft_limit):
        try:
            os.fstat(fd)
        except OSError:
            continue
        count += 1
    return count


def exhaustion_error(args: object, exc: OSError, ours: int) -> OSError:
    """The error for a spawn that found no fd and had no running job to wait
    for: which limit, how many fds are open, how many are the reactor's."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if exc.errno == errno.ENFILE:
        why = "the system's file table is full (ENFILE)"
    else:
        count = _count_open_fds(soft)
        in_use = f"{count} fds open" if count is not None else "every fd in use"
        why = f"this process has {in_use}, its limit (RLIMIT_NOFILE) is {soft}"
    message = (
        f"cannot start {args!r}: {why}; this reactor holds {ours} of its own, and no "
        "job is running whose end would free one.  Close fds, raise the limit (ulimit -n, "
        "or Reactor(raise_fd_limit=True)) or lower max_parallel"
    )
    error = OSError(exc.errno, message)
    error.__cause__ = exc
    return error


def raise_soft_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (never lowering it);
    return the soft limit now in force.  An unlimited hard limit is taken as
    the kernel's per-process maximum (``fs.nr_open``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass  # macOS caps it lower (OPEN_MAX); keep what we have
    return soft
