"""Starting children without Popen (``_spawn``): the same child, the same errors.

Each case runs one program through ``subprocess.run`` and through the
reactor, and compares what the child saw (or the exception raised), so
that the fast path cannot drift from Popen's behaviour unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipereactor as pr
from pipereactor import _spawn
from conftest import python

# What a child reports of its start: argv, cwd, one variable, umask, open fds,
# whether it leads its session and group.
REPORT = python(
    "import os, sys\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        return os.fstat(fd) is not None\n"
    "    except OSError:\n"
    "        return False\n"
    "fds = [fd for fd in range(3, 256) if is_open(fd)]\n"
    "mask = os.umask(0); os.umask(mask)\n"
    "print(sys.argv[1:], os.getcwd(), os.environ.get('PR_TEST'), oct(mask),\n"
    "      os.getsid(0) == os.getpid(),\n"
    "      os.getpgid(0) == os.getpid(), fds)\n"
)


def through_reactor(args: Any, **kwargs: Any) -> tuple[bytes, type[Any]]:
    with pr.Reactor() as reactor:
        job = reactor.spawn(args, stdout=pr.PIPE, stdin=pr.DEVNULL, **kwargs)
        started = type(job._popen)
        job.wait(timeout=30)
    assert job.returncode == 0, job
    return job.stdout.getvalue(), started


def through_popen(args: Any, **kwargs: Any) -> bytes:
    if "process_group" not in kwargs:
        kwargs.setdefault("start_new_session", True)  # spawn()'s default
    done = subprocess.run(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=30, check=True, **kwargs)
    out: bytes = done.stdout
    return out


@pytest.fixture
def inheritable_fd() -> Any:
    r, w = os.pipe()
    os.set_inheritable(w, True)
    yield w
    os.close(r)
    os.close(w)


FAST_CASES: list[tuple[str, Any, dict[str, Any]]] = [
    ("plain", [*REPORT, "a", "b c"], {}),
    ("env", REPORT, {"env": {**os.environ, "PR_TEST": "x=y"}}),
    ("cwd", REPORT, {"cwd": "/"}),
    ("cwd as a path", REPORT, {"cwd": Path("/tmp")}),
    ("umask", REPORT, {"umask": 0o027}),
    ("no new session", REPORT, {"start_new_session": False}),
    ("signals restored", ["sh", "-c", "grep SigIgn /proc/$$/status"], {}),
    ("signals kept", ["sh", "-c", "grep SigIgn /proc/$$/status"], {"restore_signals": False}),
    ("shell", "echo hi; pwd; umask", {"shell": True}),
    ("shell with a list", ["echo $0 $1; [ $(ps -o sid= -p $$) -eq $$ ] && echo leader", "a", "b"], {"shell": True}),
    ("shell with executable", "echo $0", {"shell": True, "executable": "/bin/bash"}),
    ("a bare name, PATH of env", ["env", "PR_TEST=1", *REPORT],
     {"env": {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}}),
    ("bytes args", [os.fsencode(a) for a in REPORT], {}),
]
if sys.version_info >= (3, 11):
    FAST_CASES.append(("process_group", REPORT, {"process_group": 0}))


@pytest.mark.parametrize("case, args, kwargs", FAST_CASES, ids=[c[0] for c in FAST_CASES])
def test_the_fast_path_starts_the_child_popen_would(case: str, args: Any, kwargs: dict[str, Any]) -> None:
    out, started = through_reactor(args, **kwargs)
    assert started is _spawn.Child
    assert out == through_popen(args, **kwargs)


def test_pass_fds_and_close_fds_false_as_popen(inheritable_fd: int) -> None:
    # pass_fds keeps the fd; close_fds=False keeps every inheritable fd.
    for kwargs in ({"pass_fds": [inheritable_fd]}, {"close_fds": False}, {}):
        out, started = through_reactor(REPORT, **kwargs)
        assert started is _spawn.Child
        assert out == through_popen(REPORT, **kwargs)
        assert (str(inheritable_fd) in out.decode().split("[")[-1]) == bool(kwargs), kwargs


@pytest.mark.parametrize(
    "kwargs",
    [{"preexec_fn": lambda: None}, {"user": os.getuid()}, {"stdin": "file"}],
    ids=["preexec_fn", "user", "a file object for stdin"],
)
def test_what_the_fast_path_does_not_take_goes_to_popen(kwargs: dict[str, Any]) -> None:
    with open(os.devnull, "rb") as devnull, pr.Reactor() as reactor:
        stdin = devnull if kwargs.pop("stdin", None) else pr.DEVNULL
        job = reactor.spawn(["true"], stdin=stdin, stdout=pr.PIPE, **kwargs)
        assert isinstance(job._popen, subprocess.Popen)
        job.wait(timeout=30)
    assert job.returncode == 0


def test_an_unknown_python_gets_popen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spawn, "_LAYOUT", None)
    out, started = through_reactor(REPORT)
    assert issubclass(started, subprocess.Popen)
    assert out == through_popen(REPORT)


def _error_of(start: Any) -> tuple[Any, ...]:
    with pytest.raises(Exception) as info:
        start()
    exc = info.value
    return type(exc), getattr(exc, "errno", None), getattr(exc, "filename", None), str(exc)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (["/nonexistent/program"], {}),
        (["no-such-program-pipereactor"], {}),
        ([os.devnull], {}),  # not executable
        (["/"], {}),  # a directory
        (["true"], {"cwd": "/nonexistent"}),
        (["true"], {"env": {"A=B": "1"}}),
        (["true\0"], {}),
        (["/bin/sh", "-c", "exit 3"], {"env": {"PATH": "x\0"}}),
        (Path("/bin/true"), {"shell": True}),
    ],
    ids=["missing path", "missing on PATH", "not executable", "a directory", "missing cwd",
         "bad env name", "NUL in args", "NUL in env", "path-like args with shell"],
)
def test_errors_are_popens_own(args: Any, kwargs: dict[str, Any]) -> None:
    def by_popen() -> None:
        with subprocess.Popen(args, stdout=subprocess.DEVNULL, **kwargs):
            pass

    def by_reactor() -> None:
        with pr.Reactor() as reactor:
            reactor.spawn(args, stdout=pr.DEVNULL, **kwargs)

    assert _error_of(by_reactor) == _error_of(by_popen)


def test_a_failed_exec_is_tried_once_more_by_popen(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child whose exec failed is reaped (no_zombies checks), and Popen's
    # retry raises; a program that appears in between would simply start.
    popens: list[Any] = []
    real = subprocess.Popen

    def counting(*args: Any, **kwargs: Any) -> Any:
        popens.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counting)
    with pr.Reactor() as reactor:
        with pytest.raises(FileNotFoundError):
            reactor.spawn(["/nonexistent/program"])
        job = reactor.spawn(["true"])
        job.wait(timeout=30)
    assert len(popens) == 1


def test_the_audit_event_is_raised_once_per_start() -> None:
    events: list[tuple[Any, ...]] = []
    marker = "pipereactor-audit-marker"

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "subprocess.Popen" and marker in map(str, args[1]):
            events.append(args)

    sys.addaudithook(hook)  # cannot be removed: it filters on the marker
    with pr.Reactor() as reactor:
        reactor.spawn(["true", marker], cwd="/").wait(timeout=30)
    assert events == [("true", ["true", marker], "/", None)]


def test_child_reaps_its_own_pid_and_reads_echild_as_zero() -> None:
    child = _spawn.start_child(["sh", "-c", "exit 7"], [None, None, None], {})
    assert isinstance(child, _spawn.Child)
    assert child.wait() == 7 and child.poll() == 7
    other = _spawn.start_child(["true"], [None, None, None], {})
    os.waitpid(other.pid, 0)  # reaped behind its back, as a waitpid(-1) elsewhere would
    assert other.poll() == 0 and other.wait() == 0
    assert repr(other) == f"<Child pid={other.pid} returncode=0>"


def test_an_interrupt_before_the_exec_is_known_kills_and_reaps_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Were the child left running, _reap's wait would outlast the test's deadline;
    # were it left unreaped, the zombie check would fail.
    def interrupted(fd: int, n: int) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _spawn.start_child(["sleep", "600"], [None, None, None], {})
