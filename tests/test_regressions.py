"""One test per bug found in review, named after the bug."""

from __future__ import annotations

import itertools
import math
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import pipereactor as pr
from pipereactor import _shutdown
from conftest import CountingSink, alive, python, sigterm_held, wait_gone


def test_fast_reader_of_endless_stdin_does_not_starve_the_loop() -> None:
    """cat reads 16-byte items as fast as we write them: the pipe never fills,
    yet the timeout must fire on time and other jobs must be served."""
    seen: list[float] = []
    t0 = time.monotonic()
    selects = 0
    with pr.Reactor() as reactor:
        real_select = reactor._selector.select

        def counting_select(timeout: float | None = None) -> Any:
            nonlocal selects
            selects += 1
            return real_select(timeout)

        reactor._selector.select = counting_select  # type: ignore[method-assign]
        reactor.spawn(python("import time; time.sleep(0.2); print('hi')"),
                      stdout=pr.LineSink(lambda line: seen.append(time.monotonic() - t0)))
        feeder = reactor.spawn(["cat"], stdin=itertools.repeat(b"x" * 16), stdout=pr.DEVNULL,
                               timeout=0.5, kill_grace=0.2)
        reactor.run(timeout=10)
    assert feeder.timed_out
    # Control returns to select() between bounded batches of writes (it did
    # not at all before the fix); wall-clock bounds are loose for busy machines.
    assert selects >= 20
    assert feeder.duration is not None and feeder.duration < 3
    assert seen and seen[0] < 2.5


def test_endless_empty_items_in_stdin_do_not_hang() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["cat"], stdin=itertools.repeat(b""), stdout=pr.DEVNULL, timeout=0.3,
                            kill_grace=0.1)
        job.wait(timeout=10)
    assert job.timed_out


def test_timeout_kills_sigterm_ignoring_grandchild_once_the_job_is_done() -> None:
    """The child starts with SIGTERM held (conftest.sigterm_held) and
    unblocks it once the grandchild ignores SIGTERM and its pid is out: a
    timeout that fires sooner (two interpreters starting on a loaded machine
    can take more than 0.5 s) waits instead of killing the child first."""
    code = ("import signal, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(30)'],"
            " stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
            "g.stdout.readline()\n"  # the grandchild ignores SIGTERM from here on
            "print(g.pid, flush=True)\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
            "time.sleep(30)\n")
    pids: list[str] = []
    with pr.Reactor() as reactor:
        with sigterm_held():
            job = reactor.spawn(python(code), stdout=pr.LineSink(pids.append), timeout=0.5)
            assert job.pid is not None  # started here, with the mask
        job.wait(timeout=10)
    assert job.timed_out
    grandchild = int(pids[0])
    wait_gone(grandchild, timeout=3)  # well before the 5 s kill_grace
    assert not alive(grandchild)


def test_spawn_from_callbacks_while_closing_is_refused() -> None:
    late: list[BaseException] = []

    def on_exit(job: pr.Job) -> None:
        try:
            reactor.spawn(["sleep", "30"])
        except RuntimeError as exc:
            late.append(exc)

    reactor = pr.Reactor()
    reactor.spawn(["sleep", "30"], on_exit=on_exit)
    reactor.step(0)
    reactor.close()
    assert len(late) == 1 and "stopping every job" in str(late[0])
    assert "running=0" in repr(reactor)


def test_leaving_with_block_in_forked_child_leaves_parent_jobs_alone() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "0.3"])
        pid = os.fork()
        if pid == 0:  # the child unwinds the with block, as sys.exit() would
            try:
                reactor.__exit__(SystemExit, SystemExit(0), None)
                reactor.__del__()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert job.wait(timeout=10) == 0  # not killed, still watched


@pytest.mark.parametrize("watcher", ["pidfd", "poll"])
def test_huge_and_infinite_timeouts_do_not_overflow_select(watcher: str) -> None:
    with pr.Reactor(watcher=watcher) as reactor:
        a = reactor.spawn(["true"], timeout=30 * 86400)
        b = reactor.spawn(["true"], timeout=math.inf, kill_grace=math.inf)
        reactor.run(timeout=30 * 86400)
        c = reactor.spawn(["sleep", "30"], kill_grace=math.inf)
        reactor.step(0)
        c.kill()
        reactor.run(timeout=math.inf)
    assert (a.returncode, b.returncode, c.returncode) == (0, 0, -signal.SIGKILL)


