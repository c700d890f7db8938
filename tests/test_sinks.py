"""Sinks on their own: every sink under randomised chunking, byte-exact."""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipereactor as pr
from children.patterns import chunk_sizes, payload

SEEDS = [1, 7, 42, 1234]

TEXT = "plain ascii, é accents, ✓ marks, 🎉 emoji, 中文字符\n" * 300


def chunked(data: bytes, seed: int, high: int = 5000) -> Iterator[bytes]:
    view = memoryview(data)
    for n in chunk_sizes(seed, len(data), 1, high):
        yield bytes(view[:n])
        view = view[n:]


@pytest.mark.parametrize("seed", SEEDS)
def test_bytes_sink_exact(seed: int) -> None:
    data = payload(seed, 300_000)
    sink = pr.BytesSink()
    for piece in chunked(data, seed):
        sink.write(piece)
    assert sink.getvalue() == data
    assert len(sink) == len(data)


@pytest.mark.parametrize("seed", SEEDS)
def test_text_sink_decodes_characters_split_across_chunks(seed: int) -> None:
    data = TEXT.encode("utf-8")
    sink = pr.TextSink()
    for piece in chunked(data, seed, high=7):  # tiny chunks split most characters
        sink.write(piece)
    sink.close()
    assert sink.getvalue() == TEXT


def test_text_sink_split_utf8_character_exactly() -> None:
    sink = pr.TextSink()
    sink.write(b"caf\xc3")
    assert sink.getvalue() == "caf"
    sink.write(b"\xa9!")
    sink.close()
    assert sink.getvalue() == "café!"


def test_text_sink_truncated_character_at_eof_is_replaced() -> None:
    sink = pr.TextSink()
    sink.write(b"ok\xe2\x9c")
    sink.close()
    assert sink.getvalue() == "ok\ufffd"


def test_text_sink_strict_errors_raise() -> None:
    sink = pr.TextSink(errors="strict")
    with pytest.raises(UnicodeDecodeError):
        sink.write(b"\xff")


def test_text_sink_forwards_to_target_and_flushes_without_closing() -> None:
    target = io.StringIO()
    sink = pr.TextSink(target, encoding="latin-1")
    sink.write(b"\xe9t\xe9")
    sink.close()
    assert target.getvalue() == "été"
    assert sink.getvalue() == "été"
    assert not target.closed


def test_text_sink_target_without_getvalue() -> None:
    got: list[str] = []

    class Writer:
        def write(self, s: str) -> None:
            got.append(s)

    sink = pr.TextSink(Writer())
    sink.write(b"abc")
    assert got == ["abc"]
    with pytest.raises(TypeError, match="keeps no copy"):
        sink.getvalue()


def test_text_sink_rejects_target_without_write() -> None:
    with pytest.raises(TypeError, match=r"^TextSink target must have a write\(str\) method, not int$"):
        pr.TextSink(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS)
def test_line_sink_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    lines = ["".join(rng.choice("ab✓é 🎉") for _ in range(rng.randint(0, 80))) for _ in range(500)]
    text = "\n".join(lines) + "\n"
    got: list[str] = []
    sink = pr.LineSink(got.append)
    for piece in chunked(text.encode(), seed, high=50):
        sink.write(piece)
    sink.close()
    assert got == lines


def test_line_sink_crlf_split_between_chunks() -> None:
    got: list[str] = []
    sink = pr.LineSink(got.append)
    sink.write(b"one\r")
    sink.write(b"\ntwo\r\nthree")
    assert got == ["one", "two"]
    sink.close()
    assert got == ["one", "two", "three"]


