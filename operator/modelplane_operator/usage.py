"""What the replicas use: CPU and memory from the resource metrics API, GPUs from the
runtime's /metrics, per replica and in total (pure: parsing, aggregation, rounding).

- CPU and memory come from ``metrics.k8s.io`` PodMetrics (metrics-server, or any adapter
  serving that API): the usage of every container of the pod added up, CPU as cores over
  metrics-server's window (usually 15 s), memory as the working set (what the kubelet
  compares with the limit, and what ``kubectl top`` shows). Without that API the fields are
  absent: nothing stands in for it.
- GPU utilisation and memory come from the runtime's NVML readings
  (``modelplane_gpu_utilization_ratio``, ``..._memory_used_bytes``, ``..._memory_total_bytes``,
  per device). A replica's utilisation is the mean over its GPUs; the ModelDeployment's is
  the mean over every GPU of every scraped replica, so two replicas at 100 % and 0 % show
  50 %. GPU memory is counted per device, all processes on it together.
- Figures are shown as ``kubectl top`` shows them: CPU in millicores (``250m``), memory in
  MiB (``512Mi``), utilisation in whole percent. Resource use moves all the time, so a
  figure is rewritten only when it moved by more than ``CPU_STEP`` (or a tenth),
  ``MEMORY_STEP`` (or a twentieth), or ``GPU_POINTS``: an idle model's status is then not
  rewritten every round, and a shown figure is never further than that from the measured
  one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelplane_operator.load import Snapshot
from modelplane_operator.quantity import quantity_value

MiB = 2**20
CPU_STEP = 0.010
"""Cores: a CPU figure changes when usage moved by more than this or a tenth of it. An
idle runtime wobbles by a few millicores between metrics-server windows; with these steps
a two-replica model idle for an hour (360 rounds) is written once instead of 360 times
(simulated with usage wobbling 1-8m and 290-310Mi per replica)."""
MEMORY_STEP = 32 * MiB
"""Bytes: a memory figure changes when usage moved by more than this or a twentieth."""
GPU_MEMORY_STEP = 64 * MiB
GPU_POINTS = 5.0
"""Percentage points a GPU utilisation must move to be rewritten."""
REPLICA_FIELDS = ("cpu", "memory", "gpuUtilization", "gpuMemoryUsed", "gpuMemoryTotal")
"""The resource fields of a ``status.pods`` entry."""


@dataclass(frozen=True)
class PodUsage:
    """One pod's CPU and memory as the resource metrics API reports them."""

    cpu_cores: float
    memory_bytes: float


def pod_usage(item: Mapping[str, Any]) -> tuple[tuple[str, str], PodUsage] | None:
    """((namespace, name), usage) of a PodMetrics item; None when it is malformed."""
    meta = item.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    containers = item.get("containers")
    if not isinstance(name, str) or not isinstance(namespace, str) or not isinstance(
            containers, list):
        return None
    cpu = memory = 0.0
    try:
        for container in containers:
            usage = container.get("usage") or {}
            cpu += float(quantity_value(str(usage.get("cpu", "0"))))
            memory += float(quantity_value(str(usage.get("memory", "0"))))
    except (ValueError, AttributeError):
        return None
    return (namespace, name), PodUsage(cpu, memory)


def cpu_text(cores: float) -> str:
    """Cores as ``kubectl top`` shows them: whole millicores."""
    return f"{round(cores * 1000)}m"


def memory_text(size: float) -> str:
    """Bytes as ``kubectl top`` shows them: whole MiB."""
    return f"{round(size / MiB)}Mi"


def _percent(ratio: float) -> int:
    return round(min(max(ratio, 0.0), 1.0) * 100)


@dataclass(frozen=True)
class GpuFigures:
    """GPUs of one or more replicas, summed (utilisation: the mean of the devices')."""

    count: int
    utilization: float | None
    memory_used: float | None
    memory_total: float | None


def gpu_figures(snapshots: Sequence[Snapshot]) -> GpuFigures | None:
    """The GPUs of these replicas' scrapes together; None when none reported a GPU."""
    gpus = [gpu for snapshot in snapshots for gpu in snapshot.gpus]
    if not gpus:
        return None

    def total(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None and math.isfinite(v)]
        return sum(known) if known else None

    utilizations = [g.utilization for g in gpus
                    if g.utilization is not None and math.isfinite(g.utilization)]
    return GpuFigures(
        count=len(gpus),
        utilization=sum(utilizations) / len(utilizations) if utilizations else None,
        memory_used=total([g.memory_used for g in gpus]),
        memory_total=total([g.memory_total for g in gpus]),
    )


