"""``python -m pipereactor``: run commands in parallel, xargs -P / GNU parallel style.

Private modules, each with one job; imports point one way (``main`` ->
``_runner`` -> the rest; ``_status`` and ``_order`` -> ``_task`` ->
``_output`` -> ``_console`` -> ``_live``; no cycle):

- ``_args``: the command line, checked early;
- ``_source``: where input lines come from, and the commands they become;
- ``_template``: ``:::``/``::::`` sources, ``-0``/``-d``/``-n``, replacement strings;
- ``_shard``: ``--shard I/N`` and ``auto`` (the engine's index and count);
- ``_retry``, ``_resume``: ``--retries`` timing; what ``--resume`` skips;
- ``_output``: how output is routed: grouped (spilled to a file), by line, tagged;
- ``_report``: what is kept of finished jobs (counters, job log, summary);
- ``_signals``: SIGINT/SIGTERM/SIGHUP as stop requests for the loop;
- ``_color``: ``--color``: the environment that tells jobs to colour, or not;
- ``_console``: the one owner of fds 1 and 2 and the status line (or area);
- ``_live``: what is running now: the status area's job lines, each job's last line;
- ``_task``: one job of ours from its input line to its printing (across its runs);
- ``_slots``: ``{%}``: the lowest free job slot;
- ``_order``: printing finished jobs, as they end or in input order (``-k``), and
  ``-k --line-buffer``'s hand-over to the head job;
- ``_status``: the status redrawn: counters, and the running jobs when they fit;
- ``_runner``: the loop: lazy job creation, jobs ending and running again, stopping.
"""

from __future__ import annotations

import os
import sys

from ._args import parse
from ._console import Console
from ._runner import Runner
from ._source import LineReader
from ._template import ArgList, Records, open_source, read_items

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Reads its first input source (stdin, ``-a FILE``, the first ``::::``
    file) as items arrive, any later sources whole at the start; writes to
    fds 1 and 2.
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
    # One unit per ::: group and per file after :::: (each file is its own
    # source, as in GNU parallel); -a FILE is :::: FILE, first.
    units: list[tuple[str, list[str]]] = []
    if opts.arg_file is not None:
        units.append(("::::", [opts.arg_file]))
    for kind, words in opts.sources:
        units += [(kind, words)] if kind == ":::" else [(kind, [w]) for w in words]
    if not units:
        units.append(("::::", ["-"]))
    rest: list[list[str]] = []
    for kind, words in units[1:]:
        try:
            rest.append(words if kind == ":::" else read_items(words[0], opts.delimiter))
        except OSError as exc:
            print(f"pipereactor: cannot read the input {words[0]}: {exc}", file=sys.stderr)
            return 2
    first_kind, first_words = units[0]
    reader: LineReader | ArgList
    if first_kind == ":::":
        fd = -1
        reader = ArgList([w.encode("utf-8", "surrogateescape") for w in first_words])
    else:
        name = "stdin" if first_words[0] == "-" else first_words[0]
        try:
            fd = open_source(first_words[0])
            os.fstat(fd)
        except OSError as exc:
            print(f"pipereactor: cannot read the input ({name}): {exc}", file=sys.stderr)
            return 2
        reader = LineReader(fd, opts.delimiter)
    records = Records(reader, rest, opts.max_args, skip_blank=first_kind == "::::")
    try:
        return Runner(opts, Console(progress), reader, records).run()
    finally:
        if fd > 0:
            os.close(fd)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
