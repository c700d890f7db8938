"""The command-line runner (issue 14, points 1-3): GNU parallel's and xargs's
input options and replacement strings, retries, resume, shards.  Every test
drives the real CLI as a process (a few pure unit tests of the shard and
retry arithmetic close the file).  Where GNU parallel defines the output,
the expected text is what ``parallel --will-cite`` 20221122 prints for the
same command line, stated literally."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import CLI, ENV, _pids_written

from pipereactor.cli._retry import RetryQueue, retry_wait
from pipereactor.cli._shard import ENGINES, Shard, ShardError, resolve

# The engines' variables, removed so that a CI runner's own never leak in.
_ENGINE_VARS = {v for e in ENGINES for v in (e[1], e[3]) if v} | {
    "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP"}
CLEAN = {k: v for k, v in ENV.items() if k not in _ENGINE_VARS}


def run(*args: str, input: str | bytes = "", env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    data = input.encode() if isinstance(input, str) else input
    done = subprocess.run([*CLI, *args], input=data, capture_output=True,
                          env=CLEAN if env is None else {**CLEAN, **env}, timeout=60, cwd=cwd)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(errors="surrogateescape"),
                                       done.stderr.decode(errors="surrogateescape"))


# -- point 1: sources, delimiters, replacement strings ------------------------------------

@pytest.mark.deadline(60)
def test_replacement_strings_as_gnu_parallel_prints_them() -> None:
    done = run("-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}",
               ":::", "dir/sub/file.tar.gz", "plain", ".hidden", "/abs/x.c")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar 1\n"
        "plain plain plain . plain 2\n"
        ".hidden  .hidden .  3\n"
        "/abs/x.c /abs/x x.c /abs x 4\n"
    )


@pytest.mark.deadline(60)
def test_dirname_of_a_path_with_a_trailing_slash_as_gnu_parallel() -> None:
    """{//} is dirname(1)'s: a trailing slash does not make an empty last
    component (``ls -d */`` gives ``dir/``, whose {//} is ``.``), as GNU
    parallel 20221122 prints for ``parallel -k echo {//} {/} ::: ...``."""
    done = run("-k", "echo", "{//}", "{/}", ":::", "a/", "a/b/", "/a/", "a/b//", "dir/sub/", "/")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ". \na \n/ \na \ndir \n/ \n"


@pytest.mark.deadline(120)
def test_sources_combine_in_gnu_parallels_order(tmp_path: Path) -> None:
    assert run("-k", "echo", "{1}", "{2}", ":::", "a", "b", ":::", "1", "2").stdout == (
        "a 1\na 2\nb 1\nb 2\n")
    # :::: FILE is a source too; every file after :::: its own; -a FILE comes first.
    (tmp_path / "f1").write_text("a\nb\n")
    (tmp_path / "f2").write_text("1\n2\n")
    assert run("-k", "echo", "::::", str(tmp_path / "f1"), str(tmp_path / "f2")).stdout == (
        "a 1\na 2\nb 1\nb 2\n")
    assert run("-k", "-a", str(tmp_path / "f1"), "echo", ":::", "x", "y").stdout == (
        "a x\na y\nb x\nb y\n")
    # {n} with an operation; {n} past the last source is empty; {.} on every item.
    assert run("-k", "echo", "{2.}", "{1/}", ":::", "dir/a.x", ":::", "d/b.y").stdout == (
        "d/b a.x\n")
    assert run("-k", "echo", "{3}", ":::", "a", ":::", "b").stdout == "\n"
    assert run("-k", "echo", "{.}", ":::", "a.x", ":::", "b.y").stdout == "a b\n"
    # Any replacement string (even {#}) means nothing is appended.
    assert run("-k", "echo", "{#}", ":::", "a", "b").stdout == "1\n2\n"
    # --tag: the items, space-separated, then a tab.
    assert run("-k", "--tag", "echo", ":::", "a", "b", ":::", "1").stdout == (
        "a 1\ta 1\nb 1\tb 1\n")
    # Without a template, the items are the command line.
    assert run("-k", ":::", "echo a", "echo b").stdout == "a\nb\n"


@pytest.mark.deadline(60)
def test_a_word_that_is_exactly_the_replacement_string_is_one_argument_per_item() -> None:
    """GNU parallel builds a shell line, so {} with two items is two words;
    we pass argv, and do the same."""
    done = run("-k", "printf", "[%s]", "{}", ":::", "a b", ":::", "c")
    assert done.stdout == "[a b][c]"


@pytest.mark.deadline(60)
def test_dash_capital_i_names_another_replacement_string() -> None:
    assert run("-k", "-I", "@@", "echo", "@@", "{}", ":::", "a").stdout == "a {}\n"
    assert run("-k", "-I", "@@", "echo", "<@@>", input="x\ny\n").stdout == "<x>\n<y>\n"


@pytest.mark.deadline(120)
def test_null_and_delimiter_end_items_where_asked() -> None:
    assert run("-0", "-k", "echo", "[{}]", input=b"a\0b c\0").stdout == "[a]\n[b c]\n"
    assert run("--null", "-k", "echo", "[{}]", input=b"x\ny\0z").stdout == "[x\ny]\n[z]\n"
    assert run("-d", ",", "-k", "echo", "[{}]", input="a,b").stdout == "[a]\n[b]\n"
    assert run("-d", "\\x1e", "-k", "echo", "[{}]", input="a\x1eb\x1e").stdout == "[a]\n[b]\n"
    assert run("-d", "\\n", "-k", "echo", "[{}]", input="a\nb").stdout == "[a]\n[b]\n"
    # find -print0 | pipereactor -0 with a file name that has a newline in it.
    names = b"one\0two\nlines\0"
    assert run("-0", "-k", "--", "printf", "<%s>", input=names).stdout == "<one><two\nlines>"


@pytest.mark.deadline(60)
def test_max_args_groups_items_xargs_style() -> None:
    assert run("-k", "-n", "2", "echo", ":::", "a", "b", "c", "d", "e").stdout == (
        "a b\nc d\ne\n")
    assert run("-k", "-n", "2", "echo", "{1}-{2}", ":::", "a", "b", "c", "d", "e").stdout == (
        "a-b\nc-d\ne-\n")
    # From a stream: a group is complete at N items, the last one at end of input.
    assert run("-k", "-n", "3", "--", "echo", input="1\n2\n3\n4\n").stdout == "1 2 3\n4\n"


@pytest.mark.deadline(60)
def test_max_args_waits_for_a_full_group_not_for_end_of_input() -> None:
    runner = subprocess.Popen([*CLI, "-n", "2", "--", "echo"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert runner.stdin and runner.stdout
        runner.stdin.write(b"a\nb\nc\n")
        runner.stdin.flush()
        assert runner.stdout.readline() == b"a b\n"  # input still open
        runner.stdin.close()
        runner.stdin = None
        out, err = runner.communicate(timeout=30)
        assert out == b"c\n" and runner.returncode == 0, err
    finally:
        if runner.returncode is None:
            runner.kill()
            runner.communicate()


@pytest.mark.deadline(60)
def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path: Path) -> None:
    # {%} cycles 1..-j (GNU parallel 20221122 prints this, or 1 1 2: it varies).
    done = run("--dry-run", "-j", "2", "echo", "{%}", "{#}", ":::", "a", "b", "c")
    assert done.returncode == 0 and done.stdout == "echo 1 1\necho 2 2\necho 1 3\n"
    marker = tmp_path / "ran"
    done = run("--dry-run", "--shell", "--", f"touch {marker}; echo {{}}", input="x y\n")
    assert done.stdout == f"touch {marker}; echo 'x y'\n" and done.stderr == ""
    assert not marker.exists()


@pytest.mark.deadline(60)
def test_dry_run_tags_as_gnu_parallel_and_its_summary_runs_nothing() -> None:
    """--tag prefixes each command as GNU parallel 20221122 prints
    ``parallel --dry-run --tag -k echo {} ::: a b ::: 1 2``; the summary
    (--progress) says what was printed, not "0 ok" of jobs never run."""
    done = run("--dry-run", "--tag", "-k", "echo", "{}", ":::", "a", "b", ":::", "1", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a 1\techo a 1\na 2\techo a 2\nb 1\techo b 1\nb 2\techo b 2\n"
    done = run("--progress", "--dry-run", "--shard", "1/2", "echo", ":::", "a", "b", "c")
    assert done.returncode == 0 and done.stdout == "echo a\necho c\n", done.stderr
    assert done.stderr.startswith(
        "pipereactor: shard 1/2: --dry-run: 2 commands printed, none run in "), done.stderr
    assert " ok" not in done.stderr


@pytest.mark.deadline(60)
def test_version() -> None:
    from pipereactor import __version__

    done = run("--version")
    assert done.returncode == 0 and done.stdout == f"pipereactor {__version__}\n"
    done = run("--help")
    assert done.returncode == 0 and "{/.} {#} {%} {1}..." in done.stdout


@pytest.mark.deadline(120)
def test_jobs_relative_to_the_cpus() -> None:
    """-j as GNU parallel reads it, seen through --dry-run's {%} (1..j, cycling)."""
    cpus = os.cpu_count() or 1
    for spec, want in (("50%", max(1, cpus // 2)), ("200%", 2 * cpus), ("+1", cpus + 1),
                       ("-1", max(1, cpus - 1)), ("-1000", 1), ("3", 3)):
        done = run("--dry-run", "-j", spec, "echo", "{%}", ":::", *map(str, range(9)))
        slots = [int(w.split()[1]) for w in done.stdout.splitlines()]
        assert slots == [i % want + 1 for i in range(9)], (spec, done.stderr)
    done = run("--dry-run", "-j", "0", "echo", "{%}", ":::", *map(str, range(5)))
    assert done.stdout == "echo 1\necho 2\necho 3\necho 4\necho 5\n"


@pytest.mark.deadline(60)
def test_jobs_zero_runs_every_job_at_once(tmp_path: Path) -> None:
    """Five jobs that each wait for the test: all five run before any ends."""
    pids = tmp_path / "pids"
    for i in range(1, 6):
        os.mkfifo(tmp_path / f"f{i}")
    hold = os.path.join(os.path.dirname(__file__), "children", "hold.py")
    runner = subprocess.Popen([*CLI, "-j", "0", "--", sys.executable, hold, str(pids),
                               f"{tmp_path}/f{{}}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert runner.stdin
        runner.stdin.write(b"1\n2\n3\n4\n5\n")
        runner.stdin.close()
        runner.stdin = None
        assert len(_pids_written(pids, 5)) == 5  # -j 1 would stop at one
        for i in range(1, 6):
            os.close(os.open(tmp_path / f"f{i}", os.O_WRONLY))  # job i has it open: it ends
        out, err = runner.communicate(timeout=30)
        assert runner.returncode == 0, err
    finally:
        if runner.returncode is None:
            runner.kill()
            runner.communicate()


@pytest.mark.deadline(90)
def test_job_slot_is_the_lowest_free_one(tmp_path: Path) -> None:
    """{%} while jobs really run: two at once get 1 and 2; the job started
    when one ends gets the slot that job had.  Each job says "seq slot" on a
    fifo the test reads, then waits for its own fifo."""
    log = tmp_path / "log"
    os.mkfifo(log)
    for i in range(1, 5):
        os.mkfifo(tmp_path / f"f{i}")
    # O_RDWR: the fifo never reads as at its end, and the jobs' opens never block.
    reader = os.open(log, os.O_RDWR)
    script = f"echo '{{#}} {{%}}' > {log}; cat {tmp_path}/f{{#}} >/dev/null"
    runner = subprocess.Popen([*CLI, "-j", "2", "--shell", "--", script, ":::", "a", "b", "c", "d"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    said = b""

    def slots(count: int) -> dict[int, int]:
        nonlocal said
        while said.count(b"\n") < count:
            ready, _, _ = select.select([reader], [], [], 30)
            assert ready, f"waited 30 s for {count} jobs; got {said!r}"
            said += os.read(reader, 4096)
        return {int(a): int(b) for a, b in (line.split() for line in said.splitlines())}

    try:
        first = slots(2)
        assert sorted(first.values()) == [1, 2]
        os.close(os.open(tmp_path / "f1", os.O_WRONLY))  # job 1 ends
        assert slots(3)[3] == first[1]
        os.close(os.open(tmp_path / "f2", os.O_WRONLY))
        assert slots(4)[4] == first[2]
        for i in (3, 4):
            os.close(os.open(tmp_path / f"f{i}", os.O_WRONLY))
        out, err = runner.communicate(timeout=30)
        assert runner.returncode == 0, err
    finally:
        os.close(reader)
        if runner.returncode is None:
            runner.kill()
            runner.communicate()


class _SaidLog:
    """A fifo the jobs write "seq slot" lines to, read by the test without
    polling: opened O_RDWR, so it never reads as at its end and the jobs'
    opens never block."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.said = b""

    def lines(self, count: int) -> list[tuple[int, int]]:
        """The first ``count`` lines, (seq, slot) each, once they are written."""
        while self.said.count(b"\n") < count:
            ready, _, _ = select.select([self.fd], [], [], 30)
            assert ready, f"waited 30 s for {count} lines; got {self.said!r}"
            self.said += os.read(self.fd, 4096)
        return [(int(a), int(b)) for a, b in (x.split() for x in self.said.splitlines())][:count]

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.deadline(90)
def test_keep_order_with_job_slots_runs_j_jobs_while_the_head_runs(tmp_path: Path) -> None:
    """-k -j 2 with {%}: job 1 waits for the test; jobs 2, 3 and 4 end at
    once, each in slot 2, while job 1 still runs in slot 1: -k holds their
    output, not their start.  (They waited for job 1 to be printed: -k with
    {%} ran fewer than -j jobs while the head ran.)"""
    log = _SaidLog(tmp_path / "log")
    os.mkfifo(tmp_path / "f1")
    script = f"echo '{{#}} {{%}}' > {log.path}; [ {{#}} != 1 ] || cat {tmp_path}/f1; echo out {{#}}"
    runner = subprocess.Popen([*CLI, "-k", "-j", "2", "--shell", "--", script,
                               ":::", "a", "b", "c", "d"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert sorted(log.lines(4)) == [(1, 1), (2, 2), (3, 2), (4, 2)]
        os.close(os.open(tmp_path / "f1", os.O_WRONLY))  # job 1 ends
        out, err = runner.communicate(timeout=30)
    finally:
        log.close()
        if runner.returncode is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, err
    assert out == b"out 1\nout 2\nout 3\nout 4\n"


@pytest.mark.deadline(90)
def test_a_job_waiting_to_run_again_leaves_its_slot_to_the_next(tmp_path: Path) -> None:
    """-j 1 with {%}: job 1 fails and waits 5 s to run again; job 2 starts
    in slot 1 meanwhile (the wait holds no slot) and runs until the test
    releases it; job 1's second run, due long before, waits for the slot
    and gets slot 1, never a slot past -j."""
    log = _SaidLog(tmp_path / "log")
    os.mkfifo(tmp_path / "f2")
    script = (f"echo '{{#}} {{%}}' > {log.path}; "
              f"if [ {{#}} = 1 ]; then exit 3; fi; cat {tmp_path}/f2")
    runner = subprocess.Popen([*CLI, "-j", "1", "--retries", "2", "--retry-delay", "5",
                               "--shell", "--", script, ":::", "a", "b"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert log.lines(2) == [(1, 1), (2, 1)]
        assert runner.poll() is None
        os.close(os.open(tmp_path / "f2", os.O_WRONLY))  # job 2 ends
        assert log.lines(3) == [(1, 1), (2, 1), (1, 1)]
        out, err = runner.communicate(timeout=30)
    finally:
        log.close()
        if runner.returncode is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 1, err
    assert b"pipereactor: 1 ok, 1 failed (0 timed out) of 2" in err, err


@pytest.mark.deadline(60)
def test_shell_quotes_every_replacement_value(tmp_path: Path) -> None:
    """No item can inject shell syntax, whatever the replacement string."""
    evil = "a b'; touch pwned; echo '.x"
    done = run("-k", "--shell", "--", "printf '[%s]' {} {.} {/} {1}", ":::", evil, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"[{evil}][a b'; touch pwned; echo '][{evil}][{evil}]"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.deadline(60)
def test_sources_after_the_template_leave_stdin_unread() -> None:
    """With ::: the input is the arguments: a stdin that never ends is not waited on."""
    runner = subprocess.Popen([*CLI, "-k", "echo", ":::", "a", "b"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert runner.stdout
        out = runner.stdout.read()  # EOF: the runner is done, our stdin still open
        assert out == b"a\nb\n"
        assert runner.wait(timeout=30) == 0
    finally:
        if runner.returncode is None:
            runner.kill()
        runner.communicate()


@pytest.mark.deadline(120)
def test_bad_input_options_are_clear_errors() -> None:
    for args, message in (
        (["-0", "-d", ",", "echo"], "-0/--null and -d/--delimiter both set"),
        (["-d", "ab", "echo"], "-d/--delimiter must be one character or an escape"),
        (["-n", "0", "echo"], "-n/--max-args must be >= 1, not 0"),
        (["-n", "2"], "-n/--max-args needs a template"),
        (["-n", "2", "echo", ":::", "a", ":::", "b"], "-n/--max-args takes the items of one"),
        (["-n", "2", "echo", "::::", "f1", "f2"], "-n/--max-args takes the items of one"),
        (["-j", "5%%"], "argument -j/--jobs: not a job count"),
        (["-j", "+5%"], "argument -j/--jobs: not a job count"),
        (["echo", ":::"], "::: needs at least one argument"),
        (["echo", "::::"], ":::: needs a file name"),
        (["echo", ":::+", "a"], ":::+ (linked sources) is not supported"),
        (["-I", "", "echo"], "-I needs a non-empty replacement string"),
        (["--retries", "0", "true"], "--retries must be >= 1 (runs in all), not 0"),
        (["--retry-delay", "-1", "true"], "--retry-delay must be >= 0, not -1.0"),
        (["--resume", "true"], "--resume needs --joblog FILE"),
        (["--resume-failed", "true"], "--resume-failed needs --joblog FILE"),
        (["--resume", "--resume-failed", "--joblog", "x", "true"],
         "--resume and --resume-failed both set: give one"),
    ):
        done = run(*args, input="x\n")
        assert done.returncode == 2 and done.stdout == "", args
        assert f"pipereactor: error: {message}" in done.stderr, (args, done.stderr)
    missing = run("echo", "::::", "/nonexistent/input")
    assert missing.returncode == 2
    assert "cannot read the input (/nonexistent/input)" in missing.stderr
    missing = run("echo", ":::", "a", "::::", "/nonexistent/input")
    assert missing.returncode == 2 and "cannot read the input /nonexistent/input" in missing.stderr


# -- point 2: retries, resume ---------------------------------------------------------------

@pytest.mark.deadline(60)
def test_retries_counts_runs_in_all_and_only_the_last_run_counts(tmp_path: Path) -> None:
    """As GNU parallel: the job fails on its first run and succeeds on its
    second; one line of output, one job log row, exit 0."""
    script = "echo try {}; echo x >> cnt{}; [ $(wc -l < cnt{}) -ge 2 ]"
    done = run("-k", "--retries", "3", "--joblog", "jl", "--shell", "--", script,
               ":::", "a", "b", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "try a\ntry b\n"
    assert (tmp_path / "cnta").read_text() == "x\nx\n"  # two runs, not three
    rows = (tmp_path / "jl").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in rows) == ["1", "2"]
    assert all(r.split("\t")[6] == "0" for r in rows)
    # Never succeeding: N runs, the last one's output and exit status.
    script = "echo run $(wc -l < cnt); echo x >> cnt; exit 3"
    (tmp_path / "cnt").write_text("")
    done = run("--retries", "3", "--shell", "--", script, ":::", "z", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == "run 2\n"
    assert (tmp_path / "cnt").read_text() == "x\nx\nx\n"
    assert "pipereactor: job 1 failed (exit 3)" in done.stderr
    assert "; 2 runs again after a failure (--retries)" in done.stderr


@pytest.mark.deadline(60)
def test_retry_delay_doubles(tmp_path: Path) -> None:
    """Each run stamps its start: the gaps are at least 0.2 s, then 0.4 s
    (lower bounds only: a loaded machine only makes them longer)."""
    stamps = tmp_path / "stamps"
    code = f"import time; open({str(stamps)!r}, 'a').write(f'{{time.time()}}\\n'); exit(1)"
    done = run("--retries", "3", "--retry-delay", "0.2", "--", sys.executable, "-c", code,
               ":::", "x")
    assert done.returncode == 1
    t = [float(x) for x in stamps.read_text().split()]
    assert len(t) == 3
    assert t[1] - t[0] >= 0.2 and t[2] - t[1] >= 0.4


def test_retry_queue_doubles_with_an_injected_clock() -> None:
    assert [retry_wait(0.5, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_wait(0.0, 3) == 0.0
    now = [100.0]
    q: RetryQueue[str] = RetryQueue(clock=lambda: now[0])
    assert q.timeout() is None and q.due() == []
    q.add("b", 2.0)
    q.add("a", 1.0)
    assert q.timeout() == 1.0 and q.due() == [] and len(q) == 2
    now[0] = 101.0
    assert q.due() == ["a"] and q.timeout() == 1.0
    q.add("c", 5.0)
    now[0] = 110.0
    assert q.due(limit=1) == ["b"] and q.due(limit=0) == [] and q.timeout() == 0.0
    q.add("d", 0.0)
    assert q.drain() == ["c", "d"] and len(q) == 0


@pytest.mark.deadline(60)
def test_halting_ends_a_job_waiting_to_run_again_with_its_last_run(tmp_path: Path) -> None:
    """-j 1: job 1 fails and waits 600 s to run again; job 2 then fails for
    good (no such program: never retried) and halts the run.  Job 1 is not
    run again: it ends failed, with its first run's output, at once."""
    runs = tmp_path / "runs"
    lines = f"echo run >> {runs}; echo out; exit 4\n/nonexistent/program\n"
    done = run("-j", "1", "--halt-on-error", "--retries", "2", "--retry-delay", "600",
               input=lines)
    assert done.returncode == 2 and runs.read_text() == "run\n"
    assert done.stdout == "out\n"
    assert "pipereactor: job 1 failed (exit 4)" in done.stderr
    assert "pipereactor: 0 ok, 2 failed" in done.stderr



@pytest.mark.deadline(60)
def test_a_run_again_cancelled_before_it_starts_counts_its_last_run(tmp_path: Path) -> None:
    """-j 1: job 1 fails; its second run is queued behind job 2 (held by the
    test) and job 3 (no such program).  Job 3 halts the run, so job 1's
    second run never starts: job 1 counts failed with its first run, never
    as "not run", and its first run's output is printed and summed up."""
    runs, pids, fifo = tmp_path / "runs", tmp_path / "pids", tmp_path / "go"
    os.mkfifo(fifo)
    hold = os.path.join(os.path.dirname(__file__), "children", "hold.py")
    lines = (f"echo run >> {runs}; echo out 1; exit 4\n{sys.executable} {hold} {pids} {fifo}\n"
             "/nonexistent/program\n")
    runner = subprocess.Popen([*CLI, "-j", "1", "--halt-on-error", "--retries", "2"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert runner.stdin
        runner.stdin.write(lines.encode())
        runner.stdin.close()
        runner.stdin = None
        _pids_written(pids, 1)  # job 2 runs: job 1 has failed
        os.close(os.open(fifo, os.O_WRONLY))
        out, err = runner.communicate(timeout=30)
    finally:
        if runner.returncode is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 2 and runs.read_text() == "run\n"
    assert out == b"out 1\n"
    assert b"pipereactor: job 1 failed (exit 4)" in err and b"  stdout| out 1\n" in err
    assert b"pipereactor: 1 ok, 2 failed (0 timed out) of 3" in err, err


@pytest.mark.deadline(120)
def test_resume_as_gnu_parallel_does(tmp_path: Path) -> None:
    """The session of GNU parallel's man page, step by step: the job log is
    appended to, --resume skips every job it has, --resume-failed reruns
    the failed ones."""
    script = "echo {}; [ {} != 2 ]"
    done = run("-k", "--joblog", "jl", "--shell", "--", script, ":::", "1", "2", "3",
               cwd=tmp_path)
    assert done.stdout == "1\n2\n3\n" and done.returncode == 1
    done = run("-k", "--resume", "--joblog", "jl", "--shell", "--", script,
               ":::", "1", "2", "3", "4", cwd=tmp_path)
    assert done.stdout == "4\n" and done.returncode == 0, done.stderr
    done = run("-k", "--resume-failed", "--joblog", "jl", "--shell", "--", script,
               ":::", "1", "2", "3", "4", "5", cwd=tmp_path)
    assert done.stdout == "2\n5\n" and done.returncode == 1
    lines = (tmp_path / "jl").read_text().splitlines()
    assert lines[0] == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    rows = [(r.split("\t")[0], r.split("\t")[6], r.split("\t")[8]) for r in lines[1:]]
    assert sorted(rows[:3]) == [("1", "0", "echo 1; [ 1 != 2 ]"), ("2", "1", "echo 2; [ 2 != 2 ]"),
                                ("3", "0", "echo 3; [ 3 != 2 ]")]
    assert rows[3] == ("4", "0", "echo 4; [ 4 != 2 ]")
    # Rows come in the order the jobs end, as in GNU parallel.
    assert sorted(rows[4:]) == [("2", "1", "echo 2; [ 2 != 2 ]"), ("5", "0", "echo 5; [ 5 != 2 ]")]
    assert "1 skipped (done in the job log)" not in done.stderr
    assert "3 skipped (done in the job log)" in done.stderr  # 1, 3, 4


@pytest.mark.deadline(60)
def test_resume_reads_input_as_it_arrives(tmp_path: Path) -> None:
    """Input that stays open: the jobs the log has are skipped and the next
    one runs at once, before end of input."""
    joblog = tmp_path / "jl"
    assert run("-k", "--joblog", str(joblog), "--", "echo", input="a\nb\n").returncode == 0
    runner = subprocess.Popen([*CLI, "--resume", "--joblog", str(joblog), "--", "echo"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=CLEAN)
    try:
        assert runner.stdin and runner.stdout
        runner.stdin.write(b"a\nb\nc\n")
        runner.stdin.flush()
        assert runner.stdout.readline() == b"c\n"  # input still open
        runner.stdin.write(b"d\n")
        runner.stdin.close()
        runner.stdin = None
        out, err = runner.communicate(timeout=30)
        assert out == b"d\n" and runner.returncode == 0, err
    finally:
        if runner.returncode is None:
            runner.kill()
            runner.communicate()
    seqs = [r.split("\t")[0] for r in joblog.read_text().splitlines()]
    assert seqs[0] == "Seq" and sorted(seqs[1:3]) == ["1", "2"] and seqs[3:] == ["3", "4"]


@pytest.mark.deadline(60)
def test_resume_without_a_job_log_yet_starts_one(tmp_path: Path) -> None:
    done = run("-k", "--resume", "--joblog", "jl", "echo", ":::", "a", cwd=tmp_path)
    assert done.stdout == "a\n"
    assert (tmp_path / "jl").read_text().startswith("Seq\tHost")
    # A row cut short (the runner died while writing it) is not a job done.
    with open(tmp_path / "jl", "a") as f:
        f.write("2\t:\t1.0\t0.1\t0\t2\t0")
    done = run("-k", "--resume", "--joblog", "jl", "echo", ":::", "a", "b", cwd=tmp_path)
    assert done.stdout == "b\n"
    rows = (tmp_path / "jl").read_text().splitlines()
    assert rows[2] == "2\t:\t1.0\t0.1\t0\t2\t0"  # kept, never truncated
    assert rows[3].startswith("2\t:\t") and rows[3].endswith("\techo b")
    # --dry-run --resume: what would run; the log untouched.
    done = run("-k", "--dry-run", "--resume", "--joblog", "jl", "echo", ":::", "a", "b", "c",
               cwd=tmp_path)
    assert done.stdout == "echo c\n"
    assert (tmp_path / "jl").read_text().splitlines() == rows


# -- point 3: shards ------------------------------------------------------------------------

ALL = [str(i) for i in range(1, 8)]


@pytest.mark.deadline(90)
def test_shards_split_the_input_with_no_overlap_and_no_gap() -> None:
    got = {}
    for i in (1, 2, 3):
        done = run("-k", "--shard", f"{i}/3", "echo", "{#}", ":::", *ALL)
        assert done.returncode == 0, done.stderr
        got[i] = done.stdout.split()
    assert got == {1: ["1", "4", "7"], 2: ["2", "5"], 3: ["3", "6"]}
    # Input that is no job (blank lines) counts for no shard.
    done = run("-k", "--shard", "2/2", "--", "echo", input="a\n\nb\n\nc\nd\n")
    assert done.stdout == "b\nd\n"


ENGINE_CASES = [
    ("Slurm", {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10",
               "SLURM_ARRAY_TASK_MAX": "12", "SLURM_ARRAY_TASK_COUNT": "3"}, "", 2),
    ("GitLab", {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, "", 2),
    ("CircleCI", {"CIRCLE_NODE_INDEX": "1", "CIRCLE_NODE_TOTAL": "3"}, "", 2),
    ("Buildkite", {"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "3"}, "", 2),
    ("AWS Batch", {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}, "", 2),
    ("Cloud Run", {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3"}, "", 2),
    ("Kubernetes", {"JOB_COMPLETION_INDEX": "1"}, "/3", 2),
]


@pytest.mark.deadline(60)
@pytest.mark.parametrize("engine, env, count, index", ENGINE_CASES,
                         ids=[c[0] for c in ENGINE_CASES])
def test_shard_auto_takes_exactly_the_engines_share(engine: str, env: dict[str, str],
                                                    count: str, index: int) -> None:
    done = run("-k", "--progress", "--shard", f"auto{count}", "echo", "{#}", ":::", *ALL, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\n5\n"  # shard 2 of 3
    assert f"[shard {index}/3] [" in done.stderr  # the status line
    assert f"pipereactor: shard {index}/3: 2 ok, 0 failed" in done.stderr  # the summary


@pytest.mark.deadline(120)
def test_shard_auto_refuses_before_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cases: list[tuple[str, dict[str, str], str]] = [
        ("auto", {}, "--shard auto: no engine found"),
        ("auto", {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2", "CIRCLE_NODE_INDEX": "1",
                  "CIRCLE_NODE_TOTAL": "2"},
         "--shard auto: two engines disagree: GitLab says shard 1/2, CircleCI says 2/2"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1",
                  "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "3"},
         "--shard auto: the Slurm job array is sparse"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0",
                  "SLURM_ARRAY_TASK_MAX": "4", "SLURM_ARRAY_TASK_COUNT": "3",
                  "SLURM_ARRAY_TASK_STEP": "2"},
         "--shard auto: the Slurm job array is sparse"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "2"},
         "--shard auto: Slurm sets SLURM_ARRAY_TASK_ID but not SLURM_ARRAY_TASK_MIN"),
        ("auto", {"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"},
         "--shard auto: GitLab's index 4 (CI_NODE_INDEX) is out of range for 3 shards"),
        ("auto", {"CIRCLE_NODE_INDEX": "0"},
         "--shard auto: CircleCI sets CIRCLE_NODE_INDEX but CIRCLE_NODE_TOTAL is not set"),
        ("auto", {"JOB_COMPLETION_INDEX": "0"},
         "--shard auto: Kubernetes sets JOB_COMPLETION_INDEX but it sets no count: give the "
         "count as --shard auto/N"),
        ("auto/2", {"JOB_COMPLETION_INDEX": "2"},
         "--shard auto: Kubernetes's index 2 (JOB_COMPLETION_INDEX) is out of range for 2"),
        ("auto/4", {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3"},
         "--shard auto/4: GitLab says there are 3 shards"),
        ("auto", {"CLOUD_RUN_TASK_INDEX": "one", "CLOUD_RUN_TASK_COUNT": "3"},
         "--shard auto: CLOUD_RUN_TASK_INDEX is not a number: 'one'"),
        ("3/2", {}, "--shard 3/2: the index must be 1..2 (it is 1-based)"),
        ("0/2", {}, "--shard 0/2: the index must be 1..2 (it is 1-based)"),
        ("1/0", {}, "--shard 1/0: the count must be >= 1"),
        ("half", {}, "--shard must be I/N (1-based), auto or auto/N, not 'half'"),
    ]
    for spec, env, message in cases:
        done = run("--shard", spec, "--shell", "--", f"touch {marker}", ":::", "a", "b",
                   env=env)
        assert done.returncode == 2 and done.stdout == "", (spec, env)
        assert f"pipereactor: error: {message}" in done.stderr, (spec, env, done.stderr)
        assert not marker.exists()


@pytest.mark.deadline(60)
def test_two_engines_that_agree_are_one_share() -> None:
    env = {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3", "CIRCLE_NODE_INDEX": "1",
           "CIRCLE_NODE_TOTAL": "3"}
    assert run("-k", "--shard", "auto", "echo", "{#}", ":::", *ALL, env=env).stdout == "2\n5\n"


@pytest.mark.deadline(60)
def test_shard_counts_jobs_before_resume_skips_any(tmp_path: Path) -> None:
    """An engine retries shard 2/2 under the same index: --resume skips what
    its first attempt did, and the job numbers stay the whole input's."""
    done = run("--shard", "2/2", "--joblog", "jl", "--shell", "--", "echo {#}; [ {#} != 4 ]",
               ":::", "a", "b", "c", "d", "e", "f", cwd=tmp_path)
    assert sorted(done.stdout.split()) == ["2", "4", "6"] and done.returncode == 1
    done = run("-k", "--shard", "2/2", "--resume-failed", "--joblog", "jl", "--shell", "--",
               "echo {#}", ":::", "a", "b", "c", "d", "e", "f", "g", "h", cwd=tmp_path)
    assert done.stdout == "4\n8\n" and done.returncode == 0, done.stderr
    seqs = [r.split("\t")[0] for r in (tmp_path / "jl").read_text().splitlines()[1:]]
    assert sorted(seqs[:3]) == ["2", "4", "6"] and sorted(seqs[3:]) == ["4", "8"]


def test_shard_resolution_units() -> None:
    assert resolve("2/5", {}) == Shard(2, 5)
    assert [k for k in range(12) if Shard(2, 5).takes(k)] == [1, 6, 11]
    assert resolve("auto", {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "1"}) == Shard(1, 1, "GitLab")
    # Slurm without SLURM_ARRAY_TASK_MAX: a task past the count is refused.
    env = {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}
    with pytest.raises(ShardError, match="sparse"):
        resolve("auto", env)
    env["SLURM_ARRAY_TASK_ID"] = "3"
    assert resolve("auto", env) == Shard(3, 3, "Slurm")
    # AWS Batch sets no size in fact: auto/N gives it.
    assert resolve("auto/4", {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == Shard(4, 4, "AWS Batch")
    assert resolve("auto/4", {"JOB_COMPLETION_INDEX": "0", "CLOUD_RUN_TASK_INDEX": "0"}) == (
        Shard(1, 4, "Cloud Run and Kubernetes"))
