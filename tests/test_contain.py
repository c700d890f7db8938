"""Containment (Reactor(contain=...)): a job is its whole process tree.

Each escaper below leaves the job's process group: ``setsid`` makes a new
session, and a subshell that backgrounds a process and exits leaves a
double-forked daemon (reparented away from the job's child).  Whatever way
the job ends, none of them may survive it, and no cgroup may be left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import pipereactor as pr
from pipereactor import _cgroup, _trampoline

from conftest import alive, child, python, wait_gone

try:
    _PARENT: str | None = _cgroup.own_cgroup()
    _cgroup.Containment(_PARENT).close()
except _cgroup.Unavailable:
    _PARENT = None

pytestmark = pytest.mark.skipif(_PARENT is None, reason="no cgroup v2 we may create cgroups in")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints the setsid'd sleeper's pid and the daemon's, then runs CHILD_END.
ESCAPE = "setsid sleep 1000 & echo $!; ( sleep 1000 & echo $! ); "


def _ours() -> set[str]:
    """Names of the cgroups reactors of this process have made."""
    assert _PARENT is not None
    prefix = f"pipereactor.{os.getpid()}."
    return {name for name in os.listdir(_PARENT) if name.startswith(prefix)}


@pytest.fixture(autouse=True)
def no_cgroup_left() -> Iterator[None]:
    before = _ours()
    yield
    assert _ours() == before, "a reactor left its cgroup behind"


def _pids(job: pr.Job) -> list[int]:
    return [int(p) for p in job.stdout.getvalue().split()]


def _escapers(reactor: pr.Reactor, end: str, **kwargs: object) -> tuple[pr.Job, list[int]]:
    """A job whose child starts the two escapers, then runs ``end``; returns
    it once both escapers' pids are known."""
    job = reactor.spawn(["/bin/sh", "-c", ESCAPE + end], stdout=pr.PIPE, **kwargs)  # type: ignore[arg-type]
    while len(_pids(job)) < 2:
        reactor.step(5)
    pids = _pids(job)
    assert all(alive(pid) for pid in pids)
    return job, pids


@pytest.mark.deadline(30)
def test_a_timeout_leaves_no_process_of_the_tree() -> None:
    with pr.Reactor(contain=True) as reactor:
        job, pids = _escapers(reactor, "exec sleep 1000", timeout=0.5, kill_grace=0.5)
        job.wait(20)
    assert job.contained and job.timed_out
    assert job.returncode == -signal.SIGTERM
    for pid in pids:
        wait_gone(pid, timeout=5)


@pytest.mark.deadline(30)
def test_cancel_leaves_no_process_of_the_tree() -> None:
    with pr.Reactor(contain=True) as reactor:
        job, pids = _escapers(reactor, "exec sleep 1000", kill_grace=0.5)
        job.cancel()
        job.wait(20)
    assert job.cancelled and not job.timed_out
    for pid in pids:
        wait_gone(pid, timeout=5)


@pytest.mark.deadline(30)
def test_a_normal_exit_ends_the_tree_after_eof_grace() -> None:
    """The child exits 0 at once; what it left gets eof_grace, then cgroup.kill,
    and the job is done only when the tree is gone."""
    with pr.Reactor(contain=True) as reactor:
        job, pids = _escapers(reactor, "exit 0", eof_grace=0.3)
        job.wait(20)
        assert not any(alive(pid) for pid in pids)  # done means the tree is gone
    assert job.returncode == 0 and not job.timed_out and not job.cancelled
    for pid in pids:
        wait_gone(pid, timeout=5)


@pytest.mark.deadline(30)
def test_a_job_waits_for_its_tree_to_finish_within_eof_grace() -> None:
    """A daemon that finishes by itself within eof_grace is waited for, not
    killed: the job is done when it is."""
    with pr.Reactor(contain=True) as reactor:
        job = reactor.spawn(["/bin/sh", "-c", "(sleep 0.3; echo late > /dev/null) & exit 0"],
                            eof_grace=20, stdout=pr.DEVNULL, stderr=pr.DEVNULL)
        job.wait(20)
        assert job.exited_at is not None
        # The child exited at once; the job was done when the sleeper was.
        assert time.monotonic() - job.exited_at < 15


