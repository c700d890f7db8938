"""``python -m pipereactor``: run commands in parallel, xargs -P / GNU parallel style.

Private modules, each with one job; imports point one way (``main`` ->
``_runner`` -> the rest; ``_output`` -> ``_console`` -> ``_live``; no other
arrows):

- ``_args``: the command line, checked early;
- ``_source``: where input lines come from, and the commands they become;
- ``_output``: how output is routed: grouped (spilled to a file), by line, tagged;
- ``_report``: what is kept of finished jobs (counters, job log, summary);
- ``_signals``: SIGINT/SIGTERM/SIGHUP as stop requests for the loop;
- ``_color``: ``--color``: the environment that tells jobs to colour, or not;
- ``_console``: the one owner of fds 1 and 2 and the status line (or area);
- ``_live``: what is running now: the status area's job lines, each job's last line;
- ``_runner``: the loop: lazy job creation, -k ordering, stopping, status.
"""

from __future__ import annotations

import os
import sys

from ._args import parse
from ._console import Console
from ._runner import Runner
from ._source import LineReader

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Reads stdin (or ``-a FILE``) as lines arrive, writes to fds 1 and 2.
    Every signal handler it changed is restored before it returns.
    """
    opts = parse(argv)
    if opts.results:
        try:
            os.makedirs(opts.results, exist_ok=True)
        except OSError as exc:
            print(f"pipereactor: cannot make the --results directory: {exc}", file=sys.stderr)
            return 2
    progress = opts.progress if opts.progress is not None else _isatty(2)
    if opts.arg_file is not None:
        try:
            fd = os.open(opts.arg_file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            print(f"pipereactor: cannot read the input: {exc}", file=sys.stderr)
            return 2
    else:
        fd = 0
        try:
            os.fstat(0)
        except OSError as exc:
            print(f"pipereactor: cannot read the input (stdin): {exc}", file=sys.stderr)
            return 2
    try:
        return Runner(opts, Console(progress), LineReader(fd)).run()
    finally:
        if fd != 0:
            os.close(fd)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
