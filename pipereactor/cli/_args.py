"""The command line of ``python -m pipereactor``: options, checked early.

Everything after ``--`` (or from the first word that is not an option) is the
template; a word that starts with ``-`` where the template would begin is an
unknown option and refused, never taken as the command.  ``:::`` and ``::::``
in it start GNU parallel's argument sources (see ``_template``).  The
options of the input items (``-0``/``-d``, ``-I``, ``-n``), of retries,
resume and shards are one block, checked in ``_check_input_retry_shard``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field

from .. import __version__
from ._shard import Shard, ShardError, resolve
from ._template import Source, parse_delimiter, split_sources

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
    color: str  # "auto", "always" or "never": see _color.job_env
    # The input items (-0/-d, -I, -n, ::: and ::::), --dry-run, retries, resume,
    # shards: set by _check_input_retry_shard, hence the defaults.
    delimiter: bytes = b"\n"
    replace: str = "{}"
    max_args: int = 1
    dry_run: bool = False
    retries: int = 1
    retry_delay: float = 0.0
    resume: bool = False
    resume_failed: bool = False
    shard: Shard | None = None
    sources: list[Source] = field(default_factory=list)
    contain: str = "auto"  # "auto", "yes" or "no": each job in a cgroup of its own


def size(text: str) -> int:
    """``10M`` -> 10485760: a byte count with an optional K, M or G (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size (like 4096, 64K, 10M, 1G): {text!r}")
    value = int(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text!r}")
    return value


def jobs(text: str) -> int:
    """``-j``: N, N% of the CPUs, +N/-N relative to them (at least 1), 0 for no limit."""
    cpus = os.cpu_count() or 1
    m = re.fullmatch(r"([+-]?)([0-9]+)(%?)", text.strip())
    if m is None or (m.group(1) and m.group(3)):
        raise argparse.ArgumentTypeError(f"not a job count (N, N%, +N, -N or 0): {text!r}")
    sign, n, percent = m.group(1), int(m.group(2)), m.group(3)
    if percent:
        return max(1, cpus * n // 100)
    if sign:
        return max(1, cpus + n if sign == "+" else cpus - n)
    return n


def _negative_values_joined(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``-j -1`` as ``-j=-1`` (and ``--timeout -1`` as ``--timeout=-1``):
    with ``-0`` defined, argparse takes any ``-N`` for an option, never for
    a value.  Only before ``--`` or ``:::`` (a template without ``--`` that
    says ``-j -1`` itself is the one casualty)."""
    takes_value = {opt for action in parser._actions if action.nargs is None
                   for opt in action.option_strings}
    out: list[str] = []
    for i, word in enumerate(argv):
        if word in ("--", ":::", "::::"):
            return out + argv[i:]
        if out and out[-1] in takes_value and re.fullmatch(r"-[0-9.]+", word):
            out[-1] += "=" + word
        else:
            out.append(word)
    return out


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
    p.add_argument("-j", "--jobs", type=jobs, default=os.cpu_count() or 1, metavar="N",
                   help="run at most N jobs at once: N, N%% of the CPUs, +N or -N more or "
                   "fewer than the CPUs, 0 for no limit (default: the CPU count, %(default)s)")
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
    # GNU parallel's and xargs's names for the input items, retries, resume, shards.
    p.add_argument("-0", "--null", action="store_true",
                   help="input items end at NUL, not newline (find -print0)")
    p.add_argument("-d", "--delimiter", metavar="DELIM",
                   help="input items end at DELIM: one character or an escape (\\n, \\0, \\x1e)")
    p.add_argument("-I", dest="replace", default="{}", metavar="STR",
                   help="STR stands for the item in the template instead of {}")
    p.add_argument("-n", "--max-args", type=int, default=1, metavar="N",
                   help="up to N items per command, appended or as {1}..{N} (xargs -n)")
    p.add_argument("--dry-run", action="store_true",
                   help="print each command instead of running it")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="run a failed job again, at most N runs in all (default: 1)")
    p.add_argument("--retry-delay", type=float, default=0.0, metavar="SECONDS",
                   help="wait SECONDS before a job's second run, doubling before each further one")
    p.add_argument("--resume", action="store_true",
                   help="skip the jobs that --joblog FILE already has; append to it")
    p.add_argument("--resume-failed", action="store_true",
                   help="as --resume, but run the jobs it records as failed again")
    p.add_argument("--shard", metavar="I/N|auto|auto/N",
                   help="run only job k with k mod N == I-1 (I is 1-based); auto: I and N from "
                   "Slurm, GitLab, CircleCI, Buildkite, AWS Batch, Cloud Run or Kubernetes")
    p.add_argument("--version", action="version", version=f"pipereactor {__version__}")
    p.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                   metavar="WHEN",
                   help="auto (default: when our stdout is a terminal), always: give jobs "
                   "FORCE_COLOR=1 and CLICOLOR_FORCE=1 so they keep their colour through our "
                   "pipes; never: give them NO_COLOR=1.  A variable already set is kept")
    p.add_argument("--contain", choices=("auto", "yes", "no"), default="auto",
                   help="run each job in a cgroup of its own, so that stopping it stops every "
                   "process it started, however they detached (Linux, cgroup v2): auto "
                   "(default: where the system allows it), yes (refuse to run otherwise), no")
    p.add_argument("template", nargs=argparse.REMAINDER,
                   help="after --: the command to run per input item, with {} {.} {/} {//} "
                   "{/.} {#} {%%} {1}...; then ::: ARGS or :::: FILE sources, if any")
    return p


def parse(argv: list[str] | None) -> Options:
    """The options, or SystemExit(2) with a message naming the bad one."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    a = parser.parse_args(_negative_values_joined(parser, words))
    template = list(a.template)
    if template and template[0] == "--":
        template = template[1:]
    elif template and template[0].startswith("-"):
        # argparse hands over a word that looks like a negative number (-0)
        # as the start of the template.
        parser.error(f"unrecognized option: {template[0]} (put the command after --)")
    if a.timeout is not None and a.timeout <= 0:
        parser.error(f"--timeout must be > 0, not {a.timeout}")
    if a.kill_grace < 0:
        parser.error(f"--kill-grace must be >= 0, not {a.kill_grace}")
    if a.tail < 0:
        parser.error(f"--tail must be >= 0, not {a.tail}")
    if a.max_output is not None and (a.line_buffer or a.results):
        parser.error("--max-output caps grouped output only, not --line-buffer or --results")
    try:
        template, sources = split_sources(template)
    except ValueError as exc:
        parser.error(str(exc))
    if a.shell and not template:
        parser.error("--shell needs a template after --")
    if template and template[0] == "":
        parser.error("the template's command is empty")
    opts = Options(
        arg_file=a.arg_file, jobs=a.jobs, timeout=a.timeout, kill_grace=a.kill_grace,
        halt_on_error=a.halt_on_error, line_buffer=a.line_buffer, tag=a.tag,
        keep_order=a.keep_order, max_output=a.max_output, results=a.results, tail=a.tail,
        progress=a.progress, joblog=a.joblog, shell=a.shell, template=template,
        color=a.color, contain=a.contain,
    )
    return _check_input_retry_shard(parser, a, opts, sources)


def _check_input_retry_shard(parser: argparse.ArgumentParser, a: argparse.Namespace,
                             opts: Options, sources: list[Source]) -> Options:
    """``opts`` with the input items' options (``-0``/``-d``, ``-I``, ``-n``
    and the sources), ``--dry-run``, ``--retries``/``--retry-delay``,
    ``--resume``/``--resume-failed`` and ``--shard`` checked and added; a
    bad one is ``parser.error`` (SystemExit(2)) naming it."""
    template = opts.template
    delimiter = b"\n"
    if a.null and a.delimiter is not None:
        parser.error("-0/--null and -d/--delimiter both set where items end: give one")
    if a.null:
        delimiter = b"\0"
    elif a.delimiter is not None:
        try:
            delimiter = parse_delimiter(a.delimiter)
        except ValueError as exc:
            parser.error(f"-d/--delimiter {exc}")
    if not a.replace:
        parser.error("-I needs a non-empty replacement string")
    if a.max_args < 1:
        parser.error(f"-n/--max-args must be >= 1, not {a.max_args}")
    if a.max_args > 1 and not template:
        parser.error("-n/--max-args needs a template after -- (the items become its arguments)")
    # Each file after :::: is a source of its own, as in GNU parallel.
    streams = sum(1 if kind == ":::" else len(words) for kind, words in sources)
    streams += a.arg_file is not None
    if a.max_args > 1 and max(streams, 1) > 1:
        parser.error("-n/--max-args takes the items of one source, not of several")
    if a.retries < 1:
        parser.error(f"--retries must be >= 1 (runs in all), not {a.retries}")
    if a.retry_delay < 0:
        parser.error(f"--retry-delay must be >= 0, not {a.retry_delay}")
    if a.resume and a.resume_failed:
        parser.error("--resume and --resume-failed both set: give one")
    if (a.resume or a.resume_failed) and not a.joblog:
        parser.error(f"{'--resume' if a.resume else '--resume-failed'} needs --joblog FILE "
                     "(the jobs it records are skipped)")
    shard = None
    if a.shard is not None:
        try:
            shard = resolve(a.shard, os.environ)
        except ShardError as exc:
            parser.error(str(exc))
    return dataclasses.replace(
        opts, delimiter=delimiter, replace=a.replace, max_args=a.max_args, dry_run=a.dry_run,
        retries=a.retries, retry_delay=a.retry_delay, resume=a.resume,
        resume_failed=a.resume_failed, shard=shard, sources=sources)
