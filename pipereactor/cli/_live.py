"""What is running now: the status area's job lines (ninja#111; n2 shows the same).

On a terminal tall enough, the status is an area, not a line: a header (the
one-line status's counters) and, below it, the running jobs, longest-running
first, each with its age, its command and the last line it printed::

    [12/40] running 4, failed 0
      1m05s  make -C libfoo  | CC src/parse.o
        12s  ./run-tests unit  | test_spill ... ok
         3s  gzip -9 big.log

The area takes at most a third of the terminal's height (:func:`job_rows`);
a terminal with room for fewer than one job line keeps the one-line status.

Cost, whatever the output's size or the number of jobs seen:

- :class:`LastLine` keeps, per stream of a running job, only the last
  ``KEEP`` bytes it wrote, updated as each read arrives (:class:`Watched`
  is the sink that feeds it and hands the bytes on), in O(``KEEP``);
- a redraw renders one line per job shown, each from those bytes, cut to
  the terminal's width by :func:`fit`: O(running jobs).

The last line is shown as a terminal would leave it: after the last
``\\r``, without escape sequences (jobs told to colour by ``--color`` send
them) or other control characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["KEEP", "LastLine", "Watched", "fit", "format_age", "job_line", "job_rows"]

#: Bytes of each stream kept for its last line.  A longer line shows its end.
KEEP = 512
#: Columns a job line gives its command at most, so the last line has room.
COMMAND_SHARE = 0.4

# CSI sequences (colours, cursor moves), OSC sequences (titles, links), and
# the two-byte escapes; what is left of a sequence cut by KEEP is harmless.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")


class LastLine:
    """The last line a job printed, on either stream: what changed last.

    ``feed(stream, data)`` is called with each read (stream 1 or 2) and
    keeps only the last ``KEEP`` bytes of each stream; ``text()`` makes the
    line to show from them.
    """

    __slots__ = ("_tails", "_latest")

    def __init__(self) -> None:
        self._tails = [b"", b""]
        self._latest = 0

    def feed(self, stream: int, data: bytes) -> None:
        if not data:
            return
        i = stream - 1
        if len(data) >= KEEP:
            self._tails[i] = data[-KEEP:]
        else:
            self._tails[i] = (self._tails[i] + data)[-KEEP:]
        self._latest = i

    def text(self) -> str:
        """The latest stream's last non-empty line (else the other's), printable."""
        for i in (self._latest, 1 - self._latest):
            line = _last_line(self._tails[i])
            if line:
                return line
        return ""


def _last_line(tail: bytes) -> str:
    body = tail.rstrip()
    line = body[body.rfind(b"\n") + 1:]
    line = line[line.rfind(b"\r") + 1:]  # a progress bar: what the terminal shows
    if len(line) == len(tail):
        # Cut by KEEP: drop a character's continuation bytes at the cut.
        line = line.lstrip(bytes(range(0x80, 0xC0)))
    text = _ESCAPES.sub("", line.decode("utf-8", "replace"))
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()


class Watched:
    """A sink that shows each chunk to a :class:`LastLine`, then hands it on.

    ``close()`` is passed on to the sink when it has one, so the reactor
    treats the pair as it would the sink alone.
    """

    __slots__ = ("sink", "last", "stream")

    def __init__(self, sink: object, last: LastLine, stream: int) -> None:
        self.sink = sink
        self.last = last
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.last.feed(self.stream, data)
        self.sink.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        close: Callable[[], object] | None = getattr(self.sink, "close", None)
        if close is not None:
            close()


def job_rows(term_rows: int) -> int:
    """Job lines the area may show on a terminal of ``term_rows`` rows: a
    third of it, less the header.  0 (unknown or too small): the one-line
    status instead."""
    return max(term_rows // 3 - 1, 0)


def format_age(seconds: float) -> str:
    """``7s``, ``1m05s``, ``2h03m``: how long a job has run, in at most 5 columns."""
    s = int(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def job_line(age: float, command: str, last: str, cols: int) -> str:
    """One running job's line: its age, its command (cut to a share of the
    width when a last line follows) and its last line, fitted to ``cols``."""
    head = f"{format_age(age):>7}  "
    if not last:
        return fit(head + command, cols)
    share = max(int(cols * COMMAND_SHARE), 10)
    return fit(f"{head}{fit(command, share + 1)}  | {last}", cols)


def fit(text: str, cols: int) -> str:
    """``text`` cut to fill at most ``cols - 1`` terminal columns (wide
    characters count two, combining ones none): never wrapped, the cursor
    never at the margin."""
    room = max(cols - 1, 1)
    used = 0
    for i, ch in enumerate(text):
        if unicodedata.combining(ch):
            continue
        used += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used > room:
            return text[:i]
    return text
