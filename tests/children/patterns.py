"""Deterministic payloads and chunkings, shared by the test children and the tests."""

from __future__ import annotations

import random


def payload(seed: int, size: int) -> bytes:
    """``size`` bytes of a pattern fixed by ``seed`` (random, but repeatable)."""
    block = random.Random(seed).randbytes(65536 + seed % 977)
    reps = size // len(block) + 1
    return (block * reps)[:size]


def chunk_sizes(seed: int, total: int, low: int = 1, high: int = 70000) -> list[int]:
    """Random sizes (fixed by ``seed``) that add up to ``total``."""
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        n = min(total, rng.randint(low, high))
        sizes.append(n)
        total -= n
    return sizes
