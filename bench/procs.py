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


def _proc_stats() -> list[tuple[str, list[str]]]:
    """(command name, the fields after it) of every live process."""
    stats = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        stats.append((text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()))
    return stats


def cpu_snapshot(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far: by each named process group, by PostgreSQL's processes and by the machine.

    A group counts its live processes and the children they have reaped (a recycled worker), PostgreSQL
    its server processes and the backends its postmaster has reaped. The difference of two snapshots
    says where a run's CPU went; `machine` is every core's busy time (user, nice, system, irq).
    """
    tick = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys([*groups, "postgresql"], 0.0)
    by_pgid = {pgid: name for name, pgid in groups.items()}
    for comm, fields in _proc_stats():
        used = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        name = by_pgid.get(int(fields[2]))
        if name is None and comm.startswith("postgres"):
            name = "postgresql"
        if name is not None:
            totals[name] += used
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    totals["machine"] = (user + nice + system + irq + softirq + steal) / tick
    return totals
