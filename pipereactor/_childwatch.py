"""How the reactor learns that a child has exited: the one platform module.

The problem
-----------
A reactor blocks in its selector.  It must wake when a child exits, even a
child whose output goes elsewhere (``stdout=None``) or one that exits while a
grandchild keeps its pipes open.  The classic answers all take something that
belongs to the whole process, which a library must not do:

- a SIGCHLD handler replaces whatever handler the application had, and one
  signal for all children means a scan of all of them per signal;
- ``waitpid(-1)`` reaps children that other code (``subprocess.run`` in
  another thread, say) is waiting for;
- a thread per child costs a thread per child.

What we do instead
------------------
Each child is *watched* by one of these, chosen per reactor:

``pidfd`` (Linux 5.3+)
    ``pidfd_open(pid)`` gives an fd that turns readable when the child
    exits.  It goes in the reactor's selector like any pipe: no signals, no
    threads, no global state.  If ``pidfd_open`` fails for one child (EMFILE
    when the fd table is full, say), that child alone is polled.

``kqueue`` (macOS, the BSDs)
    One kqueue with an ``EVFILT_PROC``/``NOTE_EXIT`` filter per child; the
    kqueue's own fd sits in the selector.  Two races are known (libuv and bun
    hit both): NOTE_EXIT reports only exits after registration, and it may
    arrive before ``waitpid`` can reap.  So each child is polled once after
    registration, and polled from then on if an exit event finds it not yet
    reapable.  CI, which is Linux, runs the reactor's side of this against a
    pidfd-based stand-in with the same contract (tests/conftest.py).

``poll`` (everywhere)
    The reactor calls ``poll()`` on each unfinished child on a bounded
    tick (``POLL_MIN`` growing to ``POLL_MAX`` while nothing exits).  It is the
    fallback, and it can be chosen on Linux so that the tests cover it.

In every case the watcher only *reports* that a child can be reaped; the
child's handle reaps it (``wait4``, ``poll``, or ``wait`` after SIGKILL, for
that one pid, never ``-1``).  The handle is a caller's ``Popen`` for
``run()``/``communicate()``, which so stays coherent for its owner; for the
reactor's own children it is a ``Popen`` or, mostly, a ``_spawn.Child``,
which reads ECHILD as Popen does (exit status 0).
``exited_unreaped`` and ``wait_exited`` peek with ``waitid(WNOWAIT)``: they
learn that a child has exited without reaping it, so that the reactor can
still signal its process group while the group id is reserved.
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._spawn import ChildProcess

__all__ = [
    "ChildWatcher", "PidfdWatcher", "PollWatcher", "SHARED", "WATCHERS", "exited_unreaped",
    "make_watcher", "wait_exited",
]

#: Poll tick bounds, in seconds, for children no fd tells us about.
POLL_MIN: Final = 0.001
POLL_MAX: Final = 0.05

#: ``watch()`` result: the child is covered by the watcher's shared fd.
SHARED: Final = -1


class ChildWatcher:
    """The interface.  One instance per reactor.

    ``watch(pid)`` starts watching a child that has not been reaped.  It
    returns an fd of the child's own that becomes readable once the child has
    exited (the reactor registers it, and hands it back to ``release``), or
    ``SHARED`` when the watcher's own ``fileno()`` covers the child (then
    ``collect()`` says which children exited), or ``None`` when nothing will
    tell: the reactor must poll that child.  The exit status is never
    consumed: afterwards ``Popen.poll()`` returns it.
    """

    name = "poll"

    def fileno(self) -> int | None:
        """An fd for the selector shared by all children, or None."""
        return None

    def watch(self, pid: int) -> int | None:
        return None

    def release(self, handle: int) -> None:
        """Stop watching; ``handle`` is what ``watch`` returned (not None)."""

    def collect(self) -> list[int]:
        """Pids known to have exited since the last call (shared fd only)."""
        return []

    def close(self) -> None:
        """Release the watcher's own resources."""


class PollWatcher(ChildWatcher):
    """Nothing tells us: every child is polled on the reactor's tick."""


