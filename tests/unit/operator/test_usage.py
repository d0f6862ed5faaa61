"""usage.py: CPU and memory from PodMetrics, GPUs from the runtime's exposition, per replica
and in total, and figures that stay still while usage only wobbles (issue 13)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest
from modelplane_operator.load import parse_snapshot
from modelplane_operator.status import status_patch
from modelplane_operator.usage import (
    PodUsage,
    cpu_text,
    gpu_figures,
    memory_text,
    pod_usage,
    settle,
    with_readings,
)
from modelplane_runtime.gpus import GpuReading, gpu_families
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

MiB = 2**20
GiB = 2**30


def pod_metrics(name: str, *containers: tuple[str, str], namespace: str = "ml") -> dict[str, Any]:
    """A PodMetrics item as metrics-server writes it."""
    return {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "timestamp": "2026-01-01T00:00:00Z", "window": "15.012s",
            "containers": [{"name": f"c{i}", "usage": {"cpu": cpu, "memory": memory}}
                           for i, (cpu, memory) in enumerate(containers)]}


def gpu_exposition(*devices: tuple[str, float, float, float]) -> str:
    """What a GPU runtime's /metrics says, per device (uuid, utilisation, used, total):
    the runtime's own GPU families (gpus.py), with the readings NVML would have given."""
    readings = [GpuReading(gpu=i, uuid=uuid, name="NVIDIA H200", utilization=ratio,
                           memory_used=used, memory_total=total, power_watts=300.0,
                           temperature_celsius=45.0)
                for i, (uuid, ratio, used, total) in enumerate(devices)]

    class Readings(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from gpu_families(readings)

    registry = CollectorRegistry()
    registry.register(Readings())
    return generate_latest(registry).decode()


def test_pod_usage_adds_up_containers_in_metrics_server_units() -> None:
    parsed = pod_usage(pod_metrics("a", ("5166013n", "51740Ki"), ("250m", "50Mi")))
    assert parsed is not None
    key, usage = parsed
    assert key == ("ml", "a")
    assert usage.cpu_cores == pytest.approx(0.255166013)
    assert usage.memory_bytes == 51740 * 1024 + 50 * MiB


@pytest.mark.parametrize("item", [
    {"metadata": {"name": "a", "namespace": "ml"}, "containers": [{"usage": {"cpu": "lots"}}]},
    {"metadata": {"name": "a", "namespace": "ml"}, "containers": "none"},
    {"metadata": {"name": "a"}, "containers": []},
    {"metadata": {"name": "a", "namespace": "ml"}, "containers": ["x"]},
    {},
])
def test_malformed_pod_metrics_are_skipped(item: dict[str, Any]) -> None:
    assert pod_usage(item) is None


def test_figures_read_like_kubectl_top() -> None:
    assert [cpu_text(c) for c in (0.0054, 0.25, 1.25, 0)] == ["5m", "250m", "1250m", "0m"]
    assert [memory_text(b) for b in (512 * MiB, 1.4 * MiB, 3 * GiB)] == ["512Mi", "1Mi",
                                                                          "3072Mi"]


def test_gpus_are_read_per_device() -> None:
    text = gpu_exposition(("GPU-a", 0.5, 10 * GiB, 80 * GiB), ("GPU-b", 1.0, 70 * GiB, 80 * GiB))
    snap = parse_snapshot(text, 1.0)
    assert len(snap.gpus) == 2
    figures = gpu_figures([snap])
    assert figures is not None
    assert figures.count == 2
    assert figures.utilization == pytest.approx(0.75)
    assert figures.memory_used == 80 * GiB
    assert figures.memory_total == 160 * GiB


def test_no_gpu_series_no_gpu_figures() -> None:
    assert parse_snapshot("", 1.0).gpus == ()
    assert gpu_figures([parse_snapshot("", 1.0)]) is None
    assert gpu_figures([]) is None


def _status(*names: str) -> dict[str, Any]:
    return {"pods": [{"name": n, "ready": True, "restarts": 0, "phase": "Running",
                      "track": "stable"} for n in names]}


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"}}


def test_readings_per_replica_and_in_total() -> None:
    usage = {("ml", "a"): PodUsage(0.25, 512 * MiB), ("ml", "b"): PodUsage(1.0, 1 * GiB),
             ("other", "c"): PodUsage(9, 9 * GiB)}  # another namespace's pod of that name
    snapshots = {"a": parse_snapshot(gpu_exposition(("GPU-a", 0.4, 8 * GiB, 80 * GiB)), 1.0),
                 "b": parse_snapshot(gpu_exposition(("GPU-b", 0.8, 16 * GiB, 80 * GiB)), 1.0)}
    status = with_readings(_status("a", "b", "c"), [_pod("a"), _pod("b"), _pod("c")],
                           usage, snapshots, {})
    assert status["resources"] == {"cpu": "1250m", "memory": "1536Mi", "gpus": 2,
                                   "gpuUtilization": 60, "gpuMemoryUsed": "24576Mi",
                                   "gpuMemoryTotal": "163840Mi"}
    a, b, c = status["pods"]
    assert (a["cpu"], a["memory"], a["gpuUtilization"], a["gpuMemoryUsed"],
            a["gpuMemoryTotal"]) == ("250m", "512Mi", 40, "8192Mi", "81920Mi")
    assert (b["cpu"], b["gpuUtilization"]) == ("1000m", 80)
    assert "cpu" not in c and "gpuUtilization" not in c  # not measured, not scraped


def test_without_metrics_server_or_gpus_the_fields_are_absent() -> None:
    plain = parse_snapshot("", 1.0)
    status = with_readings(_status("a"), [_pod("a")], None, {"a": plain}, {})
    assert status["resources"] is None  # a merge patch removes an older figure
    assert set(status["pods"][0]) == {"name", "ready", "restarts", "phase", "track"}
    cpu_only = with_readings(_status("a"), [_pod("a")], {("ml", "a"): PodUsage(0.1, MiB)},
                             {}, {})
    assert cpu_only["resources"] == {"cpu": "100m", "memory": "1Mi"}


def test_replica_versions_come_from_its_own_scrape() -> None:
    from modelplane_runtime.metrics import Metrics

    metrics = Metrics()
    metrics.observe_versions("m", {3: "AVAILABLE", 10: "AVAILABLE"})
    snap = parse_snapshot(metrics.render().decode(), 1.0)
    status = with_readings(_status("a", "b"), [_pod("a"), _pod("b")], None, {"a": snap},
                           {"pods": [{"name": "b", "modelVersion": "2"}]})
    assert status["pods"][0]["modelVersion"] == "3,10"
    assert status["pods"][1]["modelVersion"] == "2"  # not scraped this round: as last seen


@pytest.mark.parametrize(("old", "new", "kept"), [
    ({"cpu": "3m"}, {"cpu": "12m"}, True),  # idle wobble, under 10m
    ({"cpu": "3m"}, {"cpu": "15m"}, False),
    ({"cpu": "1000m"}, {"cpu": "1090m"}, True),  # under a tenth
    ({"cpu": "1000m"}, {"cpu": "1200m"}, False),
    ({"memory": "512Mi"}, {"memory": "540Mi"}, True),  # under 32Mi
    ({"memory": "512Mi"}, {"memory": "550Mi"}, False),
    ({"memory": "4096Mi"}, {"memory": "4250Mi"}, True),  # under a twentieth
    ({"memory": "4096Mi"}, {"memory": "4400Mi"}, False),
    ({"gpuUtilization": 40}, {"gpuUtilization": 44}, True),
    ({"gpuUtilization": 40}, {"gpuUtilization": 50}, False),
    ({"gpus": 2}, {"gpus": 3}, False),
    ({"gpuMemoryTotal": "81920Mi"}, {"gpuMemoryTotal": "81921Mi"}, False),
])
def test_small_moves_keep_the_shown_figure(old: dict[str, Any], new: dict[str, Any],
                                           kept: bool) -> None:
    assert settle(old, dict(new)) == (old if kept else new)


def test_an_idle_model_is_not_rewritten_for_wobbling_usage() -> None:
    pods = [_pod("a"), _pod("b")]
    first = with_readings(_status("a", "b"), pods, {("ml", "a"): PodUsage(0.003, 300 * MiB),
                                                    ("ml", "b"): PodUsage(0.004, 301 * MiB)},
                          {}, {})
    live = copy.deepcopy(first)
    second = with_readings(_status("a", "b"), pods, {("ml", "a"): PodUsage(0.006, 305 * MiB),
                                                     ("ml", "b"): PodUsage(0.002, 299 * MiB)},
                           {}, live)
    assert status_patch(live, second) == {}
    busy = with_readings(_status("a", "b"), pods, {("ml", "a"): PodUsage(0.9, 900 * MiB),
                                                   ("ml", "b"): PodUsage(0.004, 301 * MiB)},
                         {}, live)
    patch = status_patch(live, busy)
    assert patch["resources"]["cpu"] == "904m"
    assert patch["pods"][0]["cpu"] == "900m"



def test_an_idle_hour_is_one_write() -> None:
    """360 rounds (an hour at the default 10 s) of two idle replicas wobbling by a few
    millicores and MiB, seeded: the first status is written, then nothing (without the
    steps: every round)."""
    rng = random.Random(13)
    pods = [_pod("a"), _pod("b")]
    live: dict[str, Any] = {}
    writes = 0
    for _ in range(360):
        readings = {("ml", n): PodUsage(rng.uniform(0.001, 0.008), rng.uniform(290, 310) * MiB)
                    for n in ("a", "b")}
        wanted = with_readings(_status("a", "b"), pods, readings, {}, live)
        if status_patch(live, wanted):
            writes += 1
            live = copy.deepcopy(wanted)
    assert writes == 1