@pytest.mark.deadline(60)
def test_sigint_to_a_real_parent_leaves_no_process_and_no_cgroup() -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    parent = subprocess.Popen(child("contained_parent.py", "3", "0.5"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        cgroup = parent.stdout.readline().split()[1]
        pids = [int(p) for p in parent.stdout.readline().split()[1:]]
        assert len(pids) == 6 and parent.stdout.readline() == "ready\n"
        assert os.path.isdir(cgroup)
        parent.send_signal(signal.SIGINT)
        out, err = parent.communicate(timeout=30)
    finally:
        if parent.returncode is None:
            parent.kill()
            parent.communicate()
    assert (parent.returncode, out) == (130, "interrupted\n"), err
    for pid in pids:
        wait_gone(pid, timeout=5)
    assert not os.path.exists(cgroup)


@pytest.mark.deadline(60)
def test_rusage_counts_a_grandchild_nobody_waited_for() -> None:
    """The grandchild is detached and never waited for by the job's child:
    wait4 cannot see its CPU; the cgroup's cpu.stat does."""
    burn = "import time\nwhile time.process_time() < 0.3: pass\n"
    script = f"{sys.executable} -c '{burn}' & exit 0"
    with pr.Reactor(contain=True) as reactor:
        job = reactor.spawn(["/bin/sh", "-c", script], eof_grace=None)
    assert job.rusage is not None
    assert job.rusage.user + job.rusage.system >= 0.3


@pytest.mark.deadline(30)
def test_terminate_and_kill_reach_every_process_in_the_cgroup() -> None:
    with pr.Reactor(contain=True) as reactor:
        job, pids = _escapers(reactor, "exec sleep 1000")
        job.terminate()
        for pid in pids:  # SIGTERM ends a sleep: each got it
            wait_gone(pid, timeout=10)
        job.wait(20)
        assert job.returncode == -signal.SIGTERM
        job2, pids2 = _escapers(reactor, "trap '' TERM; sleep 1000 & wait")
        job2.kill()
        job2.wait(20)
    for pid in pids2:
        wait_gone(pid, timeout=5)


@pytest.mark.deadline(30)
def test_the_program_sees_its_own_environment_and_errors() -> None:
    """The trampoline that joins the cgroup is invisible: the same argv,
    environment (dash's PWD undone) and errors as without containment."""
    with pr.Reactor(contain=True) as reactor:
        env_job = reactor.spawn(["env"], env={"A": "1", "PATH": os.environ["PATH"]},
                                stdout=pr.PIPE)
        argv_job = reactor.spawn(python("import sys; print(sys.argv[1:])") + ["a b", "-c"],
                                 stdout=pr.PIPE)
        shell_job = reactor.spawn("echo $0 $1", shell=True, stdout=pr.PIPE)
        with pytest.raises(FileNotFoundError):
            reactor.spawn(["no-such-program-anywhere"])
        with pytest.raises(ValueError, match="executable"):
            reactor.spawn(["sleep", "1"], executable="/bin/true")
    assert env_job.stdout.getvalue() == b"A=1\nPATH=" + os.environb[b"PATH"] + b"\n"
    assert argv_job.stdout.getvalue() == b"['a b', '-c']\n"
    assert shell_job.stdout.getvalue() == b"/bin/sh\n"


@pytest.mark.deadline(30)
def test_auto_falls_back_to_process_groups_and_true_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable() -> str:
        raise _cgroup.Unavailable("no cgroup2 file system is mounted (test)")

    monkeypatch.setattr(_cgroup, "own_cgroup", unavailable)
    with pytest.raises(RuntimeError, match=r"contain=True.*no cgroup2 .*\(test\)"):
        pr.Reactor(contain=True)
    with pr.Reactor(contain="auto") as reactor:
        job = reactor.spawn(["true"])
    assert job.returncode == 0 and not job.contained
    with pytest.raises(ValueError, match="contain"):
        pr.Reactor(contain="yes")


@pytest.mark.deadline(60)
def test_fallback_where_cgroups_are_read_only() -> None:
    """A real unavailability: the cgroup2 mount read-only in a mount namespace."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1)")
    assert _PARENT is not None
    code = (
        "import pipereactor as pr\n"
        "try:\n    pr.Reactor(contain=True)\n"
        "except RuntimeError as e:\n    print('refused:', e)\n"
        "with pr.Reactor(contain='auto') as r:\n    j = r.spawn(['true'])\n"
        "print('auto:', j.contained, j.returncode)\n"
    )
    script = (f"mount --make-rprivate / && mount -o remount,bind,ro '{_PARENT}' && "
              f"exec {sys.executable} -c \"$0\"")
    done = subprocess.run(["unshare", "-m", "/bin/sh", "-c", script, code],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: contain=True, but containment is not available: "
                               "cannot create a cgroup in "), lines
    assert "no permission" in lines[0] or "Read-only" in lines[0], lines
    assert lines[1] == "auto: False 0"


@pytest.mark.deadline(30)
def test_the_cgroups_of_a_dead_reactor_are_removed_and_no_one_elses() -> None:
    assert _PARENT is not None
    # A reactor that was SIGKILLed: its process is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(_PARENT, f"pipereactor.{dead.pid}.1.0")
    foreign = os.path.join(_PARENT, f"pipereactor-test-not-ours-{os.getpid()}")
    for path in (stale, stale + "/job.0", stale + "/job.1", foreign):
        os.mkdir(path)
    try:
        with pr.Reactor(contain=True):
            pass
        assert not os.path.exists(stale)
        assert os.path.isdir(foreign)
    finally:
        for path in (stale + "/job.0", stale + "/job.1", stale, foreign):
            if os.path.exists(path):
                os.rmdir(path)


@pytest.mark.deadline(30)
def test_an_error_in_the_loop_ends_every_tree() -> None:
    """A sink raising: every contained job's tree is stopped before the
    exception propagates, and the reactor's cgroups go with it."""
    pids: list[int] = []

    def take(line: str) -> None:
        pids.append(int(line))
        if len(pids) == 4:
            raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        with pr.Reactor(contain=True) as reactor:
            for _ in range(2):
                reactor.spawn(["/bin/sh", "-c", ESCAPE + "exec sleep 1000"], kill_grace=0.5,
                              stdout=pr.LineSink(take))
    assert len(pids) == 4
    for pid in pids:
        wait_gone(pid, timeout=5)


# -- the command-line runner: --contain auto|yes|no ------------------------------------

CLI = [sys.executable, "-m", "pipereactor"]


def _cli(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=input, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})


@pytest.mark.deadline(90)
def test_the_runner_contains_its_jobs_by_default_and_not_with_contain_no() -> None:
    line = ESCAPE.encode() + b"exit 0\n"
    done = _cli("-j", "1", input=line)  # the default: --contain auto
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        wait_gone(pid, timeout=10)
    done = _cli("--contain", "no", "-j", "1", input=line)
    pids = [int(p) for p in done.stdout.split()]
    try:
        assert done.returncode == 0 and len(pids) == 2
        assert any(alive(pid) for pid in pids)  # the setsid'd one left the group
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.deadline(60)
def test_the_runner_refuses_contain_yes_where_it_cannot_be_had() -> None:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1)")
    assert _PARENT is not None
    script = (f"mount --make-rprivate / && mount -o remount,bind,ro '{_PARENT}' && "
              f"echo touch {ROOT}/ran-$$ | {' '.join(CLI)} --contain yes; echo status $?")
    done = subprocess.run(["unshare", "-m", "/bin/sh", "-c", script], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.stdout.splitlines()[-1] == "status 2", done
    assert "--contain yes: contain=True, but containment is not available" in done.stderr
    assert not any(name.startswith("ran-") for name in os.listdir(ROOT))  # nothing ran
    bad = _cli("--contain", "sometimes")
    assert bad.returncode == 2 and b"--contain" in bad.stderr


@pytest.mark.deadline(30)
@pytest.mark.parametrize("how", ["cancel", "kill", "timeout", "close"])
def test_a_stop_before_the_child_joined_its_cgroup_still_reaches_it(
    monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    """Popen returns once the trampoline runs, before it has written its pid
    into the cgroup: a stop in that window must reach the child (the cgroup
    is empty then), and must not make the cgroup look empty for good."""
    gate_r, gate_w = os.pipe()
    # The trampoline waits for the gate before it joins: the window, held open.
    monkeypatch.setattr(_trampoline, "_SCRIPT", f"read _ </dev/fd/{gate_r}\n" + _trampoline._SCRIPT)
    try:
        reactor = pr.Reactor(contain=True)
        try:
            job = reactor.spawn(["sleep", "1000"], pass_fds=(gate_r,), kill_grace=0.2,
                                timeout=0 if how == "timeout" else None)
            if how == "cancel":
                job.cancel()
            elif how == "kill":
                job.kill()
            elif how == "timeout":
                reactor.step(0)
            else:
                reactor.close()  # hung for good when the signal was lost
            os.write(gate_w, b"\n")  # the trampoline, if alive, joins and runs sleep
            if how != "close":
                job.wait(20)
        finally:
            reactor.close()
    finally:
        os.close(gate_r)
        os.close(gate_w)
    assert job.state is pr.JobState.DONE
    assert job.returncode in (-signal.SIGTERM, -signal.SIGKILL)


def _run_both(args: object, **kwargs: object) -> list[tuple[int | None, bytes]]:
    """(returncode, stdout+stderr) of ``args`` run uncontained, then contained."""
    results = []
    for contain in (False, True):
        with pr.Reactor(contain=contain) as reactor:
            job = reactor.spawn(args, stdout=pr.PIPE, stderr=pr.STDOUT, **kwargs)  # type: ignore[arg-type]
        assert job.contained is contain
        results.append((job.returncode, job.stdout.getvalue()))
    return results


@pytest.mark.deadline(30)
@pytest.mark.parametrize("env", [None, {"A": "1"}], ids=["inherited", "without-PATH"])
def test_the_program_keeps_its_argv0_when_found_through_PATH(
    env: dict[str, str] | None,
) -> None:
    """Popen execs the file it finds in PATH with argv[0] as given ('sh'),
    not the path it found ('/usr/bin/sh'): so must the trampoline."""
    uncontained, contained = _run_both(["sh", "-c", 'echo "$0"; cat /proc/$$/cmdline'], env=env)
    assert uncontained == (0, b"sh\nsh\0-c\0" + b'echo "$0"; cat /proc/$$/cmdline\0')
    assert contained == uncontained


def _mount_point() -> str:
    """Where the cgroup2 hierarchy's root is mounted (our cgroup is _PARENT)."""
    assert _PARENT is not None
    with open("/proc/self/cgroup") as f:
        rel = next(line[3:].strip() for line in f if line.startswith("0::"))
    return _PARENT if rel == "/" else _PARENT[: -len(rel.rstrip("/"))]


@pytest.mark.deadline(30)
def test_a_job_that_made_cgroups_of_its_own_leaves_none_behind() -> None:
    """A job may make cgroups below its own (a contained reactor of its own,
    SIGKILLed with the job, leaves one): they are the job's, removed with it."""
    script = (f'cg="{_mount_point()}$(sed -n "s/^0:://p" /proc/self/cgroup)"; '
              'mkdir "$cg/inner" "$cg/inner/deeper" && echo $$ > "$cg/inner/deeper/cgroup.procs" '
              '&& echo ready && exec sleep 1000')
    with pr.Reactor(contain=True) as reactor:
        assert reactor._lc.contain is not None
        ours = reactor._lc.contain.path
        job = reactor.spawn(["/bin/sh", "-c", script], stdout=pr.PIPE, kill_grace=0.5)
        while job.stdout.getvalue() != b"ready\n" and job.state is pr.JobState.RUNNING:
            reactor.step(5)
        assert job.stdout.getvalue() == b"ready\n"
        job.cancel()
        job.wait(20)
        assert not os.path.exists(ours + "/job.0")  # removed when the job was done
    assert job.returncode == -signal.SIGTERM
    assert not os.path.exists(ours)


_ODD_ENV = {
    "A-B": "1", "1X": "2", "spring.profiles.active": "dev",  # not shell names: dropped by sh
    "BASH_FUNC_f%%": "() {  echo f\n}",  # bash's exported function
    "IFS": ":", "OPTIND": "7", "PPID": "1",  # set by sh itself
    "-x": "3", "A": "1",
}


@pytest.mark.deadline(30)
@pytest.mark.parametrize("inherited", [False, True], ids=["env=", "os.environ"])
def test_the_program_gets_its_environment_exactly(
    monkeypatch: pytest.MonkeyPatch, inherited: bool,
) -> None:
    """Every variable, in order: also those a shell would drop (names that are
    not shell names) or set itself (IFS, OPTIND, PPID)."""
    env = {**_ODD_ENV, "PATH": os.environ["PATH"]}
    if inherited:
        for name in list(os.environ):
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    results = _run_both(["env", "-0"], env=None if inherited else env)
    for returncode, out in results:
        assert returncode == 0
        pairs = [entry.split("=", 1) for entry in out.decode().split("\0")[:-1]]
        # Inherited, C code may have set more (LINES and COLUMNS, say),
        # behind os.environ's back: only ours are compared.
        assert [(k, v) for k, v in pairs if k in env] == list(env.items())


@pytest.mark.deadline(30)
def test_user_that_could_not_join_the_cgroup_is_refused_at_spawn() -> None:
    """A child that drops to another user before the trampoline runs has no
    right to write cgroup.procs: spawn() says so, rather than the job ending
    with the shell's 'Permission denied' and status 125."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to start a child as another user")
    with pr.Reactor(contain=True) as reactor:
        with pytest.raises(ValueError, match=r"^user= .* containment"):
            reactor.spawn(["id", "-u"], user=65534)
        same = reactor.spawn(["id", "-u"], user=os.geteuid(), stdout=pr.PIPE)
    assert (same.returncode, same.stdout.getvalue()) == (0, b"%d\n" % os.geteuid())




_OTHER_NAMESPACE = """\
import sys
import pipereactor as pr
with pr.Reactor(contain=True) as reactor:
    print(reactor._lc.contain.path, flush=True)
    sys.stdin.readline()  # the other reactor has started (and cleaned up) meanwhile
    try:
        job = reactor.spawn(["true"])
        job.wait(10)
        print("ran", job.returncode, flush=True)
    except OSError as exc:
        print("failed", exc, flush=True)
"""


def _in_cgroup(cgroup: str, argv: list[str]) -> list[str]:
    """argv, run in ``cgroup`` (a shell joins it, then execs argv)."""
    return ["/bin/sh", "-c", f'echo 0 > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]


@pytest.mark.deadline(60)
def test_stale_cleanup_spares_a_live_reactor_in_another_pid_namespace() -> None:
    """A reactor in another pid namespace (a container sharing our cgroup)
    has a pid we cannot see: by its name alone it looks dead.  Starting a
    reactor beside it must not remove its cgroup from under it.  Both run in
    a cgroup of the test's own, so that neither cleanup sees anyone else's."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1)")
    assert _PARENT is not None
    shared = os.path.join(_PARENT, f"pipereactor-test-pidns-{os.getpid()}")
    os.mkdir(shared)
    env = {**os.environ, "PYTHONPATH": ROOT}
    try:
        other = subprocess.Popen(
            ["unshare", "-p", "-f", "--mount-proc",
             *_in_cgroup(shared, [sys.executable, "-c", _OTHER_NAMESPACE])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        try:
            assert other.stdin is not None and other.stdout is not None
            path = other.stdout.readline().strip()
            assert os.path.basename(path).startswith("pipereactor.1."), path  # pid 1 in there
            ours = subprocess.run(
                _in_cgroup(shared, [sys.executable, "-c",
                                    "import pipereactor as pr; pr.Reactor(contain=True).close()"]),
                capture_output=True, text=True, env=env, timeout=30)
            assert ours.returncode == 0, ours.stderr
            other.stdin.write("go\n")
            other.stdin.flush()
            out, err = other.communicate(timeout=30)
        finally:
            if other.returncode is None:
                other.kill()
                other.communicate()
        assert (other.returncode, out) == (0, "ran 0\n"), err
        assert not [n for n in os.listdir(shared) if os.path.isdir(os.path.join(shared, n))]
    finally:
        for dirpath, _, _ in sorted(os.walk(shared), key=lambda w: -len(w[0])):
            os.rmdir(dirpath)
