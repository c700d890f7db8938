"""One line from a pytest JUnit XML report, then one line per failed test.

    python .ci/pytest_summary.py REPORT.xml

prints ``N passed, N failed, N skipped[, N xfailed] in S s`` and then
``  FAILED tests/test_x.py::test_y[param]`` for each failure or error (an
error in a fixture counts as a failure).  Standard library only: it runs
with the interpreter under test, before anything is installed in it.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET


def node_id(classname: str, name: str) -> str:
    """pytest's node id from JUnit's classname ("tests.test_x.Class") and name."""
    parts = classname.split(".") if classname else []
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if os.path.exists(path):
            return "::".join([path, *parts[i:], name])
    return "::".join([*parts, name])


def summarise(report: str) -> list[str]:
    outcomes: dict[str, str] = {}  # node id -> passed, failed, skipped or xfailed
    seconds = 0.0
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        seconds += float(suite.get("time", 0) or 0)
        for case in suite.iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                    break
                if child.tag == "skipped":
                    outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            nid = node_id(case.get("classname", ""), case.get("name", "?"))
            if outcomes.get(nid) != "failed":  # a failure, then a teardown error: one test
                outcomes[nid] = outcome
    counts = {k: list(outcomes.values()).count(k) for k in ("passed", "failed", "skipped", "xfailed")}
    head = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if counts["xfailed"]:
        head += f", {counts['xfailed']} xfailed"
    failed = [nid for nid, outcome in outcomes.items() if outcome == "failed"]
    return [f"{head} in {seconds:.0f} s"] + [f"  FAILED {nid}" for nid in failed]


def main() -> int:
    try:
        lines = summarise(sys.argv[1])
    except (OSError, ET.ParseError) as e:
        print(f"no report ({e})")
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
