"""The command-line runner, driven as a real process: options, ordering,
exit statuses, bounded memory, Ctrl-C, and the status line through a pty."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CHILDREN, read_pty, wait_gone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}
CLI = [sys.executable, "-m", "pipereactor"]


def cli(*args: str, input: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=input, capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _pids_written(path: Path, count: int) -> list[int]:
    """The pids the jobs append to ``path``, once ``count`` are there (the
    jobs write them from another process: nothing to wait on but the file)."""
    deadline = time.monotonic() + 20
    while (not path.exists() or len(path.read_text().split()) < count) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def test_command_file_grouped_output_failure_tail_and_exit_status(tmp_path: Path) -> None:
    commands = tmp_path / "commands"
    commands.write_text(
        "# a comment, then a blank line\n\n"
        "echo one; echo two\n"
        "echo bad >&2; echo out; exit 3\n"
        "printf 'no newline'\n"
    )
    done = cli("-j", "2", "-k", "-a", str(commands))
    assert done.returncode == 1
    assert done.stdout == "one\ntwo\nout\nno newline"  # as written: no newline added
    assert "pipereactor: job 2 failed (exit 3): echo bad >&2; echo out; exit 3" in done.stderr
    assert "  stderr| bad" in done.stderr and "  stdout| out" in done.stderr
    assert "pipereactor: 2 ok, 1 failed (0 timed out) of 3 in" in done.stderr


def test_template_fills_or_appends_the_input_line() -> None:
    done = cli("-k", "--", "echo", "<{}>", input="a b\n\nc\n")
    assert done.stdout == "<a b>\n<c>\n"  # one argument per line, blank lines skipped
    done = cli("-k", "--", "echo", "x", input="1\n2\n")
    assert done.stdout == "x 1\nx 2\n"
    done = cli("-k", "--shell", "--", "echo {} | tr a-z A-Z", input="it's\n")
    assert done.stdout == "IT'S\n"


def test_keep_order_and_tag(tmp_path: Path) -> None:
    """Jobs finish in the order the test releases them (each waits on its
    fifo): -k prints in input order, without -k in completion order."""
    for i in range(4):
        os.mkfifo(tmp_path / f"f{i}")
    template = ["--shell", "--", f"cat {tmp_path}/f{{}} >/dev/null; echo done {{}}"]
    for keep in (True, False):
        args = ["-j", "4", "--tag", "-k"] if keep else ["-j", "4"]
        runner = subprocess.Popen([*CLI, *args, *template], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        try:
            assert runner.stdin and runner.stdout
            runner.stdin.write(b"3\n1\n2\n0\n")
            runner.stdin.close()
            runner.stdin = None
            seen = b""
            for i in range(4):
                os.close(os.open(tmp_path / f"f{i}", os.O_WRONLY))  # job i may end
                while not keep and f"done {i}\n".encode() not in seen:
                    ready, _, _ = select.select([runner.stdout], [], [], 20)
                    assert ready, seen
                    seen += os.read(runner.stdout.fileno(), 4096)
            out, err = runner.communicate(timeout=20)
        finally:
            if runner.returncode is None:
                runner.kill()
                runner.communicate()
        assert runner.returncode == 0, err
        if keep:
            assert out == b"".join(f"{n}\tdone {n}\n".encode() for n in (3, 1, 2, 0))
        else:
            assert seen + out == b"done 0\ndone 1\ndone 2\ndone 3\n"


def test_grouped_output_is_never_interleaved_but_line_buffer_is_whole_lines() -> None:
    writer = ("import sys, time\n"
              "for i in range(30):\n"
              "    print(sys.argv[1] * 40, i, flush=True); time.sleep(0.02)\n")
    grouped = cli("-j", "3", "--", sys.executable, "-c", writer, input="a\nb\nc\n")
    runs = [line[0] for line in grouped.stdout.splitlines()]
    assert len(runs) == 90
    assert sum(1 for i in range(1, 90) if runs[i] != runs[i - 1]) == 2  # three blocks
    lined = cli("-j", "3", "--line-buffer", "--tag", "--", sys.executable, "-c", writer,
                input="a\nb\nc\n")
    lines = lined.stdout.splitlines()
    assert len(lines) == 90
    for line in lines:
        tag, text = line.split("\t")
        assert re.fullmatch(rf"{tag * 40} \d+", text)
    switches = sum(1 for i in range(1, 90) if lines[i][0] != lines[i - 1][0])
    assert switches > 2  # as they came, interleaved by line


def test_jobs_limit_timeout_and_joblog(tmp_path: Path) -> None:
    log = tmp_path / "intervals"
    joblog = tmp_path / "joblog"
    inputs = "".join(f"job{i}\n" for i in range(6))
    done = cli("-j", "2", "--joblog", str(joblog), "--",
               sys.executable, os.path.join(CHILDREN, "log_interval.py"), str(log), "{}", "0.2",
               input=inputs)
    assert done.returncode == 0, done.stderr
    from test_jobserver import max_overlap

    most, count = max_overlap(log)
    assert (most, count) == (2, 6)
    rows = [line.split("\t") for line in joblog.read_text().splitlines()]
    assert rows[0] == ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval",
                       "Signal", "Command"]
    assert sorted(int(r[0]) for r in rows[1:]) == list(range(1, 7))
    assert all(r[6] == "0" and r[7] == "0" and float(r[3]) >= 0.2 for r in rows[1:])

    slow = cli("--timeout", "0.3", "--kill-grace", "1", "--joblog", str(joblog), "--",
               "sleep", input="5\n0\n")
    assert slow.returncode == 1
    assert "failed (killed by SIGTERM, timed out): sleep 5" in slow.stderr
    row = [r.split("\t") for r in joblog.read_text().splitlines()[1:] if r.endswith("sleep 5")][0]
    assert (row[6], row[7]) == ("0", str(int(signal.SIGTERM)))


def test_halt_on_error_starts_nothing_more_and_exit_status_is_capped() -> None:
    done = cli("-j", "1", "--halt-on-error", "-a", "/dev/stdin",
               input="echo first\nexit 4\necho never\necho never\n")
    assert done.stdout == "first\n"
    assert done.returncode == 1
    assert "pipereactor: 1 ok, 1 failed (0 timed out), 2 not run of 4 in" in done.stderr
    many = cli("-j", "8", input="false\n" * 101)
    assert many.returncode == 100


def test_results_dir_keeps_full_output(tmp_path: Path) -> None:
    big = 3 << 20
    done = cli("--results", str(tmp_path / "r"),
               input=f"head -c {big} /dev/zero; echo e >&2\n")
    assert done.returncode == 0 and done.stdout == ""
    assert (tmp_path / "r" / "1.stdout").stat().st_size == big
    assert (tmp_path / "r" / "1.stderr").read_text() == "e\n"


@pytest.mark.deadline(60)
def test_a_job_writing_200_mib_keeps_the_runner_small() -> None:
    code = ("import sys; from pipereactor.cli import main; rc = main(sys.argv[1:]); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0], "
            "file=sys.stderr); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "--max-output", "65536"],
                          input="head -c 209715200 /dev/zero | tr '\\0' x; echo\n",
                          capture_output=True, text=True, env=ENV, timeout=50)
    assert done.returncode == 0
    assert len(done.stdout) == 65536  # the tail only
    assert "first 209649665 bytes of its stdout not kept" in done.stderr
    hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", done.stderr).group(1))  # type: ignore[union-attr]
    assert hwm_kib < 80 * 1024  # a fraction of the 200 MiB written


@pytest.mark.deadline(60)
def test_ctrl_c_stops_everything_prints_the_summary_and_exits_130(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    job = (f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; "
           "trap '' TERM; wait")  # the shell ignores SIGTERM: escalation needed
    runner = subprocess.Popen([*CLI, "-j", "3", "--kill-grace", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              start_new_session=True)
    try:
        assert runner.stdin is not None
        runner.stdin.write(f"{job}\n" * 5)
        runner.stdin.close()
        runner.stdin = None
        started = _pids_written(pids, 6)
        assert len(started) == 6  # three jobs running (-j 3), each with a grandchild
        os.killpg(runner.pid, signal.SIGINT)  # as a terminal's Ctrl-C would
        out, err = runner.communicate(timeout=20)
    finally:
        if runner.returncode is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.communicate()
    assert runner.returncode == 130, err
    assert re.search(r"pipereactor: 0 ok, 3 failed \(0 timed out\), 2 not run, interrupted of 5 in", err)
    for pid in started:
        wait_gone(pid, timeout=5)


@pytest.mark.deadline(30)
def test_status_line_on_a_terminal() -> None:
    primary, secondary = pty.openpty()
    try:
        runner = subprocess.Popen([*CLI, "-j", "2", "--", "sleep"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=secondary, env=ENV)
        os.close(secondary)
        secondary = -1
        assert runner.stdin is not None
        runner.stdin.write(b"0.5\n0.5\n0.5\n")
        runner.stdin.close()
        runner.stdin = None
        seen = read_pty(primary, 10, quiet_is_end=True)
        runner.wait(timeout=10)
        assert runner.stdout is not None
        runner.stdout.close()
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    text = seen.decode()
    assert "\r\x1b[K[0/3] running 2, failed 0, longest" in text
    assert "sleep 0.5" in text
    assert re.search(r"pipereactor: 3 ok, 0 failed \(0 timed out\) of 3 in [\d.]+s; slowest: sleep 0.5", text)
    assert runner.returncode == 0


def test_no_escape_codes_when_stderr_is_not_a_terminal() -> None:
    done = cli("--", "true", input="x\n")
    assert done.returncode == 0 and "\x1b" not in done.stderr and done.stderr == ""


def test_bad_options_are_clear_errors() -> None:
    for args, message in (
        (["-j", "x"], "argument -j/--jobs: not a job count (N, N%, +N, -N or 0): 'x'"),
        (["--timeout", "-1"], "--timeout must be > 0, not -1.0"),
        (["--shell"], "--shell needs a template after --"),
        (["--line-buffer", "--max-output", "1M"], "--max-output caps grouped output only"),
    ):
        done = cli(*args)
        assert done.returncode == 2 and message in done.stderr


def test_review_findings_on_the_cli(tmp_path: Path) -> None:
    """Regressions: -k waited for ever behind a job that could not start;
    non-UTF-8 input crashed the job log; a closed stdout gave a traceback;
    binary output got a newline appended."""
    done = cli("-k", "-j", "2", "--", "{}", "hi", input="/nonexistent/prog\n/bin/echo\n/bin/echo\n")
    assert done.stdout == "hi\nhi\n" and done.returncode == 1
    joblog = tmp_path / "jl"
    raw = subprocess.run([*CLI, "--joblog", str(joblog), "--", "printf", "%s"], input=b"caf\xe9\n",
                         capture_output=True, env=ENV, timeout=30)
    assert (raw.returncode, raw.stdout) == (0, b"caf\xe9")
    assert joblog.read_bytes().splitlines()[1].endswith(b"printf %s 'caf\xe9'")
    piped = subprocess.run(f"seq 300 | {shlex.join(CLI)} -- echo | head -1", shell=True,
                           capture_output=True, text=True, env=ENV, timeout=30)
    assert "Traceback" not in piped.stderr and piped.stdout.strip().isdigit()
    gz = subprocess.run(f"printf 'x\\ny\\n' | {shlex.join(CLI)} -k -j1 --shell -- 'printf %s {{}} | gzip -c' | gunzip",
                        shell=True, capture_output=True, text=True, env=ENV, timeout=30)
    assert gz.stdout == "xy" and gz.returncode == 0


@pytest.mark.deadline(30)
def test_sigterm_to_the_runner_stops_its_jobs(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    runner = subprocess.Popen([*CLI, "--kill-grace", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin is not None
        runner.stdin.write(f"echo $$ >> {pids}; sleep 60\n".encode() * 2)
        runner.stdin.close()
        runner.stdin = None
        started = _pids_written(pids, 2)
        runner.terminate()
        runner.communicate(timeout=20)
    finally:
        if runner.returncode is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 128 + signal.SIGTERM
    for pid in started:
        wait_gone(pid, timeout=5)
