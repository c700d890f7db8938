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
