"""spawn()'s arguments, checked early and turned into what Popen and the reactor need.

Every check names the argument it rejects, so a mistake surfaces at the
spawn() call that made it, not later inside the loop.
"""

from __future__ import annotations

import errno
import inspect
import io
import math
import os
import selectors
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ._feeds import BytesFeed, Feed, IterFeed, ReaderFeed, StdinWriter
from ._job import Job, JobDriver
from ._sinks import BytesSink, Sink, as_sink

__all__ = ["check_args", "check_popen_kwargs", "check_seconds", "make_feed", "output_target"]

PIPE: Final = subprocess.PIPE
DEVNULL: Final = subprocess.DEVNULL
STDOUT: Final = subprocess.STDOUT

_POPEN_PARAMS: Final = frozenset(inspect.signature(subprocess.Popen).parameters)
# Sinks decide how bytes become text, and the reactor owns these.
_REJECTED_KWARGS: Final = {
    "text": "use a TextSink (or pass a text stream) to get text",
    "universal_newlines": "use a TextSink (or pass a text stream) to get text",
    "encoding": "pass the encoding to TextSink or LineSink",
    "errors": "pass errors= to TextSink or LineSink",
    "bufsize": "the reactor reads its pipes unbuffered",
}


def check_seconds(value: object, name: str, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        expected = "a number of seconds or None" if allow_none else "a number of seconds"
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return float(value)


def check_args(args: object) -> None:
    ok = (str, bytes, os.PathLike)
    if isinstance(args, ok):
        return
    if type(args) is list and args and all(type(a) is str for a in args):
        return  # the usual case, without the ABC check below
    if isinstance(args, Sequence) and all(isinstance(a, ok) for a in args):
        if not args:
            raise ValueError("args must not be empty")
        return
    raise TypeError(
        "args must be a str, bytes or path, or a sequence of them, "
        f"not {type(args).__name__}"
    )


def output_target(target: object, name: str, allow_stdout: bool) -> tuple[object, Sink | None, object]:
    """Map stdout=/stderr= to (what Popen gets, our sink or None, what job.<name> shows)."""
    if target is None or target == DEVNULL:
        return target, None, None
    if allow_stdout and target == STDOUT:
        return STDOUT, None, None
    if target == PIPE:
        sink = BytesSink()
        return PIPE, sink, sink
    if isinstance(target, bool):
        raise TypeError(f"{name} must not be a bool")
    if isinstance(target, int):
        if target < 0:
            consts = "PIPE, DEVNULL or STDOUT" if allow_stdout else "PIPE or DEVNULL"
            raise ValueError(f"{name} must be {consts} or a file descriptor >= 0, not {target}")
        return target, None, None
    return PIPE, as_sink(target, name), target


def check_popen_kwargs(popen_kwargs: dict[str, Any]) -> None:
    """Refuse what Popen would not take, and what the reactor owns."""
    for name in popen_kwargs:
        if name in _REJECTED_KWARGS:
            raise TypeError(f"spawn() does not take {name}=: {_REJECTED_KWARGS[name]}")
        if name not in _POPEN_PARAMS or name in ("args", "stdin", "stdout", "stderr"):
            raise TypeError(f"spawn() got an unexpected keyword argument {name!r}")


def make_feed(stdin: object) -> tuple[object, Feed | None]:
    """Map a ``spawn(stdin=...)`` argument to (what Popen gets, our Feed or None).

    A file with a real descriptor (or a descriptor itself) goes to the child
    directly, as subprocess does; everything else is fed through a pipe.

    Raises:
        TypeError: naming ``stdin``, for anything that is none of the above.
    """
    if stdin is None or stdin == DEVNULL:
        return stdin, None
    if stdin == PIPE:
        return PIPE, StdinWriter()
    if isinstance(stdin, bool):
        raise TypeError("stdin must not be a bool")
    if isinstance(stdin, int):
        if stdin < 0:
            raise ValueError(f"stdin must be PIPE, DEVNULL or a file descriptor >= 0, not {stdin}")
        return stdin, None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return PIPE, BytesFeed(bytes(stdin))
    if isinstance(stdin, str):
        return PIPE, BytesFeed(stdin.encode("utf-8"))
    fileno = getattr(stdin, "fileno", None)
    if callable(fileno):
        try:
            fileno()
        except (OSError, ValueError):
            pass  # BytesIO and friends: no descriptor, read them below
        else:
            return stdin, None
    if callable(getattr(stdin, "read", None)):
        return PIPE, ReaderFeed(stdin)  # type: ignore[arg-type]
    if isinstance(stdin, Iterable) and not isinstance(stdin, io.TextIOBase):
        return PIPE, IterFeed(stdin)
    raise TypeError(
        "stdin must be None, PIPE, DEVNULL, a file descriptor, bytes, str, a binary file "
        f"or an iterable of bytes, not {type(stdin).__name__}"
    )


def check_reactor_args(
    max_parallel: object,
    watcher: object,
    selector: object,
    raise_fd_limit: object,
    jobserver: object,
    contain: object = False,
) -> type[selectors.BaseSelector]:
    """Refuse bad ``Reactor(...)`` arguments early, naming them; return the
    selector class to use."""
    if sys.platform == "win32":
        raise NotImplementedError(
            "pipereactor needs a POSIX system: on Windows, selectors cannot poll pipes"
        )
    if max_parallel is not None:
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int):
            raise TypeError(
                f"max_parallel must be an int or None, not {type(max_parallel).__name__}"
            )
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, not {max_parallel}")
    if selector is None:
        selector = selectors.DefaultSelector
    if not (isinstance(selector, type) and issubclass(selector, selectors.BaseSelector)):
        raise TypeError(f"selector must be a selectors.BaseSelector subclass, not {selector!r}")
    if issubclass(selector, selectors.SelectSelector):
        raise ValueError("selector=SelectSelector cannot watch fds >= 1024; use the default")
    if not isinstance(watcher, str):
        raise TypeError(f"watcher must be a str, not {type(watcher).__name__}")
    if not isinstance(raise_fd_limit, bool):
        raise TypeError(f"raise_fd_limit must be a bool, not {type(raise_fd_limit).__name__}")
    if not isinstance(jobserver, bool):
        raise TypeError(f"jobserver must be a bool, not {type(jobserver).__name__}")
    if not (isinstance(contain, bool) or contain == "auto"):
        raise ValueError(f"contain must be True, False or 'auto', not {contain!r}")
    return selector