class PidfdWatcher(ChildWatcher):
    name = "pidfd"

    def watch(self, pid: int) -> int | None:
        try:
            return os.pidfd_open(pid)
        except OSError:
            # EMFILE/ENFILE (fd table full), ENOSYS (seccomp), or anything
            # else: fall back to polling this one child rather than fail it.
            return None

    def release(self, handle: int) -> None:
        os.close(handle)


if sys.platform != "linux" and sys.platform != "win32":

    class KqueueWatcher(ChildWatcher):
        name = "kqueue"

        def __init__(self) -> None:
            self._kq: select.kqueue | None = select.kqueue()

        def fileno(self) -> int | None:
            return self._kq.fileno() if self._kq is not None else None

        def watch(self, pid: int) -> int | None:
            assert self._kq is not None
            ev = select.kevent(
                pid,
                filter=select.KQ_FILTER_PROC,
                flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                fflags=select.KQ_NOTE_EXIT,
            )
            try:
                self._kq.control([ev], 0, 0)
            except ProcessLookupError:
                # Already a zombie before we asked: the first poll tick reaps it.
                return None
            return SHARED

        def release(self, handle: int) -> None:
            pass  # EV_ONESHOT: the filter removed itself when it fired

        def collect(self) -> list[int]:
            if self._kq is None:
                return []
            return [int(ev.ident) for ev in self._kq.control(None, 256, 0)]

        def close(self) -> None:
            if self._kq is not None:
                kq, self._kq = self._kq, None
                kq.close()


def exited_unreaped(pid: int) -> bool | None:
    """Whether child ``pid`` has exited but not been reaped (a zombie).

    Answered without reaping (``waitid`` with ``WNOWAIT``).  None when it
    cannot tell: the system has no ``waitid`` (macOS before Python 3.13), or
    the child is not ours to wait for any more (ECHILD: SIGCHLD ignored, or
    someone else's ``waitpid(-1)`` reaped it); ``Popen.poll()`` then decides.
    """
    if not hasattr(os, "waitid"):
        return None
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return None


def wait_exited(pid: int) -> None:
    """Block until child ``pid`` has exited, leaving it unreaped where the
    system can (``waitid`` with ``WNOWAIT``); elsewhere return at once."""
    if hasattr(os, "waitid"):
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped already, or SIGCHLD ignored: Popen.wait() copes


def _pidfd_works() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


WATCHERS: Final = ("auto", "pidfd", "kqueue", "poll")


def make_watcher(kind: str) -> ChildWatcher:
    """Build the watcher named ``kind`` (one of ``WATCHERS``).

    Raises:
        ValueError: naming ``watcher``, for an unknown name, or a watcher this
            system does not have.
    """
    if kind == "auto":
        if _pidfd_works():
            return PidfdWatcher()
        if hasattr(select, "kqueue") and sys.platform != "linux" and sys.platform != "win32":
            return KqueueWatcher()
        return PollWatcher()
    if kind == "pidfd":
        if not _pidfd_works():
            raise ValueError("watcher='pidfd' is not available on this system")
        return PidfdWatcher()
    if kind == "kqueue":
        if sys.platform != "linux" and sys.platform != "win32" and hasattr(select, "kqueue"):
            return KqueueWatcher()
        raise ValueError("watcher='kqueue' is not available on this system")
    if kind == "poll":
        return PollWatcher()
    raise ValueError(f"watcher must be one of {', '.join(map(repr, WATCHERS))}, not {kind!r}")


def reap(popen: ChildProcess) -> resource.struct_rusage | None:
    """Reap ``popen``'s child if it has exited, as ``popen.poll()`` would, and
    return its resource usage (``wait4``); None if it has not exited, or was
    reaped elsewhere (then ``popen.poll()`` settles ``returncode``, as 0 for
    ECHILD).  Only ``returncode`` of the Popen is touched, as Popen itself does.
    """
    if popen.returncode is not None:
        return None
    try:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
    except ChildProcessError:
        popen.poll()
        return None
    if pid == 0:
        return None
    popen.returncode = os.waitstatus_to_exitcode(status)
    return usage
