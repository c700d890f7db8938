"""Bytes in and out: complete, in order, exact, however much the children write."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import pytest

import pipereactor as pr
from pipereactor._pipes import BIG_PIPE
from children.patterns import chunk_sizes, payload
from conftest import CountingSink, child, python

MiB = 1 << 20
PIPE_MAX_SIZE = 4 * MiB + 1  # CPython's "will probably deadlock rather than fail" size

MakeReactor = Callable[..., pr.Reactor]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_no_deadlock_when_both_streams_flood(make_reactor: MakeReactor) -> None:
    """The classic: 10 MiB on stdout and stderr at once, with blocking writes."""
    n = 10 * MiB
    out, err = pr.BytesSink(), pr.BytesSink()
    with make_reactor() as reactor:
        job = reactor.spawn(child("flood.py", str(n), str(n), "11"), stdout=out, stderr=err)
        assert job.wait(timeout=20) == 0
    assert len(out.getvalue()) == n and len(err.getvalue()) == n
    assert digest(out.getvalue()) == digest(payload(11, n))
    assert digest(err.getvalue()) == digest(payload(12, n))


def test_stdin_and_outputs_flow_at_once(make_reactor: MakeReactor) -> None:
    """64 MiB through a cat-like child while it also writes 8 MiB to stderr."""
    data = payload(5, 64 * MiB)
    out, err = pr.BytesSink(), pr.BytesSink()
    with make_reactor() as reactor:
        job = reactor.spawn(child("echo.py", str(8 * MiB), "6"), stdin=data, stdout=out, stderr=err)
        assert job.wait(timeout=25) == 0
    assert len(out) == len(data)
    assert digest(out.getvalue()) == digest(data)
    assert digest(err.getvalue()) == digest(payload(6, 8 * MiB))


@pytest.mark.parametrize("seed", [3, 17])
def test_iterable_stdin_random_chunks(seed: int) -> None:
    data = payload(seed, PIPE_MAX_SIZE)
    view = memoryview(data)
    pieces = []
    for n in chunk_sizes(seed, len(data), 1, 300_000):
        pieces.append(bytes(view[:n]))
        view = view[n:]
    out = pr.BytesSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(child("echo.py", "0", str(seed)), stdin=iter(pieces), stdout=out)
        assert job.wait(timeout=20) == 0
    assert digest(out.getvalue()) == digest(data)


def test_iterable_stdin_is_pulled_lazily() -> None:
    """A child that never reads: we pull only what fits in the pipe, not 64 MiB."""
    pulled = 0

    def gen() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(1024):
            pulled += 1
            yield b"x" * 65536

    with pr.Reactor() as reactor:
        job = reactor.spawn(python("import time; print('up'); time.sleep(30)"),
                            stdin=gen(), stdout=pr.PIPE)
        while not job.stdout.getvalue():
            reactor.step(5)
        for _ in range(5):
            reactor.step(0.05)
        # The pipe takes one 64 KiB item, is then grown (once) to BIG_PIPE and
        # takes that much more; one more item is pulled and waits for room.
        assert pulled <= BIG_PIPE // 65536 + 2
        job.kill()
        job.wait(timeout=10)
    assert job.returncode == -9


def test_binary_file_without_fd_as_stdin() -> None:
    data = payload(9, 3 * MiB)
    with pr.Reactor() as reactor:
        job = reactor.spawn(child("echo.py", "0", "1"), stdin=io.BytesIO(data), stdout=pr.PIPE)
        job.wait(timeout=20)
    assert job.stdout.getvalue() == data


def test_real_file_as_stdin_goes_to_child(tmp_path: Path) -> None:
    path = tmp_path / "in"
    path.write_bytes(b"from a file\n")
    with open(path, "rb") as f, pr.Reactor() as reactor:
        job = reactor.spawn(["cat"], stdin=f, stdout=pr.PIPE)
        job.wait(timeout=10)
    assert job.stdout.getvalue() == b"from a file\n"


def test_str_stdin_is_utf8() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["cat"], stdin="héllo ✓", stdout=pr.PIPE)
        job.wait(timeout=10)
    assert job.stdout.getvalue() == "héllo ✓".encode()


def test_stdin_epipe_is_not_an_error() -> None:
    """The child reads 10 bytes and exits; 4 MiB+1 of input is dropped quietly."""
    with pr.Reactor() as reactor:
        job = reactor.spawn(python("import sys; print(sys.stdin.buffer.read(10))"),
                            stdin=b"z" * PIPE_MAX_SIZE, stdout=pr.PIPE)
        assert job.wait(timeout=10) == 0
    assert job.stdout.getvalue() == b"b'zzzzzzzzzz'\n"


def test_pipe_stdin_writer_conversation() -> None:
    """stdin=PIPE: answer each echoed line from the sink, while the reactor runs."""
    got: list[str] = []
    job: pr.Job

    def on_line(line: str) -> None:
        got.append(line)
        assert job.stdin is not None
        if len(got) < 100:
            job.stdin.write(f"{len(got)}\n".encode())
        else:
            job.stdin.close()

    code = "import sys\nfor line in sys.stdin: print('echo', line.strip(), flush=True)"
    with pr.Reactor() as reactor:
        job = reactor.spawn(python(code), stdin=pr.PIPE, stdout=pr.LineSink(on_line))
        assert job.stdin is not None
        job.stdin.write(b"0\n")
        assert job.wait(timeout=20) == 0
    assert got == [f"echo {i}" for i in range(100)]
    assert job.stdin.closed
    with pytest.raises(ValueError, match="^write to closed stdin$"):
        job.stdin.write(b"late")


def test_pipe_stdin_after_child_exit_is_dropped() -> None:
    with pr.Reactor() as reactor:
        job = reactor.spawn(["true"], stdin=pr.PIPE)
        job.wait(timeout=10)
        assert job.stdin is not None
        assert job.stdin.write(b"nobody reads this") == 17
        assert job.stdin.pending == 0


def test_stderr_to_stdout_in_kernel_order() -> None:
    code = ("import os\nfor i in range(200):\n"
            "    os.write(1 + i % 2, b'%d\\n' % i)")
    sink = CountingSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(python(code), stdout=sink, stderr=pr.STDOUT)
        job.wait(timeout=10)
    # One pipe, unbuffered writes: the order is the order the child wrote.
    assert sink.getvalue() == b"".join(b"%d\n" % i for i in range(200))
    assert sink.closes == 1
    assert job.stderr is None


def test_same_sink_for_both_streams_is_closed_once() -> None:
    sink = CountingSink()
    with pr.Reactor() as reactor:
        reactor.spawn(child("flood.py", "100000", "100000", "2"), stdout=sink, stderr=sink)
    assert len(sink) == 200000
    assert sink.closes == 1


@pytest.mark.deadline(60)
def test_200_parallel_children_without_crosstalk(make_reactor: MakeReactor) -> None:
    n, size = 200, 200_000
    sinks = [(pr.BytesSink(), pr.BytesSink()) for _ in range(n)]
    with make_reactor() as reactor:
        jobs = [
            reactor.spawn(child("flood.py", str(size), str(size // 2), str(1000 + 2 * i)),
                          stdout=out, stderr=err)
            for i, (out, err) in enumerate(sinks)
        ]
        reactor.run(timeout=50)
    for i, (job, (out, err)) in enumerate(zip(jobs, sinks)):
        assert job.returncode == 0
        assert digest(out.getvalue()) == digest(payload(1000 + 2 * i, size)), i
        assert digest(err.getvalue()) == digest(payload(1001 + 2 * i, size // 2)), i


def test_mixed_targets(tmp_path: Path) -> None:
    """Every kind of target the README lists, on one reactor."""
    sio, bio = io.StringIO(), io.BytesIO()
    chunks: list[bytes] = []
    lines: list[str] = []
    ring = pr.RingBuffer(10)
    null = pr.NullSink()
    code = "print('héllo'); print('wörld')"
    with open(tmp_path / "text.txt", "w", encoding="utf-8") as text_file, pr.Reactor() as reactor:
        jobs = [
            reactor.spawn(python(code), stdout=sio),
            reactor.spawn(python(code), stdout=bio),
            reactor.spawn(python(code), stdout=chunks.append),
            reactor.spawn(python(code), stdout=pr.LineSink(lines.append)),
            reactor.spawn(python(code), stdout=ring),
            reactor.spawn(python(code), stdout=null),
            reactor.spawn(python(code), stdout=text_file),
            reactor.spawn(python(code), stdout=pr.FileSink(tmp_path / "bin")),
            reactor.spawn(python(code), stdout=pr.Tee(pr.TextSink(), pr.BytesSink())),
            reactor.spawn(python(code), stdout=pr.DEVNULL),
        ]
        reactor.run(timeout=20)
        assert not text_file.closed
    expected = "héllo\nwörld\n"
    assert jobs[0].stdout is sio and sio.getvalue() == expected and not sio.closed
    assert jobs[1].stdout is bio and bio.getvalue() == expected.encode() and not bio.closed
    assert b"".join(chunks) == expected.encode()
    assert lines == ["héllo", "wörld"]
    assert ring.getvalue() == expected.encode()[-10:]
    assert null.total == len(expected.encode())
    assert (tmp_path / "text.txt").read_text("utf-8") == expected
    assert (tmp_path / "bin").read_bytes() == expected.encode()
    tee = jobs[8].stdout
    assert tee.sinks[0].getvalue() == expected and tee.sinks[1].getvalue() == expected.encode()
    assert jobs[9].stdout is None
    assert all(job.returncode == 0 for job in jobs)


def test_utf8_character_split_across_reads() -> None:
    """The child writes half a character, waits for us to have read it, writes the rest."""
    seen: list[bytes] = []
    job: pr.Job

    def on_chunk(data: bytes) -> None:
        seen.append(data)
        assert job.stdin is not None
        if len(seen) == 1:
            job.stdin.write(b"go\n")
            job.stdin.close()

    code = ("import os, sys\nos.write(1, b'caf\\xc3')\nsys.stdin.readline()\n"
            "os.write(1, b'\\xa9 \\xe2\\x9c\\x93')")
    text = pr.TextSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(python(code), stdin=pr.PIPE,
                            stdout=pr.Tee(text, pr.CallbackSink(on_chunk)))
        job.wait(timeout=10)
    assert seen[0] == b"caf\xc3"  # the split really happened
    assert text.getvalue() == "café ✓"


@pytest.mark.parametrize("seed", [21, 22])
def test_every_sink_through_a_real_child(tmp_path: Path, seed: int) -> None:
    n = 3 * MiB + seed
    expected = payload(seed, n)
    fsink = pr.FileSink(tmp_path / "out")
    ring = pr.RingBuffer(70_000)
    chunks: list[bytes] = []
    null = pr.NullSink()
    bsink = pr.BytesSink()
    with pr.Reactor() as reactor:
        job = reactor.spawn(child("flood.py", str(n), "0", str(seed)),
                            stdout=pr.Tee(fsink, ring, chunks.append, null, bsink))
        job.wait(timeout=20)
    assert digest((tmp_path / "out").read_bytes()) == digest(expected)
    assert ring.getvalue() == expected[-70_000:]
    assert digest(b"".join(chunks)) == digest(expected)
    assert null.total == n and bsink.getvalue() == expected


def test_stdout_inherited_and_fd_targets(tmp_path: Path) -> None:
    with open(tmp_path / "o", "wb") as f, pr.Reactor() as reactor:
        job = reactor.spawn(["echo", "to fd"], stdout=f.fileno())
        assert job.wait(timeout=10) == 0
        assert job.stdout is None
    assert (tmp_path / "o").read_bytes() == b"to fd\n"


def test_large_output_ring_buffer_stays_bounded() -> None:
    ring = pr.RingBuffer(65536)
    n = 64 * MiB
    with pr.Reactor() as reactor:
        job = reactor.spawn(child("flood.py", str(n), "0", "8"), stdout=ring)
        job.wait(timeout=20)
    assert ring.total == n and ring.dropped == n - 65536
    assert ring.getvalue() == payload(8, n)[-65536:]
    assert len(ring._buf) == 65536



def test_signal_storm_to_the_parent_loses_nothing() -> None:
    """EINTR everywhere: the child signals us thousands of times while writing."""
    import signal

    received = 0

    def on_usr1(signum: int, frame: object) -> None:
        nonlocal received
        received += 1

    code = ("import os, signal\nppid = os.getppid()\n"
            "for i in range(3000):\n"
            "    os.kill(ppid, signal.SIGUSR1)\n"
            "    os.write(1, b'%06d\\n' % i)\n")
    old = signal.signal(signal.SIGUSR1, on_usr1)
    try:
        with pr.Reactor() as reactor:
            job = reactor.spawn(python(code), stdout=pr.PIPE)
            assert job.wait(timeout=20) == 0
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert job.stdout.getvalue() == b"".join(b"%06d\n" % i for i in range(3000))
    assert received > 0


def test_pipe_fds_above_1024_work() -> None:
    """select() breaks past fd 1024; the reactor's selector must not."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"RLIMIT_NOFILE is {soft}, too low to push fds past 1024")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with pr.Reactor() as reactor:
            job = reactor.spawn(child("flood.py", "300000", "300000", "4"),
                                stdout=pr.PIPE, stderr=pr.PIPE)
            assert min(r.fd.fd for r in job._readers) > 1024
            job.wait(timeout=10)
        assert job.stdout.getvalue() == payload(4, 300000)
        assert job.stderr.getvalue() == payload(5, 300000)
    finally:
        for fd in filler:
            os.close(fd)


