"""The public surface: argument checking, queueing, ordering, embedding, repr."""

from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
from pathlib import Path

import pytest

import pipereactor as pr
from conftest import python


def test_reexports_are_subprocess_objects() -> None:
    assert pr.PIPE is subprocess.PIPE or pr.PIPE == subprocess.PIPE
    assert (pr.DEVNULL, pr.STDOUT) == (subprocess.DEVNULL, subprocess.STDOUT)
    assert pr.TimeoutExpired is subprocess.TimeoutExpired
    assert pr.CalledProcessError is subprocess.CalledProcessError


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"args": None}, TypeError, r"^args must be a str, bytes or path, or a sequence of them, not NoneType$"),
        ({"args": []}, ValueError, r"^args must not be empty$"),
        ({"args": ["echo", 3]}, TypeError, r"^args must be .* not list$"),
        ({"stdout": 1.5}, TypeError, r"^stdout must be None, DEVNULL, PIPE, a sink .* not float$"),
        ({"stderr": object()}, TypeError, r"^stderr must be None, DEVNULL, PIPE, a sink .* not object$"),
        ({"stdout": pr.STDOUT}, ValueError, r"^stdout must be PIPE or DEVNULL or a file descriptor >= 0, not -2$"),
        ({"stdin": object()}, TypeError, r"^stdin must be None, PIPE, DEVNULL, a file descriptor, bytes, str, a binary file or an iterable of bytes, not object$"),
        ({"stdin": 12.0}, TypeError, r"^stdin must be .* not float$"),
        ({"timeout": "5"}, TypeError, r"^timeout must be a number of seconds or None, not str$"),
        ({"timeout": -1}, ValueError, r"^timeout must be >= 0, not -1$"),
        ({"kill_grace": None}, TypeError, r"^kill_grace must be a number of seconds, not NoneType$"),
        ({"eof_grace": float("nan")}, ValueError, r"^eof_grace must be >= 0, not nan$"),
        ({"on_exit": 5}, TypeError, r"^on_exit must be callable or None, not int$"),
        ({"text": True}, TypeError, r"^spawn\(\) does not take text=: use a TextSink"),
        ({"encoding": "utf-8"}, TypeError, r"^spawn\(\) does not take encoding=: pass the encoding"),
        ({"bufsize": 1}, TypeError, r"^spawn\(\) does not take bufsize="),
        ({"colour": "blue"}, TypeError, r"^spawn\(\) got an unexpected keyword argument 'colour'$"),
    ],
)
def test_bad_input_fails_early_naming_the_argument(
    kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    with pr.Reactor() as reactor:
        args = kwargs.pop("args", ["true"])
        with pytest.raises(exc, match=message):
            reactor.spawn(args, **kwargs)  # type: ignore[arg-type]
        # the reactor keeps working
        assert reactor.spawn(["true"]).wait(timeout=10) == 0


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"max_parallel": 0}, ValueError, r"^max_parallel must be >= 1, not 0$"),
        ({"max_parallel": 2.0}, TypeError, r"^max_parallel must be an int or None, not float$"),
        ({"watcher": "inotify"}, ValueError, r"^watcher must be one of 'auto', 'pidfd', 'kqueue', 'poll', not 'inotify'$"),
        ({"watcher": "kqueue"}, ValueError, r"^watcher='kqueue' is not available on this system$"),
        ({"selector": selectors.SelectSelector}, ValueError, r"^selector=SelectSelector cannot watch fds >= 1024"),
        ({"selector": dict}, TypeError, r"^selector must be a selectors.BaseSelector subclass"),
    ],
)
def test_bad_reactor_arguments(kwargs: dict[str, object], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        pr.Reactor(**kwargs)  # type: ignore[arg-type]


def test_missing_program_raises_like_subprocess() -> None:
    with pr.Reactor() as reactor:
        with pytest.raises(FileNotFoundError) as ours:
            reactor.spawn(["/nonexistent/program"])
        with pytest.raises(FileNotFoundError) as theirs:
            subprocess.Popen(["/nonexistent/program"])
        assert ours.value.errno == theirs.value.errno
        assert ours.value.filename == theirs.value.filename
        assert reactor.spawn(["true"]).wait(timeout=10) == 0


def test_missing_program_in_queue_is_recorded_on_the_job() -> None:
    done: list[pr.Job] = []
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["true"])
        bad = reactor.spawn(["/nonexistent/program"], on_exit=done.append)
        ok = reactor.spawn(["true"])
        reactor.run(timeout=10)
    assert isinstance(bad.error, FileNotFoundError)
    assert bad.done and bad.pid is None and bad.returncode is None
    with pytest.raises(FileNotFoundError):
        bad.wait()
    assert done == [bad]
    assert ok.returncode == 0


def test_windows_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(NotImplementedError, match="on Windows, selectors cannot poll pipes"):
        pr.Reactor()


def test_max_parallel_fifo_and_bounded() -> None:
    n, limit = 12, 3
    peak = 0
    with pr.Reactor(max_parallel=limit) as reactor:
        jobs = [reactor.spawn(["sleep", "0.05"]) for _ in range(n)]
        assert [j.state for j in jobs[:limit]] == [pr.JobState.RUNNING] * limit
        assert all(j.state is pr.JobState.PENDING for j in jobs[limit:])
        while reactor.step(5):
            running = sum(j.state in (pr.JobState.RUNNING, pr.JobState.EXITED) for j in jobs)
            peak = max(peak, running)
            assert running <= limit
    starts = [j.started_at for j in jobs]
    assert starts == sorted(starts)  # FIFO
    assert peak == limit