def _figures(usage: Sequence[PodUsage], gpus: GpuFigures | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if usage:
        fields["cpu"] = cpu_text(sum(u.cpu_cores for u in usage))
        fields["memory"] = memory_text(sum(u.memory_bytes for u in usage))
    if gpus is not None:
        fields["gpus"] = gpus.count
        if gpus.utilization is not None:
            fields["gpuUtilization"] = _percent(gpus.utilization)
        if gpus.memory_used is not None:
            fields["gpuMemoryUsed"] = memory_text(gpus.memory_used)
        if gpus.memory_total is not None:
            fields["gpuMemoryTotal"] = memory_text(gpus.memory_total)
    return fields


# ---- keeping figures still while usage only wobbles --------------------------------------------


_STEPS: dict[str, tuple[float, float]] = {
    "cpu": (CPU_STEP, 0.10),
    "memory": (MEMORY_STEP, 0.05),
    "gpuMemoryUsed": (GPU_MEMORY_STEP, 0.05),
}
"""Per quantity field: (smallest move shown, share of the shown value that is shown)."""


def _moved(key: str, old: Any, new: Any) -> bool:
    if key == "gpuUtilization":
        return not isinstance(old, int | float) or abs(float(new) - float(old)) > GPU_POINTS
    step = _STEPS.get(key)
    if step is None:
        return bool(old != new)  # counts and totals: every change shows
    floor, share = step
    try:
        before, after = float(quantity_value(str(old))), float(quantity_value(str(new)))
    except ValueError:
        return True
    return abs(after - before) > max(floor, share * before)


def settle(previous: Mapping[str, Any] | None, figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with each one that barely moved since ``previous`` kept as it was."""
    if not previous:
        return figures
    return {key: previous[key] if key in previous and not _moved(key, previous[key], value)
            else value for key, value in figures.items()}


# ---- into the status ------------------------------------------------------------------------


def with_readings(
    status: dict[str, Any], pods: Sequence[Mapping[str, Any]],
    usage: Mapping[tuple[str, str], PodUsage] | None, snapshots: Mapping[str, Snapshot],
    previous: Mapping[str, Any],
) -> dict[str, Any]:
    """``status`` with resource use in ``resources`` and in each ``pods`` entry, and the
    versions each replica serves; ``usage`` None when the resource metrics API is absent.

    ``pods`` are every Pod of the ModelDeployment (the total covers all of them, the
    ``pods`` list only its first few), ``snapshots`` this round's scrapes by pod name.
    """
    by_name = {str(p.get("metadata", {}).get("name", "")): p for p in pods}
    measured: list[PodUsage] = []
    for name, pod in by_name.items():
        namespace = str(pod.get("metadata", {}).get("namespace") or "default")
        found = (usage or {}).get((namespace, name))
        if found is not None:
            measured.append(found)
    scraped = [snapshots[name] for name in by_name if name in snapshots]
    total = settle(previous.get("resources"), _figures(measured, gpu_figures(scraped)))
    status["resources"] = total or None  # absent, not stale, once nothing is measured

    old_entries = {str(e.get("name")): e for e in previous.get("pods") or []}
    entries = []
    for entry in status.get("pods") or []:
        name = str(entry.get("name", ""))
        pod = by_name.get(name, {})
        namespace = str(pod.get("metadata", {}).get("namespace") or "default")
        found = (usage or {}).get((namespace, name))
        snapshot = snapshots.get(name)
        own = _figures([found] if found is not None else [],
                       gpu_figures([snapshot]) if snapshot is not None else None)
        own.pop("gpus", None)
        own = settle(old_entries.get(name), own)
        if snapshot is not None and snapshot.versions:
            own["modelVersion"] = ",".join(sorted(snapshot.versions, key=lambda v: (len(v), v)))
        elif name in old_entries and old_entries[name].get("modelVersion"):
            own["modelVersion"] = old_entries[name]["modelVersion"]  # not scraped this round
        entries.append({**entry, **own})
    if "pods" in status:
        status["pods"] = entries
    return status
