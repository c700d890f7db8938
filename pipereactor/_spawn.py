"""Starting a child: ``fork_exec`` without Popen's Python around it, where that is safe.

Why
---
``subprocess.Popen`` costs its parent about 70 us of CPU per child (Python
3.11, 2 cores); calling ``_posixsubprocess.fork_exec``, the C function that
forks and execs, with the same error pipe costs about 50 us.  The 20 us
between them is Popen's Python (argument checks, handle mapping, the object
itself).  A reactor that starts thousands of short jobs pays it per job,
and it was most of what separated it from a hand-written loop (which pays
it too, but has less else to do).  So for the common case the reactor calls
``fork_exec`` itself and keeps a :class:`Child` (pid and returncode)
instead of a Popen.

What stays Popen's
------------------
- *Anything unusual.*  The fast path takes the ``spawn()`` keywords listed in
  ``_FAST_KWARGS`` with plain descriptors for the three streams; ``user=``,
  ``group=``, ``preexec_fn=``, a file object for stdin and the like go to
  Popen, unchanged.  So does every Python whose ``fork_exec`` signature we
  have not read (3.10 and 3.11-3.13 are known): the fast path is off there.
- *Every error.*  When the fast path cannot build its arguments (a bad
  ``env``, say) or the child reports that its exec failed, the same start is
  done again by Popen, which raises exactly what Popen raises.  A child
  whose exec failed never ran user code, so doing it again is harmless.
- *Exit codes and ECHILD.*  :class:`Child` reaps with ``waitpid`` for its
  own pid only, and reads ECHILD (reaped elsewhere, or SIGCHLD ignored) as
  exit status 0, as Popen does.
"""

from __future__ import annotations

import _posixsubprocess
import os
import signal
import subprocess
import sys
from typing import Any, Final, Protocol

__all__ = ["Child", "ChildProcess", "start_child"]