def test_wait_zero_polls_like_popen() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["true"])
        deadline = time.monotonic() + 10
        while True:
            try:
                assert job.wait(0) == 0
                break
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline
        job2 = reactor.spawn(["true"])
        os.waitid(os.P_PID, job2.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        reactor.run(0)
        assert job2.done
        job3 = reactor.spawn(["true"])
        os.waitid(os.P_PID, job3.pid, os.WEXITED | os.WNOWAIT)
        assert list(reactor.as_completed(0)) == [job, job2, job3]


def test_sinks_of_jobs_that_never_start_are_closed(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["true"])
        cancelled = CountingSink()
        reactor.spawn(["true"], stdout=cancelled).cancel()
        missing = CountingSink()
        reactor.spawn(["/nonexistent/program"], stdout=missing, stderr=missing)
        reactor.run(timeout=10)
        raised = pr.FileSink(tmp_path / "out")
        with pytest.raises(FileNotFoundError):
            reactor.spawn(["/nonexistent/program"], stdout=raised)
    assert (cancelled.closes, missing.closes) == (1, 1)
    assert set(os.listdir("/proc/self/fd")) <= before | {str(n) for n in range(3)}


def test_stdin_writer_of_cancelled_job_drops_writes() -> None:
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["true"])
        job = reactor.spawn(["cat"], stdin=pr.PIPE)
        job.cancel()
        assert job.stdin is not None
        job.stdin.write(b"x" * 1000)
        assert job.stdin.pending == 0


def test_failed_registration_leaves_nothing_behind() -> None:
    class FailingSelector(selectors.EpollSelector):
        calls = 0

        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            FailingSelector.calls += 1
            if FailingSelector.calls == 2:
                raise OSError(28, "No space left on device")
            return super().register(fileobj, events, data)

    with pr.Reactor(selector=FailingSelector) as reactor:
        with pytest.raises(OSError, match="No space left"):
            reactor.spawn(["sleep", "30"], stdout=pr.PIPE, stderr=pr.PIPE)
        assert "running=0" in repr(reactor)
        assert reactor.spawn(["echo", "ok"], stdout=pr.PIPE).wait(timeout=10) == 0


def test_line_sink_crlf_split_at_max_line_boundary() -> None:
    got: list[str] = []
    sink = pr.LineSink(got.append, max_line=3)
    sink.write(b"abc\r")
    sink.write(b"\nxy\r\n")
    sink.close()
    whole: list[str] = []
    sink = pr.LineSink(whole.append, max_line=3)
    sink.write(b"abc\r\nxy\r\n")
    assert got == whole == ["abc", "xy"]


def test_keyboard_interrupt_in_a_sink_close_during_cleanup_still_cleans_up() -> None:
    class InterruptOnClose(CountingSink):
        def close(self) -> None:
            super().close()
            raise KeyboardInterrupt

    first, second = InterruptOnClose(), CountingSink()
    reactor = pr.Reactor()
    reactor.spawn(["sleep", "30"], stdout=first)
    reactor.spawn(["sleep", "30"], stdout=second)
    reactor.step(0)
    with pytest.raises(KeyboardInterrupt):
        reactor.close()
    assert (first.closes, second.closes) == (1, 1)
    assert "closed running=0" in repr(reactor)




# -- second review ---------------------------------------------------------------------


def test_kqueue_exit_before_registration_is_still_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import EdgeOnlyWatcher
    from pipereactor import _childwatch

    monkeypatch.setattr(_childwatch, "make_watcher",
                        lambda kind: EdgeOnlyWatcher(exit_before_watch=True))
    with pr.Reactor() as reactor:
        job = reactor.spawn(["true"], stdout=pr.DEVNULL)
        assert job.wait(timeout=10) == 0


