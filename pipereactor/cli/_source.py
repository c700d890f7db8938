"""Where input lines come from, and the commands they become.

:class:`LineReader` reads a file descriptor (stdin, a pipe that stays open,
``-a FILE``) a chunk at a time, only when the caller asks for a line and the
fd is readable, so input is never read far ahead of the jobs.  Lines end at
``\\n`` only; a last line without one still counts; bytes that are not UTF-8
pass through unchanged (``surrogateescape``).

:func:`make_command` turns one line into a :class:`Command`: a shell command
line (no template), or the template filled with the line.  A shell command
line without any shell syntax is run without ``/bin/sh`` (as make does): that
saves an exec per job and behaves the same.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from ._template import Template

__all__ = ["Command", "LineReader", "build_command", "make_command", "no_job", "plain_words"]

#: Read this much per read(): a pipe's default size.
CHUNK = 65536


class LineReader:
    """Complete lines from ``fd``, read on demand.

    A line ends at ``sep`` (``\n``; NUL with ``-0``; ``-d``'s character).

    ``fileno()`` is the fd to wait on, or None when reads never block (a
    regular file: epoll refuses those, and a read returns at once).  On EOF,
    ``eof`` is set; a read error (EIO from a vanished terminal) is treated as
    EOF and kept in ``error``.  The reader never closes ``fd``: the caller
    owns it.
    """

    def __init__(self, fd: int, sep: bytes = b"\n") -> None:
        self.fd = fd
        self.sep = sep
        self.eof = False
        self.error: OSError | None = None
        self._buf = bytearray()
        self._pos = 0
        self.always_ready = _never_blocks(fd)

    def line(self) -> bytes | None:
        """The next complete line (without its ``\\n``) already read, or None."""
        end = self._buf.find(self.sep, self._pos)
        if end < 0:
            if self.eof and self._pos < len(self._buf):
                rest = bytes(self._buf[self._pos:])
                self._buf.clear()
                self._pos = 0
                return rest
            return None
        line = bytes(self._buf[self._pos:end])
        self._pos = end + len(self.sep)
        if self._pos >= CHUNK:  # drop what was consumed, amortised
            del self._buf[: self._pos]
            self._pos = 0
        return line

    def fill(self) -> None:
        """One read(); call it when the fd is readable (or always_ready)."""
        try:
            chunk = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return  # an fd someone set non-blocking: nothing yet
        except OSError as exc:
            self.error = exc
            chunk = b""
        if chunk:
            self._buf += chunk
        else:
            self.eof = True


def _never_blocks(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


@dataclass
class Command:
    """What one input line became.

    ``args`` is argv (no shell) or a string for ``/bin/sh -c``; ``error`` is
    set instead when the line cannot be a command at all (a NUL byte).
    """

    seq: int
    line: str
    args: list[str] | str
    shell: bool
    error: str | None = None
    items: list[str] = field(default_factory=list)  # what it was made from

    def text(self) -> str:
        """The command as a user would type it (for messages and the job log)."""
        return self.args if isinstance(self.args, str) else shlex.join(self.args)


# Characters that mean nothing to the shell inside a word (POSIX sh, dash,
# bash): a line made only of these, blanks, and non-ASCII bytes, is split on
# blanks exactly as the shell would split it.
_PLAIN = re.compile(r"[A-Za-z0-9_./,:=+@%^\-\x80-\U0010ffff \t]*")
# Words the shell runs itself (POSIX and dash builtins, keywords, and bash's
# keywords for good measure): they must go through the shell.
_SHELL_WORDS = frozenset(
    ". : [ [[ ]] ! { } alias bg break builtin case cd chdir command continue coproc declare do "
    "done echo elif else esac eval exec exit export false fc fg fi for function getopts hash "
    "if in jobs kill let local logout printf pwd read readonly return select set shift source "
    "test then time times trap true type typeset ulimit umask unalias unset until wait while"
    .split()
)


def plain_words(line: str) -> list[str] | None:
    """The argv the shell would run for ``line``, when running it without the
    shell is the same; None when the line needs the shell."""
    if not _PLAIN.fullmatch(line):
        return None
    words = line.replace("\t", " ").split(" ")
    words = [w for w in words if w]
    if not words:
        return None
    first = words[0]
    if first in _SHELL_WORDS or "=" in first:  # a builtin, or an assignment
        return None
    return words


def no_job(items: list[str], template: Template | None) -> bool:
    """Whether these items make no job: without a template, a blank command
    line or a ``#`` comment.  (Blank items of a streamed source never get
    here; with a template, ``:::`` arguments are jobs even when blank.)"""
    if template is not None:
        return False
    stripped = " ".join(items).strip()
    return not stripped or stripped.startswith("#")


def build_command(seq: int, items: list[str], template: Template | None, slot: int = 0
                  ) -> Command:
    """The command for one job's items: the template filled (``{#}`` is
    ``seq``, ``{%}`` is ``slot``), or without one, the items as a shell
    command line."""
    line = " ".join(items)
    if template is None:
        words = plain_words(line)
        cmd = Command(seq, line, line, True) if words is None else Command(seq, line, words, False)
    else:
        cmd = Command(seq, line, template.fill(items, seq, slot), template.shell)
    cmd.items = items
    if "\0" in line:
        cmd.error = "the input line contains a NUL byte: it cannot be a command"
    elif not cmd.shell and not cmd.args[0]:
        cmd.error = "empty command"
    return cmd


def make_command(seq: int, raw: bytes, template: list[str], shell: bool) -> Command | None:
    """The command for one input line, or None for a line that is no job
    (blank; a ``#`` comment without a template)."""
    line = raw.decode("utf-8", "surrogateescape")
    if not line.strip(" \t\r\f\v"):
        return None
    tmpl = Template(template, shell=shell) if template else None
    if no_job([line], tmpl):
        return None
    return build_command(seq, [line], tmpl)
