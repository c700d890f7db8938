"""The trampoline: how a contained child joins its cgroup before its program
runs a single instruction.

Popen starts ``/bin/sh`` in place of the program, with a short script that
writes the shell's own pid into the job's ``cgroup.procs`` and only then
``exec``\\ s the program (same pid, same fds, environment, directory and
signal state).  The program's first instruction, and hence any fork of its,
runs inside the cgroup; if the write fails the program is never run (exit
status 125, the shell's message on the job's stderr).
Why not the alternatives: a ``preexec_fn`` makes subprocess fork instead of
vfork (3-4x the cost per spawn here) and is unsafe with other threads;
moving this process into the job's cgroup around the spawn moves all its
threads for that window (a fork by another thread would land in the job,
and be killed with it), and a reactor that ever sat in a cgroup it may
``cgroup.kill`` could kill itself.  The shell costs one more exec in the
child, none in the parent: the parent waits (vfork) only for the shell's exec.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["SHELL", "trampoline"]

# $1: the job's cgroup.procs; $2: the caller's PWD ("=value"), or "-" when it
# had none (dash sets PWD when it starts); $3: "-", or ("=value") the search
# path Popen would use where the environment has no PATH (os.defpath; the
# shell's own default differs), set unexported; then the program and its
# arguments, argv[0] as given: exec searches PATH as Popen does.
_SCRIPT: Final = (
    'echo 0 >"$1" || exit 125\n'
    'case $2 in -) unset PWD ;; *) PWD=${2#=}; export PWD ;; esac\n'
    'case $3 in -) ;; *) PATH=${3#=} ;; esac\n'
    'shift 3; exec "$@"'
)
SHELL: Final = "/bin/sh"
# The names dash passes on to what it execs unchanged, joined by NUL (which
# no name holds): shell names, but for IFS, OPTIND and PPID, which it sets.
_SHELL_NAMES: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\0[A-Za-z_][A-Za-z0-9_]*)*")
_SHELL_SETS: Final = (b"\0IFS\0", b"\0OPTIND\0", b"\0PPID\0")
_ENV: Final = "/usr/bin/env"


def _names(environ: Mapping[Any, Any]) -> bytes:
    """An environment's names, as bytes, joined by NUL.  For os.environ its
    own bytes-keyed dict is joined as it is: decoding every name at every
    spawn cost more than the rest of the check."""
    data = getattr(environ, "_data", None) if environ is os.environ else None
    if isinstance(data, dict):
        return b"\0".join(data)
    return b"\0".join(os.fsencode(name) for name in environ)


def _shell_keeps(names: bytes) -> bool:
    """Whether dash passes on every one of these NUL-joined names unchanged."""
    if _SHELL_NAMES.fullmatch(names) is None:
        return False
    framed = b"\0" + names + b"\0"
    return not any(name in framed for name in _SHELL_SETS)


def trampoline(
    procs: str, argv: list[Any], env: Mapping[Any, Any] | None
) -> tuple[list[Any], Mapping[Any, Any] | None]:
    """The argv, and the environment, for Popen that run ``argv`` with
    ``env`` in the cgroup whose ``cgroup.procs`` is ``procs``.

    ``argv[0]`` must be a program Popen would find (``resolved_argv``):
    the shell's exec searches the same PATH, and keeps argv[0] as given.
    An environment the shell would not pass on as it is (a name that is
    not a shell name, or one it sets itself) is given to ``env -i``
    instead, which the shell execs: one more exec, for such jobs only.
    """
    environ: Mapping[Any, Any] = os.environ if env is None else env
    if environ and not _shell_keeps(_names(environ)):
        # Inherited: os.environ's view (a setenv() by C code behind its
        # back is not seen here, as it is by a plain Popen).
        entries = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in environ.items()]
        if b"=" in os.fsencode(argv[0]) or not os.access(_ENV, os.X_OK):
            raise ValueError(f"containment cannot pass on this environment: it needs "
                             f"{_ENV}, and a program whose name has no '='")
        # env(1) searches PATH as Popen does (os.defpath without one).
        return [SHELL, "-c", _SCRIPT, "pipereactor", procs, "-", "-",
                _ENV, "-i", "--", *entries, *argv], {}
    pwd, path = environ.get("PWD"), environ.get("PATH")
    if environ is not os.environ:  # Popen takes bytes keys too
        pwd = environ.get(b"PWD") if pwd is None else pwd
        path = environ.get(b"PATH") if path is None else path
    mark = "-" if pwd is None else "=" + os.fsdecode(pwd)
    search = "-" if path is not None else "=" + os.defpath
    return [SHELL, "-c", _SCRIPT, "pipereactor", procs, mark, search, *argv], env

