"""Containment: each job in a cgroup v2 of its own, so that a job is its
whole process tree however its processes detach (``setsid``, double fork).

The layout, below the cgroup this process is in (found through
``/proc/self/cgroup`` and ``/proc/self/mountinfo``)::

    <our cgroup>/pipereactor.<pid>.<start time>.<n>/    one per Reactor
        job.<k>/                                         one per started job

The kernel does the rest: a cgroup holds every descendant of a process put
in it, ``cgroup.kill`` SIGKILLs them all at once (forks in flight included),
``cgroup.events`` says when none is left, and ``cpu.stat`` counts the CPU of
all of them, waited for or not.

How a child gets into its cgroup before it runs: see ``_trampoline``.

A reactor that was SIGKILLed leaves its cgroups behind; the next one to
start removes those that are empty, recognising them by name and by their
owner being gone (its pid no longer runs, or runs with another start time,
and the cgroup is not flock()ed: a live reactor holds its own locked, as its
pid may be one we cannot see).  Nothing not named ours is ever touched.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import itertools
import os
import re
import select
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

from ._trampoline import SHELL, trampoline

__all__ = ["Unavailable", "Containment", "JobCgroup", "Tree", "open_containment"]

_STALE: Final = re.compile(r"pipereactor\.(\d+)\.(\d+)\.\d+")
#: The poll tick for an exited job's non-empty cgroup: from 2 ms to 100 ms.
_TICK_MIN: Final = 0.002
_TICK_MAX: Final = 0.1
#: How long close() waits for killed jobs' cgroups to empty.
_CLOSE_WAIT: Final = 1.0


class Unavailable(Exception):
    """Containment cannot be had here; the message says what is missing."""


class Tree(enum.Enum):
    """What is known of a job's cgroup."""

    LIVE = "live"  #: may hold processes
    KILLED = "killed"  #: cgroup.kill was written; its processes are dying
    EMPTY = "empty"  #: no process left (and none can join: only we put one in)
    REMOVED = "removed"  #: rmdir'ed


def _read(path: str) -> str:
    """A small kernel file, whole.  Plain os.read: a text file object costs
    more than the read, and cgroup files are read a few times per job."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return data.decode("ascii", "replace")


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def own_cgroup() -> str:
    """The directory of this process's cgroup v2, or Unavailable saying why."""
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"cgroups are Linux only (this is {sys.platform})")
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError as exc:
        raise Unavailable(f"cannot read /proc/self/cgroup: {exc.strerror}") from None
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        raise Unavailable("this process is in no cgroup v2 hierarchy (/proc/self/cgroup)")
    try:
        mounts = _read("/proc/self/mountinfo").splitlines()
    except OSError as exc:
        raise Unavailable(f"cannot read /proc/self/mountinfo: {exc.strerror}") from None
    for line in mounts:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] != "cgroup2":
            continue
        fields = left.split(" ")
        root, point = _unescape(fields[3]), _unescape(fields[4])
        # A mount shows the hierarchy from its root (a cgroup namespace's,
        # or a bind mount's): our path must lie below it.
        if rel == root or rel.startswith(root.rstrip("/") + "/"):
            return os.path.join(point, rel[len(root):].lstrip("/")).rstrip("/") or "/"
    raise Unavailable("no cgroup2 file system is mounted where this process's cgroup is")


def _start_time(pid: int | str) -> str | None:
    """A process's start time (clock ticks after boot), or None if it is gone."""
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _lock(path: str) -> int:
    """An fd holding ``path`` (a directory) flock()ed, or -1 if another
    holds it (or it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def remove_stale(parent: str) -> None:
    """Remove the empty cgroups of reactors that died without closing.

    A reactor holds its cgroup flock()ed while it lives: its pid alone does
    not say, as a reactor in another pid namespace sharing our cgroup (a
    container) has one we cannot see, or see as another process's."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        m = _STALE.fullmatch(name)
        if m is None or _start_time(m.group(1)) == m.group(2):
            continue  # not ours, or its reactor's process still runs
        path = os.path.join(parent, name)
        lock = _lock(path)
        if lock < 0:
            continue  # its reactor lives (elsewhere), or it is gone already
        try:
            for job in os.listdir(path):
                if job.startswith("job."):
                    _remove_tree(os.path.join(path, job))
        except OSError:
            pass
        finally:
            os.close(lock)
        _rmdir_quietly(path)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass  # an unreaped child's pid cannot be gone; EPERM: beyond our reach


