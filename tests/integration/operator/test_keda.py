"""``autoscaling.engine: keda`` against the emulator: with KEDA's API served, and without.

The emulator serves ScaledObjects once a CRD for them is applied, as a cluster does after
KEDA is installed. The CRD here only makes the type served (its schema preserves every
field): the ScaledObjects' content is validated against KEDA's real schema in
tests/integration/ship/test_keda.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.kube import Kubectl
from tests.fixtures.polling import eventually
from tests.integration.operator.conftest import Cluster, OperatorProcess

KEDA_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh", "scope": "Namespaced",
        "names": {"kind": "ScaledObject", "listKind": "ScaledObjectList",
                  "plural": "scaledobjects", "singular": "scaledobject"},
        "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {
                          "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}
SPEC = {"model": {"uri": "demo://seed-mlp"},
        "autoscaling": {"engine": "keda", "minReplicas": 1, "maxReplicas": 3,
                        "targetInFlightPerReplica": 4}}


def model_deployment(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "seed-mlp", "namespace": namespace}, "spec": SPEC}


@pytest.fixture
def keda_installed(kubectl: Kubectl, modelplane_crd: Any) -> Iterator[None]:
    """KEDA's ScaledObject API served for the test (removed afterwards)."""
    kubectl.apply(KEDA_CRD)
    eventually(lambda: "scaledobjects" in kubectl("api-resources", "--api-group=keda.sh").stdout,
               what="scaledobjects served")
    yield
    kubectl("delete", "crd", "scaledobjects.keda.sh", "--wait=false")


def test_without_keda_the_model_says_so(
        operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster,
        kube_namespace: str) -> None:
    if "scaledobjects" in kubectl("api-resources", "--api-group=keda.sh").stdout:
        pytest.fail("KEDA's CRD is left from another test")
    kubectl.apply(model_deployment(kube_namespace))
    ready = eventually(lambda: (c := cluster.condition("seed-mlp")) and c["reason"]
                       == "ChildRejected" and c, timeout=30, what="ChildRejected")
    assert "autoscaling.engine keda needs KEDA installed" in ready["message"]
    assert ready["status"] == "False"
    assert cluster.get("deployment", "seed-mlp") is not None  # the rest was applied


def test_with_keda_a_scaled_object_reads_the_operators_load(
        keda_installed: None, start_operator: Callable[..., OperatorProcess],
        kubectl: Kubectl, cluster: Cluster, kube_namespace: str) -> None:
    operator = start_operator(kube_namespace,
                              MODELPLANE_OPERATOR_KEDA_LOAD_URL="http://operator.test:8081")
    kubectl.apply(model_deployment(kube_namespace))
    scaled = eventually(lambda: cluster.get("scaledobject", "seed-mlp"), what="ScaledObject")
    assert cluster.get("hpa", "seed-mlp") is None  # KEDA makes its own
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    (trigger,) = spec["triggers"]
    url = f"http://operator.test:8081/load/{kube_namespace}/seed-mlp/stable"
    assert trigger["metadata"] == {"url": url, "format": "json", "valueLocation": "inFlight",
                                   "targetValue": "4"}
    # The load KEDA would read (no replica is ready here: zeros), and 404 for no such model.
    answer = httpx.get(operator.url + url.removeprefix("http://operator.test:8081"))
    assert answer.status_code == 200 and answer.json() == {"inFlight": 0.0,
                                                           "requestsPerSecond": 0.0}
    assert httpx.get(f"{operator.url}/load/{kube_namespace}/nothing/stable").status_code == 404
    assert httpx.get(f"{operator.url}/load/{kube_namespace}/seed-mlp/other").status_code == 404
    # The ScaledObject is watched like any child: a hand edit is undone.
    kubectl("patch", "scaledobject", "seed-mlp", "-n", kube_namespace, "--type=merge", "-p",
            json.dumps({"spec": {"maxReplicaCount": 50}}))
    eventually(lambda: cluster.get("scaledobject", "seed-mlp")["spec"]["maxReplicaCount"]  # type: ignore[index]
               == 3, what="the ScaledObject restored")
