"""``--shard I/N`` and ``--shard auto``: this runner's share of one input.

Shard I of N (1-based) takes job k (0-based, in input order, counted before
``--resume`` skips anything) when ``k mod N == I - 1``: N copies started by
a scheduler split one input between them with no coordination, and job k
keeps its sequence number k+1 in every copy (so their job logs merge, and
``{#}`` is the same wherever a job runs).

``auto`` reads the index and count the engine that started us sets.  It
refuses, rather than guess, when no engine is found, when two engines
disagree, when an engine's variables are incomplete or not numbers, when a
Slurm array is sparse, or when the index is out of range: a copy that
cannot tell its share must not run the whole input (a runner that ignored
these variables once had every shard of a green CI pipeline run the whole
suite).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Shard", "ShardError", "resolve", "ENGINES"]


class ShardError(ValueError):
    """This runner cannot tell its share; the message says why."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``; ``engine`` names where it came from."""

    index: int
    count: int
    engine: str = ""

    def takes(self, k: int) -> bool:
        """Whether job ``k`` (0-based, in input order) is this shard's."""
        return k % self.count == self.index - 1

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}"


#: Each engine: its name, its index variable, whether that is 1-based, and
#: its count variable ("" when the engine sets none: give ``auto/N``).
#: Slurm is handled apart: its index is relative to SLURM_ARRAY_TASK_MIN.
ENGINES: list[tuple[str, str, int, str]] = [
    ("GitLab", "CI_NODE_INDEX", 1, "CI_NODE_TOTAL"),
    ("CircleCI", "CIRCLE_NODE_INDEX", 0, "CIRCLE_NODE_TOTAL"),
    ("Buildkite", "BUILDKITE_PARALLEL_JOB", 0, "BUILDKITE_PARALLEL_JOB_COUNT"),
    ("AWS Batch", "AWS_BATCH_JOB_ARRAY_INDEX", 0, "AWS_BATCH_JOB_ARRAY_SIZE"),
    ("Cloud Run", "CLOUD_RUN_TASK_INDEX", 0, "CLOUD_RUN_TASK_COUNT"),
    ("Kubernetes", "JOB_COMPLETION_INDEX", 0, ""),
]


def _int(env: Mapping[str, str], name: str) -> int:
    text = env[name].strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ShardError(f"--shard auto: {name} is not a number: {env[name]!r}")
    return int(text)


def _slurm(env: Mapping[str, str], count: int | None) -> tuple[int, int] | None:
    """(0-based index, count) of a Slurm job array task, or None outside one."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    missing = [v for v in ("SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT") if v not in env]
    if missing and not (count is not None and "SLURM_ARRAY_TASK_MIN" in env):
        raise ShardError(f"--shard auto: Slurm sets SLURM_ARRAY_TASK_ID but not "
                         f"{' or '.join(missing)}")
    task, low = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_MIN")
    total = _int(env, "SLURM_ARRAY_TASK_COUNT") if "SLURM_ARRAY_TASK_COUNT" in env else count
    assert total is not None
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    high = _int(env, "SLURM_ARRAY_TASK_MAX") if "SLURM_ARRAY_TASK_MAX" in env else None
    # A sparse array (--array=1,5,7 or 0-10:2) has ids that are not
    # MIN..MIN+COUNT-1: id - MIN would leave some shards to no task.
    if step != 1 or (high is not None and high - low + 1 != total) or not 0 <= task - low < total:
        span = f"{low}..{high}" if high is not None else f"from {low}"
        raise ShardError(
            f"--shard auto: the Slurm job array is sparse (task ids {span}, step {step}, "
            f"{total} tasks; this is task {task}): give it consecutive ids (--array=0-{total - 1}) "
            "or use --shard I/N")
    return task - low, total


def resolve(spec: str, env: Mapping[str, str]) -> Shard:
    """``I/N``, ``auto`` or ``auto/N`` to a :class:`Shard`, or ShardError saying why not."""
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", spec)
    if m is not None:
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1:
            raise ShardError(f"--shard {spec}: the count must be >= 1")
        if not 1 <= index <= count:
            raise ShardError(f"--shard {spec}: the index must be 1..{count} (it is 1-based)")
        return Shard(index, count)
    m = re.fullmatch(r"auto(?:/([0-9]+))?", spec)
    if m is None:
        raise ShardError(f"--shard must be I/N (1-based), auto or auto/N, not {spec!r}")
    given = int(m.group(1)) if m.group(1) else None
    if given is not None and given < 1:
        raise ShardError(f"--shard {spec}: the count must be >= 1")
    found: list[tuple[str, int, int]] = []  # (engine, 0-based index, count)
    slurm = _slurm(env, given)
    if slurm is not None:
        found.append(("Slurm", *slurm))
    for name, index_var, base, count_var in ENGINES:
        if index_var not in env:
            continue
        index = _int(env, index_var) - base
        if count_var and count_var in env:
            count = _int(env, count_var)
        elif given is not None:
            count = given
        else:
            need = f"{count_var} is not set" if count_var else "it sets no count"
            raise ShardError(f"--shard auto: {name} sets {index_var} but {need}: "
                             f"give the count as --shard auto/N")
        if count < 1:
            raise ShardError(f"--shard auto: {name}'s count is {count}")
        if not 0 <= index < count:
            raise ShardError(f"--shard auto: {name}'s index {env[index_var].strip()} "
                             f"({index_var}) is out of range for {count} shards")
        found.append((name, index, count))
    if not found:
        raise ShardError(
            "--shard auto: no engine found (none of SLURM_ARRAY_TASK_ID, "
            + ", ".join(e[1] for e in ENGINES)
            + " is set): give the share as --shard I/N")
    if given is not None:
        for name, _, count in found:
            if count != given:
                raise ShardError(f"--shard {spec}: {name} says there are {count} shards")
    first = found[0]
    for other in found[1:]:
        if other[1:] != first[1:]:
            raise ShardError(
                f"--shard auto: two engines disagree: {first[0]} says shard "
                f"{first[1] + 1}/{first[2]}, {other[0]} says {other[1] + 1}/{other[2]}")
    return Shard(first[1] + 1, first[2], " and ".join(f[0] for f in found))
