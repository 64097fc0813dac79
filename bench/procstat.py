"""CPU accounting from /proc, shared by the benchmark scripts (run as `python bench/X.py`)."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def core_busy_s(core: int) -> tuple[float, float]:
    """(busy, steal) seconds of one core from /proc/stat: to see what else ran on it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal ...
                return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK
    return 0.0, 0.0
