"""CPU count from affinity and cgroup quota (cgroup files written to a temp folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modelplane_runtime.dataplane.cpus import available_cpus, cgroup_quota


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "100000 100000\n"}, 1.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
         2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({"cpu.max": "100 0\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    for relative, text in files.items():
        write(tmp_path, relative, text)
    assert cgroup_quota(tmp_path) == quota


def test_quota_caps_affinity_rounding_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no cgroup files: affinity alone
    write(tmp_path, "cpu.max", "50000 100000")
    assert available_cpus(tmp_path) == 1  # half a CPU still runs one thread at a time
    write(tmp_path, "cpu.max", "100000000 100000")
    assert available_cpus(tmp_path) == affinity  # a quota above the cores never adds any
