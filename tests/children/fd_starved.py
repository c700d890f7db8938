"""Run N jobs under an fd limit of LIMIT, with no max_parallel: starts that
find no fd must wait for running jobs, not fail.  Every output is checked
exactly; prints "ok N put back M" (M: starts that found no fd and waited).  Then, with the fd table full and nothing running,
a spawn must fail with a clear OSError: prints "error: <message>".
Usage: fd_starved.py N LIMIT"""

import os
import resource
import sys

import pipereactor as pr

n, limit = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

jobs = []
starved = []
with pr.Reactor() as reactor:
    # Count the starts put back for want of fds, to show the limit did bite.
    put_back = reactor._admission.starve
    reactor._admission.starve = lambda job: (starved.append(job), put_back(job))  # type: ignore[method-assign]
    for i in range(n):
        data = f"job {i} ".encode() * (i % 50 + 1)
        if i % 3 == 0:
            # Input queued through job.stdin must survive a start that is retried.
            job = reactor.spawn(["sh", "-c", f"cat; echo err{i} >&2"], stdin=pr.PIPE,
                                stdout=pr.PIPE, stderr=pr.PIPE)
            assert job.stdin is not None
            job.stdin.write(data)
            job.stdin.close()
        else:
            job = reactor.spawn(["sh", "-c", f"cat; echo err{i} >&2"], stdin=data,
                                stdout=pr.PIPE, stderr=pr.PIPE)
        jobs.append((i, data, job))
    reactor.run(timeout=120)
for i, data, job in jobs:
    assert job.returncode == 0, (i, job, job.error)
    assert job.stdout.getvalue() == data, (i, job.stdout.getvalue()[:80])
    assert job.stderr.getvalue() == f"err{i}\n".encode(), (i, job.stderr.getvalue())
print("ok", len(jobs), "put back", len(starved), flush=True)

held = []
with pr.Reactor() as reactor:
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    os.close(held.pop())  # room for one pipe end, not for a whole start
    try:
        reactor.spawn(["true"], stdout=pr.PIPE, stderr=pr.PIPE)
    except OSError as exc:
        print("error:", exc, flush=True)
    else:
        print("no error", flush=True)
    for fd in held:
        os.close(fd)