def test_timeout_ends_job_whose_pipe_is_held_by_an_escaped_grandchild() -> None:
    """eof_grace=None, and the pipe holder left the group (setsid): the timeout
    must still end the job, kill_grace after it stopped."""
    code = ("import signal, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],"
            " start_new_session=True)\n"
            "print(g.pid, flush=True)\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
            "time.sleep(30)\n")
    pids: list[str] = []
    with pr.Reactor() as reactor:
        with sigterm_held():  # the timeout may fire before the pid is out
            job = reactor.spawn(python(code), stdout=pr.LineSink(pids.append), timeout=0.3,
                                kill_grace=0.3, eof_grace=None)
        try:
            job.wait(timeout=10)
        finally:
            escaped = int(pids[0])
            os.kill(escaped, signal.SIGKILL)  # it is not ours to kill: clean up by hand
            wait_gone(escaped)
    assert job.timed_out
    assert job.duration is not None and job.duration < 5


def test_interrupt_while_starting_a_queued_job_cancels_it_cleanly() -> None:
    class InterruptingEnv(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise KeyboardInterrupt  # Ctrl-C landing inside Popen()

    exits: list[pr.Job] = []
    sink = CountingSink()
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["sleep", "0.1"])
        queued = reactor.spawn(["true"], env=InterruptingEnv(os.environ), stdout=sink,
                               on_exit=exits.append)
        with pytest.raises(KeyboardInterrupt):
            reactor.run(timeout=10)
        assert queued.done and queued.cancelled and queued.pid is None
        assert sink.closes == 1 and exits == [queued]
        with pytest.raises(pr.JobCancelled):
            queued.wait(timeout=1)


