"""The README's commands keep working: the demo runs and succeeds."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
