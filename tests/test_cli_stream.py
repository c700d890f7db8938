"""The command-line runner (issue 13): streaming input, nothing lost, bytes
exact, stopping on EPIPE and signals, bad input.  Every test drives the real
CLI as a process; synchronisation is through pipes and fifos, never sleeps."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHILDREN, run_on_pty, wait_gone
from test_cli import CLI, ENV, _pids_written, cli

sys.path.insert(0, CHILDREN)
from patterns import payload  # noqa: E402

HOLD = os.path.join(CHILDREN, "hold.py")


def read_until(fd: int, want: bytes, timeout: float = 20) -> bytes:
    """Read ``fd`` until ``want`` has been seen (or fail after ``timeout``)."""
    seen = b""
    while want not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"waited {timeout} s for {want!r}; got {seen!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"EOF before {want!r}; got {seen!r}"
        seen += chunk
    return seen


def release(fifo: Path) -> None:
    """Let every hold.py job waiting on ``fifo`` finish."""
    fd = os.open(fifo, os.O_WRONLY)
    os.close(fd)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        proc.kill()
        proc.communicate()


@pytest.mark.deadline(40)
def test_input_that_stays_open_is_run_line_by_line(tmp_path: Path) -> None:
    """The first job starts when its line is complete, not at end of input."""
    runner = subprocess.Popen([*CLI, "-j", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin and runner.stdout
        runner.stdin.write(b"echo first\n")
        runner.stdin.flush()
        assert read_until(runner.stdout.fileno(), b"first\n") == b"first\n"
        runner.stdin.write(b"echo sec")  # half a line: nothing may run yet
        runner.stdin.flush()
        runner.stdin.write(b"ond\n")
        runner.stdin.flush()
        assert read_until(runner.stdout.fileno(), b"second\n") == b"second\n"
        runner.stdin.close()
        runner.stdin = None
        out, err = runner.communicate(timeout=20)
    finally:
        stop(runner)
    assert (runner.returncode, out, err) == (0, b"", b"")


@pytest.mark.deadline(40)
def test_input_is_not_read_far_ahead_of_the_jobs(tmp_path: Path) -> None:
    """-j 1 and a job that waits: the runner reads at most a chunk or two of
    its input, so a producer blocks (as with xargs), and nothing is lost."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pids = tmp_path / "pids"
    out_file = tmp_path / "out"
    with open(out_file, "wb") as out:  # a file: the runner's output never blocks it
        runner = subprocess.Popen([*CLI, "-j", "1"], stdin=subprocess.PIPE, stdout=out,
                                  stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin
        runner.stdin.write(f"{sys.executable} {HOLD} {pids} {fifo}\n".encode())
        runner.stdin.flush()
        _pids_written(pids, 1)
        line = b"echo " + b"x" * 994 + b"\n"  # 1000 bytes: few jobs fill the pipe
        os.set_blocking(runner.stdin.fileno(), False)
        accepted = 0
        block = line * 10
        while accepted < 4 << 20:
            try:
                accepted += os.write(runner.stdin.fileno(), block[accepted % len(block):])
            except BlockingIOError:
                break
        # The pipe holds 64 KiB, the runner reads 64 KiB at a time.
        assert accepted < 1 << 20, f"the runner read {accepted} bytes ahead"
        release(fifo)
        os.set_blocking(runner.stdin.fileno(), True)
        rest = len(line) - accepted % len(line)
        runner.stdin.write(line[-rest:] + line * 199)  # blocks until the runner catches up
        accepted += rest
        runner.stdin.close()
        runner.stdin = None
        _, err = runner.communicate(timeout=60)
    finally:
        stop(runner)
    assert runner.returncode == 0, err
    count = accepted // len(line) + 199
    assert out_file.read_bytes() == (b"x" * 994 + b"\n") * count


def _hwm_wrapper(hwm_file: Path) -> list[str]:
    code = ("import sys; from pipereactor.cli import main; rc = main(sys.argv[1:]); "
            f"open({str(hwm_file)!r}, 'w').write("
            "[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)")
    return [sys.executable, "-c", code]


@pytest.mark.deadline(120)
def test_160_mb_of_grouped_output_arrive_whole_in_bounded_memory(tmp_path: Path) -> None:
    """8 jobs x 20 MB stdout (+1 MB stderr each), -k: every byte, in order,
    spilled to unlinked files in $TMPDIR, the runner far smaller than the output."""
    out_n, err_n = 20 << 20, 1 << 20
    seeds = list(range(100, 108))
    flood = os.path.join(CHILDREN, "flood.py")
    lines = "".join(f"{sys.executable} {flood} {out_n} {err_n} {s}\n" for s in seeds)
    spill = tmp_path / "tmp"
    spill.mkdir()
    hwm = tmp_path / "hwm"
    err_file = tmp_path / "stderr"
    with open(err_file, "wb") as err:
        runner = subprocess.Popen([*_hwm_wrapper(hwm), "-k", "-j", "4"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=err,
                                  env={**ENV, "TMPDIR": str(spill)})
    try:
        assert runner.stdin and runner.stdout
        runner.stdin.write(lines.encode())
        runner.stdin.close()
        runner.stdin = None
        digest, total = hashlib.sha256(), 0
        while chunk := runner.stdout.read(1 << 20):
            digest.update(chunk)
            total += len(chunk)
        runner.stdout.close()
        runner.wait(timeout=60)
    finally:
        stop(runner)
    assert runner.returncode == 0, err_file.read_bytes()[-2000:]
    expected = hashlib.sha256()
    for s in seeds:
        expected.update(payload(s, out_n))
    assert total == 8 * out_n and digest.hexdigest() == expected.hexdigest()
    want_err = b"".join(payload(s + 1, err_n) for s in seeds)
    assert err_file.read_bytes() == want_err
    assert list(spill.iterdir()) == []  # unlinked files: nothing left behind
    hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", hwm.read_text()).group(1))  # type: ignore[union-attr]
    assert hwm_kib < 64 * 1024, f"runner peaked at {hwm_kib} KiB for 168 MB of output"


def test_a_spill_file_that_cannot_be_written_fails_that_job_only(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the spill write fails (EFBIG)."""
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = subprocess.run([*CLI, "-k", "-j", "1"], input=b"head -c 3000000 /dev/zero\necho fine\n",
                          capture_output=True, env=ENV, timeout=60, preexec_fn=small_files)
    assert done.returncode == 1
    assert done.stdout.endswith(b"fine\n")
    assert len(done.stdout) < 3000000  # what could be kept, then the next job's
    assert b"job 1: " in done.stderr and b"lost: cannot write its spill file" in done.stderr
    assert b"pipereactor: 1 ok, 1 failed" in done.stderr


def test_max_output_keeps_the_tail_with_a_notice() -> None:
    """Caps above and below the in-memory threshold (the spill file is then
    compacted as it goes), and suffixes."""
    data = payload(7, 3 << 20)
    src = tempfile_with(data)
    try:
        for cap, nbytes in (("300K", 300 << 10), ("1k", 1024), ("1M", 1 << 20)):
            done = subprocess.run([*CLI, "--max-output", cap, "--", "cat"],
                                  input=src.encode() + b"\n", capture_output=True, env=ENV,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            assert done.stdout == data[-nbytes:]
            assert done.stderr == (f"[pipereactor: job 1: first {len(data) - nbytes} bytes of "
                                   "its stdout not kept (--max-output)]\n").encode()
    finally:
        os.unlink(src)
    bad = cli("--max-output", "10X")
    assert bad.returncode == 2 and "not a size" in bad.stderr


def tempfile_with(data: bytes) -> str:
    import tempfile

    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


# -- bytes exact ---------------------------------------------------------------------

# CR, CRLF, a CR at a line start, and the input line with no final newline
CR_JOB = ["printf", r"a\rb\r\nc\r\n\rd%s", "{}"]
CR_OUT = b"a\rb\r\nc\r\n\rd"


@pytest.mark.parametrize("mode", [[], ["-k"], ["--line-buffer"]])
def test_cr_and_crlf_pass_untouched_and_tag_only_after_newlines(mode: list[str]) -> None:
    plain = subprocess.run([*CLI, *mode, "--", *CR_JOB], input=b"x\n", capture_output=True,
                           env=ENV, timeout=30)
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, CR_OUT + b"x", b"")
    tagged = subprocess.run([*CLI, *mode, "--tag", "--", *CR_JOB], input=b"T\n",
                            capture_output=True, env=ENV, timeout=30)
    assert (tagged.returncode, tagged.stdout) == (0, b"T\ta\rb\r\nT\tc\r\nT\t\rdT")


def test_line_buffer_prints_whole_lines_and_the_last_one_as_is() -> None:
    """Two jobs interleave line by line; every line arrives whole; a job's
    final unterminated line comes at its end, with no newline added."""
    writer = ("import sys, time\n"
              "for i in range(200):\n"
              "    sys.stdout.write(sys.argv[1] * 30 + '-' + str(i) + '\\n'); sys.stdout.flush()\n"
              "    sys.stdout.write(sys.argv[1] * 10); sys.stdout.flush()\n"
              "    sys.stdout.write(sys.argv[1] * 20 + '\\n')\n"
              "sys.stdout.write('end' + sys.argv[1])\n")
    done = subprocess.run([*CLI, "--line-buffer", "-j", "2", "--", sys.executable, "-c", writer],
                          input=b"a\nb\n", capture_output=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count(b"end") == 2 and out.endswith((b"enda", b"endb"))
    # The first job's last line is printed as is, so the next line follows it.
    whole = out.replace(b"enda", b"").replace(b"endb", b"").decode()
    for c in "ab":
        lines = [ln for ln in whole.split("\n") if ln.startswith(c)]
        assert lines == [f"{c * 30}-{i}" if k == 0 else c * 30 for i in range(200) for k in (0, 1)]


# -- running without the shell -------------------------------------------------------------

def test_plain_command_lines_run_without_the_shell_and_fail_as_under_it(tmp_path: Path) -> None:
    parent = os.path.join(CHILDREN, "parent_pid.py")
    runner = subprocess.Popen([*CLI, "-k", "-j", "1", "--joblog", str(tmp_path / "log")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=ENV)
    lines = (f"{sys.executable} {parent}\n"  # plain: exec'd by us
             f"{sys.executable} {parent} > /dev/stdout\n"  # a redirection: the shell
             "no-such-program-x1 arg\n"  # plain, missing: 127, as the shell says
             "cd /\n"  # a builtin: the shell (there is no /usr/bin/cd)
             "echo -e x\n")  # dash's builtin echo, not /bin/echo
    out, err = runner.communicate(lines.encode(), timeout=30)
    rows = [r.split("\t") for r in (tmp_path / "log").read_text().splitlines()[1:]]
    first, second, *rest = out.decode().splitlines()
    assert int(first) == runner.pid
    assert int(second) != runner.pid  # a shell in between
    assert rest == (["-e x"] if os.path.realpath("/bin/sh").endswith("dash") else rest)
    assert runner.returncode == 1
    assert b"pipereactor: no-such-program-x1: not found\n" in err
    assert b"job 3 failed (exit 127: no-such-program-x1: not found)" in err
    assert [r[6] for r in sorted(rows, key=lambda r: int(r[0]))] == ["0", "0", "127", "0", "0"]


# -- bad input, options ----------------------------------------------------------------------

def test_a_nul_byte_fails_that_line_only_and_counts_for_halt_on_error() -> None:
    done = subprocess.run([*CLI, "-k", "-j", "2"], input=b"echo a\necho \0b\necho c\n",
                          capture_output=True, env=ENV, timeout=30)
    assert done.returncode == 1 and done.stdout == b"a\nc\n"
    assert b"pipereactor: cannot run line 2: the input line contains a NUL byte" in done.stderr
    assert b"1 failed" in done.stderr and b"2 ok" in done.stderr
    halted = subprocess.run([*CLI, "-j", "1", "--halt-on-error", "--", "echo"],
                            input=b"a\n\0\nc\nd\n", capture_output=True, env=ENV, timeout=30)
    assert halted.returncode == 1 and halted.stdout == b"a\n"
    assert re.search(rb"1 ok, 1 failed \(0 timed out\)(, \d not run)? of [2-4] in", halted.stderr)


def test_unknown_options_are_refused_not_run() -> None:
    for bad in (["-5", "echo"], ["--nope", "echo"]):
        done = cli(*bad, input="x\n")
        assert done.returncode == 2 and done.stdout == ""
        assert "unrecognized" in done.stderr


def test_results_opens_a_jobs_files_when_it_starts_and_fits_a_small_fd_limit(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pids = tmp_path / "pids"
    results = tmp_path / "r"
    runner = subprocess.Popen([*CLI, "-j", "1", "--results", str(results)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin
        runner.stdin.write(f"{sys.executable} {HOLD} {pids} {fifo}\n".encode()
                           + b"echo two\necho three\n")
        runner.stdin.close()
        runner.stdin = None
        _pids_written(pids, 1)
        assert sorted(p.name for p in results.iterdir()) == ["1.stderr", "1.stdout"]
        release(fifo)
        out, err = runner.communicate(timeout=30)
    finally:
        stop(runner)
    assert runner.returncode == 0 and out == b"" and err == b""
    assert (results / "3.stdout").read_bytes() == b"three\n"

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    many = subprocess.run([*CLI, "-j", "4", "--results", str(tmp_path / "many"), "--", "echo"],
                          input="".join(f"{i}\n" for i in range(200)).encode(),
                          capture_output=True, env=ENV, timeout=60, preexec_fn=few_fds)
    assert many.returncode == 0, many.stderr
    files = sorted((tmp_path / "many").iterdir())
    assert len(files) == 400
    assert all((tmp_path / "many" / f"{i + 1}.stdout").read_bytes() == f"{i}\n".encode()
               for i in range(200))
    grouped = subprocess.run([*CLI, "-j", "4", "-k", "--", "echo"],
                             input="".join(f"{i}\n" for i in range(300)).encode(),
                             capture_output=True, env=ENV, timeout=60, preexec_fn=few_fds)
    assert grouped.returncode == 0, grouped.stderr
    assert grouped.stdout == "".join(f"{i}\n" for i in range(300)).encode()


# -- stopping: EPIPE, signals ------------------------------------------------------------------

@pytest.mark.deadline(60)
def test_head_stops_endless_jobs_exits_141_and_leaves_nothing_behind(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    job = f"echo $$ >> {pids}; exec yes {{}}"
    cmd = (f"yes line | {shlex.join(CLI)} -j 3 --kill-grace 1 --line-buffer --shell -- "
           f"{shlex.quote(job)} | head -n 5; echo \"${{PIPESTATUS[1]}}\" > {tmp_path / 'rc'}")
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, env=ENV, timeout=50)
    assert done.stdout == b"line\n" * 5
    assert (tmp_path / "rc").read_text() == "141\n"
    started = [int(p) for p in pids.read_text().split()]
    assert started and len(started) <= 9  # -j 3 and its lookahead, no more
    for pid in started:
        wait_gone(pid, timeout=10)
    # Grouped output and many short jobs: the same, quickly.
    quick = subprocess.run(["bash", "-c", f"seq 100000 | {shlex.join(CLI)} -- echo | head -1; "
                            "echo \"${PIPESTATUS[1]}\""], capture_output=True, env=ENV, timeout=50)
    assert quick.stdout == b"1\n141\n" or quick.stdout.endswith(b"\n141\n")


@pytest.mark.deadline(40)
def test_an_ignored_sighup_stays_ignored(tmp_path: Path) -> None:
    """Under nohup (SIGHUP ignored when we start) SIGHUP changes nothing;
    without it, SIGHUP stops the run (exit 129)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for ignored in (True, False):
        pids = tmp_path / f"pids{ignored}"

        def setup() -> None:
            if ignored:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

        runner = subprocess.Popen([*CLI, "-j", "2", "--kill-grace", "1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                                  preexec_fn=setup)
        try:
            assert runner.stdin and runner.stdout
            runner.stdin.write(f"{sys.executable} {HOLD} {pids} {fifo}\n".encode())
            runner.stdin.flush()
            _pids_written(pids, 1)
            runner.send_signal(signal.SIGHUP)
            # The runner looks at signals before it reads the next line.
            try:
                os.write(runner.stdin.fileno(), b"echo after\n")
            except BrokenPipeError:
                assert not ignored  # the runner may have stopped already
            if ignored:
                assert read_until(runner.stdout.fileno(), b"after\n") == b"after\n"
                release(fifo)
            runner.stdin.close()  # nothing buffered: the write above was raw
            runner.stdin = None
            out, err = runner.communicate(timeout=20)
        finally:
            stop(runner)
        if ignored:
            assert runner.returncode == 0, err
        else:
            assert runner.returncode == 128 + signal.SIGHUP
            assert out == b"" and b"interrupted" in err
            wait_gone(int(pids.read_text()), timeout=10)


def test_main_restores_every_handler_and_the_wakeup_fd(tmp_path: Path) -> None:
    from pipereactor.cli import main

    commands = tmp_path / "commands"
    commands.write_text("true\n")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    previous_wakeup = signal.set_wakeup_fd(-1)
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        signal.set_wakeup_fd(w)
        assert main(["-a", str(commands), "--no-progress"]) == 0
        assert signal.set_wakeup_fd(previous_wakeup) == w
    finally:
        os.close(r)
        os.close(w)
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.deadline(40)
def test_status_line_on_a_pty_is_never_glued_to_job_output(tmp_path: Path) -> None:
    """stdout and stderr on one terminal of 0 columns, stderr block-buffered
    (no PYTHONUNBUFFERED): the status line is erased before each job's output
    and drawn on a line of its own after an unterminated one."""
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    script = ("import sys, time\n"
              "for i in range(3):\n"
              "    print(sys.argv[1], i, flush=True); time.sleep(0.15)\n"
              "sys.stdout.write('tail-' + sys.argv[1])\n")
    status, seen = run_on_pty([*CLI, "-j", "2", "--line-buffer", "--", sys.executable, "-c", script],
                              b"A\nB\nC\n", env, stderr_too=True, winsize=(0, 0))
    assert status == 0
    text = seen.decode().replace("\r\n", "\n")
    segments = text.split("\r\x1b[K")
    statuses = [s for s in segments if s.startswith("[")]
    assert statuses and all(re.fullmatch(r"\[\d/\d\] running \d, failed 0(, longest .*)?", s)
                            for s in statuses), statuses
    outputs = "".join(s for s in segments if not s.startswith("["))
    for tag in "ABC":  # each line whole (a "tail-" may precede one: printed as is)
        assert re.findall(rf"{tag} \d\n", outputs) == [f"{tag} {i}\n" for i in range(3)]
        assert f"tail-{tag}" in outputs
    assert "pipereactor: 3 ok, 0 failed (0 timed out) of 3 in" in outputs


def test_input_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    missing = cli("-a", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read the input" in missing.stderr
    directory = cli("-a", str(tmp_path))
    assert directory.returncode == 2
    assert "reading the input failed: [Errno 21] Is a directory" in directory.stderr
    (tmp_path / "file").write_text("")
    results = cli("--results", str(tmp_path / "file" / "r"), input="true\n")
    assert results.returncode == 2 and "cannot make the --results directory" in results.stderr


@pytest.mark.deadline(40)
def test_a_second_ctrl_c_kills_at_once() -> None:
    """The first SIGINT asks (SIGTERM, SIGKILL after --kill-grace 60); the
    second does not wait for the grace."""
    job = f"{sys.executable} -u {os.path.join(CHILDREN, 'survive_sigterm.py')}"
    runner = subprocess.Popen([*CLI, "--line-buffer", "--kill-grace", "60"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=ENV)
    try:
        assert runner.stdin and runner.stdout
        runner.stdin.write(f"{job}\n".encode())
        runner.stdin.flush()
        assert read_until(runner.stdout.fileno(), b"ready\n") == b"ready\n"
        runner.send_signal(signal.SIGINT)
        # The job says "term" once the runner has handled the first SIGINT
        # (two signals sent at once would merge into one).
        assert read_until(runner.stdout.fileno(), b"term\n") == b"term\n"
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=20)
    finally:
        stop(runner)
    assert runner.returncode == 130
    assert b"failed (killed by SIGKILL, stopped by us)" in err
