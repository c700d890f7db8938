"""pipereactor: drive many child processes from one thread, without deadlocks.

One :class:`Reactor` feeds the children's stdin, drains their stdout and
stderr into sinks, and notices their exits, all from a single ``selectors``
loop.  See the README for the semantics; each name below documents its own.
"""

from subprocess import DEVNULL, PIPE, STDOUT, CalledProcessError, CompletedProcess, TimeoutExpired

from ._feeds import StdinWriter
from ._job import Job, JobCancelled, JobState, Rusage
from ._oneshot import communicate, run
from ._reactor import Reactor
from ._sinks import (
    BytesSink,
    CallbackSink,
    FileSink,
    LineSink,
    NullSink,
    RingBuffer,
    Sink,
    Tee,
    TextSink,
    as_sink,
)

__version__ = "0.1.0"

__all__ = [
    "PIPE",
    "DEVNULL",
    "STDOUT",
    "TimeoutExpired",
    "CalledProcessError",
    "CompletedProcess",
    "run",
    "communicate",
    "Reactor",
    "Job",
    "JobState",
    "JobCancelled",
    "Rusage",
    "StdinWriter",
    "Sink",
    "as_sink",
    "BytesSink",
    "TextSink",
    "FileSink",
    "CallbackSink",
    "LineSink",
    "RingBuffer",
    "Tee",
    "NullSink",
]
