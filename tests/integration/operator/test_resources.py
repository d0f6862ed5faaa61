"""CPU, memory and GPUs per replica in status and in `kubectl get md -o wide` (issue 13).

Two parts play components this machine cannot run:
- metrics-server: the test records each pod's usage in the emulator's metrics.k8s.io
  (tests/fixtures/apiserver/resource_metrics.py), as metrics-server would have measured
  it from the kubelets, and switches that API off or breaks it;
- a GPU: this machine has none, so each replica's /metrics is a stand-in on the pod's
  address serving what a GPU runtime's exposition holds, made by the runtime's own code:
  its `Metrics` (requests, version states) and its GPU families (`gpus.gpu_families`) over
  readings the test sets where NVML would have given them.
As in test_live_load.py, the test plays the kubelet: it registers ready Pods with those
addresses and fakes the rollout through the Deployment's /status.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from modelplane_runtime.gpus import GpuReading, gpu_families
from modelplane_runtime.metrics import Metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tests.fixtures.faults import FaultProxy, Rule
from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.integration.operator.conftest import Cluster, OperatorProcess
from tests.integration.operator.test_live_load import (
    HOSTS,
    MODEL,
    common_free_port,
    register_ready_pods,
)

GiB = 2**30
PODS = [f"{MODEL}-7d9f8-{i}" for i in range(len(HOSTS))]


class GpuReplica:
    """A replica's /metrics as a GPU runtime serves it; GPU readings set by the test."""

    def __init__(self, host: str, port: int, uuid: str) -> None:
        self.registry = CollectorRegistry()
        metrics = Metrics(self.registry)
        metrics.observe_versions(MODEL, {1: "AVAILABLE"})
        self.readings: list[GpuReading] = []
        self.uuid = uuid
        replica = self

        class Nvml(Collector):
            """The runtime's GPU families (gpus.py) over the readings the test sets."""

            def collect(self) -> Iterator[Metric]:
                yield from gpu_families(replica.readings)

        self.registry.register(Nvml())
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(registry)
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def gpu(self, utilization: float, used: int, total: int = 80 * GiB) -> None:
        self.readings = [GpuReading(gpu=0, uuid=self.uuid, name="NVIDIA H200",
                                    utilization=utilization, memory_used=used,
                                    memory_total=total, power_watts=310.0,
                                    temperature_celsius=51.0)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def gpu_replicas(port: int) -> Iterator[list[GpuReplica]]:
    with ExitStack() as stack:
        replicas = []
        for index, host in enumerate(HOSTS):
            replica = GpuReplica(host, port, f"GPU-{index}")
            replica.thread.start()
            stack.callback(replica.close)
            replicas.append(replica)
        yield replicas


def model(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": MODEL, "namespace": namespace},
            "spec": {"model": {"uri": "demo://seed-mlp"}, "replicas": 2,
                     "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1}}}


def measure(kube_api: KubeApi, namespace: str, usage: list[tuple[float, int]]) -> None:
    """What metrics-server would report for the two pods' runtime containers."""
    for pod, (cores, size) in zip(PODS, usage, strict=True):
        kube_api.call(lambda api, pod=pod, cores=cores, size=size:
                      api.resource_metrics.record(namespace, pod, {"runtime": (cores, size)}))


def resources(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = ((cluster.get("md", MODEL) or {}).get("status") or {}).get(
        "resources") or {}
    return found


def wide_row(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    """The row of `kubectl get md -o wide`, by column (cells may be empty: fixed widths)."""
    header, row = kubectl("get", "md", MODEL, "-n", namespace, "-o", "wide").stdout.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def metrics_api_requests(kube_api: KubeApi) -> tuple[int, int]:
    """Requests to the resource metrics API: all, and the LISTs, counted at one instant (the
    operator goes on scraping: two separate reads could each see a different count)."""
    def counts(api: Any) -> tuple[int, int]:
        return (api.metrics.count(group="metrics.k8s.io"),
                api.metrics.count(group="metrics.k8s.io", verb="LIST"))
    found: tuple[int, int] = kube_api.call(counts)
    return found


def test_cpu_memory_and_gpus_reach_status_and_kubectl_wide(
    start_operator: Any, kube_api: KubeApi, kubectl: Kubectl, cluster: Cluster,
    kube_namespace: str,
) -> None:
    port = common_free_port(HOSTS)
    before = metrics_api_requests(kube_api)
    with gpu_replicas(port) as replicas:
        replicas[0].gpu(0.30, 10 * GiB)
        replicas[1].gpu(0.90, 30 * GiB)
        operator: OperatorProcess = start_operator(
            kube_namespace, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
        kubectl.apply(model(kube_namespace))
        deployment = eventually(lambda: cluster.get("deployment", MODEL), what="Deployment")
        register_ready_pods(kubectl, kube_namespace, deployment)
        measure(kube_api, kube_namespace, [(0.25, 512 * 2**20), (1.25, int(1.5 * GiB))])

        expected = {"cpu": "1500m", "memory": "2048Mi", "gpus": 2, "gpuUtilization": 60,
                    "gpuMemoryUsed": "40960Mi", "gpuMemoryTotal": "163840Mi"}
        eventually(lambda: resources(cluster) == expected, timeout=30,
                   what=f"status.resources == {expected}")
        pods = {p["name"]: p for p in cluster.get("md", MODEL)["status"]["pods"]}  # type: ignore[index]
        assert {k: pods[PODS[0]][k] for k in ("cpu", "memory", "gpuUtilization",
                                              "gpuMemoryUsed", "gpuMemoryTotal")} == {
            "cpu": "250m", "memory": "512Mi", "gpuUtilization": 30,
            "gpuMemoryUsed": "10240Mi", "gpuMemoryTotal": "81920Mi"}
        assert (pods[PODS[1]]["cpu"], pods[PODS[1]]["gpuUtilization"]) == ("1250m", 90)
        assert pods[PODS[0]]["modelVersion"] == "1"

        row = wide_row(kubectl, kube_namespace)
        assert (row["CPU"], row["MEMORY"], row["GPU%"]) == ("1500m", "2048Mi", "60")
        plain = kubectl("get", "md", MODEL, "-n", kube_namespace).stdout.splitlines()[0]
        assert "CPU" not in plain.split() and "GPU%" not in plain.split()

        # The replicas get busy: the figures follow.
        replicas[0].gpu(1.0, 70 * GiB)
        measure(kube_api, kube_namespace, [(1.9, 3 * GiB), (1.25, int(1.5 * GiB))])
        eventually(lambda: wide_row(kubectl, kube_namespace).get("GPU%") == "95"
                   and resources(cluster).get("cpu") == "3150m", timeout=30,
                   what="busier figures")
        assert resources(cluster)["memory"] == "4608Mi"
        print(kubectl("get", "md", "-n", kube_namespace, "-o", "wide").stdout)

    # Only `list` was asked of the resource metrics API (the one verb RBAC grants).
    after = metrics_api_requests(kube_api)
    asked = after[0] - before[0]
    assert asked > 0
    assert after[1] - before[1] == asked
    # No exception anywhere (API conflicts under load are the reporter's to retry).
    assert operator.metric("modelplane_operator_errors_total", kind="unexpected") == 0
    assert "Traceback" not in operator.logs()


def test_without_metrics_server_nothing_breaks_and_the_fields_are_absent(
    start_operator: Any, kube_api: KubeApi, kubectl: Kubectl, cluster: Cluster,
    kube_namespace: str,
) -> None:
    port = common_free_port(HOSTS)
    kube_api.call(lambda api: api.resource_metrics.set_state("absent"))
    with gpu_replicas(port) as replicas:
        for replica in replicas:
            replica.gpu(0.5, 8 * GiB)
        operator: OperatorProcess = start_operator(
            kube_namespace, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
        kubectl.apply(model(kube_namespace))
        deployment = eventually(lambda: cluster.get("deployment", MODEL), what="Deployment")
        register_ready_pods(kubectl, kube_namespace, deployment)
        eventually(lambda: (c := cluster.condition(MODEL)) and c["status"] == "True",
                   what="Ready=True")
        # GPUs still come from the replicas; CPU and memory are simply not there.
        eventually(lambda: resources(cluster).get("gpuUtilization") == 50, what="GPU%")
        assert "cpu" not in resources(cluster) and "memory" not in resources(cluster)
        assert all("cpu" not in p for p in cluster.get("md", MODEL)["status"]["pods"])  # type: ignore[index]
        row = wide_row(kubectl, kube_namespace)
        assert (row["CPU"], row["MEMORY"], row["GPU%"]) == ("", "", "50")  # empty cells

        # metrics-server gets installed: the figures appear without a restart.
        kube_api.call(lambda api: api.resource_metrics.set_state("available"))
        measure(kube_api, kube_namespace, [(0.5, GiB), (0.5, GiB)])
        eventually(lambda: resources(cluster).get("cpu") == "1000m", timeout=30,
                   what="CPU once metrics-server answers")

        # It breaks (503): after a few rounds the figures go rather than grow stale.
        kube_api.call(lambda api: api.resource_metrics.set_state("unavailable"))
        eventually(lambda: "cpu" not in resources(cluster), timeout=30,
                   what="CPU gone while metrics-server does not answer")
        assert resources(cluster).get("gpuUtilization") == 50

    logs = operator.logs()
    assert logs.count("is not served, so no metrics-server") == 1  # said once, not per round
    assert logs.count("does not answer") == 1
    assert "Traceback" not in logs
    assert operator.metric("modelplane_operator_errors_total", kind="unexpected") == 0
    assert kubectl("get", "md", MODEL, "-n", kube_namespace).returncode == 0


def test_a_forbidden_or_hanging_metrics_api_only_drops_the_figures(
    start_operator: Any, fault_proxy: FaultProxy, kube_api: KubeApi, kubectl: Kubectl,
    cluster: Cluster, kube_namespace: str,
) -> None:
    """A role without `list` on pods.metrics.k8s.io (RBAC answers 403), then an adapter
    that hangs: the operator keeps serving every other status field, says why once each,
    and shows CPU as soon as it can read it."""
    port = common_free_port(HOSTS)
    fault_proxy.add(Rule("status", status=403, path="^/apis/metrics.k8s.io/", times=None,
                         message='pods.metrics.k8s.io is forbidden: User "system:'
                         'serviceaccount:modelplane-system:modelplane" cannot list resource '
                         '"pods" in API group "metrics.k8s.io" in the namespace '
                         f'"{kube_namespace}"'))
    with gpu_replicas(port) as replicas:
        for replica in replicas:
            replica.gpu(0.2, 4 * GiB)
        operator: OperatorProcess = start_operator(
            kube_namespace, through=fault_proxy, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
        kubectl.apply(model(kube_namespace))
        deployment = eventually(lambda: cluster.get("deployment", MODEL), what="Deployment")
        register_ready_pods(kubectl, kube_namespace, deployment)
        measure(kube_api, kube_namespace, [(0.5, GiB), (0.5, GiB)])
        eventually(lambda: (c := cluster.condition(MODEL)) and c["status"] == "True",
                   what="Ready=True")
        eventually(lambda: resources(cluster).get("gpuUtilization") == 20, what="GPU%")
        eventually(lambda: len(fault_proxy.entries(path="metrics.k8s.io")) >= 3,
                   what="three rounds refused")
        assert "cpu" not in resources(cluster)

        # The role is fixed; then the API hangs past the operator's 5 s timeout.
        fault_proxy.quiet()
        eventually(lambda: resources(cluster).get("cpu") == "1000m", timeout=30,
                   what="CPU once allowed")
        fault_proxy.add(Rule("delay", path="^/apis/metrics.k8s.io/", delay_s=30, times=None))
        eventually(lambda: "cpu" not in resources(cluster), timeout=60,
                   what="CPU gone while the API hangs")
        # The status rounds (every 1 s here) go on, not held by the hanging API.
        rounds = operator.metric("modelplane_operator_status_rounds_total")
        eventually(lambda: operator.metric("modelplane_operator_status_rounds_total")
                   >= rounds + 3, timeout=10, what="three more status rounds")
        replicas[0].gpu(0.6, 4 * GiB)
        eventually(lambda: resources(cluster).get("gpuUtilization") == 40, timeout=10,
                   what="GPU figures still follow")
        health = httpx.get(operator.url + "/healthz", timeout=5)
        assert health.status_code == 200, health.text
        fault_proxy.quiet()

    logs = operator.logs()
    assert logs.count("may not list pods.metrics.k8s.io") == 1
    assert logs.count("did not answer within 5s") == 1
    assert "Traceback" not in logs


@pytest.fixture(autouse=True)
def _loopback_aliases() -> None:
    """127.0.0.2 and .3 must be bindable (Linux routes all of 127/8 to loopback)."""
    import socket

    for host in HOSTS:
        with socket.socket() as probe:
            probe.bind((host, 0))