def test_line_sink_bounds_long_lines() -> None:
    got: list[str] = []
    sink = pr.LineSink(got.append, max_line=10)
    for piece in chunked(b"x" * 95 + b"\nshort\n" + b"y" * 25, 3, high=4):
        sink.write(piece)
        assert len(sink._pending) <= 10  # memory stays bounded
    sink.close()
    assert got == ["x" * 10] * 9 + ["x" * 5, "short", "y" * 10, "y" * 10, "y" * 5]
    assert all(len(line) <= 10 for line in got)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"max_line": 0}, ValueError, r"^LineSink max_line must be >= 1, not 0$"),
        ({"max_line": 1.5}, TypeError, r"^LineSink max_line must be an int, not float$"),
    ],
)
def test_line_sink_bad_arguments(kwargs: dict[str, object], exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=msg):
        pr.LineSink(print, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("capacity", [1, 100, 65536, 10**6])
def test_ring_buffer_keeps_exact_tail(seed: int, capacity: int) -> None:
    data = payload(seed, 400_000)
    ring = pr.RingBuffer(capacity)
    for piece in chunked(data, seed, high=90_000):
        ring.write(piece)
        assert len(ring.getvalue()) <= capacity
    assert ring.getvalue() == data[-capacity:]
    assert ring.total == len(data)
    assert ring.dropped == max(0, len(data) - capacity)


def test_ring_buffer_bad_capacity() -> None:
    with pytest.raises(ValueError, match=r"^RingBuffer capacity must be >= 1, not 0$"):
        pr.RingBuffer(0)
    with pytest.raises(TypeError, match=r"^RingBuffer capacity must be an int, not str$"):
        pr.RingBuffer("10")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS)
def test_file_sink_path_fd_and_file(tmp_path: Path, seed: int) -> None:
    data = payload(seed, 500_000)
    by_path = pr.FileSink(tmp_path / "a")
    with open(tmp_path / "b", "wb") as f:
        by_file = pr.FileSink(f)
        fd = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT)
        by_fd = pr.FileSink(fd)
        for piece in chunked(data, seed, high=100_000):
            for sink in (by_path, by_file, by_fd):
                sink.write(piece)
        for sink in (by_path, by_file, by_fd):
            sink.close()
        assert not f.closed  # the caller's file stays open
        os.fstat(fd)  # and so does the caller's fd
        os.close(fd)
    for name in "abc":
        assert hashlib.sha256((tmp_path / name).read_bytes()).digest() == hashlib.sha256(data).digest()
    assert by_path.total == len(data)


def test_file_sink_rejects_text_file_and_junk(tmp_path: Path) -> None:
    with open(tmp_path / "t", "w") as f:
        with pytest.raises(TypeError, match="use TextSink"):
            pr.FileSink(f)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^FileSink needs a path, a binary file or a file descriptor, not float$"):
        pr.FileSink(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^FileSink file descriptor must be >= 0, not -1$"):
        pr.FileSink(-1)


@pytest.mark.parametrize("seed", SEEDS)
def test_callback_tee_and_null(seed: int) -> None:
    data = payload(seed, 200_000)
    chunks: list[bytes] = []
    null = pr.NullSink()
    ring = pr.RingBuffer(1000)
    text = io.StringIO()
    tee = pr.Tee(pr.CallbackSink(chunks.append), null, ring, text)
    for piece in chunked(data, seed):
        tee.write(piece)
    tee.close()
    assert b"".join(chunks) == data
    assert null.total == len(data)
    assert ring.getvalue() == data[-1000:]
    assert text.getvalue() == data.decode("utf-8", "replace")


def test_tee_closes_all_and_raises_first_error() -> None:
    closed: list[str] = []

    class Failing:
        def __init__(self, name: str) -> None:
            self.name = name

        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            closed.append(self.name)
            raise RuntimeError(self.name)

    tee = pr.Tee(Failing("a"), Failing("b"))
    with pytest.raises(RuntimeError, match="^a$"):
        tee.close()
    assert closed == ["a", "b"]


def test_as_sink_coercion() -> None:
    sio = io.StringIO()
    assert isinstance(pr.as_sink(sio, "stdout"), pr.TextSink)
    bio = io.BytesIO()
    adapter = pr.as_sink(bio, "stdout")
    adapter.write(b"x")
    adapter.close()  # type: ignore[attr-defined]
    assert not bio.closed and bio.getvalue() == b"x"
    got: list[bytes] = []
    cb = pr.as_sink(got.append, "stdout")
    cb.write(b"y")
    assert got == [b"y"]
    sink = pr.BytesSink()
    assert pr.as_sink(sink, "stdout") is sink
    with pytest.raises(TypeError, match=r"^stderr must be None, DEVNULL, PIPE, a sink .* not float$"):
        pr.as_sink(1.5, "stderr")
