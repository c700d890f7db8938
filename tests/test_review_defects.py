"""One test per defect of issue 12 (the review of the reactor), named after it.

Each failed on d0fb544; those still marked xfail(strict=True) are defects not
fixed yet: remove the mark with the fix.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from pipereactor import _jobserver


def _fill(fd: int, byte: bytes) -> int:
    """Write ``byte``s to the non-blocking ``fd`` until the pipe takes no more."""
    n = 0
    for size in (65536, 1):
        while True:
            try:
                n += os.write(fd, byte * size)
            except BlockingIOError:
                break
    return n


def _blocked_in_kernel(tid: int) -> bool:
    """Whether thread ``tid`` sleeps in a system call (write, poll), not
    waiting for the GIL (a futex)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(") ", 1)[1][0]
        with open(f"/proc/self/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return False
    return state == "S" and wchan not in ("", "0") and "futex" not in wchan


def test_makes_file_description_unchanged_by_a_token_given_back_to_a_full_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """make's write end is non-blocking and the pipe full: giving a token
    back waits for room (a reader drains the pipe once give_back is stuck),
    and make's write end is still non-blocking afterwards."""
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        os.write(w, b"A")  # the token
        filled = _fill(w, b"f")
        monkeypatch.setenv("MAKEFLAGS", f" -j2 --jobserver-auth={r},{w}")
        js = _jobserver.from_makeflags()
        assert js is not None and not js.broken
        try:
            assert js.try_take() == b"A"
            filled += _fill(w, b"f")  # full again, whatever one byte freed
            main = threading.get_native_id()
            giving = threading.Event()
            drained: list[bytes] = []

            def drain() -> None:
                giving.wait()
                deadline = time.monotonic() + 10
                while not _blocked_in_kernel(main) and time.monotonic() < deadline:
                    time.sleep(0.001)
                drained.append(os.read(r, 65536))  # room for the token

            drainer = threading.Thread(target=drain)
            drainer.start()
            try:
                giving.set()
                js.give_back(b"A")
            finally:
                giving.set()
                drainer.join()
            assert os.get_blocking(w) is False, "giving a token back made make's write end blocking"
        finally:
            js.close()
        os.set_blocking(r, False)
        while True:
            try:
                chunk = os.read(r, 65536)
            except BlockingIOError:
                break
            drained.append(chunk)
        everything = b"".join(drained)
        assert everything == b"f" * filled + b"A"  # the very token, given back last
    finally:
        os.close(r)
        os.close(w)
