"""How many CPUs this process can use: its CPU affinity, capped by its cgroup's CPU quota.

A Kubernetes pod with ``resources.limits.cpu: 1`` usually sees every core of its node in
``os.cpu_count()`` and in its affinity mask; only the cgroup quota (``cpu.max`` in cgroup
v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1) says it gets one core's worth of
time. Same rule as the JVM's and Go's container awareness: the smaller of the two, rounded
up, at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process can keep busy at once (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup CPU quota in CPUs (1.5 = one and a half), or None when unlimited/unknown."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        fields = v2.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    quota = _read(cgroup_root / "cpu" / "cpu.cfs_quota_us") or _read(
        cgroup_root / "cpu,cpuacct" / "cpu.cfs_quota_us"
    )
    period = _read(cgroup_root / "cpu" / "cpu.cfs_period_us") or _read(
        cgroup_root / "cpu,cpuacct" / "cpu.cfs_period_us"
    )
    if quota is None or period is None or quota.strip() == "-1":
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
