"""``run()`` and ``communicate()``: subprocess's one-child calls, on a reactor.

Both keep the stdlib's contract to the letter: the same arguments, return
values, exceptions and text handling, because ``subprocess.Popen`` still
starts the child (so every Popen argument and error is the stdlib's own) and
still reaps it.  What changes is who moves the bytes: a one-job ``Reactor``
borrows the Popen's pipe files for the length of the call.

One deliberate difference: once the child has exited, its pipes get
``EOF_GRACE`` seconds to reach EOF.  A grandchild that inherited stdout and
keeps running (a daemon, ``sleep 60 &`` in a shell) no longer makes the call
wait for it: ``subprocess.run`` without a timeout waits for ever there
(CPython fixed bpo-37424 only on the timeout path).  The grandchild is left
running, but our end of the pipe is closed: its next write to it fails with
EPIPE (SIGPIPE kills it, unless it ignores that signal).

``communicate(popen)`` can be called again after ``TimeoutExpired``: the output
read so far and the input not yet written are kept, per Popen, until the
Popen is garbage.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import selectors
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import IO, Any, Final

from . import _childwatch
from ._deadlines import Due
from ._feeds import BytesFeed, Feed
from ._job import Job, JobState, StrOrBytesPath
from ._pipes import Fd, Reader, Writer
from ._reactor import EOF_GRACE, Reactor
from ._sinks import BytesSink, Sink

__all__ = ["run", "communicate"]

#: How long an interrupted call gives the child to exit before re-raising
#: (the child usually got the same Ctrl-C): subprocess's own figure.
_SIGINT_WAIT: Final = 0.25


class _Session:
    """What one Popen's communicate() calls share, so a call after
    TimeoutExpired neither loses nor repeats output or input."""

    __slots__ = ("stdout", "stderr", "input", "offset", "exited_at")

    def __init__(self, stdout: BytesSink | None, stderr: BytesSink | None, input: Any) -> None:
        self.stdout = stdout
        self.stderr = stderr
        #: The input (the caller's buffer, never copied; bytes in text mode),
        #: or None once stdin needs no more writes; ``offset`` bytes are written.
        #: A view of it exists only during a call, so the caller's buffer is
        #: not locked (bytearray.extend) between calls.
        self.input = input
        self.offset = 0
        #: When the child was seen to exit: the eof_grace clock survives calls.
        self.exited_at: float | None = None


_SESSIONS: weakref.WeakKeyDictionary[subprocess.Popen[Any], _Session] = (
    weakref.WeakKeyDictionary()
)


def communicate(
    popen: subprocess.Popen[Any], input: Any = None, timeout: float | None = None
) -> tuple[Any, Any]:
    """``popen.communicate(input, timeout)``, driven by a reactor.

    Sends ``input`` to the child's stdin (if it is a pipe) and closes it, reads
    stdout and stderr (those that are pipes) to EOF, and waits for the child.
    Returns ``(stdout, stderr)``: bytes, or str in text mode (decoded, with
    universal newlines, as subprocess does), None for a stream that is not a
    pipe.

    Raises:
        TimeoutExpired: ``timeout`` seconds passed first.  Nothing is killed and
            nothing is lost: ``output``/``stderr`` hold the bytes read so far,
            and calling ``communicate`` again goes on where this call stopped
            (without ``input``: it was taken by the first call).
        ValueError: ``input`` given to a call after the first.
        KeyboardInterrupt: after giving the child 0.25 s to exit, as subprocess
            does; the child is not killed.

    Where it differs from ``Popen.communicate``: after the child exits, its
    pipes get ``EOF_GRACE`` (2 s) to reach EOF; a grandchild still holding one
    is left running (its next write to the closed pipe fails) and the call
    returns what was read.  Input left over after a TimeoutExpired is still
    written on the next call (the stdlib stops writing it).  Bytes that your
    own reads left in a binary pipe file's buffer are returned first, on every
    path (the stdlib returns them only when stdout is the sole pipe and there
    is no timeout); text a text-mode file has buffered is not (neither does
    the stdlib, except on that path).  A stdin the child closed is not an
    error, as in the stdlib.
    """
    return _communicate(popen, input, timeout, for_run=False)


def _communicate(
    popen: subprocess.Popen[Any], input: Any, timeout: float | None, *, for_run: bool
) -> tuple[Any, Any]:
    """communicate(); ``for_run``: run() owns the child and kills it on any
    exception, so the child is left unreaped (a zombie reserving its group
    id, see _kill_and_reap) and there is no grace wait on an interrupt."""
    if not isinstance(popen, subprocess.Popen):
        raise TypeError(f"popen must be a subprocess.Popen, not {type(popen).__name__}")
    if timeout is not None and not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout is not None and math.isnan(timeout):
        raise ValueError("timeout must be a number of seconds, not nan")
    session = _SESSIONS.get(popen)
    if session is not None and input:
        raise ValueError("Cannot send input after starting communication")

    streams = (popen.stdin, popen.stdout, popen.stderr)
    if timeout is None and session is None and popen.stdin is not None and streams.count(None) == 2:
        # Only stdin is a pipe: nothing to drain, so nothing can deadlock, and
        # a blocking write is all there is to it (as subprocess does).
        _write_and_close(popen.stdin, input)
        popen.wait()
        return None, None

    endtime = None if timeout is None else time.monotonic() + float(timeout)
    try:
        if session is None:
            session = _SESSIONS[popen] = _begin(popen, input)
        done = _drive(popen, session, endtime, reap=not for_run)
    except KeyboardInterrupt:
        if for_run:
            raise
        # The child most likely got the same Ctrl-C: give it a moment to exit
        # (as subprocess does), and only once: Popen.__exit__ will not wait again.
        wait = _SIGINT_WAIT if endtime is None else min(_SIGINT_WAIT, endtime - time.monotonic())
        if getattr(popen, "_sigint_wait_secs", 0) > 0:
            popen._sigint_wait_secs = 0  # type: ignore[attr-defined]
            try:
                popen.wait(max(0.0, wait))
            except subprocess.TimeoutExpired:
                pass
        raise
    if not done:
        assert timeout is not None
        raise subprocess.TimeoutExpired(
            popen.args,
            timeout,
            output=_partial(session.stdout),
            stderr=_partial(session.stderr),
        )
    # Done means reaped: this returns at once.
    popen.wait(None if endtime is None else max(0.0, endtime - time.monotonic()))
    return _result(popen.stdout, session.stdout), _result(popen.stderr, session.stderr)


def _begin(popen: subprocess.Popen[Any], input: Any) -> _Session:
    """The first call's share: flush what the caller wrote to stdin, close
    it if there is no input, and take a byte view of the input."""
    data: Any = None
    if popen.stdin is not None:
        try:
            popen.stdin.flush()  # may block, if the caller wrote a lot (as subprocess)
        except BrokenPipeError:
            pass  # the child stopped reading: not an error for communicate
        if input:
            if isinstance(popen.stdin, io.TextIOBase):
                data = input.encode(popen.stdin.encoding, popen.stdin.errors)
            else:
                _byte_view(input).release()  # TypeError for str, as subprocess
                data = input
        else:
            _close_quietly(popen.stdin)
    sinks = []
    for file in (popen.stdout, popen.stderr):
        sink = None
        if file is not None:
            sink = BytesSink()
            sink.write(_take_buffered(file))
        sinks.append(sink)
    return _Session(sinks[0], sinks[1], data)


def _byte_view(data: Any) -> memoryview:
    """A flat byte view of a buffer, whatever its item size or layout."""
    view = memoryview(data)
    if view.c_contiguous:
        return view.cast("B")
    with view:
        return memoryview(view.tobytes())


def _take_buffered(file: IO[Any]) -> bytes:
    """What the caller's own reads (``readline()``, say) left in a binary pipe
    file's buffer: the reactor reads the fd, and would skip it.

    Text files are not covered: their decoded characters have no public way
    out but a blocking read.
    """
    if not isinstance(file, io.BufferedReader) or file.closed:
        return b""
    fd = file.fileno()
    blocking = os.get_blocking(fd)
    try:
        os.set_blocking(fd, False)
        # peek() returns the whole buffer, or (if empty) what one read finds now.
        data = file.peek(1)
        return file.read1(len(data)) if data else b""
    finally:
        os.set_blocking(fd, blocking)


def _drive(
    popen: subprocess.Popen[Any], session: _Session, endtime: float | None, *, reap: bool
) -> bool:
    """Move bytes until the child is done or ``endtime`` passes; True if done.

    At least one turn is taken, even when ``endtime`` has passed, so that a
    child that has exited is seen to have.  The reactor lives for this call
    only; whatever is left (open pipes, input not yet written) goes back to
    the Popen and the session, and nothing of the reactor outlives the call.
    With ``reap=False`` an exited child is left a zombie for the caller.
    """
    stdin = stdout = stderr = None
    view = None
    if session.input is not None and popen.stdin is not None and not popen.stdin.closed:
        view = _byte_view(session.input)
        stdin = (popen.stdin, BytesFeed(view[session.offset:]))
    if session.stdout is not None and popen.stdout is not None and not popen.stdout.closed:
        stdout = (popen.stdout, session.stdout)
    if session.stderr is not None and popen.stderr is not None and not popen.stderr.closed:
        stderr = (popen.stderr, session.stderr)
    # PollSelector: no fd of its own to open and close on every call.
    reactor = Reactor(selector=selectors.PollSelector)
    job = None
    try:
        job = _adopt(reactor, popen, stdin, stdout, stderr, session.exited_at, reap=reap)
        while job.state is not JobState.DONE:
            remaining = None if endtime is None else endtime - time.monotonic()
            reactor._turn(remaining if remaining is None else max(0.0, remaining))
            if remaining is not None and remaining <= 0:
                break
    finally:
        if job is not None:
            session.exited_at = job.exited_at
            writer = job._writer
            if writer is None:
                session.input = None  # written, refused (EPIPE) or not wanted
            elif view is not None:
                rest = writer.rest()
                session.offset = len(view) - (len(rest) if rest is not None else 0)
        for live in list(reactor._lc.live):  # not done, or an interrupt came early
            _detach(reactor, live)
        if job is not None:
            # Job, readers and reactor point at each other: part them, so that
            # the output and the input are freed now rather than by the gc.
            job._readers.clear()
            job._writer = None
            job._launch = None
            job._driver = None
        reactor._completions.clear()
        reactor._lc.deadlines.clear()
        reactor._release()
    return job is not None and job.state is JobState.DONE


def _adopt(
    reactor: Reactor,
    popen: subprocess.Popen[Any],
    stdin: tuple[IO[Any], Feed] | None,
    stdout: tuple[IO[Any], Sink] | None,
    stderr: tuple[IO[Any], Sink] | None,
    exited_at: float | None,
    *,
    reap: bool,
) -> Job:
    """Drive a Popen the caller started, as a RUNNING (or EXITED) job.

    Its pipe files are borrowed: non-blocking until ``_detach`` hands them
    back, closed through the file at EOF (as ``Popen.communicate`` does).
    The child is reaped by ``popen.poll()`` and never signalled: the job has
    no timeout and is not its own process group as far as we know.
    ``exited_at`` carries the eof_grace clock over from an earlier call.
    With ``reap=False``, a child seen to exit is left unreaped (a zombie)
    for the caller, where ``waitid`` can tell an exit without reaping.
    """
    lc = reactor._lc
    job = Job(
        reactor, popen.args, {},
        (None, stdin[1] if stdin else None),
        (None, stdout[1] if stdout else None, None),
        (None, stderr[1] if stderr else None, None),
        None, 0.0, EOF_GRACE, None,
    )
    job._launch = None
    job._popen = popen
    job._reaper = _poll_reaper if reap else _zombie_reaper
    job.pid = popen.pid
    job.started_at = time.monotonic()
    job.state = JobState.RUNNING
    lc.live.add(job)
    try:
        for pair in (stdout, stderr):
            if pair is not None:
                job._readers.append(Reader(job, Fd(pair[0]), pair[1]))
        if stdin is not None:
            job._writer = Writer(job, Fd(stdin[0]), stdin[1])
        if popen.returncode is None:
            lc.register(job, popen.pid)
        else:  # reaped already (by an earlier call, or the caller's wait())
            job.returncode = popen.returncode
            job.exited_at = time.monotonic() if exited_at is None else exited_at
            job.state = JobState.EXITED
            if job._writer is not None:
                lc.fds.end_input(job._writer)
            for reader in job._readers:
                reactor._selector.register(reader.fd.fd, selectors.EVENT_READ, reader)
            if job._readers:
                lc.schedule(job.exited_at + EOF_GRACE, Due.EOF, job)
            lc.maybe_finish(job)
    except BaseException:
        _detach(reactor, job)
        raise
    return job


def _poll_reaper(popen: subprocess.Popen[Any]) -> bool:
    """The caller's Popen reaps its child, as it would itself."""
    popen.poll()
    return popen.returncode is not None