def test_interrupt_during_final_reap_in_close_loses_no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the graceful wait, then again during the final reap."""
    from pipereactor import _childwatch

    reactor = pr.Reactor(max_parallel=1)
    running = reactor.spawn(["sleep", "30"], kill_grace=10)
    queued = reactor.spawn(["true"])
    reactor.step(0)

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    real_wait_exited = _childwatch.wait_exited

    def wait_exited_once_interrupted(pid: int) -> None:
        monkeypatch.setattr(_childwatch, "wait_exited", real_wait_exited)
        raise KeyboardInterrupt

    monkeypatch.setattr(_shutdown, "_reap_within", interrupted)
    monkeypatch.setattr(_childwatch, "wait_exited", wait_exited_once_interrupted)
    with pytest.raises(KeyboardInterrupt):
        reactor.close()
    assert running.done and running.returncode in (-signal.SIGTERM, -signal.SIGKILL)
    assert queued.done and queued.cancelled
    assert "closed running=0 pending=0" in repr(reactor)


def test_never_started_job_closes_every_sink_and_calls_on_exit_even_if_one_raises() -> None:
    class Raising(CountingSink):
        def close(self) -> None:
            super().close()
            raise RuntimeError("close failed")

    exits: list[pr.Job] = []
    bad, good = Raising(), CountingSink()
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["true"])
        job = reactor.spawn(["true"], stdout=bad, stderr=good, on_exit=exits.append)
        with pytest.raises(RuntimeError, match="^close failed$"):
            job.cancel()
    assert (bad.closes, good.closes, exits) == (1, 1, [job])


def test_queued_job_whose_registration_fails_reports_a_job_that_never_ran() -> None:
    class FailingSelector(selectors.EpollSelector):
        fail = False

        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            if FailingSelector.fail:
                raise OSError(28, "No space left on device")
            return super().register(fileobj, events, data)

    def fail_from_now_on(job: pr.Job) -> None:
        FailingSelector.fail = True  # before the queued job is admitted

    with pr.Reactor(max_parallel=1, selector=FailingSelector) as reactor:
        reactor.spawn(["true"], stdout=pr.PIPE, on_exit=fail_from_now_on)
        queued = reactor.spawn(["sleep", "30"], stdout=pr.PIPE)
        try:
            reactor.run(timeout=10)
        finally:
            FailingSelector.fail = False
    assert isinstance(queued.error, OSError)
    assert queued.pid is None and queued.returncode is None and queued.duration is None


def test_forked_child_leaves_popen_copies_quiet() -> None:
    """The child's copies of the parent's Popen objects must not warn."""
    r, w = os.pipe()
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "0.2"])
        pid = os.fork()
        if pid == 0:
            os.close(r)
            import gc
            import warnings

            caught: list[str] = []
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always")
                reactor.__exit__(SystemExit, SystemExit(0), None)
                del reactor, job
                gc.collect()
                caught = [str(rec.message) for rec in records]
            os.write(w, repr(caught).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            report = f.read().decode()
        os.waitpid(pid, 0)
        assert job.wait(timeout=10) == 0
    assert report == "[]"


EXITED_WITH_STUBBORN_GRANDCHILD = (
    "import subprocess, sys\n"  # the grandchild inherits our stdout pipe, ignores SIGTERM
    "g = subprocess.Popen([sys.executable, '-c', 'import signal, sys, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(file=sys.stderr, flush=True); "
    "time.sleep(30)'], stderr=subprocess.PIPE)\n"
    "g.stderr.readline()\n"
    "print(g.pid, flush=True)\n"
)


# -- third review ------------------------------------------------------------------------


@pytest.mark.parametrize("watcher", ["pidfd", "poll"])
def test_children_reaped_by_someone_else_still_finish(watcher: str) -> None:
    """SIGCHLD ignored: the kernel reaps, waitid says ECHILD; Popen gives 0."""
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with pr.Reactor(watcher=watcher) as reactor:
            quick = reactor.spawn(["true"])
            stopped = reactor.spawn(["sleep", "30"], timeout=0.2)
            reactor.run(timeout=10)
            lingering = reactor.spawn(["sleep", "30"])
            reactor.step(0)
            t0 = time.monotonic()
            reactor.close()
            assert time.monotonic() - t0 < 5
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert (quick.returncode, stopped.returncode, lingering.returncode) == (0, 0, 0)
    assert stopped.timed_out


def test_error_kills_sigterm_ignoring_grandchild_of_an_exited_child() -> None:
    """The child exited; its grandchild holds stdout and ignores SIGTERM.
    Leaving the with block by an exception must still kill it."""
    pids: list[str] = []

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with pr.Reactor() as reactor:
            job = reactor.spawn(python(EXITED_WITH_STUBBORN_GRANDCHILD),
                                stdout=pr.LineSink(pids.append), eof_grace=60, kill_grace=0.3)
            while job.state is not pr.JobState.EXITED:
                reactor.step(5)
            raise Stop
    grandchild = int(pids[0])
    wait_gone(grandchild, timeout=5)


def test_early_shared_exit_event_during_close_falls_back_to_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kqueue may report an exit before waitpid can reap it; in close() the
    reactor must poll, not sleep out the whole kill_grace."""
    from pipereactor import _childwatch

    class EarlyWatcher(_childwatch.ChildWatcher):
        name = "early"

        def __init__(self) -> None:
            self.r, self.w = os.pipe()
            os.set_blocking(self.r, False)
            self.pids: list[int] = []

        def fileno(self) -> int | None:
            return self.r

        def watch(self, pid: int) -> int | None:
            self.pids.append(pid)
            return _childwatch.SHARED

        def fire(self) -> None:
            os.write(self.w, b"!")  # "exited", while the child is still alive

        def collect(self) -> list[int]:
            try:
                os.read(self.r, 64)
            except BlockingIOError:
                return []
            pids, self.pids = self.pids, []
            return pids

        def close(self) -> None:
            os.close(self.r)
            os.close(self.w)

    watcher = EarlyWatcher()
    monkeypatch.setattr(_childwatch, "make_watcher", lambda kind: watcher)
    slow_exit = ("import signal, sys, time\n"
                 "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.3), sys.exit(0)))\n"
                 "print(flush=True)\ntime.sleep(30)\n")
    reactor = pr.Reactor()
    job = reactor.spawn(python(slow_exit), stdout=pr.PIPE, kill_grace=30)
    while not job.stdout.getvalue():
        reactor.step(5)
    reactor.step(0.05)  # the confirming poll tick: alive, so left to the watcher
    watcher.fire()
    t0 = time.monotonic()
    reactor.close()
    assert time.monotonic() - t0 < 5
    assert job.returncode == 0


def test_send_signal_never_reaps_behind_the_reactor() -> None:
    from pipereactor import _childwatch

    with pr.Reactor(watcher="poll") as reactor:
        job = reactor.spawn(["true"])
        assert job.pid is not None
        _childwatch.wait_exited(job.pid)  # a zombie the reactor has not seen yet
        job.send_signal(signal.SIGTERM)
        assert _childwatch.exited_unreaped(job.pid) is True
        assert job.wait(timeout=10) == 0


