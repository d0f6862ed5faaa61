"""Discovery against the Kubernetes API emulator: the balancer watches EndpointSlices and
the ModelDeployment and follows them without a restart.

There is no EndpointSlice controller or kubelet here, so the test plays their part through
the real API: it writes the slices of ``<name>-replicas`` and ``<name>-canary-replicas``
that the controller would write for runtime pods, pointing at simulated replicas on
loopback addresses, and marks endpoints ready or not as a kubelet's probes would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.integration.balancer.conftest import (
    BalancerProcess,
    SimReplicas,
    launch_balancer,
    launch_replicas,
)

pytestmark = pytest.mark.usefixtures("modelplane_crd")
MODEL = "disco"


def _slice(namespace: str, service: str, port: int, endpoints: list[tuple[str, bool]],
           suffix: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-{suffix}", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready},
                       "targetRef": {"kind": "Pod", "name": f"pod-{address}"}}
                      for address, ready in endpoints],
    }


def _model_deployment(namespace: str, strategy: str, canary_percent: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"uri": "demo://seed-mlp"}, "replicas": 2,
                            "routing": {"strategy": strategy}}
    if canary_percent is not None:
        spec["canary"] = {"model": {"uri": "demo://seed-mlp"}, "trafficPercent": canary_percent}
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": MODEL, "namespace": namespace}, "spec": spec}


@pytest.fixture
def sims(balancer_log_dir: Path) -> Iterator[list[SimReplicas]]:
    """One instant replica on each of 127.0.0.2, .3 and .4, all on one port (as pods are)."""
    with launch_replicas(balancer_log_dir, ["0:0:64:a"], host="127.0.0.2") as first:
        port = first.ports[0]
        with launch_replicas(balancer_log_dir, [f"{port}:0:64:b"], host="127.0.0.3") as second, \
                launch_replicas(balancer_log_dir, [f"{port}:0:64:canary"],
                                host="127.0.0.4") as third:
            yield [first, second, third]


def _count(process: BalancerProcess, n: int) -> Counter[str]:
    with process.client() as client:
        answers = [client.get("/echo") for _ in range(n)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers][:3]
    return Counter(a.json()["replica"] for a in answers)


def test_follows_slices_and_the_model_deployment_live(
        kube_api: KubeApi, kubectl: Kubectl, kube_namespace: str, sims: list[SimReplicas],
        balancer_log_dir: Path) -> None:
    port = sims[0].ports[0]
    ns = kube_namespace
    kubectl.apply(_model_deployment(ns, "round-robin", None))
    kubectl.apply(_slice(ns, f"{MODEL}-replicas", port, [("127.0.0.2", True),
                                                         ("127.0.0.3", False)]))
    args = ["--model", MODEL, "--namespace", ns, "--strategy", "least-request"]
    with launch_balancer(balancer_log_dir, args, env=kube_api.env()) as process:
        # Only the ready endpoint takes requests.
        eventually(lambda: process.client().get("/readyz").status_code == 200, timeout=30)
        eventually(lambda: "round-robin" in process.metrics(), timeout=30,
                   what="the ModelDeployment's strategy applied")
        assert _count(process, 20) == Counter({"a": 20})

        # The kubelet marks the second pod ready: round-robin spreads evenly.
        kubectl.apply(_slice(ns, f"{MODEL}-replicas", port, [("127.0.0.2", True),
                                                             ("127.0.0.3", True)]))
        eventually(lambda: _count(process, 10).keys() == {"a", "b"}, timeout=30)
        assert _count(process, 40) == Counter({"a": 20, "b": 20})

        # A canary appears with 25 % of the traffic: exact per hundred requests.
        kubectl.apply(_slice(ns, f"{MODEL}-canary-replicas", port, [("127.0.0.4", True)]))
        kubectl.apply(_model_deployment(ns, "round-robin", 25))
        eventually(lambda: 'modelplane_balancer_canary_percent{model="disco"} 25'
                   in process.metrics(), timeout=30, what="the canary share applied")
        counts = _count(process, 400)
        assert counts["canary"] == 100, counts
        assert abs(counts["a"] - counts["b"]) <= 1, counts

        # Strategy change without a restart.
        kubectl.apply(_model_deployment(ns, "least-request", 0))
        eventually(lambda: 'strategy="least-request"' in process.metrics(), timeout=30)
        assert "canary" not in _count(process, 40)

        # A pod terminates: its endpoint goes not ready and then away; no request fails.
        kubectl.apply(_slice(ns, f"{MODEL}-replicas", port, [("127.0.0.2", False),
                                                             ("127.0.0.3", True)]))
        eventually(lambda: set(_count(process, 10)) == {"b"}, timeout=30)
        kubectl("delete", "endpointslice", f"{MODEL}-replicas-a", "-n", ns)
        # No stable replica: stable requests fall over to the canary track.
        eventually(lambda: set(_count(process, 10)) == {"canary"}, timeout=30)
        started = [e for e in process.events() if e.get("event") == "ready"]
        assert len(started) == 1  # one process all along
    assert not kube_api.internal_errors()


def test_without_credentials_it_exits_2_with_a_reason(balancer_log_dir: Path,
                                                      tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "modelplane_balancer", "--model", "x",
                           "--port", "0"], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert "--backends" in done.stderr and "credentials" in done.stderr
