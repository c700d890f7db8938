"""Guards applied to every test: a deadline, no leaked fd, no unreaped child.

- ``deadline``: SIGALRM raises in the test after ``DEADLINE`` seconds (or the
  ``deadline(n)`` marker's n), so a deadlock fails instead of hanging; the
  reactor's own cleanup then runs.  faulthandler is the backstop if even
  that hangs.
- ``no_fd_leak``: /proc/self/fd before and after, after a gc.
- ``no_zombies``: any child a test left unreaped is reaped here and fails it.
"""

from __future__ import annotations

import contextlib
import fcntl
import faulthandler
import gc
import os
import select
import selectors
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pipereactor as pr
from pipereactor import _childwatch

# A shell that starts a command in the background without job control
# (`cmd &` in a script, nohup) gives it SIGINT and SIGQUIT ignored, nohup
# SIGHUP too, and an ignored signal stays ignored across exec: every child
# the tests start would inherit it, and the tests that interrupt a child
# (Ctrl-C, SIGHUP) would wait for an exit that never comes.  Handlers are
# reset at exec, so restoring the defaults here gives children the defaults.
for _sig, _default in ((signal.SIGINT, signal.default_int_handler),
                       (signal.SIGQUIT, signal.SIG_DFL), (signal.SIGHUP, signal.SIG_DFL)):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, _default)

DEADLINE = 30


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): per-test time limit")


#: Filled by test_stdlib_subprocess.py: how CPython's own tests fared.
STDLIB_TALLY: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STDLIB_TALLY:
        t = STDLIB_TALLY
        version = ".".join(map(str, sys.version_info[:3]))
        terminalreporter.write_line(
            f"CPython {version} test.test_subprocess routed through pipereactor: "
            f"{t['ran']} selected, {t['passed']} passed, {t['failed']} failed, "
            f"{t['skipped']} skipped by the stdlib, {t['excluded']} excluded"
        )


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else DEADLINE

    def on_alarm(signum: int, frame: Any) -> None:
        raise DeadlineExceeded(f"test ran past its {seconds} s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds + 15, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


def _open_fds() -> set[int]:
    return set(map(int, os.listdir("/proc/self/fd")))


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    gc.collect()
    before = _open_fds()
    yield
    gc.collect()
    # listdir's own fd is in both snapshots or in neither.
    leaked = _open_fds() - before
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    if leaked:
        targets = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}
        pytest.fail(f"leaked fds: {targets}")


def _children() -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(map(int, f.read().split()))
        except FileNotFoundError:
            pass
    return pids


@pytest.fixture(autouse=True)
def no_zombies() -> Iterator[None]:
    """Every child a test started must be reaped by the end of the test."""
    yield
    left = _children()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    if left:
        pytest.fail(f"children left running or unreaped by the test: {sorted(left)}")


class EdgeOnlyWatcher(_childwatch.ChildWatcher):
    """kqueue's contract, simulated on Linux with pidfds in a private epoll.

    Like EVFILT_PROC/NOTE_EXIT it shares one fd among all children, reports
    each exit once, and never reports an exit that happened before the child
    was registered: the races the reactor must survive on macOS and the BSDs.
    """

    name = "kqueue-sim"

    def __init__(self, exit_before_watch: bool = False) -> None:
        self._ep = select.epoll()
        self._pids: dict[int, int] = {}
        self.exit_before_watch = exit_before_watch

    def fileno(self) -> int | None:
        return self._ep.fileno()

    def watch(self, pid: int) -> int | None:
        if self.exit_before_watch:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # block until it exits
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return _childwatch.SHARED  # attached, but the edge is already past
        fd = os.pidfd_open(pid)
        self._ep.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        self._pids[fd] = pid
        return _childwatch.SHARED

    def collect(self) -> list[int]:
        pids = []
        for fd, _ in self._ep.poll(0):
            pids.append(self._pids.pop(fd))
            os.close(fd)
        return pids

    def close(self) -> None:
        for fd in self._pids:
            os.close(fd)
        self._pids.clear()
        self._ep.close()


WATCHERS = [
    pytest.param(("pidfd", selectors.EpollSelector), id="pidfd-epoll"),
    pytest.param(("poll", selectors.PollSelector), id="poll-poll"),
    pytest.param(("kqueue-sim", selectors.EpollSelector), id="kqueue-sim"),
    pytest.param(
        ("kqueue", None),
        id="kqueue",
        marks=pytest.mark.skipif(not hasattr(select, "kqueue"), reason="no kqueue on this OS"),
    ),
]


@pytest.fixture(params=WATCHERS)
def make_reactor(request: pytest.FixtureRequest) -> Callable[..., pr.Reactor]:
    """A Reactor factory, run once per exit detector (and selector)."""
    watcher, selector = request.param
    if watcher == "kqueue-sim":
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(_childwatch, "make_watcher", lambda kind: EdgeOnlyWatcher())
        watcher = "auto"

    def make(max_parallel: int | None = None) -> pr.Reactor:
        return pr.Reactor(max_parallel, watcher=watcher, selector=selector)

    return make


@contextlib.contextmanager
def sigterm_held() -> Iterator[None]:
    """Children started inside start with SIGTERM blocked (the signal mask
    is inherited across fork and exec), and unblock it once ready (the
    children of tests/children/ do).  A SIGTERM sent sooner, by a short
    ``timeout`` racing interpreter start-up on a loaded machine, waits
    instead of killing a child that has not yet done what the test needs."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def python(code: str) -> list[str]:
    """argv for a Python child running ``code``, unbuffered."""
    return [sys.executable, "-u", "-c", code]


CHILDREN = os.path.join(os.path.dirname(__file__), "children")


def child(name: str, *args: str) -> list[str]:
    """argv for a child program from tests/children/."""
    return [sys.executable, "-u", os.path.join(CHILDREN, name), *args]


class CountingSink(pr.BytesSink):
    """A BytesSink that counts its close() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Block until process ``pid`` (not our child) has exited, via its pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} still alive after {timeout} s"
    finally:
        os.close(fd)


def read_pty(primary: int, quiet: float, *, quiet_is_end: bool = False) -> bytes:
    """What the other side of a pty writes until every writer has gone (EIO or
    EOF).  ``quiet`` seconds without output end the read if ``quiet_is_end``,
    else fail the test with what was seen."""
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], quiet)
        if not ready:
            assert quiet_is_end, seen
            return seen
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the writers have gone
            return seen
        if not chunk:
            return seen
        seen += chunk


def run_on_pty(argv: list[str], stdin: bytes, env: dict[str, str], *,
               stderr_too: bool = False, winsize: tuple[int, int] | None = None) -> tuple[int, bytes]:
    """Run ``argv`` with stdout (and, with ``stderr_too``, stderr) on a new
    pty of ``winsize`` (rows, columns) and ``stdin`` piped in; return its exit
    status and all it wrote to the pty."""
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    try:
        if winsize is not None:
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", *winsize, 0, 0))
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=secondary,
                                stderr=secondary if stderr_too else subprocess.DEVNULL, env=env)
        os.close(secondary)
        secondary = -1
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        proc.stdin = None
        seen = read_pty(primary, 20)
        proc.wait(timeout=10)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    return proc.returncode, seen


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