def _zombie_reaper(popen: subprocess.Popen[Any]) -> bool:
    """Whether the child has exited, leaving it unreaped where ``waitid``
    can tell (run() reaps it, after killing its group if need be)."""
    if popen.returncode is not None:
        return True
    exited = _childwatch.exited_unreaped(popen.pid)
    if exited is None:
        return _poll_reaper(popen)  # no waitid here: reaping is the only way to know
    return exited


def _detach(reactor: Reactor, job: Job) -> None:
    """Stop driving an adopted job and leave its process alone; the pipe
    files still open go back to their owner, in blocking mode again."""
    lc = reactor._lc
    for reader in job._readers:
        lc.fds.unregister_quietly(reader.fd.fd)
        reader.fd.release()
    writer = job._writer
    if writer is not None:
        if writer.registered:
            lc.fds.unregister_quietly(writer.fd.fd)
            writer.registered = False
        writer.fd.release()
    lc.exits.unwatch(job)
    lc.live.discard(job)


def _partial(sink: BytesSink | None) -> bytes | None:
    # As subprocess: bytes even in text mode, None when nothing was read.
    return sink.getvalue() or None if sink is not None else None


def _result(file: IO[Any] | None, sink: BytesSink | None) -> Any:
    if file is None or sink is None:
        return None
    data = sink.getvalue()
    if isinstance(file, io.TextIOBase):
        text = data.decode(file.encoding, file.errors or "strict")
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return data