def test_as_completed_yields_in_completion_order() -> None:
    order = [3, 0, 4, 1, 2]
    with pr.Reactor() as reactor:
        jobs = [reactor.spawn(["cat"], stdin=pr.PIPE, stdout=pr.DEVNULL) for _ in range(5)]
        # The jobs end when their stdin closes: close them in a chosen order,
        # each only after the previous job has been yielded.
        jobs[order[0]].stdin.close()  # type: ignore[union-attr]
        seen = []
        for job in reactor.as_completed(timeout=20):
            seen.append(jobs.index(job))
            if len(seen) < len(order):
                jobs[order[len(seen)]].stdin.close()  # type: ignore[union-attr]
    assert seen == order


def test_as_completed_includes_jobs_done_earlier_and_spawned_later() -> None:
    with pr.Reactor() as reactor:
        first = reactor.spawn(["true"])
        first.wait(timeout=10)
        yielded = []
        for job in reactor.as_completed(timeout=10):
            yielded.append(job)
            if job is first:
                later = reactor.spawn(["true"])
        assert yielded == [first, later]
        assert list(reactor.as_completed()) == []


def test_as_completed_timeout() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sleep", "0.3"])
        with pytest.raises(subprocess.TimeoutExpired):
            for _ in reactor.as_completed(timeout=0.05):
                pass
        assert list(reactor.as_completed(timeout=10)) == [job]


def test_on_exit_sees_final_state_once() -> None:
    calls: list[tuple[pr.JobState, int | None, bool]] = []
    with pr.Reactor() as reactor:
        reactor.spawn(["sh", "-c", "echo out; exit 4"], stdout=pr.PIPE,
                      on_exit=lambda j: calls.append((j.state, j.returncode, j.stdout.getvalue() == b"out\n")))
    assert calls == [(pr.JobState.DONE, 4, True)]


def test_check_raises_called_process_error_with_output() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["sh", "-c", "echo out; echo err >&2; exit 2"],
                            stdout=pr.PIPE, stderr=pr.TextSink())
        with pytest.raises(subprocess.CalledProcessError) as info:
            job.check()
        assert info.value.returncode == 2
        assert info.value.output == b"out\n"
        assert info.value.stderr == "err\n"
        reactor.spawn(["true"]).check()


def test_popen_kwargs_pass_through(tmp_path: Path) -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(python("import os; print(os.getcwd(), os.environ['PR_X'])"),
                            stdout=pr.PIPE, cwd=tmp_path, env={**os.environ, "PR_X": "y"})
        job.wait(timeout=10)
    assert job.stdout.getvalue().decode().split() == [str(tmp_path), "y"]


def test_shell_string() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn("echo $((6 * 7))", shell=True, stdout=pr.PIPE)
        job.wait(timeout=10)
    assert job.stdout.getvalue() == b"42\n"


def test_repr_shows_state() -> None:
    with pr.Reactor(max_parallel=1) as reactor:
        job = reactor.spawn(["cat"], stdin=pr.PIPE)
        queued = reactor.spawn(["true"])
        assert repr(job) == f"<Job pid={job.pid} running ['cat']>"
        assert repr(queued) == "<Job pending ['true']>"
        assert repr(reactor).startswith("<Reactor open running=1 pending=1 watcher=")
        job.stdin.close()  # type: ignore[union-attr]
        job.wait(timeout=10)
        assert repr(job) == f"<Job pid={job.pid} done returncode=0 ['cat']>"
    assert repr(reactor).startswith("<Reactor closed")


def test_a_job_takes_attributes_of_the_callers_own() -> None:
    """Job has slots (a queued job is small), and keeps __dict__ for callers
    that tag their jobs, as people do with Popen objects."""
    with pr.Reactor(max_parallel=1) as reactor:
        job = reactor.spawn(["true"])
        job.tag = "build step 1"  # type: ignore[attr-defined]
        job.wait(timeout=10)
    assert job.tag == "build step 1"  # type: ignore[attr-defined]
    assert "__slots__" in vars(pr.Job)


def test_duration_and_started_at() -> None:
    with pr.Reactor(max_parallel=1) as reactor:
        reactor.spawn(["sleep", "0.1"])
        queued = reactor.spawn(["true"])
        assert queued.duration is None and queued.started_at is None
        queued.wait(timeout=10)
    assert queued.duration is not None and 0 <= queued.duration < 5


def test_fileno_drives_from_asyncio() -> None:
    """Embed the reactor in asyncio: add_reader on fileno(), call_later for deadlines."""

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        with pr.Reactor() as reactor:
            jobs = [reactor.spawn(["echo", str(i)], stdout=pr.PIPE) for i in range(20)]
            jobs.append(reactor.spawn(["sleep", "30"], timeout=0.2, kill_grace=0.1))
            timer: asyncio.TimerHandle | None = None

            def turn() -> None:
                nonlocal timer
                if not reactor.step(0):
                    finished.set()
                    return
                if timer is not None:
                    timer.cancel()
                delay = reactor.next_timeout()
                timer = loop.call_later(delay, turn) if delay is not None else None

            loop.add_reader(reactor.fileno(), turn)
            turn()
            await asyncio.wait_for(finished.wait(), 10)
            loop.remove_reader(reactor.fileno())
            if timer is not None:
                timer.cancel()
        assert jobs[-1].timed_out
        return [j.stdout.getvalue() for j in jobs[:-1]]

    assert asyncio.run(main()) == [b"%d\n" % i for i in range(20)]


def test_fileno_needs_a_selector_with_an_fd() -> None:
    with pr.Reactor(selector=selectors.PollSelector) as reactor:
        with pytest.raises(ValueError, match="^fileno\\(\\) needs a selector with an fd; this reactor uses PollSelector$"):
            reactor.fileno()


def test_default_watcher_on_linux_is_pidfd() -> None:
    with pr.Reactor() as reactor:
        assert "watcher=pidfd" in repr(reactor)
