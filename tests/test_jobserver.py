"""The GNU make jobserver client: under a real make, and against a jobserver
of our own (pipe and fifo forms), including tokens coming back after errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipereactor as pr
from conftest import CHILDREN, python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def max_overlap(log: Path) -> tuple[int, int]:
    """(most intervals open at once, number of intervals) in a log_interval.py log."""
    events = []
    for line in log.read_text().splitlines():
        kind, _, ns = line.split()
        events.append((int(ns), 1 if kind == "S" else -1))
    events.sort()  # at a tie, an end (-1) sorts before a start
    open_now = most = 0
    for _, delta in events:
        open_now += delta
        most = max(most, open_now)
    return most, len(events) // 2


MAKEFILE = """\
PY := {python}
C := {children}
LOG := {log}
all: client1 client2 make1 make2 make3 make4
client1 client2:
\t+$(PY) $(C)/make_client.py $(LOG) $@- 6 0.3
make1 make2 make3 make4:
\t$(PY) $(C)/log_interval.py $(LOG) $@ 0.3
"""


@pytest.mark.deadline(120)
@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_under_gnu_make_no_more_than_j_jobs_overlap(tmp_path: Path) -> None:
    """make -j4 runs two recipes that each run 6 jobs through a reactor, and
    four plain recipes: across all of them, at most 4 jobs at once."""
    log = tmp_path / "log"
    (tmp_path / "Makefile").write_text(
        MAKEFILE.format(python=sys.executable, children=CHILDREN, log=log)
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    done = subprocess.run(["make", "-j4", "-C", str(tmp_path), "--no-print-directory"],
                          capture_output=True, text=True, env=env, timeout=100)
    assert done.returncode == 0, done.stderr
    assert "jobserver" not in done.stderr, done.stderr  # no lost token, no unusable jobserver
    most, count = max_overlap(log)
    assert count == 2 * 6 + 4
    assert most <= 4
    assert most >= 3  # and it did run in parallel


def _pipe_jobserver(tokens: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    r, w = os.pipe()
    os.write(w, tokens)
    monkeypatch.setenv("MAKEFLAGS", f"kr -j{len(tokens) + 1} --jobserver-auth={r},{w}")
    return r, w


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1024)
    except BlockingIOError:
        return b""


def _overlap(jobs: list[pr.Job]) -> int:
    events = sorted([(j.started_at, 1) for j in jobs] + [(j.exited_at, -1) for j in jobs])  # type: ignore[list-item]
    open_now = most = 0
    for _, delta in events:
        open_now += delta
        most = max(most, open_now)
    return most


@pytest.mark.parametrize("form", ["pipe", "fifo"])
def test_tokens_bound_parallelism_and_come_back_exactly(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = b"a+b"  # distinct bytes: each must come back as it was
    if form == "pipe":
        r, w = _pipe_jobserver(tokens, monkeypatch)
    else:
        path = tmp_path / "fifo"
        os.mkfifo(path)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        w = os.open(path, os.O_WRONLY)
        os.write(w, tokens)
        monkeypatch.setenv("MAKEFLAGS", f" -j4 --jobserver-auth=fifo:{path}")
    try:
        with pr.Reactor(jobserver=True) as reactor:
            jobs = [reactor.spawn(python("import time; time.sleep(0.2)")) for _ in range(9)]
        assert _overlap(jobs) == 4  # the implicit slot and three tokens
        assert sorted(_drain(r)) == sorted(tokens)
    finally:
        os.close(r)
        os.close(w)


def test_tokens_come_back_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = _pipe_jobserver(b"xyz", monkeypatch)

    def boom(data: bytes) -> None:
        raise RuntimeError("sink failed")

    try:
        with pytest.raises(RuntimeError, match="^sink failed$"):
            with pr.Reactor(jobserver=True) as reactor:
                for _ in range(3):
                    reactor.spawn(python("import time; time.sleep(30)"))
                reactor.spawn(python("print('x')"), stdout=boom)
        assert sorted(_drain(r)) == sorted(b"xyz")
    finally:
        os.close(r)
        os.close(w)


def test_a_jobserver_make_did_not_pass_means_one_job_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKEFLAGS", " -j8 --jobserver-auth=1000,1001")  # not open here
    with pytest.warns(RuntimeWarning, match=r"MAKEFLAGS names a jobserver \(1000,1001\) that cannot be used"):
        reactor = pr.Reactor(jobserver=True)
    with reactor:
        jobs = [reactor.spawn(python("import time; time.sleep(0.1)")) for _ in range(3)]
    assert _overlap(jobs) == 1


def test_without_makeflags_jobserver_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    with pr.Reactor(jobserver=True, max_parallel=3) as reactor:
        jobs = [reactor.spawn(python("import time; time.sleep(0.2)")) for _ in range(6)]
    assert _overlap(jobs) == 3
    with pytest.raises(TypeError, match=r"^jobserver must be a bool, not str$"):
        pr.Reactor(jobserver="yes")  # type: ignore[arg-type]


def test_old_jobserver_fds_spelling_is_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    os.write(w, b"t")
    monkeypatch.setenv("MAKEFLAGS", f" -j2 --jobserver-fds={r},{w}")
    try:
        with pr.Reactor(jobserver=True) as reactor:
            jobs = [reactor.spawn(python("import time; time.sleep(0.2)")) for _ in range(4)]
        assert _overlap(jobs) == 2
        assert _drain(r) == b"t"
    finally:
        os.close(r)
        os.close(w)


def test_no_busy_loop_while_killing_everything_when_a_token_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job waits for a token while close() kills the others; a token
    appearing in the jobserver during the kill grace must not wake the
    reactor over and over (regression: it spun for the whole grace)."""
    r, w = _pipe_jobserver(b"", monkeypatch)
    stubborn = python(
        "import os, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: os.write({w}, b'+'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    try:
        reactor = pr.Reactor(jobserver=True)
        calls = []
        select = reactor._selector.select
        monkeypatch.setattr(reactor._selector, "select", lambda t=None: calls.append(t) or select(t))
        ready = []
        reactor.spawn(stubborn, stdout=pr.LineSink(ready.append), kill_grace=1.0, pass_fds=(w,))
        waiting = reactor.spawn(["true"])
        while not ready:
            reactor.step(5)
        assert waiting.state is pr.JobState.PENDING
        calls.clear()
        reactor.close()
        assert len(calls) < 50, f"{len(calls)} select() calls during a 1 s grace"
        assert _drain(r) == b"+"  # and the token it returned went back to make
    finally:
        os.close(r)
        os.close(w)


def test_tokens_come_back_at_once_when_the_last_job_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs end in one turn and the second on_exit raises: nothing is
    live to kill, and the token of the first must still go back at once
    (regression: it stayed held while the reactor stayed open)."""
    r, w = _pipe_jobserver(b"q", monkeypatch)
    calls = []

    def second_fails(job: pr.Job) -> None:
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("on_exit failed")

    try:
        with pr.Reactor(jobserver=True) as reactor:
            jobs = [reactor.spawn(["true"], on_exit=second_fails) for _ in range(2)]
            for job in jobs:  # both exited (not reaped) before the next turn
                assert job.pid is not None
                os.waitid(os.P_PID, job.pid, os.WEXITED | os.WNOWAIT)
            with pytest.raises(RuntimeError, match="^on_exit failed$"):
                reactor.run(timeout=30)
            # The reactor stays open and usable; make has its token back now.
            assert _drain(r) == b"q"
    finally:
        os.close(r)
        os.close(w)


def test_a_token_goes_back_when_its_job_is_done_with_nothing_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: tokens were given back only when a turn admitted queued
    jobs (or at close), so an idle reactor kept make's tokens."""
    r, w = _pipe_jobserver(b"t", monkeypatch)
    try:
        with pr.Reactor(jobserver=True) as reactor:
            long = reactor.spawn(["sleep", "30"], kill_grace=0)
            short = reactor.spawn(["true"])
            assert _drain(r) == b""  # the second job holds the one token
            short.wait(timeout=10)
            assert long.state is pr.JobState.RUNNING
            assert _drain(r) == b"t"
            os.write(w, b"t")  # as make would hand it out again
            long.cancel()
        assert _drain(r) == b"t"
    finally:
        os.close(r)
        os.close(w)
