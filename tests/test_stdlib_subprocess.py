"""CPython's own subprocess tests, with ``subprocess.run`` and
``Popen.communicate`` routed through ``pipereactor.run`` and ``pipereactor.communicate``.

This loads the running interpreter's ``test.test_subprocess`` and runs
``RunFuncTestCase`` whole, plus every test of ``ProcessTestCase`` (and of
every other test class there) whose own code calls ``communicate()``,
``run()`` or a helper built on them (``check_output``, ``getoutput``).  Each stdlib test is one pytest test here, and must both pass and
actually reach pipereactor (``NOT_ROUTED`` lists the few that legitimately
do not, with why).  Tests left out are in ``EXCLUDED``, each with its reason.
The tally per Python is printed at the end of the pytest run.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import resource
import subprocess
import sys
import textwrap
import unittest
from collections.abc import Iterator
from typing import Any

import pytest

import pipereactor as pr
from conftest import STDLIB_TALLY

try:
    from test import test_subprocess as stdlib
except (ImportError, unittest.SkipTest) as exc:  # pragma: no cover - depends on the build
    pytest.skip(
        f"this Python has no usable test.test_subprocess ({exc!r}): "
        "its test package is not installed",
        allow_module_level=True,
    )

#: Test classes searched for tests that call communicate() or run(): all of
#: them (ProcessTestCase, POSIXProcessTestCase, ContextManagerTests, ...).
#: RunFuncTestCase is taken whole.
CLASSES = tuple(
    name for name, value in vars(stdlib).items()
    if isinstance(value, type) and issubclass(value, unittest.TestCase)
)

#: Stdlib tests that are left out, each with the reason.  The aim is that no
#: reason is one a user could notice.
EXCLUDED: dict[str, str] = {}

#: Selected tests that pass without reaching pipereactor in this process,
#: and why (their communicate()/run() call happens in a child interpreter,
#: or the test is skipped on this platform before it gets there).
NOT_ROUTED: dict[str, str] = {
    f"{cls}.test_check_output_stdout_arg": "check_output() refuses stdout= before it calls run()"
    for cls in ("ProcessTestCase", "ProcessTestCaseNoPoll")
}


#: The stdlib calls that end in subprocess.run or Popen.communicate.
ROUTED_NAMES = ("communicate", "run", "check_output", "getoutput", "getstatusoutput")


def _calls_communicate_or_run(function: Any) -> bool:
    """Whether the test's own code (not a string run by a child) calls them."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ROUTED_NAMES:
                return True
    return False


def _selected() -> list[str]:
    cases = []
    for class_name in CLASSES:
        cls = getattr(stdlib, class_name, None)
        if cls is None:
            continue
        for name in sorted(unittest.TestLoader().getTestCaseNames(cls)):
            function = getattr(cls, name)
            function = inspect.unwrap(function)
            if class_name == "RunFuncTestCase" or _calls_communicate_or_run(function):
                cases.append(f"{class_name}.{name}")
    return cases


SELECTED = _selected()


class _Routed:
    """Counts the calls that reached pipereactor."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return pr.run(*args, **kwargs)

    def communicate(self) -> Any:
        routed = self

        def communicate(popen: subprocess.Popen[Any], input: Any = None, timeout: float | None = None) -> Any:
            routed.calls += 1
            return pr.communicate(popen, input, timeout)

        return communicate


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Routed]:
    counter = _Routed()
    monkeypatch.setattr(subprocess, "run", counter.run)
    monkeypatch.setattr(subprocess.Popen, "communicate", counter.communicate())
    yield counter


@contextlib.contextmanager
def _fd_limit(soft: int | None) -> Iterator[None]:
    """test_no_leaking fills the fd table, and skips itself when the limit is
    above 1026: lower it for the test so that it runs (EMFILE included)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft is None or old[0] <= soft:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.deadline(120)
@pytest.mark.parametrize("case", SELECTED)
def test_stdlib(case: str, routed: _Routed) -> None:
    if case in EXCLUDED:
        STDLIB_TALLY["excluded"] += 1
        pytest.skip(f"excluded: {EXCLUDED[case]}")
    class_name, method = case.split(".")
    test = getattr(stdlib, class_name)(method)
    result = unittest.TestResult()
    with _fd_limit(1024 if method == "test_no_leaking" else None):
        test.run(result)
    STDLIB_TALLY["ran"] += 1
    if result.skipped:
        STDLIB_TALLY["skipped"] += 1
        pytest.skip(f"skipped by the stdlib: {result.skipped[0][1]}")
    problems = [traceback for _, traceback in result.failures + result.errors]
    if case in NOT_ROUTED and routed.calls:
        problems.append(f"{case} is listed in NOT_ROUTED but reached pipereactor")
    elif case not in NOT_ROUTED and not routed.calls:
        problems.append(f"{case} passed without reaching pipereactor")
    STDLIB_TALLY["failed" if problems else "passed"] += 1
    assert not problems, "\n".join(problems)


def test_selection_is_not_empty() -> None:
    # A renamed class upstream must not turn this module into a silent no-op.
    assert sum(case.startswith("RunFuncTestCase.") for case in SELECTED) >= 15
    assert sum(case.startswith("ProcessTestCase.") for case in SELECTED) >= 20
    assert set(EXCLUDED) <= set(SELECTED), "an exclusion names a test that is not selected"
    assert sys.version_info >= (3, 10)
