"""One test per defect of issue 12 (the review of the reactor), named after it.

Each failed on d0fb544, the code before the reactor was split into rooms
(issue 12), for the reason its name gives.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import io
import os
import resource
import signal
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pipereactor as pr
from pipereactor import _jobserver
from conftest import python, wait_gone

MiB = 1 << 20

#: A child that ignores SIGTERM from its first instruction (SIG_IGN survives
#: exec), says so, and sleeps: only SIGKILL ends it.
IGNORE_SIGTERM = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]


def _open_fds() -> set[int]:
    return set(map(int, os.listdir("/proc/self/fd")))


def _step_until(reactor: pr.Reactor, done: Callable[[], bool]) -> None:
    """Turn the loop until ``done()`` (the conftest deadline bounds it)."""
    while not done():
        reactor.step(1.0)


def _ready(job: pr.Job) -> Callable[[], bool]:
    return lambda: b"ready" in job.stdout.getvalue()


def test_fd_leak_spawn_that_cannot_open_dev_null_leaves_no_pipe_end_open() -> None:
    """Only two fds free: the stdout pipe is made, then opening /dev/null for
    the NullSink's splice fails (EMFILE).  spawn must raise that, and leave no
    fd of the pipe behind (checked once the reactor, and what it may hold for
    good such as /dev/null, is closed)."""
    reactor = pr.Reactor()  # fresh: it has not opened /dev/null yet
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    leaked: dict[int, str] = {}
    error: OSError | None = None
    try:
        gc.collect()
        before = _open_fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(before) + 64, old[1]))
        while True:
            try:
                fillers.append(os.dup(0))
            except OSError:
                break
        for fd in fillers[-2:]:  # room for the pipe, none for /dev/null
            os.close(fd)
        del fillers[-2:]
        try:
            reactor.spawn(["true"], stdout=pr.NullSink())
        except OSError as exc:
            error = exc
        for fd in fillers:
            os.close(fd)
        fillers.clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
        reactor.run(timeout=10)  # nothing, unless a fix started the job after all
        reactor.close()
        leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in _open_fds() - before}
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
        for fd in leaked:  # keep the conftest guard out of it: asserted below
            os.close(fd)
        reactor.close()
    assert not leaked, f"spawn left fds open: {leaked}"
    assert error is not None and error.errno == errno.EMFILE, error


def test_cancelled_job_whose_timeout_falls_in_the_grace_is_not_timed_out() -> None:
    """cancel() well before the timeout; the child ignores SIGTERM, so it
    runs on through the kill_grace, past the timeout: it was cancelled, and
    did not time out."""
    with pr.Reactor() as reactor:
        job = reactor.spawn(IGNORE_SIGTERM, stdout=pr.PIPE, timeout=1.0, kill_grace=3.0)
        _step_until(reactor, _ready(job))
        if job.timed_out:
            pytest.skip("the child took longer than its timeout to start: machine too busy")
        job.cancel()
        reactor.run(timeout=20)
    assert job.cancelled
    assert job.returncode == -signal.SIGKILL
    assert not job.timed_out, "a job cancelled before its timeout reports timed_out=True"


# -- done jobs keep what they no longer need ---------------------------------------


class _Collect:
    """A callable output target (made into a CallbackSink by the reactor)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.chunks.append(data)


class _Env(dict[str, str]):
    """An env= mapping that can be weakly referenced."""


