"""100 children, one thread, mixed sinks.  Run from the repository root:

    PYTHONPATH=. python examples/demo.py

Each child writes to stdout and stderr at once (more than a pipe holds, so a
naive parent would deadlock); the reactor routes each job's output to a
different kind of sink, runs at most 16 at a time, and times out the one that
hangs.
"""

from __future__ import annotations

import hashlib
import sys
import time

import pipereactor as pr

WRITER = (
    "import sys, os\n"
    "n = int(sys.argv[1])\n"
    "for i in range(n // 1000):\n"
    "    os.write(1, b'%08d' % i + b'.' * 991 + b'\\n')\n"
    "    os.write(2, b'e' * 100)\n"
    "print('done', n, file=sys.stderr)\n"
)


def main() -> int:
    lines: list[str] = []
    started = time.monotonic()

    def on_exit(job: pr.Job) -> None:
        state = "timed out" if job.timed_out else f"exit {job.returncode}"
        if job.returncode != 0:
            print(f"  {' '.join(map(str, job.args))} ended: {state}")

    with pr.Reactor(max_parallel=16) as reactor:
        jobs = []
        for i in range(100):
            size = 200_000 + 1000 * i  # 200 KB to 300 KB each, over a pipe's 64 KiB
            kind = i % 4
            if kind == 0:
                out: object = pr.BytesSink()  # keep it all
            elif kind == 1:
                out = pr.RingBuffer(4096)  # keep only the tail
            elif kind == 2:
                out = pr.LineSink(lines.append)  # one call per line
            else:
                h = hashlib.sha256()
                out = pr.CallbackSink(h.update)  # stream into a hash
            job = reactor.spawn(
                [sys.executable, "-c", WRITER, str(size)],
                stdout=out,
                stderr=pr.NullSink(),
                timeout=10,
                on_exit=on_exit,
            )
            jobs.append((job, out))
        hang = reactor.spawn(["sleep", "60"], timeout=0.5, kill_grace=0.5, on_exit=on_exit)

        finished = 0
        for job in reactor.as_completed():
            finished += 1
        print(f"{finished} jobs finished in {time.monotonic() - started:.2f} s, one thread")

    kept = sum(len(o.getvalue()) for j, o in jobs if isinstance(o, pr.BytesSink))
    tails = sum(o.total for j, o in jobs if isinstance(o, pr.RingBuffer))
    errs = sum(j.stderr.total for j, _ in jobs)
    print(f"BytesSink kept {kept} bytes; RingBuffers saw {tails} bytes, kept 4 KiB each")
    print(f"LineSinks got {len(lines)} lines; stderr discarded: {errs} bytes")
    print(f"the hanging job: timed_out={hang.timed_out}, returncode={hang.returncode}")
    ok = all(j.returncode == 0 for j, _ in jobs) and hang.timed_out
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
