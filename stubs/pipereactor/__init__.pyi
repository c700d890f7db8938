# The public API of pipereactor: the reviewed contract.
#
# mypy.stubtest checks this file against the runtime (names, argument names,
# kinds and defaults); tests/typing/api_usage.py checks return types against
# both this file and the source.  A change here is a public API change: give it
# a CHANGELOG line.

import enum
import os
import resource
import selectors
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from subprocess import DEVNULL as DEVNULL
from subprocess import PIPE as PIPE
from subprocess import STDOUT as STDOUT
from subprocess import CalledProcessError as CalledProcessError
from subprocess import CompletedProcess as CompletedProcess
from subprocess import Popen
from subprocess import TimeoutExpired as TimeoutExpired
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, Protocol, TypeAlias, runtime_checkable

__version__: str

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

_StrOrBytesPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]
_Args: TypeAlias = _StrOrBytesPath | Sequence[_StrOrBytesPath]

# -- sinks ---------------------------------------------------------------------

@runtime_checkable
class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...

class _TextWriter(Protocol):
    def write(self, text: str, /) -> object: ...

def as_sink(obj: object, argname: str) -> Sink: ...

class BytesSink:
    def __init__(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def getvalue(self) -> bytes: ...
    def __len__(self) -> int: ...

class TextSink:
    encoding: str
    errors: str
    target: _TextWriter | None
    def __init__(
        self, target: _TextWriter | None = None, encoding: str = "utf-8", errors: str = "replace"
    ) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def getvalue(self) -> str: ...

class FileSink:
    name: str | os.PathLike[str] | IO[bytes] | int
    total: int
    def __init__(self, file: str | os.PathLike[str] | IO[bytes] | int) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...

class CallbackSink:
    fn: Callable[[bytes], object]
    def __init__(self, fn: Callable[[bytes], object]) -> None: ...
    def write(self, data: bytes) -> None: ...

class LineSink:
    fn: Callable[[str], object]
    max_line: int
    def __init__(
        self,
        fn: Callable[[str], object],
        encoding: str = "utf-8",
        errors: str = "replace",
        max_line: int = 65536,
    ) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...

class RingBuffer:
    capacity: int
    total: int
    def __init__(self, capacity: int) -> None: ...
    def write(self, data: bytes) -> None: ...
    @property
    def dropped(self) -> int: ...
    def getvalue(self) -> bytes: ...

class Tee:
    sinks: tuple[Sink, ...]
    def __init__(self, *sinks: object) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...

class NullSink:
    total: int
    def __init__(self) -> None: ...
    def write(self, data: bytes) -> None: ...

# -- jobs ------------------------------------------------------------------------

class StdinWriter:
    pending: int
    def __init__(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self) -> None: ...
    def pull(self) -> bytes | None: ...

class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    EXITED = "exited"
    DONE = "done"

class JobCancelled(Exception): ...

class Rusage(NamedTuple):
    user: float
    system: float
    max_rss: int
    @classmethod
    def from_wait4(cls, usage: resource.struct_rusage) -> Rusage: ...

class Job:
    args: _Args
    pid: int | None
    returncode: int | None
    state: JobState
    timed_out: bool
    cancelled: bool
    error: BaseException | None
    started_at: float | None
    exited_at: float | None
    rusage: Rusage | None
    timeout: float | None
    kill_grace: float
    eof_grace: float | None
    on_exit: Callable[[Job], object] | None
    stdout: Any
    stderr: Any
    stdin: StdinWriter | None
    contained: bool
    # Internal: jobs are made by Reactor.spawn, never by the caller.
    def __init__(
        self,
        reactor: Reactor,
        args: _Args,
        popen_kwargs: dict[str, Any],
        stdin: tuple[Any, Any],
        stdout: tuple[Any, Any, Any],
        stderr: tuple[Any, Any, Any],
        timeout: float | None,
        kill_grace: float,
        eof_grace: float | None,
        on_exit: Callable[[Job], object] | None,
    ) -> None: ...
    @property
    def done(self) -> bool: ...
    @property
    def duration(self) -> float | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def check(self) -> None: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def cancel(self) -> None: ...

# -- the reactor -------------------------------------------------------------------

_StdinArg: TypeAlias = int | bytes | bytearray | memoryview | str | IO[bytes] | Iterable[bytes] | None
_OutputArg: TypeAlias = int | Sink | _TextWriter | Callable[[bytes], object] | None

class Reactor:
    max_parallel: int | None
    def __init__(
        self,
        max_parallel: int | None = None,
        *,
        watcher: str = "auto",
        selector: type[selectors.BaseSelector] | None = None,
        raise_fd_limit: bool = False,
        jobserver: bool = False,
        contain: bool | Literal["auto"] = False,
    ) -> None: ...
    def spawn(
        self,
        args: _Args,
        *,
        stdin: _StdinArg = None,
        stdout: _OutputArg = None,
        stderr: _OutputArg = None,
        timeout: float | None = None,
        kill_grace: float = 5.0,
        eof_grace: float | None = 2.0,
        on_exit: Callable[[Job], object] | None = None,
        **popen_kwargs: Any,
    ) -> Job: ...
    def step(self, timeout: float | None = None) -> bool: ...
    def run(self, timeout: float | None = None) -> None: ...
    def as_completed(self, timeout: float | None = None) -> Iterator[Job]: ...
    def fileno(self) -> int: ...
    def next_timeout(self) -> float | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Reactor: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def __del__(self) -> None: ...

# -- subprocess drop-ins -------------------------------------------------------

def run(
    args: _Args,
    *,
    stdin: Any = None,
    input: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    capture_output: bool = False,
    shell: bool = False,
    cwd: _StrOrBytesPath | None = None,
    timeout: float | None = None,
    check: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    text: bool | None = None,
    env: Mapping[Any, Any] | None = None,
    universal_newlines: bool | None = None,
    **other_popen_kwargs: Any,
) -> CompletedProcess[Any]: ...
def communicate(
    popen: Popen[Any], input: Any = None, timeout: float | None = None
) -> tuple[Any, Any]: ...
