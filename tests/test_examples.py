"""The README's commands keep working: the demo runs and succeeds, and every
```python block of the README runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
NOT_RUN = "<!-- not run"  # a comment line just before a block that is not a program


def readme_python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of each ```python block not marked NOT_RUN."""
    with open(README, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = lines.index("```", start)
            if not (i > 0 and lines[i - 1].startswith(NOT_RUN)):
                blocks.append((start + 1, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return blocks


BLOCKS = readme_python_blocks()


def test_the_readme_has_python_blocks_to_run() -> None:
    assert len(BLOCKS) >= 2  # the Example and "Coming from subprocess"
    assert any(re.search(r"^import subprocess$", code, re.M) for _, code in BLOCKS)


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=25, cwd=tmp_path)
    assert result.returncode == 0, f"README.md line {line}:\n{result.stdout}{result.stderr}"


def test_demo_runs() -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py")],
                            capture_output=True, text=True, env=env, timeout=25)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "101 jobs finished" in result.stdout
    assert "timed_out=True, returncode=-15" in result.stdout


def test_the_main_job_command_runs() -> None:
    """README: python3 -m pipereactor -j 4 --timeout 3 -a examples/jobs.txt"""
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-m", "pipereactor", "-j", "4", "--timeout", "3", "-a",
         os.path.join(ROOT, "examples", "jobs.txt")],
        capture_output=True, text=True, env=env, timeout=25, cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr  # one failure, one timeout
    out = result.stdout.splitlines()
    assert out.index("delta: test 3 passed") == out.index("testing delta") + 3  # grouped
    assert "499999500000" in out
    assert "failed (exit 1)" in result.stderr and "stderr| gamma: undefined reference" in result.stderr
    assert "failed (killed by SIGTERM, timed out)" in result.stderr
    assert "pipereactor: 4 ok, 2 failed (1 timed out) of 6 in" in result.stderr
