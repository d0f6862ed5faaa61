"""The stand-in cluster of the benchmark: the emulated API server, the operator, a balancer,
and the kubelet's part played through the API (as the tests do: tests/integration/operator).

``Kubelet`` follows the runtime Deployment's ``spec.replicas``: 0 -> 1 starts a real
``modelplane serve`` (pinned to the server core) and, once it answers ready, writes the Pod,
the rollout status and the EndpointSlice of ``<name>-replicas``; 1 -> 0 empties the slice
and stops the process. It records each start: when it saw 0 -> 1, and when the runtime was
ready, so the runtime's own start-to-ready is measured in the same run as the first
request's wait.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.operator.process import Proc, start

NAME = "seed-mlp"
NS = "default"
HOST = "127.0.0.2"
SERVER_CORE = "0"
"""Operator, balancer and runtime share core 0; the load generator runs on core 1."""


def pinned(argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c SERVER_CORE``."""
    return ["taskset", "-c", SERVER_CORE, *argv]


def free_port(host: str) -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_runtime(model_dir: Path, port: int, log: Path) -> tuple[Proc, float]:
    """``modelplane serve`` on HOST:port; returns it and its start-to-ready seconds."""
    started = time.monotonic()
    proc = start(pinned([sys.executable, "-m", "modelplane_runtime.cli", "serve",
                         str(model_dir), "--name", NAME, "--host", HOST, "--port", str(port)]),
                 log)
    url = f"http://{HOST}:{port}/v2/health/ready"
    while True:
        if not proc.alive():
            raise RuntimeError(f"the runtime exited:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)


class Kubelet:
    """Plays the kubelet and the controllers for the stable runtime Deployment."""

    def __init__(self, api: str, model_dir: Path, workdir: Path) -> None:
        self.http = httpx.Client(base_url=api, timeout=10)
        self.model_dir = model_dir
        self.workdir = workdir
        self.port = free_port(HOST)
        self.runtime: Proc | None = None
        self.starts: list[tuple[float, float]] = []
        """(0 -> 1 seen, runtime ready), monotonic seconds."""
        self.paused = threading.Event()
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _merge(self, path: str, body: dict[str, Any]) -> None:
        answer = self.http.patch(path, json=body,
                                 headers={"Content-Type": "application/merge-patch+json"})
        answer.raise_for_status()

    def _put(self, path: str, body: dict[str, Any]) -> None:
        if self.http.post(path.rsplit("/", 1)[0], json=body).status_code == 409:
            self._merge(path, body)

    def _deployment(self) -> dict[str, Any] | None:
        answer = self.http.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}")
        return answer.json() if answer.status_code == 200 else None

    def _slice(self, ready: bool) -> None:
        endpoints = [{"addresses": [HOST], "conditions": {"ready": True},
                      "targetRef": {"kind": "Pod", "name": f"{NAME}-0"}}] if ready else []
        self._put(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices/{NAME}-replicas-a", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{NAME}-replicas-a", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": f"{NAME}-replicas"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": self.port}],
            "endpoints": endpoints})

    def _rollout(self, deployment: dict[str, Any], ready: int) -> None:
        self._merge(f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}/status", {"status": {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": ready,
            "readyReplicas": ready, "updatedReplicas": ready, "availableReplicas": ready}})

    def _up(self, deployment: dict[str, Any]) -> None:
        seen = time.monotonic()
        self.runtime, _ = start_runtime(self.model_dir, self.port,
                                        self.workdir / f"runtime-{len(self.starts)}.log")
        self.starts.append((seen, time.monotonic()))
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        self._put(f"/api/v1/namespaces/{NS}/pods/{NAME}-0", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{NAME}-0", "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "runtime", "image": "stand-in"}]}})
        self._merge(f"/api/v1/namespaces/{NS}/pods/{NAME}-0/status", {"status": {
            "phase": "Running", "podIP": HOST,
            "conditions": [{"type": "Ready", "status": "True"}]}})
        self._rollout(deployment, 1)
        self._slice(True)

    def _down(self, deployment: dict[str, Any]) -> None:
        self._slice(False)
        self.http.delete(f"/api/v1/namespaces/{NS}/pods/{NAME}-0")
        self._rollout(deployment, 0)
        assert self.runtime is not None
        self.runtime.stop(grace_s=60)
        self.runtime = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.02):
                deployment = self._deployment()
                if deployment is None or self.paused.is_set():
                    continue
                replicas = deployment["spec"].get("replicas", 1)
                if replicas and self.runtime is None:
                    self._up(deployment)
                elif replicas == 0 and self.runtime is not None:
                    self._down(deployment)
        except BaseException as exc:
            self.failure = exc

    def start(self) -> Kubelet:
        """Follow the Deployment in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following; stop the runtime."""
        self._stop.set()
        self._thread.join(timeout=60)
        if self.runtime is not None:
            self.runtime.stop(grace_s=60)
