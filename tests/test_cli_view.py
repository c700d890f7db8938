"""The command-line runner on the terminal (issue 14, points 4-6): the head
job live with ``-k --line-buffer``, ``--color``, and the running jobs' view.
Each test drives the real CLI as a process (the view's pieces are also tested
in process); synchronisation is through fifos, never sleeps."""

from __future__ import annotations

import fcntl
import select
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CHILDREN, read_pty, run_on_pty
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


@pytest.mark.deadline(60)
def test_keep_order_line_buffer_under_shard_and_resume_follows_our_jobs(tmp_path: Path) -> None:
    """Shard 2/2 of 8 jobs, job 2 already in the job log: our jobs are 4,
    6 and 8, and the head is the earliest of ours (sequence numbers have
    gaps): all are printed, in order, and the run ends."""
    joblog = tmp_path / "jl"
    joblog.write_text("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\t"
                      "Command\n2\t:\t1.0\t0.1\t0\t2\t0\t0\techo 2\n")
    done = cli("-k", "--line-buffer", "--shard", "2/2", "--resume", "--joblog", str(joblog),
               "-j", "3", "--", "echo", "{#}", ":::", *"abcdefgh")
    assert (done.returncode, done.stdout) == (0, "4\n6\n8\n"), done.stderr


def test_keep_order_line_buffer_passes_a_job_that_cannot_start() -> None:
    """The head cannot start: its message is printed at its turn and the
    next job becomes the head (as with -k alone, nothing waits for ever)."""
    done = cli("-k", "--line-buffer", "-j", "2", "--", "{}", "hi",
               input="/nonexistent/prog\n/bin/echo\n/bin/echo\n")
    assert (done.returncode, done.stdout) == (1, "hi\nhi\n")
    assert done.stderr.startswith("pipereactor: /nonexistent/prog: not found\n"), done.stderr


#: A job for -k --line-buffer --retries, run in a directory with fifos "fa"
#: and "log": it says "try NAME RUN" (RUN counts from 0).  Job b fails its
#: first run at once and tells the log each run; job a's first run waits for
#: the test, then exits A_EXIT.
RETRIED = ("n=$(cat {}.runs 2>/dev/null | wc -l); echo x >> {}.runs; echo try {} $n\n"
           "if [ {} = b ]; then echo b $n > log; [ $n != 0 ]; exit; fi\n"
           "if [ $n = 0 ]; then cat fa >/dev/null; exit A_EXIT; fi\n")


