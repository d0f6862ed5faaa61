"""Live load in the status: two real runtime processes stand in for the pods' containers.

The emulator runs no kubelet, so the test plays its part: it registers two Pod objects with
the runtimes' loopback addresses as their IPs and marks them ready, and fakes the rollout by
patching the Deployment's ``/status``. The operator then scrapes the real runtimes'
``/metrics`` while the test sends them real predictions.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.kube import Kubectl
from tests.fixtures.polling import eventually
from tests.fixtures.ports import free_port
from tests.fixtures.processes import stop_process
from tests.integration.operator.conftest import Cluster, OperatorProcess

HOSTS = ("127.0.0.2", "127.0.0.3")
MODEL = "seed-mlp"


def common_free_port(hosts: tuple[str, ...]) -> int:
    """A port free on every host (the operator scrapes one port on every pod IP)."""
    def free_on_all() -> int | None:
        port = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            return None  # taken on another host: draw again
        return port

    return eventually(free_on_all, timeout=10, interval=0, what="a port free on every host")


@contextmanager
def runtime(model_dir: Path, host: str, port: int, log_path: Path) -> Iterator[str]:
    """``modelplane serve`` on one address; yields its base URL once it is ready."""
    argv = [sys.executable, "-m", "modelplane_runtime.cli", "serve", str(model_dir),
            "--name", MODEL, "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    url = f"http://{host}:{port}"
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"runtime exited: {log_path.read_text()}")
            try:
                return httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, timeout=150, interval=0.2, what=f"runtime on {url}")
        yield url
    finally:
        stop_process(process, deadline_s=60, logs=log_path.read_text, what=f"runtime on {url}")


class Load:
    """Predictions sent in a background thread until stopped (bounded, never endless)."""

    def __init__(self, urls: list[str], limit: int = 50_000) -> None:
        self.sent = 0
        self.failed = 0
        self._urls = urls
        self._limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"instances": [[1, 2, 3, 4, 5, 6, 7, 8]]}
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and self.sent < self._limit:
                url = self._urls[self.sent % len(self._urls)]
                response = client.post(f"{url}/v1/models/{MODEL}:predict", json=body)
                self.sent += 1
                self.failed += response.status_code != 200

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def register_ready_pods(kubectl: Kubectl, namespace: str, deployment: dict[str, Any]) -> None:
    """What the kubelet would report: two running, ready Pods with the runtimes' IPs."""
    template = deployment["spec"]["template"]
    for index, ip in enumerate(HOSTS):
        name = f"{MODEL}-7d9f8-{index}"
        kubectl.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": template["metadata"]["labels"]},
            "spec": {"containers": [{"name": "runtime", "image": "runtime"}],
                     "nodeName": f"node-{index}"},
        })
        status = {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "runtime", "ready": True, "started": True,
                                   "restartCount": 0, "image": "runtime", "imageID": "",
                                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
        }}
        kubectl("patch", "pod", name, "-n", namespace, "--subresource=status",
                "--type=merge", "-p", json.dumps(status))
    generation = deployment["metadata"]["generation"]
    rollout = {"status": {"observedGeneration": generation, "replicas": 2, "readyReplicas": 2,
                          "updatedReplicas": 2, "availableReplicas": 2}}
    kubectl("patch", "deployment", MODEL, "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(rollout))


def test_rps_and_p99_of_real_runtimes_reach_status_and_kubectl(
    start_operator: Any, kubectl: Kubectl, cluster: Cluster, kube_namespace: str,
    demo_model_dir: Path, tmp_path: Path,
) -> None:
    port = common_free_port(HOSTS)
    with ExitStack() as stack:
        urls = [stack.enter_context(runtime(demo_model_dir, host, port, tmp_path / f"{host}.log"))
                for host in HOSTS]
        operator: OperatorProcess = start_operator(
            kube_namespace, MODELPLANE_OPERATOR_SCRAPE_PORT=str(port))
        kubectl.apply({"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
                       "metadata": {"name": MODEL, "namespace": kube_namespace},
                       "spec": {"model": {"uri": "demo://seed-mlp"}, "replicas": 2}})
        deployment = eventually(lambda: cluster.get("deployment", MODEL), what="Deployment")
        register_ready_pods(kubectl, kube_namespace, deployment)

        ready = eventually(lambda: (c := cluster.condition(MODEL)) and c["status"] == "True"
                           and c, what="Ready=True")
        assert ready["reason"] == "AllReplicasReady"
        md = cluster.get("md", MODEL)
        assert md is not None
        assert md["status"]["ready"] == "2/2"
        assert [(p["name"], p["ready"]) for p in md["status"]["pods"]] == [
            (f"{MODEL}-7d9f8-0", True), (f"{MODEL}-7d9f8-1", True)]
        ready_event = eventually(lambda: [e for e in cluster.events(MODEL)
                                          if e["reason"] == "Ready"], what="a Ready Event")
        assert ready_event[0]["type"] == "Normal"

        with Load(urls) as load:
            def busy() -> dict[str, Any] | None:
                status = (cluster.get("md", MODEL) or {}).get("status", {}).get("load") or {}
                return status if status.get("requestsPerSecond", 0) > 0 and status.get(
                    "latencyP99Ms", 0) > 0 else None

            seen = eventually(busy, timeout=60, interval=0.3, what="RPS and P99 in status")
            table = kubectl("get", "md", MODEL, "-n", kube_namespace).stdout.splitlines()
        assert load.sent > 0
        assert load.failed == 0
        assert seen["errorRate"] == 0
        assert 0 < seen["latencyP50Ms"] <= seen["latencyP99Ms"]
        assert seen["inFlight"] >= 0
        assert seen["updatedAt"].endswith("Z")
        version = (cluster.get("md", MODEL) or {}).get("status", {}).get("modelVersion")
        assert version == "1"  # the demo repository's only version, as the runtimes report
        columns = table[0].split()
        row = table[1].split()
        rps = float(row[columns.index("RPS")])
        p99 = float(row[columns.index("P99")])
        assert rps > 0
        assert p99 > 0

        # Once the load stops, the rate over the next windows falls to zero.
        eventually(lambda: ((cluster.get("md", MODEL) or {}).get("status", {}).get("load") or {}
                            ).get("requestsPerSecond") == 0, timeout=30, what="RPS back to 0")
        assert operator.metric("modelplane_operator_scrapes_total", result="ok") >= 4
        print(f"load: {load.sent} requests; status.load at first sight: {seen}; row: {row}")


@pytest.fixture(autouse=True)
def _loopback_aliases() -> None:
    """127.0.0.2 and .3 must be bindable (Linux routes all of 127/8 to loopback)."""
    for host in HOSTS:
        with socket.socket() as probe:
            try:
                probe.bind((host, 0))
            except OSError as exc:  # pragma: no cover - depends on the OS
                pytest.fail(f"cannot bind {host}: {exc}")