def resolved_argv(args: Any, popen_kwargs: dict[str, Any]) -> list[Any]:
    """The argv Popen would execute for ``args`` (``shell`` and ``executable``
    applied), once the program is known to be there as Popen's exec would
    find it (``PATH`` of ``env``, relative to ``cwd``).

    For starting a child through a trampoline (see ``_cgroup``), whose exec
    searches the same path and keeps argv[0] as given.  Raises what Popen
    raises for a missing or non-executable program (FileNotFoundError,
    PermissionError), and ValueError for an ``executable`` other than the
    program (no portable shell can set argv[0]) and for a ``user`` other
    than ours (the child could not join its cgroup).
    """
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    executable = popen_kwargs.get("executable")
    if popen_kwargs.get("shell"):
        argv = [executable or "/bin/sh", "-c", *argv]
    elif executable is not None and os.fsencode(executable) != os.fsencode(argv[0]):
        raise ValueError("executable= other than args[0] cannot be used with containment")
    user = popen_kwargs.get("user")
    if user is not None:
        import pwd  # as Popen does; imported only here, where it is needed

        uid = pwd.getpwnam(user).pw_uid if isinstance(user, str) else user
        if isinstance(uid, int) and uid != os.geteuid():  # else Popen says what is wrong
            # The child becomes that user before the trampoline runs, and
            # then has no right to write its cgroup's cgroup.procs.
            raise ValueError("user= other than our own cannot be used with containment: "
                             "the child could not join its cgroup")
    program = os.fsdecode(argv[0])
    cwd = popen_kwargs.get("cwd")
    base = os.fsdecode(cwd) if cwd is not None else ""
    if os.path.dirname(program):
        candidates = [program]
    else:
        env = popen_kwargs.get("env")
        candidates = [os.path.join(os.fsdecode(d), program) for d in os.get_exec_path(env)]
    denied = None
    for candidate in candidates:
        full = os.path.join(base, candidate)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return argv
        if os.path.exists(full):
            denied = candidate
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def make_job(
    driver: JobDriver,
    args: Any,
    popen_kwargs: dict[str, Any],
    stdin: object,
    stdout: object,
    stderr: object,
    timeout: object,
    kill_grace: object,
    eof_grace: object,
    on_exit: object,
) -> Job:
    """``spawn()``'s arguments checked (each error names its argument) and
    made into a PENDING Job.  The child leads a new session unless the
    caller chose its group (``start_new_session`` or ``process_group``)."""
    check_args(args)
    check_popen_kwargs(popen_kwargs)
    if "process_group" not in popen_kwargs:
        popen_kwargs.setdefault("start_new_session", True)
    if on_exit is not None and not callable(on_exit):
        raise TypeError(f"on_exit must be callable or None, not {type(on_exit).__name__}")
    return Job(
        driver,
        args,
        popen_kwargs,
        make_feed(stdin),
        output_target(stdout, "stdout", allow_stdout=False),
        output_target(stderr, "stderr", allow_stdout=True),
        check_seconds(timeout, "timeout", allow_none=True),
        check_seconds(kill_grace, "kill_grace", allow_none=False) or 0.0,
        check_seconds(eof_grace, "eof_grace", allow_none=True),
        on_exit,
    )
