"""Argument sources and replacement strings, as GNU parallel and xargs mean them.

**Sources.**  Input items come from stdin (or ``-a FILE``) split at a
delimiter (``\\n``; NUL with ``-0``; any one character with ``-d``), and from
``::: ARGS`` and ``:::: FILE`` after the template.  Several sources combine
as GNU parallel combines them: every combination, the first source varying
slowest (``::: a b ::: 1 2`` gives ``a 1``, ``a 2``, ``b 1``, ``b 2``).  So
only the first source is streamed (read as it arrives, never ahead of the
jobs); the others must be known in full before the first combination, and
are read at the start.  ``-n N`` instead groups up to N items of one source
into one command, as xargs does; a last, shorter group is still a command.

**Replacement strings** in the template, per item (``{n...}`` picks the
n-th source, or with ``-n`` the n-th item of the group; without ``n``, every
item, space-separated):

=========  ======================================  ==========================
``{}``     the item                                 ``dir/sub/file.tar.gz``
``{.}``    without its extension                    ``dir/sub/file.tar``
``{/}``    basename                                 ``file.tar.gz``
``{//}``   dirname (``.`` when there is none)       ``dir/sub``
``{/.}``   basename without extension               ``file.tar``
``{#}``    the job's sequence number (from 1)
``{%}``    the job's slot, 1..``-j``
=========  ======================================  ==========================

``-I STR`` makes STR stand for ``{}`` (and ``{}`` then means itself).  A
template without any replacement string gets the items appended, each as
its own argument.  Without ``--shell`` the template is argv: a word that is
exactly ``{}`` becomes one argument per item; anywhere else the items are
joined by spaces inside the word.  With ``--shell`` each value is
shell-quoted, so no item can inject shell syntax.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import shlex
from collections.abc import Iterator
from typing import Protocol

__all__ = ["ArgList", "Records", "Source", "Template", "open_source", "parse_delimiter",
           "read_items", "split_sources"]

#: What follows ``:::`` (its words: one source) or ``::::`` (file names: a
#: source each), as the command line gave it.
Source = tuple[str, list[str]]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


def parse_delimiter(text: str) -> bytes:
    """``-d``'s argument, xargs style: one character, or a C escape
    (``\\n``, ``\\t``, ``\\0``, ``\\\\``, ``\\xHH``, ``\\NNN`` octal)."""
    if len(text) == 1:
        return text.encode("utf-8", "surrogateescape")
    if text.startswith("\\") and len(text) == 2 and text[1] in _ESCAPES:
        return _ESCAPES[text[1]].encode()
    m = re.fullmatch(r"\\x([0-9a-fA-F]{1,2})|\\([0-7]{1,3})", text)
    if m is not None:
        value = int(m.group(1), 16) if m.group(1) else int(m.group(2), 8)
        if value < 256:
            return bytes([value])
    raise ValueError(f"must be one character or an escape like \\n, \\0, \\x1e, not {text!r}")


def split_sources(words: list[str]) -> tuple[list[str], list[Source]]:
    """The template, and the ``:::``/``::::`` sources after it."""
    seps = (":::", "::::")
    for i, word in enumerate(words):
        if word in (":::+", "::::+"):
            raise ValueError(f"{word} (linked sources) is not supported")
        if word in seps:
            break
    else:
        return words, []
    template = words[:i]
    sources: list[Source] = []
    for word in words[i:]:
        if word in seps:
            sources.append((word, []))
        elif word in (":::+", "::::+"):
            raise ValueError(f"{word} (linked sources) is not supported")
        else:
            sources[-1][1].append(word)
    for kind, args in sources:
        if kind == "::::" and not args:
            raise ValueError(":::: needs a file name")
        if kind == ":::" and not args:
            raise ValueError("::: needs at least one argument")
    return template, sources


class ArgList:
    """Items already in memory (``::: ARGS``), behind :class:`LineReader`'s
    interface: always ready, at its end from the start."""

    fd = -1
    always_ready = True
    eof = True
    error: OSError | None = None

    def __init__(self, items: list[bytes]) -> None:
        self._items = iter(items)

    def line(self) -> bytes | None:
        return next(self._items, None)

    def fill(self) -> None:
        pass


class _Reader(Protocol):  # what Records needs of LineReader or ArgList
    @property
    def eof(self) -> bool: ...

    def line(self) -> bytes | None: ...


def _blank(item: str) -> bool:
    return not item.strip(" \t\r\f\v")


class Records:
    """The items of each command, on demand: one per source (all the
    combinations), or up to ``per_command`` of the one source.

    ``next()`` returns the next record, or None when the first source has
    nothing more yet; ``done`` then tells whether it never will.  Blank
    items of a streamed source are no job (as before sources existed);
    ``:::`` arguments always are.
    """

    def __init__(self, first: _Reader, rest: list[list[str]], per_command: int = 1,
                 skip_blank: bool = True) -> None:
        self.first = first
        self.rest = rest
        self.per_command = per_command
        self.skip_blank = skip_blank
        self._combos: Iterator[list[str]] | None = None  # the current first item's
        self._group: list[str] = []  # -n: the items of a group not yet full

    @property
    def done(self) -> bool:
        """After ``next()`` returned None: no record will ever come."""
        return self.first.eof and not self._group and self._combos is None

    def next(self) -> list[str] | None:
        while True:
            if self._combos is not None:
                record = next(self._combos, None)
                if record is not None:
                    return record
                self._combos = None
            raw = self.first.line()
            if raw is None:
                if self.first.eof and self._group:  # the last group may be short
                    group, self._group = self._group, []
                    return group
                return None
            item = raw.decode("utf-8", "surrogateescape")
            if self.skip_blank and _blank(item):
                continue
            if self.per_command > 1:
                self._group.append(item)
                if len(self._group) == self.per_command:
                    group, self._group = self._group, []
                    return group
            elif not self.rest:
                return [item]
            else:
                # Later sources vary fastest, as in GNU parallel.
                self._combos = ([item, *combo] for combo in itertools.product(*self.rest))


# {}, or {n} with an optional operation, or {.} {/} {//} {/.}, or {#} {%}.
_TOKEN = r"\{(?P<n>[1-9][0-9]*)?(?P<op>\.|/\.|//|/)?\}|\{(?P<special>[#%])\}"


def _apply(op: str | None, item: str) -> str:
    if op is None:
        return item
    if op == ".":
        return re.sub(r"\.[^/.]*$", "", item)
    if op == "/":
        return posixpath.basename(item)
    if op == "//":
        return _dirname(item)
    return re.sub(r"\.[^/.]*$", "", posixpath.basename(item))  # "/."


def _dirname(path: str) -> str:
    """dirname(1)'s, as GNU parallel's ``{//}``: trailing slashes are not an
    empty last component (``a/b/`` -> ``a``); ``.`` when there is no
    directory part, ``/`` for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return posixpath.dirname(stripped) or "."


class Template:
    """The template's words, filled per job (see the module docstring)."""

    def __init__(self, words: list[str], replace: str = "{}", shell: bool = False) -> None:
        self.words = words
        self.replace = replace
        self.shell = shell
        self._token = re.compile(f"(?P<r>{re.escape(replace)})|{_TOKEN}")
        found = [m for w in words for m in self._token.finditer(w) if self._real(m)]
        self.appends = not found
        self.uses_slot = any(m.group("special") == "%" for m in found)

    def _real(self, m: re.Match[str]) -> bool:
        # With -I STR, a bare {} is literal text, as in GNU parallel.
        return bool(m.group("r") or m.group("n") or m.group("op") or m.group("special"))

    def fill(self, items: list[str], seq: int, slot: int) -> list[str] | str:
        """argv (no shell) or a ``/bin/sh -c`` string for one job."""
        quote = shlex.quote if self.shell else _same

        def value(m: re.Match[str]) -> str:
            if not self._real(m):
                return m.group(0)
            special = m.group("special")
            if special is not None:
                return str(seq if special == "#" else slot)
            op = m.group("op")
            if m.group("n"):
                n = int(m.group("n"))
                return quote(_apply(op, items[n - 1])) if n <= len(items) else ""
            return " ".join(quote(_apply(op, item)) for item in items)

        if self.shell:
            words = [self._token.sub(value, w) for w in self.words]
            if self.appends:
                words += [shlex.quote(item) for item in items]
            return " ".join(words)
        argv: list[str] = []
        for w in self.words:
            m = self._token.fullmatch(w)
            if m is not None and self._real(m) and m.group("r") and len(items) > 1:
                argv.extend(items)  # a word that is exactly {}: one argument per item
            else:
                argv.append(self._token.sub(value, w))
        if self.appends:
            argv.extend(items)
        return argv


def _same(text: str) -> str:
    return text


def read_items(path: str, sep: bytes) -> list[str]:
    """All the non-blank items of a ``::::`` file that is not the first
    source (``-``: stdin, read to its end before the first job)."""
    if path == "-":
        chunks = []
        while chunk := os.read(0, 65536):
            chunks.append(chunk)
        data = b"".join(chunks)
    else:
        with open(path, "rb") as f:
            data = f.read()
    items = data.split(sep)
    if items and items[-1] == b"":
        items.pop()
    return [s for s in (i.decode("utf-8", "surrogateescape") for i in items) if not _blank(s)]


def open_source(path: str) -> int:
    """An fd for a streamed ``::::`` source or ``-a`` file (``-``: stdin, not opened)."""
    if path == "-":
        return 0
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