def test_line_sink_stays_bounded_on_a_huge_line() -> None:
    """32 MiB without a newline: delivered in max_line pieces, never held whole."""
    pieces = 0
    longest = 0
    total = 0

    def on_line(line: str) -> None:
        nonlocal pieces, longest, total
        pieces += 1
        longest = max(longest, len(line))
        total += len(line)

    sink = pr.LineSink(on_line, max_line=4096)
    code = "import os\nb = b'y' * (1 << 20)\nfor _ in range(32): os.write(1, b)\nos.write(1, b'\\nend\\n')"
    with pr.Reactor() as reactor:
        reactor.spawn(python(code), stdout=sink)
    assert total == 32 * MiB + 3
    assert longest == 4096 and pieces == 32 * MiB // 4096 + 1
    assert len(sink._pending) == 0


@pytest.mark.parametrize("append", [False, True])
def test_file_sinks_go_to_the_child_and_null_sinks_are_spliced(
    tmp_path: Path, append: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FileSink on a regular file becomes the child's stdout itself (as the
    shell's '>'), with total counted from the file offset; NullSink gets the
    bytes by splice(), none through Python.  Counts and content exact."""
    spliced = []
    real_splice = os.splice

    def spy(*args: Any, **kwargs: Any) -> int:
        n = real_splice(*args, **kwargs)
        spliced.append(n)
        return n

    monkeypatch.setattr(os, "splice", spy)
    size = (8 << 20) + 5
    path = tmp_path / "out"
    path.write_bytes(b"head")
    flags = os.O_WRONLY | (os.O_APPEND if append else 0)
    fd = os.open(path, flags)
    if not append:
        os.lseek(fd, 4, os.SEEK_SET)
    try:
        with pr.Reactor() as reactor:
            out = pr.FileSink(fd)
            err = pr.NullSink()
            job = reactor.spawn(child("flood.py", str(size), str(size), "5"), stdout=out, stderr=err)
            assert len(job._readers) == 1  # stderr's pipe only
    finally:
        os.close(fd)
    assert job.returncode == 0
    assert (out.total, err.total) == (size, size)
    assert digest(path.read_bytes()) == digest(b"head" + payload(5, size))
    assert sum(spliced) == size  # stderr, all of it through the kernel only


def test_file_sink_through_a_pipe_when_it_is_not_a_regular_file() -> None:
    r, w = os.pipe()
    try:
        with pr.Reactor() as reactor:
            sink = pr.FileSink(w)
            job = reactor.spawn(python("print('x' * 1000)"), stdout=sink)
            assert len(job._readers) == 1  # a pipe: we read it and write to w
        os.close(w)
        w = -1
        assert os.read(r, 4096) == b"x" * 1000 + b"\n"
        assert sink.total == 1001
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_file_sink_total_adds_up_over_jobs_and_ignores_jobs_that_never_ran(tmp_path: Path) -> None:
    """Regression: the direct path assigned total (so a second job replaced
    the first's count), counted an O_APPEND file's size for a silent child,
    and counted a job whose start failed."""
    path = tmp_path / "log"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        sink = pr.FileSink(fd)
        with pr.Reactor(max_parallel=1) as reactor:
            reactor.spawn(python("print('abcd')"), stdout=sink)
            reactor.spawn(python("pass"), stdout=sink)
            reactor.spawn(python("print('xy')"), stdout=sink)
            missing = reactor.spawn(["/nonexistent/program"], stdout=sink)
        assert isinstance(missing.error, FileNotFoundError)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123456789abcd\nxy\n"
    assert sink.total == 8


def test_pipesize_is_kept_and_grown_pipes_stay_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from pipereactor import _pipes as _fdio

    with pr.Reactor() as reactor:
        job = reactor.spawn(child("flood.py", str(4 << 20), "0", "3"), stdout=pr.NullSink(),
                            pipesize=256 << 10)
        reader = job._readers[0]
        job.wait(timeout=30)
    assert reader.grown and reader.capacity == 256 << 10  # never grown past the caller's size
    assert _fdio._grown == 0  # every grown pipe was given back

    # An unprivileged user's budget: a quarter of pipe-user-pages-soft.
    monkeypatch.setattr(_fdio, "_BUDGET", float(2 * BIG_PIPE))
    with pr.Reactor() as reactor:
        jobs = [reactor.spawn(python("import sys, time; sys.stdout.buffer.write(b'x' * 300000); "
                                     "sys.stdout.flush(); time.sleep(0.5)"), stdout=pr.NullSink())
                for _ in range(4)]
        peak = 0
        while not all(job.done for job in jobs):
            reactor.step(5)
            peak = max(peak, _fdio._grown)
            big = [r for j in jobs for r in j._readers
                   if r.fd.fd >= 0 and fcntl.fcntl(r.fd.fd, fcntl.F_GETPIPE_SZ) > 65536]
            assert len(big) <= 2
        assert 0 < peak <= 2 * BIG_PIPE
    assert _fdio._grown == 0
    assert all(job.stdout.total == 300000 for job in jobs)
