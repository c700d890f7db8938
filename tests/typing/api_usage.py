"""Type-checked, never run: every public call with the type it must return.

mypy.stubtest compares names, arguments and defaults but not return types;
this file closes the gap.  .ci/run type-checks it twice: against the source
(``mypy --strict``) and against the stub (``MYPYPATH=stubs mypy --strict``).
If both pass, stub and source agree on what users see.
"""

from __future__ import annotations

import io
import os
import selectors
import subprocess
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pipereactor as pr

if TYPE_CHECKING:
    from typing_extensions import assert_type


def usage() -> None:
    assert_type(pr.PIPE, int)
    assert_type(pr.DEVNULL, int)
    assert_type(pr.STDOUT, int)
    assert_type(pr.TimeoutExpired, type[subprocess.TimeoutExpired])
    assert_type(pr.CalledProcessError, type[subprocess.CalledProcessError])

    reactor = pr.Reactor(max_parallel=4, watcher="poll", selector=selectors.PollSelector, raise_fd_limit=False,
                         jobserver=False)
    assert_type(reactor, pr.Reactor)
    with pr.Reactor() as r:
        assert_type(r, pr.Reactor)
        out = pr.BytesSink()
        job = r.spawn(
            ["echo", "hi"],
            stdin=b"data",
            stdout=out,
            stderr=pr.STDOUT,
            timeout=1.5,
            kill_grace=1,
            eof_grace=None,
            on_exit=lambda j: print(j.returncode),
            cwd="/",
        )
        assert_type(job, pr.Job)
        r.spawn("echo hi", shell=True, stdout=io.StringIO(), stderr=print)
        r.spawn(["cat"], stdin=iter([b"a", b"b"]), stdout=lambda data: None)
        r.spawn(["cat"], stdin=io.BytesIO(b"x"), stdout=pr.DEVNULL, stderr=pr.LineSink(print))
        assert_type(r.step(0.1), bool)
        assert_type(r.run(timeout=10), None)
        assert_type(r.as_completed(), Iterator[pr.Job])
        assert_type(r.fileno(), int)
        assert_type(r.next_timeout(), float | None)
        assert_type(r.close(), None)

    args: str | bytes | os.PathLike[str] | os.PathLike[bytes] | Sequence[
        str | bytes | os.PathLike[str] | os.PathLike[bytes]
    ] = job.args
    del args
    assert_type(job.pid, int | None)
    assert_type(job.returncode, int | None)
    assert_type(job.rusage, pr.Rusage | None)
    if job.rusage is not None:
        assert_type(job.rusage.user, float)
        assert_type(job.rusage.system, float)
        assert_type(job.rusage.max_rss, int)
    assert_type(job.done, bool)
    assert_type(job.timed_out, bool)
    assert_type(job.cancelled, bool)
    assert_type(job.duration, float | None)
    assert_type(job.started_at, float | None)
    assert_type(job.state, pr.JobState)
    assert_type(job.error, BaseException | None)
    assert_type(job.stdin, pr.StdinWriter | None)
    assert_type(job.wait(timeout=1), int)
    assert_type(job.check(), None)
    assert_type(job.terminate(), None)
    assert_type(job.kill(), None)
    assert_type(job.send_signal(15), None)
    assert_type(job.cancel(), None)
    if job.stdin is not None:
        assert_type(job.stdin.write(b"x"), int)
        assert_type(job.stdin.close(), None)
        assert_type(job.stdin.closed, bool)

    assert_type(pr.BytesSink().getvalue(), bytes)
    assert_type(pr.TextSink(io.StringIO(), encoding="latin-1", errors="strict").getvalue(), str)
    assert_type(pr.FileSink("/tmp/x").total, int)
    assert_type(pr.CallbackSink(print), pr.CallbackSink)
    assert_type(pr.LineSink(print, encoding="utf-8", errors="replace", max_line=80), pr.LineSink)
    ring = pr.RingBuffer(1024)
    assert_type(ring.getvalue(), bytes)
    assert_type(ring.total, int)
    assert_type(ring.dropped, int)
    assert_type(pr.Tee(out, ring, print), pr.Tee)
    assert_type(pr.NullSink().total, int)
    assert_type(pr.as_sink(print, "stdout"), pr.Sink)
    sink: pr.Sink = pr.BytesSink()
    assert_type(sink.write(b"x"), object)

    done = pr.run(["true"], capture_output=True, timeout=5.0, check=True, text=True)
    assert_type(done, subprocess.CompletedProcess[Any])
    assert isinstance(done, pr.CompletedProcess)
    popen = subprocess.Popen(["cat"], stdin=pr.PIPE, stdout=pr.PIPE)
    assert_type(pr.communicate(popen, b"x", timeout=1.0), tuple[Any, Any])
