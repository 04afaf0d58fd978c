"""What the scheduler says about the calling thread: time run on a CPU and time spent waiting for one.

On a shared machine a wall-clock stall of the event loop has three parts: work the loop did (CPU time),
time the thread was ready but another process had the CPU (run-queue wait), and time it was blocked in
a system call. Only the first and the last are the code's doing. ``/proc/thread-self/schedstat``
(Linux) gives the first two, so a test can subtract the machine's load from a stall it measures.
"""

from __future__ import annotations

from pathlib import Path

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def thread_sched() -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting on a run queue) of the calling thread since it started.

    (0.0, 0.0) where the kernel does not report them: a test then measures plain wall-clock time.
    """
    try:
        on_cpu, waited, _ = _SCHEDSTAT.read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waited) / 1e9
