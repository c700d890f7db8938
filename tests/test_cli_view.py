"""The command-line runner on the terminal (issue 14, points 4-6): the head
job live with ``-k --line-buffer``, ``--color``, and the running jobs' view.
Each test drives the real CLI as a process (the view's pieces are also tested
in process); synchronisation is through fifos, never sleeps."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import CHILDREN, read_pty
from test_cli import CLI, ENV, cli
from test_cli_stream import read_until, release, stop

HEAD_JOB = os.path.join(CHILDREN, "head_job.py")
COLOUR_VARS = ("FORCE_COLOR", "CLICOLOR_FORCE", "NO_COLOR")
#: Our environment without the colour variables the person running the tests may have set.
PLAIN_ENV = {k: v for k, v in ENV.items() if k not in COLOUR_VARS}


# -- -k --line-buffer: the head job live ----------------------------------------------


@pytest.mark.deadline(60)
def test_keep_order_line_buffer_prints_the_head_live_as_gnu_parallel(tmp_path: Path) -> None:
    """Jobs A, B, C run at once and end in the order C, A, B (the test
    releases each through its fifo).  A, the head, prints its lines as they
    come; B's are held until A has ended, then B's whole lines come at once
    and the rest as B writes them; C, ended long before, comes last, stdout's
    held lines before stderr's.  The output is GNU parallel 20221122's, byte
    for byte, for

        parallel -j3 -k --line-buffer --tag JOB ::: A B C

    where JOB writes as tests/children/head_job.py does, with sleeps of 1, 2
    and 0.1 s instead of the fifos."""
    for name in "ABC":
        os.mkfifo(tmp_path / name)
    runner = subprocess.Popen([*CLI, "-j", "3", "-k", "--line-buffer", "--tag", "--",
                               sys.executable, HEAD_JOB, str(tmp_path), "{}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin and runner.stdout and runner.stderr
        runner.stdin.write(b"A\nB\nC\n")
        runner.stdin.close()
        runner.stdin = None
        release(tmp_path / "C")  # C ends first, held
        # A, the head, prints while it runs: its first line, and only its.
        seen = read_until(runner.stdout.fileno(), b"A\tA-o1\n")
        assert seen == b"A\tA-o1\n"
        release(tmp_path / "A")
        # A has ended: B is the head while it runs, its held lines out at once.
        seen += read_until(runner.stdout.fileno(), b"B\tB-o1\n")
        release(tmp_path / "B")
        out, err = runner.communicate(timeout=30)
    finally:
        stop(runner)
    assert runner.returncode == 0, err
    assert seen + out == (b"A\tA-o1\nA\tA-o2\nA\tA-endB\tB-o1\nB\tB-o2\nB\tB-end"
                          b"C\tC-o1\nC\tC-o2\nC\tC-end")
    assert err == (b"A\tA-e1\nA\tA-epA-e2\nB\tB-e1\nB\tB-epB-e2\n"
                   b"C\tC-e1\nC\tC-epC-e2\n")


@pytest.mark.deadline(60)
def test_keep_order_line_buffer_holds_big_output_whole_until_its_turn(tmp_path: Path) -> None:
    """A held job writes 3 MiB (past what is kept in memory: it spills) and
    ends while the head waits; once the head ends, every held byte comes
    out, in order, after the head's."""
    for name in ("head", "big"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "head.py").write_text(f"open({str(tmp_path / 'head')!r}, 'rb').read()\n"
                                      "print('head done')\n")
    (tmp_path / "big.py").write_text(
        "import sys\nfor i in range(60000):\n"
        "    sys.stdout.write(f'line {i:08d} ' + 'x' * 36 + '\\n')\n"
        "sys.stdout.flush()\n"
        f"open({str(tmp_path / 'big')!r}, 'wb').close()\n")
    commands = tmp_path / "commands"
    commands.write_text(f"{sys.executable} {tmp_path / 'head.py'}\n"
                        f"{sys.executable} {tmp_path / 'big.py'}\n")
    runner = subprocess.Popen([*CLI, "-j", "2", "-k", "--line-buffer", "-a", str(commands)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        with open(tmp_path / "big", "rb") as done:  # the big job has written everything
            assert done.read() == b""
        release(tmp_path / "head")
        out, err = runner.communicate(timeout=40)
    finally:
        stop(runner)
    assert runner.returncode == 0, err
    want = "head done\n" + "".join(f"line {i:08d} " + "x" * 36 + "\n" for i in range(60000))
    assert out.decode() == want


def test_head_line_writer_spills_what_it_holds_and_prints_it_whole() -> None:
    """In process: held output past the memory budget goes to a file, comes
    back in order when the job becomes the head, with the tag after each
    newline; a stream that ended while held is printed to its last byte."""
    from pipereactor.cli._output import Budget, HeadLineWriter, Tagger
    from test_cli_units import _Sink

    console = _Sink()
    budget = Budget(limit=1000)
    w = HeadLineWriter(console, 1, Tagger(b"T\t"), budget)  # type: ignore[arg-type]
    data = b"".join(b"%d\n" % i for i in range(20000)) + b"last"
    for i in range(0, len(data), 777):
        w.write(data[i:i + 777])
    assert not console.data[1] and w._held is not None and w._held.spilled
    assert w.total == len(data) and budget.used <= budget.limit
    w.close()
    assert not console.data[1]
    w.go_live()
    assert bytes(console.data[1]) == b"T\t" + data.replace(b"\n", b"\nT\t")
    w.go_live()  # idempotent
    assert bytes(console.data[1]).endswith(b"T\tlast")
    w.discard()
    assert budget.used == 0


def test_head_line_writer_goes_live_mid_line() -> None:
    from pipereactor.cli._output import HeadLineWriter, Tagger
    from test_cli_units import _Sink

    console = _Sink()
    w = HeadLineWriter(console, 2, Tagger(None))  # type: ignore[arg-type]
    w.write(b"one\ntw")
    w.go_live()
    assert bytes(console.data[2]) == b"one\n"  # the unfinished line waits for its end
    w.write(b"o\nthr")
    assert bytes(console.data[2]) == b"one\ntwo\n"
    w.close()
    assert bytes(console.data[2]) == b"one\ntwo\nthr"
    assert w.tail() == b"one\ntwo\nthr"
    w.discard()


# -- --color ---------------------------------------------------------------------------

_SHOW_ENV = ("import os; print(' '.join(f'{n}={os.environ.get(n, \"-\")}' "
             f"for n in {COLOUR_VARS!r}))")


def _colour_seen(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([*CLI, *args, "--", sys.executable, "-c", _SHOW_ENV],
                          input="x\n", capture_output=True, text=True,
                          env=env if env is not None else PLAIN_ENV, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_color_always_never_and_auto_off_a_terminal() -> None:
    assert _colour_seen("--color", "always") == "FORCE_COLOR=1 CLICOLOR_FORCE=1 NO_COLOR=-\n"
    assert _colour_seen("--color", "never") == "FORCE_COLOR=- CLICOLOR_FORCE=- NO_COLOR=1\n"
    assert _colour_seen() == "FORCE_COLOR=- CLICOLOR_FORCE=- NO_COLOR=-\n"  # a pipe
    assert _colour_seen("--color", "auto") == "FORCE_COLOR=- CLICOLOR_FORCE=- NO_COLOR=-\n"


def test_color_never_overrides_what_the_user_set() -> None:
    env = {**PLAIN_ENV, "FORCE_COLOR": "0", "NO_COLOR": ""}
    assert _colour_seen("--color", "always", env=env) == \
        "FORCE_COLOR=0 CLICOLOR_FORCE=1 NO_COLOR=\n"
    env = {**PLAIN_ENV, "NO_COLOR": "yes", "CLICOLOR_FORCE": "1"}
    assert _colour_seen("--color", "never", env=env) == \
        "FORCE_COLOR=- CLICOLOR_FORCE=1 NO_COLOR=yes\n"


def test_color_bad_value_is_a_clear_error() -> None:
    done = cli("--color", "sometimes")
    assert done.returncode == 2
    assert "argument --color/--colour: invalid choice: 'sometimes'" in done.stderr


@pytest.mark.deadline(30)
def test_color_auto_on_when_our_stdout_is_a_terminal() -> None:
    primary, secondary = pty.openpty()
    try:
        runner = subprocess.Popen([*CLI, "--", sys.executable, "-c", _SHOW_ENV],
                                  stdin=subprocess.PIPE, stdout=secondary,
                                  stderr=subprocess.DEVNULL, env=PLAIN_ENV)
        os.close(secondary)
        secondary = -1
        assert runner.stdin
        runner.stdin.write(b"x\n")
        runner.stdin.close()
        runner.stdin = None
        seen = read_pty(primary, 20)
        runner.wait(timeout=10)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert runner.returncode == 0
    assert seen.replace(b"\r\n", b"\n") == b"FORCE_COLOR=1 CLICOLOR_FORCE=1 NO_COLOR=-\n"


def test_job_env_in_process() -> None:
    from pipereactor.cli._color import job_env

    assert job_env("auto", False, {"A": "1"}) is None
    assert job_env("auto", True, {"A": "1"}) == {"A": "1", "FORCE_COLOR": "1",
                                                 "CLICOLOR_FORCE": "1"}
    assert job_env("always", False, {"FORCE_COLOR": "3", "CLICOLOR_FORCE": "0"}) is None
    assert job_env("never", True, {}) == {"NO_COLOR": "1"}
    with pytest.raises(ValueError, match=r"^--color must be one of auto, always, never, not 'x'$"):
        job_env("x", True, {})
