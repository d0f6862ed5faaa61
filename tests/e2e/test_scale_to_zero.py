"""Scale to zero and back through the Service, on a real cluster (see test_seed_mlp.py for
how the suite runs). What only a cluster shows: the runtime pods really go away (GPUs and
memory freed), and a request through the Service, held by the balancer, brings a pod back
through the scheduler, the image, the readiness probe and the EndpointSlice controller."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from modelplane_runtime.demo_model import demo_predict

from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "scale-to-zero.yaml"
IDLE_S = 30
ROWS = np.arange(8, dtype=np.float32).reshape(1, 8) / 10


@pytest.fixture(scope="module")
def on_demand(cluster: Cluster, modelplane_release: str, e2e_namespace: str,
              ) -> Iterator[tuple[str, str]]:
    """The scale-to-zero sample (idle after IDLE_S), Ready; (namespace, name)."""
    md: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    md["spec"]["autoscaling"]["idleSeconds"] = IDLE_S
    name = md["metadata"]["name"]
    cluster.kubectl("apply", "-n", e2e_namespace, "-f", "-", stdin=yaml.safe_dump(md))
    cluster.kubectl("wait", "--for=condition=Ready", f"md/{name}", "-n", e2e_namespace,
                    "--timeout=600s", timeout=630)
    yield e2e_namespace, name
    cluster.kubectl("delete", f"md/{name}", "-n", e2e_namespace, "--wait=true", timeout=180)


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.get(f"md/{name}", namespace).get("status") or {}
    return found


def _runtime_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cluster.get("pods", namespace)["items"]
    return [p for p in found
            if p["metadata"]["labels"].get("modelplane.io/deployment") == name]


def test_idle_model_goes_to_zero_and_a_request_brings_it_back(
        cluster: Cluster, on_demand: tuple[str, str]) -> None:
    namespace, name = on_demand
    eventually(lambda: (_status(cluster, namespace, name).get("scaling") or {}).get(
        "scaledToZeroAt"), timeout=IDLE_S + 120, interval=3, what="scaled to zero")
    eventually(lambda: not _runtime_pods(cluster, namespace, name), timeout=120, interval=3,
               what="the runtime pods gone")
    status = _status(cluster, namespace, name)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    assert status["ready"] == "0/0"

    with cluster.port_forward(namespace, f"svc/{name}", 8080) as port:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/{name}:predict",
                            json={"instances": ROWS.tolist()}, timeout=300)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.asarray(answer.json()["predictions"], np.float32),
                               demo_predict(ROWS), rtol=1e-5, atol=1e-6)
    cold = eventually(lambda: _status(cluster, namespace, name).get("lastColdStartSeconds"),
                      timeout=60, interval=2, what="status.lastColdStartSeconds")
    assert cold > 0
    assert _runtime_pods(cluster, namespace, name)
