"""A job's pipe ends in the selector: registered, watched for room, closed.

No state transitions here and no user code: the lifecycle decides when a
stream ends; this says what that means for the fds.
"""

from __future__ import annotations

import selectors

from ._feeds import StdinWriter
from ._job import Job
from ._pipes import Writer

__all__ = ["JobFds"]


class JobFds:
    __slots__ = ("selector",)

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def register(self, job: Job) -> None:
        """Register a started job's pipe ends: its output to read, its input
        to write when there is room (and, for a StdinWriter, data)."""
        for reader in job._readers:
            self.selector.register(reader.fd.fd, selectors.EVENT_READ, reader)
        writer = job._writer
        if writer is not None:
            if isinstance(writer.feed, StdinWriter):
                writer.feed._wake = lambda: self.want_write(writer)
            self.want_write(writer)

    def want_write(self, writer: Writer) -> None:
        """Watch stdin for room again (new data, or close, from a StdinWriter)."""
        if writer.fd.fd >= 0 and not writer.registered:
            self.selector.register(writer.fd.fd, selectors.EVENT_WRITE, writer)
            writer.registered = True

    def idle(self, writer: Writer) -> None:
        """The feed has nothing now.  A StdinWriter wakes us when it has; any
        other feed is asked again on the next turn."""
        if isinstance(writer.feed, StdinWriter):
            self.selector.unregister(writer.fd.fd)
            writer.registered = False

    def end_input(self, writer: Writer) -> None:
        if writer.registered:
            self.selector.unregister(writer.fd.fd)
            writer.registered = False
        writer.fd.close()
        writer.view = None
        writer.job._writer = None
        if isinstance(writer.feed, StdinWriter):
            writer.feed._break()
            writer.feed._wake = None  # it held the writer, hence the job

    def close(self, job: Job, *, retry: bool = False) -> None:
        """Close every pipe end of the job's, without calling user code.

        Safe on a half-registered job.  With ``retry``, the job is going back
        to the queue (its start failed): its input is kept for the next start.
        """
        if retry:
            job._direct = []  # it never ran: nothing written to count
        for reader in job._readers:
            self.unregister_quietly(reader.fd.fd)
            reader.fd.close()
        job._readers.clear()
        writer = job._writer
        if writer is not None:
            if retry:
                self.unregister_quietly(writer.fd.fd)
                writer.registered = False
                writer.fd.close()
                job._writer = None
                if isinstance(writer.feed, StdinWriter):
                    writer.feed._wake = None  # the next start sets its own
            else:
                self.end_input(writer)

    def unregister_quietly(self, fd: int) -> None:
        if fd >= 0:
            try:
                self.selector.unregister(fd)
            except KeyError:
                pass  # never registered: the start failed before it
