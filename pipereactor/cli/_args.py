"""The command line of ``python -m pipereactor``: options, checked early.

Everything after ``--`` (or from the first word that is not an option) is the
template; a word that starts with ``-`` where the template would begin is an
unknown option and refused, never taken as the command.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

__all__ = ["Options", "parse"]

_SIZE = re.compile(r"(\d+)([KMG]?)B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True)
class Options:
    arg_file: str | None
    jobs: int
    timeout: float | None
    kill_grace: float
    halt_on_error: bool
    line_buffer: bool
    tag: bool
    keep_order: bool
    max_output: int | None
    results: str | None
    tail: int
    progress: bool | None
    joblog: str | None
    shell: bool
    template: list[str]
    # Issue 14, points 4-6 (the terminal and colour): keep this block together.
    color: str  # "auto", "always" or "never": see _color.job_env


def size(text: str) -> int:
    """``10M`` -> 10485760: a byte count with an optional K, M or G (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size (like 4096, 64K, 10M, 1G): {text!r}")
    value = int(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pipereactor",
        description="Run commands in parallel from one thread, with grouped output, timeouts "
        "that kill process trees, and a job log.",
        epilog="Examples: pipereactor -j 8 -a commands.txt;  "
        "find . -name '*.png' | pipereactor -j 4 --tag -- optipng {}",
    )
    p.add_argument("-a", "--arg-file", metavar="FILE",
                   help="read input lines from FILE instead of stdin")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="run at most N jobs at once (default: the CPU count, %(default)s)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop a job (its whole process group) after SECONDS")
    p.add_argument("--kill-grace", type=float, default=5.0, metavar="SECONDS",
                   help="SIGKILL a stopped job this long after SIGTERM (default: %(default)s)")
    p.add_argument("--halt-on-error", action="store_true",
                   help="start no new job after the first failure; let the running ones finish")
    p.add_argument("--line-buffer", action="store_true",
                   help="print whole output lines as they come, instead of per job")
    p.add_argument("--tag", action="store_true",
                   help="prefix each output line with the job's input (or command) and a tab")
    p.add_argument("-k", "--keep-order", action="store_true",
                   help="print jobs' output in input order; with --line-buffer the earliest "
                   "job's lines as they come, the others' when each becomes the earliest")
    p.add_argument("--max-output", type=size, metavar="SIZE",
                   help="keep only the last SIZE bytes (K, M, G suffixes) of each stream of a "
                   "job, with a notice; default: keep everything (spilled to $TMPDIR)")
    p.add_argument("--results", metavar="DIR",
                   help="save each job's full stdout and stderr to DIR/<seq>.stdout|.stderr")
    p.add_argument("--tail", type=int, default=10, metavar="N",
                   help="lines of a failed job's output to show in the summary (default: 10)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a status line (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--joblog", metavar="FILE",
                   help="write a tab-separated row per job, in GNU parallel's format")
    p.add_argument("--shell", action="store_true",
                   help="run the template through /bin/sh -c (the input line shell-quoted)")
    # Issue 14, points 4-6 (the terminal and colour): keep this block together.
    p.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                   metavar="WHEN",
                   help="auto (default: when our stdout is a terminal), always: give jobs "
                   "FORCE_COLOR=1 and CLICOLOR_FORCE=1 so they keep their colour through our "
                   "pipes; never: give them NO_COLOR=1.  A variable already set is kept")
    p.add_argument("template", nargs=argparse.REMAINDER,
                   help="after --: the command to run per input line; {} is the line")
    return p


def parse(argv: list[str] | None) -> Options:
    """The options, or SystemExit(2) with a message naming the bad one."""
    parser = _parser()
    a = parser.parse_args(argv)
    template = list(a.template)
    if template and template[0] == "--":
        template = template[1:]
    elif template and template[0].startswith("-"):
        # argparse hands over a word that looks like a negative number (-0)
        # as the start of the template.
        parser.error(f"unrecognized option: {template[0]} (put the command after --)")
    if a.jobs < 1:
        parser.error(f"-j/--jobs must be >= 1, not {a.jobs}")
    if a.timeout is not None and a.timeout <= 0:
        parser.error(f"--timeout must be > 0, not {a.timeout}")
    if a.kill_grace < 0:
        parser.error(f"--kill-grace must be >= 0, not {a.kill_grace}")
    if a.tail < 0:
        parser.error(f"--tail must be >= 0, not {a.tail}")
    if a.max_output is not None and (a.line_buffer or a.results):
        parser.error("--max-output caps grouped output only, not --line-buffer or --results")
    if a.shell and not template:
        parser.error("--shell needs a template after --")
    if template and template[0] == "":
        parser.error("the template's command is empty")
    return Options(
        arg_file=a.arg_file, jobs=a.jobs, timeout=a.timeout, kill_grace=a.kill_grace,
        halt_on_error=a.halt_on_error, line_buffer=a.line_buffer, tag=a.tag,
        keep_order=a.keep_order, max_output=a.max_output, results=a.results, tail=a.tail,
        progress=a.progress, joblog=a.joblog, shell=a.shell, template=template,
        color=a.color,
    )