class ChildProcess(Protocol):
    """What the reactor uses of a started child: a Popen, or a :class:`Child`."""

    pid: int
    returncode: Any  # int | None; Any so that Popen's own annotation fits

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class Child:
    """A child started by :func:`start_child` without a Popen.

    ``poll()`` and ``wait()`` reap this pid only, never ``-1``; ECHILD (the
    child was reaped elsewhere) settles ``returncode`` as 0, as Popen does.
    """

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._waitpid(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._waitpid(0)
        return self.returncode

    def _waitpid(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = 0  # reaped elsewhere, or SIGCHLD ignored
        else:
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"


# fork_exec's parameters changed in 3.11 (process_group, allow_vfork); its
# callers are Popen alone, so a version we have not read gets Popen.
_LAYOUT: Final = {(3, 10): 310, (3, 11): 311, (3, 12): 311, (3, 13): 311}.get(sys.version_info[:2])
_FAST_KWARGS: Final = frozenset({
    "executable", "shell", "cwd", "env", "close_fds", "pass_fds", "restore_signals",
    "start_new_session", "umask", "pipesize",  # pipesize: we made the pipes already
} | ({"process_group"} if _LAYOUT == 311 else set()))
_DEVNULL: Final = subprocess.DEVNULL
_STDOUT: Final = subprocess.STDOUT


def start_child(args: Any, stdio: list[Any], kwargs: dict[str, Any]) -> ChildProcess:
    """Start ``args`` with ``stdio`` (stdin, stdout, stderr: a descriptor,
    None to inherit, DEVNULL, or STDOUT for stderr) and the Popen keywords
    ``kwargs``; return the running child.

    Raises what ``subprocess.Popen(args, stdin=..., stdout=..., stderr=...,
    bufsize=0, **kwargs)`` raises, and then no child exists.  The caller
    closes its copies of the child's descriptors afterwards, either way.
    """
    plan = _fast_plan(args, stdio, kwargs)
    if plan is not None:
        child = _fork_exec(plan)
        if child is not None:
            return child
    return subprocess.Popen(
        args, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], bufsize=0, **kwargs
    )


def _fast_plan(args: Any, stdio: list[Any], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """fork_exec's arguments, less the error pipe, or None: Popen starts it."""
    if _LAYOUT is None or not _FAST_KWARGS.issuperset(kwargs):
        return None
    try:
        return _plan(args, stdio, kwargs)
    except Exception:
        return None  # Popen raises what is wrong, as it always has


def _plan(args: Any, stdio: list[Any], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    get = kwargs.get
    executable = get("executable")
    if get("shell"):
        if isinstance(args, os.PathLike):
            return None
        argv = ["/bin/sh", "-c", *([args] if isinstance(args, (str, bytes)) else args)]
        if executable is not None:
            argv[0] = executable
    elif type(args) is list:
        argv = args  # fork_exec only reads it
    elif isinstance(args, (str, bytes, os.PathLike)):
        argv = [args]
    else:
        argv = list(args)
    if executable is None:
        executable = argv[0]
    stdin, stdout, stderr = stdio
    for fd in stdio:  # a descriptor, None (inherit), DEVNULL, or STDOUT for stderr
        if fd is not None and type(fd) is not int:
            return None
    if stderr == _STDOUT and stdout is None:
        return None  # Popen finds sys.__stdout__
    env = get("env")
    env_list = None  # None: exec with our own environment, as Popen does
    if env is not None:
        env_list = []
        for key, value in env.items():
            key = os.fsencode(key)
            if b"=" in key:
                return None
            env_list.append(key + b"=" + os.fsencode(value))
    program = os.fsencode(executable)
    if b"/" in program:
        exe_list: tuple[bytes, ...] = (program,)
    else:  # the PATH search of os.execvpe, over the child's PATH
        exe_list = tuple(os.path.join(os.fsencode(d), program) for d in os.get_exec_path(env))
    close_fds = get("close_fds", True)
    pass_fds = get("pass_fds", ())
    if pass_fds and not close_fds:
        return None  # Popen warns, then closes them anyway
    cwd = get("cwd")
    umask = get("umask", -1)
    group = get("process_group")
    sys.audit("subprocess.Popen", executable, argv, cwd, env)  # as Popen does
    return (
        argv, exe_list, bool(close_fds), [int(fd) for fd in pass_fds], cwd, env_list,
        stdin, stdout, stderr, bool(get("restore_signals", True)),
        bool(get("start_new_session", False)), -1 if group is None else group,
        -1 if umask is None else umask,
    )


def _fork_exec(plan: tuple[Any, ...]) -> Child | None:
    """Start the child ``plan`` describes: a :class:`Child`, or None if its
    exec failed (it is reaped) or fork_exec refused the arguments."""
    (argv, exe_list, close_fds, pass_fds, cwd, env_list, stdin, stdout, stderr,
     restore_signals, new_session, group, umask) = plan
    null = -1
    if _DEVNULL in (stdin, stdout, stderr):
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        p2cread = -1 if stdin is None else null if stdin == _DEVNULL else stdin
        c2pwrite = -1 if stdout is None else null if stdout == _DEVNULL else stdout
        if stderr == _STDOUT:
            errwrite = c2pwrite
        else:
            errwrite = -1 if stderr is None else null if stderr == _DEVNULL else stderr
        # The child writes its exec error here; close-on-exec makes success EOF.
        err_read, err_write = os.pipe()
        try:
            if err_write < 3:
                return None  # our std fds are closed: Popen's dance moves the pipe up
            keep = (err_write,) if not pass_fds else tuple(sorted({*pass_fds, err_write}))
            # Looked up per call, as Popen does: a test may have replaced it.
            fork_exec: Any = getattr(subprocess, "_fork_exec", None)  # 3.11+
            if fork_exec is None:
                fork_exec = _posixsubprocess.fork_exec
            common = (
                argv, exe_list, close_fds, keep, cwd, env_list,
                p2cread, -1, -1, c2pwrite, -1, errwrite, err_read, err_write,
                restore_signals, new_session,
            )
            try:
                if _LAYOUT == 310:
                    pid = fork_exec(*common, None, None, None, umask, None)
                else:
                    vfork = getattr(subprocess, "_USE_VFORK", True)
                    pid = fork_exec(*common, group, None, None, None, umask, None, vfork)
            except (TypeError, ValueError):
                return None  # arguments fork_exec refused: Popen says which
            # The child exists: if anything interrupts us before we know that
            # its exec worked, it is killed and reaped, never left behind.
            failed = True
            try:
                os.close(err_write)
                err_write = -1
                # EOF: the exec closed the child's end (close-on-exec).
                failed = bool(os.read(err_read, 50000))
            finally:
                if failed:
                    _reap(pid)
            return None if failed else Child(pid)
        finally:
            os.close(err_read)
            if err_write >= 0:
                os.close(err_write)
    finally:
        if null >= 0:
            os.close(null)


def _reap(pid: int) -> None:
    """Reap a child whose exec failed (or that we are abandoning): it is
    killed first in case it is still running (an interrupted read)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except InterruptedError:
            continue
