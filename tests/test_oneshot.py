"""pr.run and pr.communicate against subprocess.run and Popen.communicate, case by case.

Each parity case runs the same call through both and compares what a caller
sees: the result, or the exception's type and fields.  The cases where
pipereactor deliberately differs (a grandchild holding the pipe) show both.
"""

from __future__ import annotations

import array
import fractions
import gc
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import pipereactor as pr
from conftest import alive, child, python, wait_gone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "children"))
from patterns import payload  # noqa: E402

RUNNERS = {"subprocess": subprocess.run, "pipereactor": pr.run}


def outcome(runner: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a caller can observe of one call: the result, or the exception."""
    try:
        done = runner(*args, **kwargs)
    except subprocess.CalledProcessError as exc:
        return ("CalledProcessError", exc.returncode, exc.cmd, exc.output, exc.stderr, str(exc))
    except subprocess.TimeoutExpired as exc:
        # The output so far depends on timing: compare its type and a prefix.
        return ("TimeoutExpired", exc.cmd, exc.timeout, type(exc.output), type(exc.stderr), str(exc))
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "errno", None), getattr(exc, "filename", None))
    assert isinstance(done, subprocess.CompletedProcess)
    return ("CompletedProcess", done.args, done.returncode, done.stdout, done.stderr, repr(done))


ECHO_BOTH = python(
    "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); "
    "sys.stderr.write(str(len(data)) + '\\r\\nend\\r')"
)

CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "bytes": (ECHO_BOTH, {"input": b"abc\r\n", "capture_output": True}),
    "text": (ECHO_BOTH, {"input": "abc\r\n", "capture_output": True, "text": True}),
    "encoding": (ECHO_BOTH, {"input": "h\u00e9\u00e9", "capture_output": True, "encoding": "latin-1"}),
    "errors": (
        python("import os; os.write(1, b'ok \\xff\\xfe')"),
        {"stdout": subprocess.PIPE, "encoding": "utf-8", "errors": "replace"},
    ),
    "universal_newlines": (ECHO_BOTH, {"input": "a\rb\r\n", "stdout": subprocess.PIPE, "universal_newlines": True}),
    "stderr_to_stdout": (ECHO_BOTH, {"input": b"x", "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}),
    "no_capture": (python("pass"), {}),
    "stdin_devnull": (python("import sys; print(repr(sys.stdin.read()))"), {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE}),
    "check_ok": (python("print('fine')"), {"check": True, "stdout": subprocess.PIPE}),
    "check_fails": (
        python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"),
        {"check": True, "capture_output": True},
    ),
    "check_fails_text": (python("import sys; sys.exit(5)"), {"check": True, "capture_output": True, "text": True}),
    "killed_by_signal": (python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"), {"check": True}),
    "timeout": (python("import time; print('early', flush=True); time.sleep(30)"), {"timeout": 0.5, "capture_output": True}),
    "timeout_text": (python("import time; time.sleep(30)"), {"timeout": 0.2, "capture_output": True, "text": True}),
    "missing_program": (["/nonexistent/program-xyz"], {"capture_output": True}),
    "missing_cwd": (python("pass"), {"cwd": "/nonexistent/dir-xyz"}),
    "shell": ("echo $((6*7)); echo err >&2; exit 2", {"shell": True, "capture_output": True}),
    "env": (python("import os; print(os.environ['PR_PARITY'])"), {"env": {**os.environ, "PR_PARITY": "yes"}, "stdout": subprocess.PIPE}),
    "stdin_and_input": (python("pass"), {"stdin": subprocess.PIPE, "input": b"x"}),
    "capture_and_stdout": (python("pass"), {"capture_output": True, "stdout": subprocess.PIPE}),
    "text_input_in_bytes_mode": (ECHO_BOTH, {"input": "str", "stdout": subprocess.PIPE}),
    "text_and_universal_newlines_differ": (python("pass"), {"text": True, "universal_newlines": False}),
    "empty_input": (ECHO_BOTH, {"input": b"", "capture_output": True}),
    "child_ignores_input": (python("pass"), {"input": b"x" * (1 << 20), "stdout": subprocess.PIPE}),
    "input_array": (python("import sys; print(len(sys.stdin.buffer.read()))"), {"input": array.array("i", range(5)), "stdout": subprocess.PIPE}),
    "timeout_fraction": (python("print(1)"), {"timeout": fractions.Fraction(20, 1), "stdout": subprocess.PIPE}),
    "timeout_true": (python("print(1)"), {"timeout": True, "stdout": subprocess.PIPE}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_parity(case: str) -> None:
    args, kwargs = CASES[case]
    expected = outcome(subprocess.run, args, **kwargs)
    assert outcome(pr.run, args, **kwargs) == expected


def test_timeout_output_so_far_is_bytes_and_kept() -> None:
    code = python("import sys, time; print('early'); sys.stderr.write('e'); sys.stderr.flush(); time.sleep(30)")
    for runner in RUNNERS.values():
        with pytest.raises(subprocess.TimeoutExpired) as info:
            runner(code, capture_output=True, text=True, timeout=1.0)
        assert (info.value.output, info.value.stderr) == (b"early\n", b"e")


@pytest.mark.parametrize("seed", [1, 2])
def test_large_output_on_both_streams(seed: int) -> None:
    """4 MiB + 1 on each stream, in seeded random chunks: exact bytes, no deadlock."""
    size = (4 << 20) + 1
    args = child("flood.py", str(size), str(size + seed), str(seed))
    for name, runner in RUNNERS.items():
        done = runner(args, capture_output=True, timeout=60)
        assert hashlib.sha256(done.stdout).digest() == hashlib.sha256(payload(seed, size)).digest(), name
        assert done.stderr == payload(seed + 1, size + seed), name


def test_large_input_echoed_while_stderr_floods() -> None:
    data = payload(7, (8 << 20) + 3)
    for name, runner in RUNNERS.items():
        done = runner(child("echo.py", str(4 << 20), "7"), input=data, capture_output=True, timeout=60)
        assert (len(done.stdout), done.stdout == data) == (len(data), True), name
        assert done.stderr == payload(7, 4 << 20), name


def test_communicate_resumes_after_timeout_in_parity() -> None:
    code = python(
        "import sys, time; sys.stderr.write('pineapple\\n'); sys.stderr.flush(); "
        "time.sleep(1); sys.stderr.write('pear\\n'); sys.stdout.write(sys.stdin.read())"
    )
    results = {}
    for name, communicate in (
        ("subprocess", subprocess.Popen.communicate),
        ("pipereactor", pr.communicate),
    ):
        with subprocess.Popen(
            code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as p:
            with pytest.raises(subprocess.TimeoutExpired) as info:
                communicate(p, "banana", timeout=0.5)
            first = (info.value.output, info.value.stderr)
            with pytest.raises(ValueError, match=r"^Cannot send input after starting communication$"):
                communicate(p, "more")
            results[name] = (first, communicate(p), p.returncode)
    assert results["pipereactor"] == results["subprocess"]
    assert results["pipereactor"] == ((None, b"pineapple\n"), ("banana", "pineapple\npear\n"), 0)


def test_communicate_resumes_input_left_over_after_timeout() -> None:
    """A child reading slowly: the first call times out with input unwritten;
    the retry writes the rest, once.  (The stdlib stops writing it: its retry
    without input leaves the child waiting for EOF, so only we are run here.)"""
    data = payload(3, 1 << 20)
    code = python(
        "import sys, time, hashlib; time.sleep(0.5); d = sys.stdin.buffer.read(); "
        "print(len(d), hashlib.sha256(d).hexdigest())"
    )
    with subprocess.Popen(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            pr.communicate(p, data, timeout=0.1)
        out, err = pr.communicate(p, timeout=30)
    assert err is None
    assert out.split() == [str(len(data)).encode(), hashlib.sha256(data).hexdigest().encode()]


@pytest.mark.parametrize("two_pipes", [False, True])
def test_communicate_returns_what_the_callers_readline_left_buffered(two_pipes: bool) -> None:
    code = python("import sys, time; sys.stdout.write('a\\nb\\n'); sys.stdout.flush(); time.sleep(0.3); print('c')")
    results = []
    for communicate in (subprocess.Popen.communicate, pr.communicate):
        stderr = subprocess.PIPE if two_pipes else None
        with subprocess.Popen(code, stdout=subprocess.PIPE, stderr=stderr) as p:
            assert p.stdout is not None
            assert p.stdout.readline() == b"a\n"
            results.append(communicate(p)[0])
    # The stdlib keeps it only on its one-pipe path; we keep it on both.
    assert results[1] == b"b\nc\n"
    if not two_pipes:
        assert results[0] == results[1]


def test_timeout_zero_still_sees_an_exited_child() -> None:
    for communicate in (subprocess.Popen.communicate, pr.communicate):
        with subprocess.Popen(python("pass")) as p:
            os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
            assert communicate(p, timeout=0) == (None, None)
            assert p.returncode == 0


def test_nothing_of_the_call_waits_for_the_garbage_collector() -> None:
    """The one-shot reactor, its job and the captured output are freed by
    reference counting as soon as the call returns (or times out)."""
    gc.collect()
    gc.disable()
    try:
        pr.run(python("print('x' * 100000)"), capture_output=True)
        with subprocess.Popen(python("import time; time.sleep(5)"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) as p:
            with pytest.raises(subprocess.TimeoutExpired):
                pr.communicate(p, b"x" * (1 << 20), timeout=0.1)
            p.kill()
            pr.communicate(p)
        leftovers = [o for o in gc.get_objects() if isinstance(o, (pr.Reactor, pr.Job))]
        assert leftovers == []
    finally:
        gc.enable()


def test_the_callers_input_buffer_is_not_locked_between_calls() -> None:
    """Regression: the session held a view of the input across calls, so a
    bytearray could not be resized after a TimeoutExpired."""
    data = bytearray(b"x" * (1 << 20))
    with subprocess.Popen(python("import time; time.sleep(30)"), stdin=subprocess.PIPE) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            pr.communicate(p, data, timeout=0.1)
        data.extend(b"more")  # BufferError while a view is exported
        p.kill()
        pr.communicate(p)


def test_communicate_leaves_pipes_blocking_after_timeout() -> None:
    with subprocess.Popen(
        python("import time; print('a', flush=True); time.sleep(0.5); print('b')"),
        stdout=subprocess.PIPE,
    ) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            pr.communicate(p, timeout=0.2)
        assert p.stdout is not None and os.get_blocking(p.stdout.fileno())
        # A caller may go on reading by hand, as after Popen.communicate.
        assert p.stdout.read() == b"b\n"


def test_communicate_on_streams_that_are_not_pipes(tmp_path: Any) -> None:
    with open(tmp_path / "out", "wb") as out:
        with subprocess.Popen(python("import sys; print('x'); print('y', file=sys.stderr)"),
                              stdout=out, stderr=subprocess.PIPE) as p:
            assert pr.communicate(p, timeout=10) == (None, b"y\n")
    assert (tmp_path / "out").read_bytes() == b"x\n"


def test_communicate_with_a_stdin_the_child_closed() -> None:
    with subprocess.Popen(
        python("import os; os.close(0); print('closed')"), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as p:
        assert pr.communicate(p, b"x" * (4 << 20), timeout=30) == (b"closed\n", None)
        assert p.returncode == 0


def test_communicate_refuses_what_is_not_a_popen() -> None:
    with pytest.raises(TypeError, match=r"^popen must be a subprocess.Popen, not list$"):
        pr.communicate([], b"")  # type: ignore[arg-type]
    with subprocess.Popen(python("pass")) as p:
        with pytest.raises(TypeError, match=r"^timeout must be a number of seconds or None, not str$"):
            pr.communicate(p, timeout="1")  # type: ignore[arg-type]


def _stdlib_run_in_a_child(code: str) -> subprocess.Popen[bytes]:
    """A Python process calling subprocess.run (the stdlib's own), in its own
    process group so that the test can kill it and its grandchild after."""
    driver = f"import subprocess, sys; subprocess.run({code}, capture_output=True); print('returned')"
    return subprocess.Popen(python(driver), stdout=subprocess.PIPE, start_new_session=True)


@pytest.mark.deadline(60)
def test_grandchild_holding_the_pipe_hangs_subprocess_run_but_not_ours() -> None:
    """bpo-37424 was fixed on the timeout path only: without a timeout,
    subprocess.run waits for the grandchild's EOF for ever; pr.run returns
    EOF_GRACE (2 s) after the child exits."""
    args = repr(child("grandchild.py"))
    stdlib = _stdlib_run_in_a_child(args)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            stdlib.wait(timeout=6)  # three times our grace: it is hung
    finally:
        os.killpg(stdlib.pid, signal.SIGKILL)
        stdlib.communicate()

    started = time.monotonic()
    done = pr.run(child("grandchild.py"), capture_output=True)
    elapsed = time.monotonic() - started
    grandchild = int(done.stdout.split()[0])
    try:
        assert done.returncode == 0
        assert 1.5 < elapsed < 5.0
        assert alive(grandchild)  # left running, as documented
    finally:
        os.kill(grandchild, signal.SIGKILL)
        wait_gone(grandchild)


@pytest.mark.deadline(60)
def test_run_timeout_kills_a_grandchild_left_by_an_exited_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell exits at once while its grandchild holds the pipe; the
    timeout still kills the group it leaves behind, and does so while the
    shell is an unreaped zombie, so that the group id cannot have been
    recycled (regression: it signalled the group after reaping the leader)."""
    signalled = []

    def spy(pgid: int, sig: int) -> None:
        with open(f"/proc/{pgid}/stat") as f:  # FileNotFoundError once reaped
            signalled.append((sig, f.read().split(") ")[1][0]))
        real_killpg(pgid, sig)

    real_killpg = os.killpg
    monkeypatch.setattr(os, "killpg", spy)
    with pytest.raises(subprocess.TimeoutExpired) as info:
        pr.run("sleep 30 & echo $!; exit 0", shell=True, stdout=subprocess.PIPE, timeout=1,
               start_new_session=True)
    assert isinstance(info.value.output, bytes)
    wait_gone(int(info.value.output.split()[0]))
    assert signalled == [(signal.SIGKILL, "Z")]


@pytest.mark.deadline(60)
def test_run_timeout_kills_the_group_with_start_new_session() -> None:
    code = python(
        "import subprocess, sys, time; "
        "gc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(gc.pid, flush=True); time.sleep(60)"
    )
    with pytest.raises(subprocess.TimeoutExpired) as info:
        pr.run(code, stdout=subprocess.PIPE, timeout=2, start_new_session=True)
    assert isinstance(info.value.output, bytes)
    wait_gone(int(info.value.output.split()[0]))


def test_run_reaps_the_child_on_an_interrupt() -> None:
    """KeyboardInterrupt from inside the loop: the child is killed and reaped
    before it propagates (subprocess.run leaves the reaping to later)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, interrupt)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            pr.run(
                python("import os, signal, time; os.kill(os.getppid(), signal.SIGUSR1); time.sleep(30)"),
                stdout=subprocess.PIPE,
                timeout=20,
            )
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert time.monotonic() - started < 10
    # The zombie guard (conftest) fails this test if the child was left unreaped.