def _remove_tree(path: str) -> bool:
    """rmdir a job's cgroup and those its processes made below it (a
    contained reactor of the job's own, say), deepest first; False if any
    still holds a process."""
    if _rmdir_quietly(path):
        return True  # the usual case: nothing below it, no walk
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        for name in dirnames:
            _rmdir_quietly(os.path.join(dirpath, name))
    return _rmdir_quietly(path)


def _rmdir_quietly(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # EBUSY: processes left in it; not ours to kill
    return True


class JobCgroup:
    """One job's cgroup: join it (``wrap``), signal it, watch it empty."""

    __slots__ = ("path", "state", "memory", "_tick", "_final")

    def __init__(self, path: str, memory: bool = False) -> None:
        self.path = path
        self.state = Tree.LIVE
        self.memory = memory  # the memory controller is on: memory.peak exists
        self._tick = _TICK_MIN
        # Whether no process can join any more, so that an empty cgroup stays
        # empty: the child was seen in it, or is gone.  Until then, an empty
        # cgroup may only mean that the trampoline has not joined yet.
        self._final = False

    def child_gone(self) -> None:
        """The job's child was reaped: whatever is in the cgroup now is all
        there will ever be (nothing outside it joins a job's cgroup)."""
        self._final = True

    def next_tick(self) -> float:
        """How long until the next look at ``cgroup.events`` (which cannot be
        waited on through a selector): short at first, as most trees empty
        at once, then backing off to ``_TICK_MAX``."""
        tick = self._tick
        self._tick = min(tick * 2, _TICK_MAX)
        return tick

    def wrap(
        self, argv: list[Any], env: Mapping[Any, Any] | None
    ) -> tuple[list[Any], Mapping[Any, Any] | None]:
        """The argv and environment for Popen that run ``argv`` with ``env``
        in this cgroup (see ``_trampoline``)."""
        return trampoline(self.path + "/cgroup.procs", argv, env)

    def populated(self) -> bool:
        """Whether any process is left in the cgroup (its ``cgroup.events``)."""
        if self.state is Tree.EMPTY or self.state is Tree.REMOVED:
            return False
        try:
            events = _read(self.path + "/cgroup.events")
        except FileNotFoundError:
            self.state = Tree.REMOVED
            return False
        if "populated 0" in events:
            if self._final:
                self.state = Tree.EMPTY
            return False
        self._final = True  # the child joined (only it puts a process in)
        return True

    def signal(self, sig: int, child: int | None = None) -> None:
        """SIGKILL: ``cgroup.kill`` (every process, forks in flight too).
        Another signal: each process listed in ``cgroup.procs``, until a
        reading finds none not yet signalled (a fork between two readings is
        caught by the next one).

        ``child``: the pid of the job's child while it is unreaped (so that
        the pid is still its own).  Popen returns before the trampoline has
        joined the cgroup; a child not in it yet is signalled directly (it
        forks nothing before it joins), else the signal would be lost.
        """
        # Read before the cgroup.kill: a child that joins after this reading
        # is killed by it or, joining later still, directly.
        outside = child if child is not None and child not in self._members() else None
        if sig == signal.SIGKILL:
            if self.populated():
                try:
                    _write(self.path + "/cgroup.kill", "1")
                    self.state = Tree.KILLED
                except OSError:
                    pass
            if outside is not None:
                _kill(outside, sig)
            return
        sent: set[int] = set()
        if outside is not None:
            _kill(outside, sig)
            sent.add(outside)  # once: it may join meanwhile
        for _ in range(100):  # a fork bomb outruns us: SIGKILL follows anyway
            new = self._members() - sent
            if not new:
                return
            # Through pidfds, checked against a second reading: a pid that
            # left (and was reused) between the reading and the kill is
            # never signalled.
            fds: dict[int, int] = {}
            try:
                for pid in new:
                    try:
                        fds[pid] = os.pidfd_open(pid)
                    except OSError:
                        pass  # gone already
                still = self._members()
                # The child first, as killpg would reach it: a shell whose
                # own child died of the signal first could exit normally.
                for pid, fd in sorted(fds.items(), key=lambda item: item[0] != child):
                    if pid in still:
                        try:
                            signal.pidfd_send_signal(fd, sig)
                        except OSError:
                            pass
            finally:
                for fd in fds.values():
                    os.close(fd)
            sent |= new

    def _members(self) -> set[int]:
        """The pids in the cgroup and in any cgroup below it."""
        pids: set[int] = set()
        for dirpath, _, _ in os.walk(self.path):
            try:
                pids.update(int(p) for p in _read(dirpath + "/cgroup.procs").split())
            except (OSError, ValueError):
                pass
        return pids

    def usage(self) -> tuple[float, float, int | None]:
        """(user s, system s, peak memory bytes or None) of everything that
        ran in the cgroup; the peak needs the memory controller."""
        user = system = 0.0
        try:
            for line in _read(self.path + "/cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "user_usec":
                    user = int(value) / 1e6
                elif key == "system_usec":
                    system = int(value) / 1e6
        except (OSError, ValueError):
            pass
        peak = None
        if self.memory:
            try:
                peak = int(_read(self.path + "/memory.peak"))
            except (OSError, ValueError):
                pass
        return user, system, peak

    def remove(self) -> bool:
        """rmdir (with any cgroup made below it), once empty; False if
        processes are still in it."""
        if self.state is Tree.REMOVED:
            return True
        if _remove_tree(self.path):
            self.state = Tree.REMOVED
            return True
        return False


class Containment:
    """The reactor's cgroup, and the jobs' below it."""

    _serial = itertools.count()

    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.path = os.path.join(
            parent, f"pipereactor.{os.getpid()}.{_start_time('self')}.{next(self._serial)}"
        )
        self._jobs = itertools.count()
        self.pid = os.getpid()
        try:
            os.mkdir(self.path)
        except OSError as exc:
            reason = "no permission to create cgroups" if exc.errno in (
                errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror
            raise Unavailable(f"cannot create a cgroup in {parent}: {reason}") from None
        if not os.path.exists(self.path + "/cgroup.kill"):
            _rmdir_quietly(self.path)
            raise Unavailable("this kernel has no cgroup.kill (Linux 5.14 or later needed)")
        # Held until close(), and by the kernel's closing of our fds if we
        # are killed: while it is held, no remove_stale() touches our cgroup.
        self._lock = _lock(self.path)
        self.memory = self._enable_memory()

    def _enable_memory(self) -> bool:
        """Turn the memory controller on for our jobs' cgroups, if our parent
        passes it down to us (then ``memory.peak`` gives each job's peak)."""
        try:
            if "memory" not in _read(self.path + "/cgroup.controllers").split():
                return False
            _write(self.path + "/cgroup.subtree_control", "+memory")
        except OSError:
            return False
        return True

    def new_job(self) -> JobCgroup:
        path = os.path.join(self.path, f"job.{next(self._jobs)}")
        os.mkdir(path)
        return JobCgroup(path, self.memory)

    def close(self) -> bool:
        """Remove our cgroup (its jobs' must be gone already); False if it
        could not be (processes left in it), or in a forked child."""
        if os.getpid() != self.pid:
            self.forget()
            return False
        try:
            return self._remove()
        finally:
            self.forget()

    def forget(self) -> None:
        """Let go of our lock on the cgroup (our copy of it, in a forked child)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def _remove(self) -> bool:
        try:
            names = [n for n in os.listdir(self.path) if n.startswith("job.")]
        except FileNotFoundError:
            return True
        except OSError:
            names = []
        # Jobs just killed (cgroup.kill) may take a moment to be gone.
        deadline = time.monotonic() + _CLOSE_WAIT
        for name in names:
            path = os.path.join(self.path, name)
            _wait_empty(path, deadline)
            _remove_tree(path)
        return _rmdir_quietly(self.path)


def _wait_empty(path: str, deadline: float) -> None:
    """Block until the cgroup at ``path`` holds no process, or ``deadline``.
    A change of ``cgroup.events`` wakes poll() with POLLPRI once the open
    file has read the previous state (selectors cannot ask for POLLPRI)."""
    try:
        fd = os.open(path + "/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # gone already
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        while b"populated 1" in os.pread(fd, 4096, 0):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            poller.poll(left * 1000)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_containment(contain: bool | str) -> Containment | None:
    """``Reactor(contain=...)``: a Containment, or None (False, or "auto"
    where it cannot be had); RuntimeError naming what is missing for True."""
    if contain is False:
        return None
    try:
        if not os.access(SHELL, os.X_OK):
            raise Unavailable(f"{SHELL} is needed to start a child inside its cgroup")
        parent = own_cgroup()
        remove_stale(parent)
        return Containment(parent)
    except Unavailable as exc:
        if contain == "auto":
            return None
        raise RuntimeError(f"contain=True, but containment is not available: {exc}") from None