def _write_and_close(stdin: IO[Any], input: Any) -> None:
    if input:
        try:
            stdin.write(input)
        except BrokenPipeError:
            pass  # the child stopped reading: not an error for communicate
    _close_quietly(stdin)


def _close_quietly(file: IO[Any]) -> None:
    try:
        file.close()
    except BrokenPipeError:
        pass  # flushing into a pipe the child closed


def run(
    args: StrOrBytesPath | Sequence[StrOrBytesPath],
    *,
    stdin: Any = None,
    input: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    capture_output: bool = False,
    shell: bool = False,
    cwd: StrOrBytesPath | None = None,
    timeout: float | None = None,
    check: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    text: bool | None = None,
    env: Mapping[Any, Any] | None = None,
    universal_newlines: bool | None = None,
    **other_popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run``, with the child's pipes driven by a reactor.

    Same arguments, defaults, return value and exceptions: a
    ``CompletedProcess``; ``CalledProcessError`` (output attached) with
    ``check=True``; ``TimeoutExpired`` after ``timeout`` seconds, once the child
    was killed and reaped, carrying the output read so far (bytes, as
    subprocess).  Every Popen argument is passed on to ``subprocess.Popen``.

    ``args`` is the only positional argument (as in subprocess's documented
    signature); every other Popen argument is passed by keyword.

    Where it differs: after the child exits, its pipes get ``EOF_GRACE`` (2 s)
    to reach EOF, so a grandchild that keeps stdout open (a daemon) cannot
    make the call hang; it is left running, but its next write to the closed
    pipe fails.  On a timeout or an exception
    (KeyboardInterrupt included) the child is killed with SIGKILL, as
    subprocess does, and also reaped before the exception propagates;
    with ``start_new_session=True`` (or ``process_group=0``) what is left of
    its process group is killed too, grandchildren included, even when the
    child itself had already exited.
    """
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = subprocess.PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = subprocess.PIPE
    own_group = bool(other_popen_kwargs.get("start_new_session")) or (
        other_popen_kwargs.get("process_group") == 0
    )
    with subprocess.Popen(
        args, stdin=stdin, stdout=stdout, stderr=stderr, shell=shell, cwd=cwd,
        encoding=encoding, errors=errors, text=text, env=env,
        universal_newlines=universal_newlines, **other_popen_kwargs,
    ) as process:
        try:
            out, err = _communicate(process, input, timeout, for_run=True)
        except BaseException:
            _kill_and_reap(process, own_group)
            raise
        retcode = process.wait()  # reaped already: communicate() returned
        if check and retcode:
            raise subprocess.CalledProcessError(retcode, process.args, output=out, stderr=err)
    return subprocess.CompletedProcess(process.args, retcode, out, err)


def _kill_and_reap(process: subprocess.Popen[Any], own_group: bool) -> None:
    """SIGKILL the child and reap it; with ``own_group``, SIGKILL what is
    left of its process group too (a grandchild holding the pipe, say).  A
    second interrupt does not stop the reaping, and is re-raised after it.

    The group is only signalled while the child is unreaped: its id cannot
    have been given to anyone else then.  That is why run()'s communicate
    leaves an exited child a zombie (where ``waitid`` can tell, see
    ``_childwatch.exited_unreaped``) until this has run or the call succeeded.
    """
    interrupt: BaseException | None = None
    while process.returncode is None:
        try:
            try:
                # Unreaped, so the pid (and the group id it leads) is still ours.
                if own_group:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                break  # a setuid child, say: beyond our reach
            process.wait()
        except Exception:
            break
        except BaseException as exc:
            interrupt = interrupt or exc
    if interrupt is not None:
        raise interrupt
