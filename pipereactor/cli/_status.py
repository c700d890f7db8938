"""The status the run loop redraws: its counters, and on a terminal tall
enough the running jobs, longest-running first, as many as fit (``_live``);
on a smaller one, one line naming the longest-running job.

A redraw costs O(running jobs): it is given only the jobs running now, each
with the label and last line its task keeps.
"""

from __future__ import annotations

import heapq

from .. import Job
from ._console import Console, terminal_size
from ._live import job_line, job_rows
from ._task import Task

__all__ = ["show_status"]


def show_status(console: Console, header: str, running: list[tuple[Job, Task]]) -> None:
    """Draw ``header`` (the counters) and the ``running`` jobs on ``console``."""
    cols, rows = terminal_size()
    room = job_rows(rows)
    if room:
        oldest = heapq.nsmallest(room, running, key=lambda jt: jt[0].started_at or 0.0)
        lines = [header]
        for job, task in oldest:
            last = task.last.text() if task.last is not None else ""
            lines.append(job_line(job.duration or 0.0, task.label(), last, cols))
        console.status_area(lines, cols)
        return
    if running:
        job, task = min(running, key=lambda jt: jt[0].started_at or 0.0)
        header += f", longest {(job.duration or 0.0):.0f}s: {task.label()}"
    console.status(header, cols)