@pytest.mark.deadline(60)
def test_keep_order_line_buffer_retries_print_the_heads_runs_and_a_held_jobs_last(
        tmp_path: Path) -> None:
    """-j 2: b fails while a (the head) runs and is held; its second run
    ends (the log says so) before the test lets a's first run end, failed.
    The head's failed run was printed as it came (it cannot be taken back),
    the held job's is dropped: GNU parallel 20221122 prints exactly this for
    ``parallel -j2 -k --line-buffer --retries 2 'RETRIED' ::: a b`` (a's
    wait a sleep of 1 s, A_EXIT 1)."""
    for name in ("fa", "log"):
        os.mkfifo(tmp_path / name)
    log = os.open(tmp_path / "log", os.O_RDWR)  # never at its end; the jobs' opens never block
    runner = subprocess.Popen([*CLI, "-j", "2", "-k", "--line-buffer", "--retries", "2",
                               "--shell", "--", RETRIED.replace("A_EXIT", "1"), ":::", "a", "b"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=ENV, cwd=tmp_path)
    try:
        assert runner.stdout
        seen = read_until(runner.stdout.fileno(), b"try a 0\n")
        read_until(log, b"b 1\n")
        release(tmp_path / "fa")
        out, err = runner.communicate(timeout=30)
    finally:
        os.close(log)
        stop(runner)
    assert runner.returncode == 0, err
    assert seen + out == b"try a 0\ntry a 1\ntry b 1\n"


@pytest.mark.deadline(60)
def test_a_held_job_waiting_to_run_again_when_its_turn_comes_shows_only_its_last_run(
        tmp_path: Path) -> None:
    """b fails while held and waits 5 s to run again (the status on the
    terminal says so); a ends meanwhile, so b's turn comes while it waits.
    Its failed run's output was held, and stays unprinted (as GNU parallel
    drops a held job's failed run); its next run prints live.  (The failed
    run was printed when its turn came.)"""
    for name in ("fa", "log"):
        os.mkfifo(tmp_path / name)
    log = os.open(tmp_path / "log", os.O_RDWR)
    r, w = os.pipe()
    try:
        term = Terminal(30, 100, ["-j", "2", "-k", "--line-buffer", "--retries", "2",
                                  "--retry-delay", "5", "--shell", "--",
                                  f"cd {tmp_path}; " + RETRIED.replace("A_EXIT", "0"),
                                  ":::", "a", "b"], b"", stdout=w)
    finally:
        os.close(w)
    try:
        term.read_until(lambda t: "1 to run again" in t.text())
        release(tmp_path / "fa")
        assert term.finish() == 0
        with os.fdopen(r, "rb") as out:
            r = -1
            assert out.read() == b"try a 0\ntry b 1\n"
    finally:
        if r >= 0:
            os.close(r)
        os.close(log)
        term.close()


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
    status, seen = run_on_pty([*CLI, "--", sys.executable, "-c", _SHOW_ENV], b"x\n", PLAIN_ENV)
    assert status == 0
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


# -- what is running now ---------------------------------------------------------------

#: What erases the status: one line (``\r``, erase the line), or an area
#: (``\r``, up to its first line, erase to the end of the screen).
ERASE = re.compile(r"\r(?:\x1b\[\d+A)?\x1b\[[JK]")
HEADER = re.compile(r"\[\d+/\d+\] running \d+, failed \d+")
VIEW_JOB = ("import os, sys\n"
            "d, name = sys.argv[1:]\n"
            "print(name + ': compiling', flush=True)\n"
            "sys.stdout.write(name + ': \\x1b[1mlinking\\x1b[0m'); sys.stdout.flush()\n"
            "open(os.path.join(d, name), 'rb').read()\n")


class Terminal:
    """The runner with stderr (and stdout, unless given) on a pty of ``rows`` x ``cols``."""

    def __init__(self, rows: int, cols: int, args: list[str], lines: bytes,
                 stdout: int | None = None) -> None:
        self.primary, secondary = pty.openpty()
        try:
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            self.runner = subprocess.Popen([*CLI, *args], stdin=subprocess.PIPE,
                                           stdout=secondary if stdout is None else stdout,
                                           stderr=secondary, env=PLAIN_ENV)
        except BaseException:
            os.close(self.primary)
            raise
        finally:
            os.close(secondary)
        assert self.runner.stdin
        self.runner.stdin.write(lines)
        self.runner.stdin.close()
        self.runner.stdin = None
        self.seen = b""

    def text(self) -> str:
        return self.seen.decode("utf-8", "replace").replace("\r\n", "\n")

    def frames(self) -> list[list[str]]:
        """Each status drawn, as its lines (job output and the summary left out)."""
        return [seg.split("\n") for seg in ERASE.split(self.text()) if HEADER.match(seg)]

    def read_until(self, done: Callable[[Terminal], bool], timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while not done(self):
            ready, _, _ = select.select([self.primary], [], [], max(end - time.monotonic(), 0))
            assert ready, f"waited {timeout} s; the terminal shows {self.text()!r}"
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:  # EIO: the runner has gone
                chunk = b""
            assert chunk, f"the runner ended; the terminal shows {self.text()!r}"
            self.seen += chunk

    def finish(self) -> int:
        self.seen += read_pty(self.primary, 20)
        return self.runner.wait(timeout=20)

    def close(self) -> None:
        os.close(self.primary)
        stop(self.runner)  # type: ignore[arg-type]


def _showing(*names: str) -> Callable[[Terminal], bool]:
    """Whether the last frame shows exactly these jobs, in this order, each
    with its last line."""
    def check(term: Terminal) -> bool:
        frames = term.frames()
        if not frames:
            return False
        jobs = frames[-1][1:]
        return len(jobs) == len(names) and all(
            re.fullmatch(rf" +\d+s  \S.*  \| {n}: linking", line) for line, n in zip(jobs, names))
    return check


@pytest.mark.deadline(60)
def test_the_running_jobs_with_their_age_and_last_line_longest_first(tmp_path: Path) -> None:
    """A 30-row terminal: the area shows the header, then each running job
    (-j 2) with its age, command and last line (escape sequences left out),
    the oldest first; it is erased before a job's output is printed, and
    before the summary."""
    for name in "ABC":
        os.mkfifo(tmp_path / name)
    term = Terminal(30, 100, ["-j", "2", "--", sys.executable, "-c", VIEW_JOB, str(tmp_path),
                              "{}"], b"A\nB\nC\n")
    try:
        term.read_until(_showing("A", "B"))
        release(tmp_path / "B")
        term.read_until(_showing("A", "C"))  # A started before C: A first
        release(tmp_path / "A")
        release(tmp_path / "C")
        assert term.finish() == 0
    finally:
        term.close()
    text = term.text()
    # Job output is printed only after the area is erased: never glued to a
    # frame, where it would show as a line that is not a job's.
    frames = term.frames()
    assert any(len(frame) == 3 for frame in frames)
    for frame in frames:
        assert len(frame) <= 3 and all(re.fullmatch(r" +\d+s  \S.*", line)
                                       for line in frame[1:]), frame
    outputs = "".join(seg for seg in ERASE.split(text) if not HEADER.match(seg))
    for name in "ABC":
        assert f"{name}: compiling\n{name}: \x1b[1mlinking\x1b[0m" in outputs
    assert re.search(r"\r\x1b\[2A\x1b\[J", text)  # a 3-line area, erased
    summary = text[text.index("pipereactor: 3 ok"):]
    assert "\x1b" not in summary


@pytest.mark.deadline(60)
def test_the_view_shows_what_a_third_of_the_terminal_holds(tmp_path: Path) -> None:
    """9 rows: a header and two jobs, of the three running (the oldest two)."""
    for name in "ABC":
        os.mkfifo(tmp_path / name)
    term = Terminal(9, 100, ["-j", "3", "--", sys.executable, "-c", VIEW_JOB, str(tmp_path),
                             "{}"], b"A\nB\nC\n")
    try:
        def two_of_three(t: Terminal) -> bool:
            frames = t.frames()
            return bool(frames) and frames[-1][0].startswith("[0/3] running 3") and \
                _showing("A", "B")(t)
        term.read_until(two_of_three)
        for name in "ABC":
            release(tmp_path / name)
        assert term.finish() == 0
    finally:
        term.close()
    assert all(len(frame) <= 3 for frame in term.frames())


@pytest.mark.deadline(60)
def test_a_small_terminal_keeps_the_one_line_status(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "A")
    term = Terminal(5, 100, ["--", sys.executable, "-c", VIEW_JOB, str(tmp_path), "{}"],
                    b"A\n")
    try:
        term.read_until(lambda t: any("longest" in f[0] for f in t.frames()))
        release(tmp_path / "A")
        assert term.finish() == 0
    finally:
        term.close()
    assert all(len(frame) == 1 for frame in term.frames())
    assert "\x1b[J" not in term.text() and "\x1b[1A" not in term.text()


@pytest.mark.deadline(90)
def test_the_view_is_redrawn_at_most_ten_times_a_second() -> None:
    """Two jobs change their last line every few milliseconds for about a
    second: the status is drawn no more often than 10 times a second (counted
    over the runner's whole life, measured from outside: an upper bound that
    load can only make easier)."""
    chatty = ("import sys, time\n"
              "for i in range(250):\n"
              "    print('step', i, flush=True); time.sleep(0.004)\n")
    started = time.monotonic()
    term = Terminal(30, 100, ["-j", "2", "--", sys.executable, "-c", chatty], b"a\nb\n")
    try:
        assert term.finish() == 0
    finally:
        term.close()
    elapsed = time.monotonic() - started
    frames = term.frames()
    assert 2 <= len(frames) <= 10 * elapsed + 2, (len(frames), elapsed)
    assert any(re.search(r"\| step \d+$", line) for frame in frames for line in frame[1:])


@pytest.mark.deadline(60)
def test_the_view_counts_a_job_waiting_to_run_again() -> None:
    """A job that failed and waits (--retry-delay) to run again is neither
    running nor done: the header says it waits, and for how many jobs."""
    term = Terminal(30, 100, ["--retries", "2", "--retry-delay", "600", "--shard", "2/2",
                              "--", sys.executable, "-c", "exit(1)"], b"a\nb\n")
    try:
        term.read_until(lambda t: "[shard 2/2] [0/1] running 0, failed 0, 1 to run again"
                        in t.text())
    finally:
        term.close()


def test_last_line_keeps_a_bounded_tail_and_shows_what_a_terminal_would() -> None:
    from pipereactor.cli._live import KEEP, LastLine

    last = LastLine()
    assert last.text() == ""
    last.feed(1, b"x" * (1 << 20))  # a 1 MiB line: its end only is kept
    assert all(len(t) <= KEEP for t in last._tails) and last.text() == "x" * KEEP
    last.feed(1, b"\n\x1b[32mok\x1b[0m 3 tests\n\n")
    assert last.text() == "ok 3 tests"
    last.feed(2, b"warning: \xff\x07bell\r\n")
    assert last.text() == "warning: \ufffd?bell"  # stderr wrote last
    last.feed(1, b"progress 10%\rprogress 90%")
    assert last.text() == "progress 90%"
    last.feed(2, b"   \n")
    assert last.text() == "warning: \ufffd?bell"  # blank: the line before it
    last.feed(1, "é".encode() * KEEP)  # cut inside a character: no stray byte shown
    assert last.text() == "é" * (KEEP // 2)


def test_job_rows_ages_and_lines_fit_the_terminal() -> None:
    from pipereactor.cli._live import fit, format_age, job_line, job_rows

    assert [job_rows(r) for r in (0, 5, 6, 9, 24, 60)] == [0, 0, 1, 2, 7, 19]
    assert [format_age(s) for s in (0, 7.9, 65, 3599, 7380)] == ["0s", "7s", "1m05s", "59m59s",
                                                                 "2h03m"]
    assert fit("abcdef", 4) == "abc"
    assert fit("日本語テキスト", 7) == "日本語"  # two columns each
    assert fit("e\u0301" * 10, 4) == "e\u0301" * 3  # combining accents take none
    line = job_line(65, "make -C " + "x" * 200, "CC parse.o", 80)
    assert line.startswith("  1m05s  make -C xxx") and line.endswith("  | CC parse.o")
    assert len(line) < 80
    assert job_line(3, "true", "", 80) == "     3s  true"


@pytest.mark.deadline(60)
def test_output_to_a_file_leaves_the_view_on_the_terminal_alone(tmp_path: Path) -> None:
    """stderr on the terminal, stdout to a file: a job's output is not
    written where the view is, so the view is not erased for it (only
    redrawn in place, and erased once at the end)."""
    for name in "AB":
        os.mkfifo(tmp_path / name)
    out = tmp_path / "out"
    with open(out, "wb") as stdout:
        term = Terminal(30, 100, ["-j", "1", "--", sys.executable, "-c", VIEW_JOB, str(tmp_path),
                                  "{}"], b"A\nB\n", stdout=stdout.fileno())
    try:
        term.read_until(_showing("A"))
        release(tmp_path / "A")
        term.read_until(_showing("B"))
        release(tmp_path / "B")
        assert term.finish() == 0
    finally:
        term.close()
    assert out.read_bytes() == (b"A: compiling\nA: \x1b[1mlinking\x1b[0m"
                                b"B: compiling\nB: \x1b[1mlinking\x1b[0m")
    segments = ERASE.split(term.text())
    bare = [seg for seg in segments[1:] if not HEADER.match(seg)]
    assert len(bare) == 1 and bare[0].startswith("pipereactor: 2 ok, 0 failed"), segments
