"""Process CPU read from /proc, for the benchmarks that run servers and workers beside them."""

from __future__ import annotations

import os
import time
from pathlib import Path


def tree_cpu(pgid: int) -> float:
    """utime + stime of every live process of a process group (a cluster: sentinel, workers, pusher…)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of /proc/pid/stat: the process group
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_until_idle(pgid: int, *, share: float = 0.05, window: float = 3.0, timeout: float = 300.0) -> float:
    """Wait until the process group uses less than `share` of a core over `window` seconds; returns the wait.

    A worker cluster just started runs what fell due while it was down (schedules): a measurement of
    the steady state starts after that.
    """
    began = time.monotonic()
    used = tree_cpu(pgid)
    while time.monotonic() - began < timeout:
        time.sleep(window)
        now = tree_cpu(pgid)
        if now - used < share * window:
            break
        used = now
    return round(time.monotonic() - began, 1)