class _Dir:
    """A cwd= os.PathLike that can be weakly referenced."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def _endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 65536


def _case(name: str, tmp: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """(the object to watch, spawn()'s keyword arguments with it, argv)."""
    exits_at_once = python("pass")  # reads nothing of its stdin
    if name == "stdout sink":
        sink = pr.BytesSink()
        return sink, {"stdout": sink}, python("print('x' * 1000)")
    if name == "stdout callable":
        fn = _Collect()
        return fn, {"stdout": fn}, python("print('x' * 1000)")
    if name == "stdin iterable":
        gen = _endless()
        return gen, {"stdin": gen}, exits_at_once
    if name == "stdin file":
        file = io.BytesIO(b"y" * (4 * MiB))
        return file, {"stdin": file}, exits_at_once
    if name == "env":
        env = _Env(os.environ)
        return env, {"env": env}, exits_at_once
    assert name == "cwd"
    cwd = _Dir(str(tmp))
    return cwd, {"cwd": cwd}, exits_at_once


@pytest.mark.parametrize(
    "what", ["stdout sink", "stdout callable", "stdin iterable", "stdin file", "env", "cwd"]
)
def test_done_jobs_keep_what_they_no_longer_need(what: str, tmp_path: Path) -> None:
    """The caller holds the done job (as the CLI does for its summary) but
    nothing else: the sink (once the caller dropped ``job.stdout``, as the
    CLI does after printing it), the stdin source the child did not read to
    the end, the Popen arguments must all be freed."""
    obj, kwargs, argv = _case(what, tmp_path)
    ref = weakref.ref(obj)
    with pr.Reactor() as reactor:
        job = reactor.spawn(argv, **kwargs)
    assert job.done and job.returncode == 0, job
    job.stdout = None  # what the caller may drop of its own: the target it passed
    del obj, kwargs
    gc.collect()
    assert ref() is None, f"the done job still holds the {what} ({type(ref()).__name__})"


def test_blocking_in_the_garbage_collector_an_unclosed_reactor_does_not_wait_for_kill_grace() -> None:
    """An unclosed reactor collected with a child that ignores SIGTERM: the
    collector must not wait out the 5 s kill_grace.  __del__ SIGKILLs at once
    and reaps (a SIGKILLed child dies promptly), then warns."""
    reactor = pr.Reactor()
    job = reactor.spawn(IGNORE_SIGTERM, stdout=pr.PIPE, kill_grace=5.0)
    _step_until(reactor, _ready(job))
    pid = job.pid
    assert pid is not None
    del job  # it refers to the reactor too
    with pytest.warns(ResourceWarning):
        t0 = time.monotonic()
        del reactor
        gc.collect()
        elapsed = time.monotonic() - t0
    # An upper bound on a hang, not a speed target: the grace is 5 s.
    assert elapsed < 2.0, f"collecting the reactor took {elapsed:.1f} s (kill_grace is 5 s)"
    wait_gone(pid)  # killed (the pidfd is readable once it has exited)
    try:
        reaped = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # reaped by __del__, as it must
    else:
        pytest.fail(f"__del__ left the child unreaped: waitpid gave {reaped}")


def test_reads_sized_to_the_pipe_small_chunks_from_a_1mib_pipe_do_not_allocate_1mib() -> None:
    """A child trickles 100-byte chunks into a 1 MiB pipe: a read of 100
    bytes must not allocate the pipe's size.  Measured with tracemalloc as the
    peak above what was allocated once the first chunk was in (a reused read
    buffer, made by then, is not counted)."""
    code = (
        "import os, sys, time\n"
        "os.write(1, b'first\\n')\n"
        "sys.stdin.buffer.read(2)\n"  # go
        "for _ in range(50):\n"
        "    os.write(1, b'x' * 100)\n"
        "    time.sleep(0.002)\n"
    )
    tracemalloc.start()
    try:
        with pr.Reactor() as reactor:
            job = reactor.spawn(python(code), stdin=pr.PIPE, stdout=pr.PIPE, pipesize=MiB)
            _step_until(reactor, lambda: b"first" in job.stdout.getvalue())
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert job.stdin is not None
            job.stdin.write(b"go")
            job.stdin.close()
            reactor.run(timeout=20)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert job.returncode == 0
    assert job.stdout.getvalue() == b"first\n" + b"x" * 5000
    assert peak - base < 256 * 1024, f"peak allocation {peak - base} bytes for 100-byte reads"


def test_stdin_pending_counts_the_bytes_not_yet_written_into_the_pipe() -> None:
    """A child that does not read its stdin yet: of 4 MiB written to
    job.stdin, at most a pipe's worth (1 MiB) can be in the pipe, so pending
    (the back-pressure signal) stays >= 3 MiB; once the child reads it all,
    0, and the child got every byte."""
    data = os.urandom(4 * MiB)
    go_r, go_w = os.pipe()
    code = (
        "import hashlib, os, sys\n"
        f"os.read({go_r}, 1)\n"
        "data = sys.stdin.buffer.read()\n"
        "print(len(data), hashlib.sha256(data).hexdigest())\n"
    )
    try:
        with pr.Reactor() as reactor:
            job = reactor.spawn(python(code), stdin=pr.PIPE, stdout=pr.PIPE, pass_fds=(go_r,))
            os.close(go_r)
            go_r = -1
            assert job.stdin is not None
            job.stdin.write(data)
            for _ in range(5):  # the reactor writes what the pipe takes
                reactor.step(0.05)
            pending = job.stdin.pending
            assert 3 * MiB <= pending <= 4 * MiB, f"pending={pending} with the child not reading"
            os.write(go_w, b"g")
            job.stdin.close()
            reactor.run(timeout=20)
    finally:
        for fd in (go_r, go_w):
            if fd >= 0:
                os.close(fd)
    assert job.stdin.pending == 0
    assert job.returncode == 0
    assert job.stdout.getvalue() == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode()


def _fill(fd: int, byte: bytes) -> int:
    """Write ``byte``s to the non-blocking ``fd`` until the pipe takes no more."""
    n = 0
    for size in (65536, 1):
        while True:
            try:
                n += os.write(fd, byte * size)
            except BlockingIOError:
                break
    return n


def _blocked_in_kernel(tid: int) -> bool:
    """Whether thread ``tid`` sleeps in a system call (write, poll), not
    waiting for the GIL (a futex)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(") ", 1)[1][0]
        with open(f"/proc/self/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return False
    return state == "S" and wchan not in ("", "0") and "futex" not in wchan


def test_makes_file_description_unchanged_by_a_token_given_back_to_a_full_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """make's write end is non-blocking and the pipe full: giving a token
    back waits for room (a reader drains the pipe once give_back is stuck),
    and make's write end is still non-blocking afterwards."""
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        os.write(w, b"A")  # the token
        filled = _fill(w, b"f")
        monkeypatch.setenv("MAKEFLAGS", f" -j2 --jobserver-auth={r},{w}")
        js = _jobserver.from_makeflags()
        assert js is not None and not js.broken
        try:
            assert js.try_take() == b"A"
            filled += _fill(w, b"f")  # full again, whatever one byte freed
            main = threading.get_native_id()
            giving = threading.Event()
            drained: list[bytes] = []

            def drain() -> None:
                giving.wait()
                deadline = time.monotonic() + 10
                while not _blocked_in_kernel(main) and time.monotonic() < deadline:
                    time.sleep(0.001)
                drained.append(os.read(r, 65536))  # room for the token

            drainer = threading.Thread(target=drain)
            drainer.start()
            try:
                giving.set()
                js.give_back(b"A")
            finally:
                giving.set()
                drainer.join()
            assert os.get_blocking(w) is False, "giving a token back made make's write end blocking"
        finally:
            js.close()
        os.set_blocking(r, False)
        while True:
            try:
                chunk = os.read(r, 65536)
            except BlockingIOError:
                break
            drained.append(chunk)
        everything = b"".join(drained)
        assert everything == b"f" * filled + b"A"  # the very token, given back last
    finally:
        os.close(r)
        os.close(w)


def test_admit_runs_once_per_turn_with_nothing_queued() -> None:
    """WHITE-BOX: patches the private ``Lifecycle.admit`` on the reactor's
    instance and counts its calls during one step() with a job running and
    nothing queued."""
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "30"], kill_grace=0)
        calls = 0
        real_admit = reactor._lc.admit

        def counting_admit() -> None:
            nonlocal calls
            calls += 1
            real_admit()

        reactor._lc.admit = counting_admit  # type: ignore[method-assign]
        reactor.step(0)
        del reactor._lc.admit
        job.cancel()
    assert calls <= 1, f"_admit ran {calls} times in one turn with nothing queued"
