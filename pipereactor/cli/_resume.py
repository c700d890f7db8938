"""``--resume`` and ``--resume-failed``: which jobs a previous run's
``--joblog`` already accounts for.

A row's first column is the job's sequence number (its place in the input,
from 1; with ``--shard``, its place in the whole input), its 7th and 8th
the exit value and signal.  ``--resume`` skips every job with a row;
``--resume-failed`` skips only those whose last row says they succeeded
(exit 0, no signal), so failed ones run again.  The file is then appended
to, never truncated: a rerun job gets a second row, later than the first.
Rows that cannot be read (a header, a line cut short by a crash) are
ignored: that job simply runs again.
"""

from __future__ import annotations

__all__ = ["read_joblog"]


def read_joblog(path: str, failed_again: bool) -> set[int]:
    """The sequence numbers to skip; empty when the file does not exist."""
    last: dict[int, bool] = {}  # seq -> whether its last row succeeded
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return set()
    with f:
        for line in f:
            if not line.endswith("\n"):
                break  # cut short: that job was still being written when we died
            cols = line.split("\t")
            if len(cols) < 9 or not cols[0].isdigit():
                continue
            try:
                ok = int(cols[6]) == 0 and int(cols[7]) == 0
            except ValueError:
                continue
            last[int(cols[0])] = ok
    if failed_again:
        return {seq for seq, ok in last.items() if ok}
    return set(last)