def test_interrupt_right_after_popen_leaves_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipereactor import _lifecycle

    class InterruptOnce:
        def __init__(self) -> None:
            self.fired = False

        def monotonic(self) -> float:
            if not self.fired:
                self.fired = True
                raise KeyboardInterrupt  # right after Popen() returned
            return time.monotonic()

    monkeypatch.setattr(_lifecycle, "time", InterruptOnce())
    with pr.Reactor() as reactor:
        with pytest.raises(KeyboardInterrupt):
            reactor.spawn(["sleep", "30"], stdin=pr.PIPE, stdout=pr.PIPE, stderr=pr.PIPE)
        assert "running=0" in repr(reactor)
    # the zombie and fd guards check that the child was reaped and its pipes closed


def test_interrupt_while_cancelling_the_queue_in_close_still_reaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipereactor import _lifecycle

    def interrupting(*args: Any) -> pr.JobCancelled:
        monkeypatch.undo()
        raise KeyboardInterrupt

    reactor = pr.Reactor(max_parallel=1)
    running = reactor.spawn(["sleep", "30"], kill_grace=0.2)
    queued = reactor.spawn(["true"])
    reactor.step(0)
    monkeypatch.setattr(_lifecycle, "JobCancelled", interrupting)
    with pytest.raises(KeyboardInterrupt):
        reactor.close()
    assert running.done and running.returncode is not None
    assert queued.done
    with pytest.raises(pr.JobCancelled):
        queued.wait()
    assert "closed running=0 pending=0" in repr(reactor)


def test_persistent_error_while_reaping_in_close_does_not_spin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipereactor import _childwatch

    def broken(pid: int) -> bool | None:
        raise OSError(22, "Invalid argument")

    reactor = pr.Reactor()
    job = reactor.spawn(["sleep", "30"], kill_grace=0.2)
    reactor.step(0)
    monkeypatch.setattr(_childwatch, "exited_unreaped", broken)
    t0 = time.monotonic()
    with pytest.raises(OSError, match="Invalid argument"):
        reactor.close()
    assert time.monotonic() - t0 < 5
    assert job.done and job.returncode is not None


# -- fourth review ---------------------------------------------------------------------




def test_second_interrupt_still_kills_group_of_an_exited_job(monkeypatch: pytest.MonkeyPatch) -> None:
    pids: list[str] = []
    reactor = pr.Reactor()
    job = reactor.spawn(python(EXITED_WITH_STUBBORN_GRANDCHILD), stdout=pr.LineSink(pids.append),
                        eof_grace=60, kill_grace=30)
    while job.state is not pr.JobState.EXITED:
        reactor.step(5)

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C again, during the grace

    monkeypatch.setattr(_shutdown, "_reap_within", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reactor.close()
    wait_gone(int(pids[0]), timeout=5)


def test_interrupt_while_scheduling_the_timeout_leaves_no_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = CountingSink()
    with pr.Reactor() as reactor:
        real = reactor._lc.schedule

        def interrupted_once(*args: Any) -> None:
            monkeypatch.setattr(reactor._lc, "schedule", real)
            raise KeyboardInterrupt

        monkeypatch.setattr(reactor._lc, "schedule", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            reactor.spawn(["sleep", "30"], stdout=sink, timeout=0.1)
        assert "running=0" in repr(reactor)
    assert sink.closes == 1
    # the zombie and fd guards check the child was reaped and its pipe closed


def test_interrupt_in_begin_kill_cuts_the_grace_and_does_not_spin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reactor = pr.Reactor()
    job = reactor.spawn(["yes"], stdout=pr.NullSink(), kill_grace=30)
    reactor.step(0.05)

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt  # before our pipe end is closed or SIGTERM sent

    monkeypatch.setattr(_shutdown, "_begin_kill", interrupted)
    t0 = time.process_time()
    w0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        reactor.close()
    assert time.monotonic() - w0 < 5
    assert time.process_time() - t0 < 2
    assert job.done and job.returncode in (-signal.SIGPIPE, -signal.SIGKILL)
