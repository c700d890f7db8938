"""One job of ours, from its input line to its printing: :class:`Task`.

A task outlives the reactor's :class:`~pipereactor.Job`: a job that fails
and runs again (``--retries``) is one task with several jobs, and with
``-k`` a task waits, finished, for its turn to print.  It holds the job's
two sinks, our note about it and what the status shows of it.
"""

from __future__ import annotations

import os
from typing import Any

from .. import FileSink
from ._live import LastLine
from ._output import LineWriter, SpillBuffer, TAIL_BYTES, Tagger
from ._report import Outcome
from ._source import Command

__all__ = ["Task", "LABEL_CHARS", "output_tail"]

#: Characters of a command the status shows at most (wider than any terminal).
LABEL_CHARS = 1000


class Task:
    """A job of ours, from its input line to its printing."""

    __slots__ = ("cmd", "out", "err", "tagger", "stopped", "note", "outcome", "runs", "slot",
                 "order", "last", "_label", "_earlier")

    def __init__(self, cmd: Command, out: Any, err: Any, tagger: Tagger | None) -> None:
        self.cmd = cmd
        self.out = out
        self.err = err
        self.tagger = tagger  # for our notes, on the stderr stream
        self.stopped = False  # we stopped it: a failure, whatever it exits with
        self.note = b""  # our message about it, printed after its output
        self.outcome: Outcome | None = None  # of its last failed run (--retries)
        self.runs = 1  # runs so far, this one included (--retries)
        self.slot = 0  # {%}: 1..-j while running
        self.order = 0  # -k: its place among our jobs (seq has gaps with --shard, --resume)
        self.last: LastLine | None = None  # its last line, for the running jobs' view
        self._label: str | None = None
        self._earlier: tuple[Any, Any] | None = None  # the failed run's sinks (--retries)

    def label(self) -> str:
        """Its command, printable and cut, for the status: made once, as a
        redraw must not cost the length of every command shown."""
        if self._label is None:
            self._label = _printable(self.cmd.text()[:LABEL_CHARS])
        return self._label

    def run_again(self) -> None:
        """It runs again (``--retries``): its failed run's sinks are set aside
        until the next run is known to have started (:meth:`ran`, called when
        that run ends: the reactor does not tell us when a queued job starts),
        and ``out``/``err`` are None until the next run's are made."""
        self.ran()
        self._earlier, self.out, self.err = (self.out, self.err), None, None

    def ran(self) -> None:
        """Its next run started (or failed to): only that run counts now;
        the failed run's output is dropped."""
        if self._earlier is not None:
            _discard(self._earlier)
            self._earlier = None

    def never_ran_again(self) -> None:
        """Its next run was cancelled before it started (a halt, a stop): it
        ends with the failed run, whose output comes back to be printed."""
        if self._earlier is not None:
            _discard((self.out, self.err))
            (self.out, self.err), self._earlier = self._earlier, None

    def discard(self) -> None:
        """Drop the output held for it (memory and spill files).  Idempotent."""
        _discard((self.out, self.err))
        self.ran()


def _discard(sinks: tuple[Any, Any]) -> None:
    for sink in sinks:
        if isinstance(sink, (SpillBuffer, LineWriter)):
            sink.discard()


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def output_tail(sink: object) -> bytes:
    """The last bytes a sink of a task holds (a failed job's summary): of
    its grouped or printed output, or of its ``--results`` file."""
    if isinstance(sink, (SpillBuffer, LineWriter)):
        return sink.tail()
    if isinstance(sink, FileSink) and isinstance(sink.name, str):
        try:
            with open(sink.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - TAIL_BYTES))
                return f.read()
        except OSError:
            return b""
    return b""
