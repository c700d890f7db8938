"""Printing finished jobs: each as it ends, or with ``-k`` in input order;
and ``-k --line-buffer``'s hand-over to the head job.

A job is printed grouped: its stdout, its stderr, then our note about it
(a spill file lost, a program not found).  With ``-k`` a finished job waits
until every earlier one of ours is printed (``order``: 1, 2, ... among our
jobs, whatever ``--shard`` leaves to others and ``--resume`` skips); a job
that never ran takes its turn with nothing to print.

With ``-k --line-buffer`` the earliest job not yet printed, the head,
prints its lines as they come (its sinks are ``HeadLineWriter``s); when it
is printed, the next one's turn comes: :class:`Printer` tells it to go
live, printing what it held so far.  It keeps only the jobs made and not
yet printed: O(``-j``) with the run loop's window.
"""

from __future__ import annotations

from ._console import Console
from ._output import HeadLineWriter, SpillBuffer, Tagger
from ._task import Task

__all__ = ["Printer"]


class Printer:
    """Prints finished tasks, in the order they end or (``ordered``: ``-k``)
    in input order."""

    def __init__(self, console: Console, ordered: bool) -> None:
        self.console = console
        self.ordered = ordered
        self.held: dict[int, Task | None] = {}  # -k: done, waiting for their turn
        self.next_print = 1  # -k: the order of the next to print
        # -k --line-buffer: the jobs started and not yet printed, by order,
        # to find the one that becomes the head.
        self.unprinted: dict[int, Task] = {}

    def is_head(self, order: int) -> bool:
        """Whether the job ``order`` is the earliest not yet printed (with -k)."""
        return order == self.next_print

    def started(self, task: Task) -> None:
        """-k --line-buffer: ``task`` runs (or runs again) and will go live at its turn."""
        self.unprinted[task.order] = task

    def run_again_later(self, task: Task) -> None:
        """-k --line-buffer: ``task`` failed and waits to run again.  If its
        turn comes meanwhile, what that run held is not shown (only its last
        run counts, as GNU parallel drops a held job's failed run); its next
        run starts live then (see :meth:`is_head`)."""
        self.unprinted.pop(task.order, None)

    def finished(self, task: Task) -> int:
        """``task`` is done: print it now or, with -k, at its turn.  Returns
        how many of our jobs are now printed (with -k, 0 or more)."""
        if not self.ordered:
            self.print(task)
            return 1
        return self._retire(task.order, task)

    def not_run(self, order: int) -> int:
        """The job ``order`` will never run: with -k it passes its turn.
        Returns as :meth:`finished` does."""
        return self._retire(order, None) if self.ordered else 1

    def _retire(self, order: int, task: Task | None) -> int:
        self.unprinted.pop(order, None)
        self.held[order] = task
        printed = 0
        while self.next_print in self.held:
            ready = self.held.pop(self.next_print)
            self.next_print += 1
            printed += 1
            if ready is not None:
                self.print(ready)
        head = self.unprinted.get(self.next_print)
        if head is not None:  # -k --line-buffer: a running job's turn has come
            for sink in (head.out, head.err):
                if isinstance(sink, HeadLineWriter):
                    sink.go_live()
        return printed

    def print(self, task: Task) -> None:
        """A job's output (grouped), then our notes about it; then drop it all."""
        c = self.console
        tagger = task.tagger or Tagger(None)
        for fd, name, sink in ((1, "stdout", task.out), (2, "stderr", task.err)):
            if isinstance(sink, HeadLineWriter):
                sink.go_live()  # everything held, to its end
                continue
            if not isinstance(sink, SpillBuffer):
                continue
            if sink.cap is not None and sink.dropped and sink.error is None:
                c.write(2, Tagger(tagger.prefix)(
                    f"[pipereactor: job {task.cmd.seq}: first {sink.dropped} bytes of its "
                    f"{name} not kept (--max-output)]\n".encode()))
            sink.emit(c, fd, Tagger(tagger.prefix))
        if task.note:
            c.write(2, Tagger(tagger.prefix)(task.note))
        task.discard()

    def discard(self) -> None:
        """Drop the output of the finished jobs still waiting for their turn."""
        for task in self.held.values():
            if task is not None:
                task.discard()
