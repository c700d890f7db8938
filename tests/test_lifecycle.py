"""Exits, timeouts, kills, grandchildren, raising sinks: nothing hangs or leaks."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

import pipereactor as pr
from conftest import CountingSink, alive, child, python, sigterm_held, wait_gone

MakeReactor = Callable[..., pr.Reactor]


# -- exit detection ---------------------------------------------------------------


def test_exit_detected_without_pipes(make_reactor: MakeReactor) -> None:
    """No pipe at all: only the exit watcher can tell us."""
    with make_reactor() as reactor:
        job = reactor.spawn(["sh", "-c", "exit 3"], stdout=pr.DEVNULL, stderr=pr.DEVNULL)
        assert job.wait(timeout=10) == 3
        assert job.state is pr.JobState.DONE and job.done


def test_exit_before_watch_is_set_up(make_reactor: MakeReactor) -> None:
    """Children that exit at once (maybe before pidfd_open) are still seen."""
    with make_reactor() as reactor:
        jobs = [reactor.spawn(["true"]) for _ in range(50)]
        reactor.run(timeout=20)
    assert [j.returncode for j in jobs] == [0] * 50


def test_child_closes_stdout_early_and_keeps_running(make_reactor: MakeReactor) -> None:
    """EOF is not exit: the job is done only when the child exits too."""
    with make_reactor() as reactor:
        job = reactor.spawn(child("linger.py"), stdin=pr.PIPE, stdout=pr.PIPE)
        while job.stdout.getvalue() != b"bye\n" or job._readers:
            reactor.step(5)
        assert job.state is pr.JobState.RUNNING
        assert job.stdin is not None
        job.stdin.close()
        assert job.wait(timeout=10) == 7


def test_returncode_negative_for_signal(make_reactor: MakeReactor) -> None:
    with make_reactor() as reactor:
        job = reactor.spawn(child("ignore_sigterm.py"), stdout=pr.PIPE)
        while not job.stdout.getvalue():
            reactor.step(5)
        job.send_signal(signal.SIGKILL)
        assert job.wait(timeout=10) == -signal.SIGKILL


def test_eof_and_exit_in_one_turn_many_times() -> None:
    with pr.Reactor() as reactor:
        jobs = [reactor.spawn(["echo", str(i)], stdout=pr.PIPE) for i in range(100)]
    assert [j.stdout.getvalue() for j in jobs] == [b"%d\n" % i for i in range(100)]


# -- grandchildren and eof_grace --------------------------------------------------


def test_grandchild_holding_stdout_does_not_hang(make_reactor: MakeReactor) -> None:
    sink = CountingSink()
    with make_reactor() as reactor:
        job = reactor.spawn(child("grandchild.py"), stdout=sink, eof_grace=0.3)
        t0 = time.monotonic()
        assert job.wait(timeout=10) == 0
        elapsed = time.monotonic() - t0
    grandchild = int(sink.getvalue())
    try:
        assert alive(grandchild)  # eof_grace leaves it running: it may be a daemon
        assert sink.closes == 1
        assert elapsed < 5
    finally:
        os.kill(grandchild, signal.SIGKILL)
        wait_gone(grandchild)


def test_eof_grace_none_waits_for_grandchild() -> None:
    sink = pr.BytesSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sh", "-c", "(sleep 0.3; echo late) & echo early"],
                            stdout=sink, eof_grace=None)
        job.wait(timeout=10)
    assert sink.getvalue() == b"early\nlate\n"


def test_timeout_kills_process_group_with_grandchildren(make_reactor: MakeReactor) -> None:
    sink = pr.BytesSink()
    with make_reactor() as reactor:
        with sigterm_held():  # the timeout may fire before the pid is out
            job = reactor.spawn(child("grandchild.py", "stay"), stdout=sink, timeout=0.5)
        job.wait(timeout=10)
    assert job.timed_out
    assert job.returncode == -signal.SIGTERM
    grandchild = int(sink.getvalue())
    wait_gone(grandchild)
    assert not alive(grandchild)
    assert "timed out" in repr(job)


def test_timeout_escalates_to_sigkill(make_reactor: MakeReactor) -> None:
    with make_reactor() as reactor:
        with sigterm_held():  # the timeout may fire before SIGTERM is ignored
            job = reactor.spawn(child("ignore_sigterm.py"), stdout=pr.PIPE, timeout=0.3,
                                kill_grace=0.3)
        job.wait(timeout=10)
    assert job.timed_out
    assert job.returncode == -signal.SIGKILL
    assert job.duration is not None and 0.5 < job.duration < 5


def test_cancel_running_job() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "30"])
        reactor.step(0)
        job.cancel()
        assert job.wait(timeout=10) == -signal.SIGTERM
    assert job.cancelled and not job.timed_out


def test_cancel_pending_job_never_starts() -> None:
    exits: list[pr.Job] = []
    with pr.Reactor(max_parallel=1) as reactor:
        first = reactor.spawn(["sleep", "0.2"])
        queued = reactor.spawn(["sleep", "30"], on_exit=exits.append)
        assert queued.state is pr.JobState.PENDING
        queued.cancel()
        assert queued.done and queued.pid is None and queued.returncode is None
        with pytest.raises(pr.JobCancelled):
            queued.wait()
    assert first.returncode == 0
    assert exits == [queued]


def test_terminate_and_kill_reach_the_group() -> None:
    sink = pr.BytesSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(child("grandchild.py", "stay"), stdout=sink)
        while not sink.getvalue().endswith(b"\n"):
            reactor.step(5)
        grandchild = int(sink.getvalue())
        job.terminate()
        assert job.wait(timeout=10) == -signal.SIGTERM
    wait_gone(grandchild)


def test_own_group_can_be_turned_off() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(python("import os; print(os.getpgid(0))"), stdout=pr.PIPE,
                            start_new_session=False)
        job.wait(timeout=10)
    assert int(job.stdout.getvalue()) == os.getpgid(0)


# -- errors from user code -----------------------------------------------------------


class Boom(Exception):
    pass


def test_raising_sink_surfaces_and_kills_everything(make_reactor: MakeReactor) -> None:
    def bad(data: bytes) -> None:
        raise Boom("sink failed")

    closes = CountingSink()
    with make_reactor() as reactor:
        others = [reactor.spawn(["sleep", "30"], stdout=closes) for _ in range(3)]
        reactor.spawn(["echo", "hi"], stdout=bad)
        with pytest.raises(Boom, match="^sink failed$"):
            reactor.run(timeout=10)
        # Consistent afterwards: every job done and reaped, the sink closed once each.
        assert all(j.done and j.returncode == -signal.SIGTERM for j in others)
        assert closes.closes == 3
        # ...and still usable.
        again = reactor.spawn(["echo", "again"], stdout=pr.PIPE)
    assert again.stdout.getvalue() == b"again\n"


def test_raising_on_exit_surfaces_from_wait() -> None:
    def on_exit(job: pr.Job) -> None:
        raise Boom("callback failed")

    with pr.Reactor() as reactor:
        job = reactor.spawn(["true"], on_exit=on_exit)
        other = reactor.spawn(["sleep", "30"])
        with pytest.raises(Boom):
            job.wait(timeout=10)
        assert other.done and other.returncode == -signal.SIGTERM


def test_keyboard_interrupt_kills_and_reaps() -> None:
    def interrupt(data: bytes) -> None:
        raise KeyboardInterrupt

    with pr.Reactor() as reactor:
        sleeper = reactor.spawn(child("ignore_sigterm.py"), stdout=pr.PIPE, kill_grace=0.2)
        while not sleeper.stdout.getvalue():  # SIGTERM is ignored from here on
            reactor.step(5)
        reactor.spawn(["echo", "x"], stdout=interrupt)
        with pytest.raises(KeyboardInterrupt):
            reactor.run(timeout=10)
        assert sleeper.returncode == -signal.SIGKILL


def test_exception_in_with_block_kills_and_reaps() -> None:
    sink = CountingSink()
    with pytest.raises(Boom):
        with pr.Reactor() as reactor:
            job = reactor.spawn(child("grandchild.py", "stay"), stdout=sink)
            while not sink.getvalue().endswith(b"\n"):
                reactor.step(5)
            raise Boom
    assert job.done and job.returncode == -signal.SIGTERM
    assert sink.closes == 1
    wait_gone(int(sink.getvalue()))
    with pytest.raises(ValueError, match="^the reactor is closed$"):
        reactor.spawn(["true"])


def test_reentrant_drive_from_a_sink_is_refused() -> None:
    with pr.Reactor() as reactor:
        reactor.spawn(["echo", "x"], stdout=lambda data: reactor.step(0))
        with pytest.raises(RuntimeError, match="already running"):
            reactor.run(timeout=10)


def test_spawn_from_on_exit_chains_jobs() -> None:
    order: list[int] = []
    with pr.Reactor() as reactor:
        def next_job(job: pr.Job) -> None:
            order.append(len(order))
            if len(order) < 5:
                reactor.spawn(["true"], on_exit=next_job)

        reactor.spawn(["true"], on_exit=next_job)
    assert order == [0, 1, 2, 3, 4]


def test_sink_close_called_once_per_stream_on_eof_grace_and_kill() -> None:
    sinks = [CountingSink() for _ in range(4)]
    reactor = pr.Reactor()
    try:
        reactor.spawn(["echo", "eof"], stdout=sinks[0], stderr=sinks[1])
        reactor.spawn(child("grandchild.py"), stdout=sinks[2], eof_grace=0.1)
        reactor.run(timeout=10)
        reactor.spawn(["sleep", "30"], stdout=sinks[3])
        reactor.step(0)
    finally:
        reactor.close()
    assert [s.closes for s in sinks] == [1, 1, 1, 1]
    os.kill(int(sinks[2].getvalue()), signal.SIGKILL)
    wait_gone(int(sinks[2].getvalue()))


def test_close_kills_what_is_left() -> None:
    sink = CountingSink()
    reactor = pr.Reactor()
    job = reactor.spawn(["sleep", "30"], stdout=sink)
    reactor.step(0)
    reactor.close()
    reactor.close()  # idempotent
    assert job.done and job.returncode == -signal.SIGTERM
    assert sink.closes == 1


def test_unclosed_reactor_warns_and_cleans_up() -> None:
    reactor = pr.Reactor()
    job = reactor.spawn(["sleep", "30"])
    pid = job.pid
    assert pid is not None
    with pytest.warns(ResourceWarning, match="unclosed <Reactor open running=1"):
        del reactor, job  # a job keeps its reactor alive
        gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped


# -- timeouts of the caller's ----------------------------------------------------------


def test_run_timeout_means_not_yet() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "0.5"])
        with pytest.raises(subprocess.TimeoutExpired):
            reactor.run(timeout=0.05)
        assert job.state is pr.JobState.RUNNING
        reactor.run(timeout=10)
    assert job.returncode == 0


def test_wait_timeout_means_not_yet() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "0.5"])
        with pytest.raises(subprocess.TimeoutExpired) as info:
            job.wait(timeout=0.05)
        assert info.value.cmd == ["sleep", "0.5"]
        assert not job.done
        assert job.wait(timeout=10) == 0


def test_step_returns_whether_work_remains() -> None:
    with pr.Reactor() as reactor:
        assert reactor.step(10) is False  # no jobs: returns at once
        reactor.spawn(["true"])
        while reactor.step(5):
            pass
        assert reactor.step() is False


def test_on_exit_runs_after_sinks_are_closed(make_reactor: MakeReactor) -> None:
    """The last line without a newline reaches a LineSink before on_exit."""
    seen: list[list[str]] = []

    def spawn_one(reactor: pr.Reactor) -> None:
        lines: list[str] = []  # one list per job: jobs run concurrently
        reactor.spawn(["printf", "a\\nb"], stdout=pr.LineSink(lines.append),
                      on_exit=lambda job: seen.append(list(lines)))

    with make_reactor() as reactor:
        for _ in range(20):
            spawn_one(reactor)
    assert seen == [["a", "b"]] * 20


def test_no_busy_loop_while_children_are_quiet(make_reactor: MakeReactor) -> None:
    """Half a second of silence costs a handful of wake-ups, not thousands."""
    with make_reactor() as reactor:
        selector = reactor._selector
        calls = 0
        real_select = selector.select

        def counting_select(timeout: float | None = None) -> list[tuple[object, int]]:
            nonlocal calls
            calls += 1
            return real_select(timeout)

        selector.select = counting_select  # type: ignore[method-assign]
        reactor.spawn(["sleep", "0.5"], stdin=pr.PIPE, stdout=pr.PIPE, stderr=pr.PIPE)
        reactor.run(timeout=10)
    # pidfd: the exit and two EOFs; poll: a tick backing off to 50 ms (about 15 ticks).
    assert calls <= (8 if "pidfd" in repr(reactor) else 30), calls


def test_in_order_deadlines_merge_with_the_heap_by_time() -> None:
    from pipereactor._deadlines import Deadlines, Due
    from pipereactor._job import JobState

    deadlines = Deadlines()

    class FakeJob:
        state = JobState.RUNNING

    a, b, c, d, stale = (FakeJob() for _ in range(5))
    stale.state = JobState.DONE
    deadlines.schedule_in_order(1.0, Due.WATCH, a, 1)  # type: ignore[arg-type]
    deadlines.schedule_in_order(2.0, Due.WATCH, stale, 1)  # type: ignore[arg-type]
    deadlines.schedule_in_order(3.0, Due.WATCH, b, 1)  # type: ignore[arg-type]
    deadlines.schedule_in_order(0.5, Due.WATCH, c, 1)  # type: ignore[arg-type]  # out of order: the heap
    deadlines.schedule(2.5, Due.TIMEOUT, d, 1)  # type: ignore[arg-type]
    assert len(deadlines) == 5
    assert deadlines.next_when() == 0.5
    assert not deadlines.due(0.4) and deadlines.due(0.5)
    fired: list[tuple[Due, object]] = list(deadlines.pop_due(2.9))
    assert fired == [(Due.WATCH, c), (Due.WATCH, a), (Due.TIMEOUT, d)]  # the stale one skipped
    assert deadlines.next_when() == 3.0
    b.state = JobState.DONE
    assert deadlines.next_when() is None and len(deadlines) == 0


def test_finished_jobs_do_not_pile_up_deadlines() -> None:
    with pr.Reactor(max_parallel=8) as reactor:
        for _ in range(300):
            reactor.spawn(["true"], timeout=3600)
        reactor.run(timeout=30)
        assert len(reactor._lc.deadlines) <= 64 + 4 * 8
