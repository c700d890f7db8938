"""The CLI's pieces, in process: spilling and capping, tagging, which lines
run without the shell, reading lines from a pipe."""

from __future__ import annotations

import os
import random

import pytest

from pipereactor.cli._output import Budget, SpillBuffer, Tagger
from pipereactor.cli._source import LineReader, make_command, plain_words


class _Sink:
    """A Console stand-in that records what was written to each fd."""

    def __init__(self) -> None:
        self.data = {1: bytearray(), 2: bytearray()}

    def write(self, fd: int, data: bytes) -> None:
        self.data[fd] += data

    def sendfile(self, fd: int, src: int, count: int) -> None:
        pos = os.lseek(src, 0, os.SEEK_CUR)
        self.data[fd] += os.pread(src, count, pos)


@pytest.mark.parametrize("cap", [None, 1, 1000, 5000, 70000, 300000])
def test_spill_buffer_keeps_everything_or_exactly_the_tail(cap: int | None) -> None:
    rng = random.Random(cap)
    data = rng.randbytes(1 << 20)
    buf = SpillBuffer(cap, spill_at=4096)
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 40000)
        buf.write(data[pos:pos + n])
        pos += n
    want = data if cap is None else data[-cap:]
    out = _Sink()
    buf.emit(out, 1, Tagger(None))  # type: ignore[arg-type]
    assert bytes(out.data[1]) == want
    assert buf.dropped == len(data) - len(want) and buf.total == len(data)
    assert buf.tail(100) == want[-100:]
    buf.discard()
    assert buf.size == 0


def test_spill_buffer_with_a_tag_and_an_unwritable_file() -> None:
    buf = SpillBuffer(spill_at=8)
    buf.write(b"one\ntwo\r\nthree")
    out = _Sink()
    buf.emit(out, 2, Tagger(b"T\t"))  # type: ignore[arg-type]
    assert bytes(out.data[2]) == b"T\tone\nT\ttwo\r\nT\tthree"
    # The spill file fails from now on: its fd becomes a read-only one (EBADF).
    readonly = os.open(os.devnull, os.O_RDONLY)
    os.dup2(readonly, buf._fd)
    os.close(readonly)
    buf.write(b"more")
    assert buf.error is not None and buf.dropped == 4
    buf.discard()


def test_tagger_inserts_after_newlines_only_across_writes() -> None:
    tag = Tagger(b">")
    pieces = [tag(p) for p in (b"a\rb", b"\r\n", b"\n", b"c", b"d\n")]
    assert b"".join(pieces) == b">a\rb\r\n>\n>cd\n"
    assert Tagger(None)(b"x\n") == b"x\n"


@pytest.mark.parametrize("line, words", [
    ("gcc -O2 -c a.c -o a.o", ["gcc", "-O2", "-c", "a.c", "-o", "a.o"]),
    ("/bin/true", ["/bin/true"]),
    ("  tool\t--x=1  y  ", ["tool", "--x=1", "y"]),
    ("café naïve", ["café", "naïve"]),
    ("echo hi", None), ("cd /tmp", None), ("exit 3", None), ("if true", None),
    ("A=1 prog", None), ("prog 'x'", None), ("prog $HOME", None), ("prog *.c", None),
    ("prog > f", None), ("a; b", None), ("a | b", None), ("a &", None), ("prog `x`", None),
    ("prog ~/x", None), ("prog a\\ b", None), ("prog {a,b}", None), ("prog\r", None),
    ("# comment", None), ("", None),
])
def test_plain_words_only_where_the_shell_would_do_the_same(
        line: str, words: list[str] | None) -> None:
    assert plain_words(line) == words


def test_make_command_skips_blanks_and_comments_and_refuses_nul() -> None:
    assert make_command(1, b"  \t", [], False) is None
    assert make_command(1, b" # x", [], False) is None
    cmd = make_command(1, b"printf %s\0", [], False)
    assert cmd is not None and cmd.error is not None and "NUL" in cmd.error
    cmd = make_command(2, b"a b", ["echo", "<{}>"], False)
    assert cmd is not None and (cmd.args, cmd.shell) == (["echo", "<a b>"], False)
    cmd = make_command(3, b"it's", ["echo"], True)
    assert cmd is not None and cmd.args == "echo 'it'\"'\"'s'" and cmd.shell
    cmd = make_command(4, b"caf\xe9", ["echo"], False)
    assert cmd is not None and os.fsencode(cmd.args[1]) == b"caf\xe9"


def test_line_reader_gives_whole_lines_and_a_last_unterminated_one() -> None:
    r, w = os.pipe()
    try:
        reader = LineReader(r)
        assert not reader.always_ready
        os.write(w, b"one\ntw")
        reader.fill()
        assert reader.line() == b"one" and reader.line() is None
        os.write(w, b"o\r\n\nthree")
        os.close(w)
        w = -1
        reader.fill()
        assert [reader.line(), reader.line(), reader.line()] == [b"two\r", b"", None]
        reader.fill()
        assert reader.eof and reader.line() == b"three" and reader.line() is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_all_streams_share_one_memory_budget() -> None:
    budget = Budget(limit=1000)
    first, second = SpillBuffer(budget=budget), SpillBuffer(budget=budget)
    first.write(b"x" * 900)
    second.write(b"y" * 200)  # over the budget: straight to a file
    assert not first.spilled and second.spilled and budget.used == 900
    first.discard()
    assert budget.used == 0
    third = SpillBuffer(cap=10, budget=budget)
    third.write(b"z" * 100)
    assert budget.used == 10  # what the cap let it keep
    for buf in (second, third):
        buf.discard()
    assert budget.used == 0
