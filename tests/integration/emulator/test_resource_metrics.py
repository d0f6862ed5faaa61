"""The emulator's metrics.k8s.io (tests/fixtures/apiserver/resource_metrics.py), checked the
way users read it: real `kubectl top pod` and `kubectl get podmetrics`, and plain HTTP.

The tests record usage as metrics-server would have measured it; the emulator must then
answer as metrics-server does: only existing, measured pods, their labels, selectors,
read-only verbs, canonical quantities, and the absent and unavailable API.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.apiserver.resource_metrics import cpu_quantity, memory_quantity
from tests.fixtures.kube import KubeApi, Kubectl

PODS = "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1"},
                                    {"name": "side", "image": "busybox:1"}]}}


def record(kube_api: KubeApi, namespace: str, name: str,
           usage: dict[str, tuple[float, int]]) -> None:
    kube_api.call(lambda api: api.resource_metrics.record(namespace, name, usage))


@pytest.fixture
def measured(kube_api: KubeApi, kubectl: Kubectl, kube_namespace: str) -> str:
    """Three pods, two of them measured, in the test's namespace."""
    kubectl.apply([pod("web-1", {"app": "web"}), pod("web-2", {"app": "web"}),
                   pod("db-1", {"app": "db"})], "-n", kube_namespace)
    record(kube_api, kube_namespace, "web-1", {"main": (0.25, 50 * 2**20),
                                               "side": (0.005166013, 51740 * 1024)})
    record(kube_api, kube_namespace, "db-1", {"main": (1.5, 2 * 2**30), "side": (0, 4096)})
    record(kube_api, kube_namespace, "gone-1", {"main": (1, 1)})  # no such pod
    return kube_namespace


def test_quantities_are_canonical_as_metrics_server_writes_them() -> None:
    assert [cpu_quantity(c) for c in (0.25, 0.005166013, 1.5, 2, 0, 1e-9)] == [
        "250m", "5166013n", "1500m", "2", "0", "1n"]
    assert [memory_quantity(b) for b in (50 * 2**20, 51740 * 1024, 2 * 2**30, 1000, 0)] == [
        "50Mi", "51740Ki", "2Gi", "1000", "0"]


def test_list_serves_measured_existing_pods_with_their_labels(
    http: httpx.Client, measured: str
) -> None:
    body = http.get(PODS.format(ns=measured)).json()
    assert body["kind"] == "PodMetricsList"
    assert body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert [i["metadata"]["name"] for i in body["items"]] == ["db-1", "web-1"]
    web = body["items"][1]
    assert web["metadata"]["labels"] == {"app": "web"}
    assert "resourceVersion" not in web["metadata"]
    assert web["metadata"]["creationTimestamp"].endswith("Z")
    assert web["window"] == "15s" and web["timestamp"].endswith("Z")
    assert web["containers"] == [
        {"name": "main", "usage": {"cpu": "250m", "memory": "50Mi"}},
        {"name": "side", "usage": {"cpu": "5166013n", "memory": "51740Ki"}}]
    selected = http.get(PODS.format(ns=measured), params={"labelSelector": "app=web"}).json()
    assert [i["metadata"]["name"] for i in selected["items"]] == ["web-1"]
    everywhere = http.get("/apis/metrics.k8s.io/v1beta1/pods",
                          params={"labelSelector": "app in (web,db)"}).json()
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]} \
        >= {(measured, "web-1"), (measured, "db-1")}


def test_get_tells_a_missing_pod_from_an_unmeasured_one(
    http: httpx.Client, measured: str
) -> None:
    base = PODS.format(ns=measured)
    assert http.get(f"{base}/web-1").json()["metadata"]["name"] == "web-1"
    unmeasured = http.get(f"{base}/web-2")
    assert unmeasured.status_code == 404
    assert unmeasured.json()["message"] == \
        f'podmetrics.metrics.k8s.io "{measured}/web-2" not found'
    missing = http.get(f"{base}/gone-1")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'pods "gone-1" not found'


@pytest.mark.parametrize(("method", "path", "params"), [
    ("POST", "", {}), ("DELETE", "/web-1", {}), ("PATCH", "/web-1", {}),
    ("PUT", "/web-1", {}), ("GET", "", {"watch": "true"}),
])
def test_the_api_is_read_only(http: httpx.Client, measured: str, method: str, path: str,
                              params: dict[str, str]) -> None:
    answer = http.request(method, PODS.format(ns=measured) + path, params=params,
                          json={"metadata": {"name": "web-1"}})
    assert answer.status_code == 405, answer.text
    assert answer.json()["reason"] == "MethodNotAllowed"


def test_kubectl_top_and_get_read_it(kubectl: Kubectl, measured: str) -> None:
    top = kubectl("top", "pod", "-n", measured, "--containers").stdout.splitlines()
    rows = [line.split() for line in top[1:]]
    assert ["web-1", "main", "250m", "50Mi"] in rows
    assert ["web-1", "side", "6m", "50Mi"] in rows  # kubectl rounds 5166013n up, to 6m
    assert ["db-1", "main", "1500m", "2048Mi"] in rows
    assert not [r for r in rows if r[0] == "web-2"]
    top = kubectl("top", "pod", "-n", measured, "-l", "app=db").stdout.splitlines()
    assert [line.split()[0] for line in top[1:]] == ["db-1"]
    table = kubectl("get", "podmetrics", "-n", measured).stdout.splitlines()
    assert table[0].split() == ["NAME", "CPU", "MEMORY", "WINDOW"]
    assert table[1].split() == ["db-1", "1500m", "2097156Ki", "15s"]


def test_absent_metrics_server(kube_api: KubeApi, http: httpx.Client, kubectl: Kubectl,
                               measured: str) -> None:
    kube_api.call(lambda api: api.resource_metrics.set_state("absent"))
    groups = [g["name"] for g in http.get("/apis").json()["groups"]]
    assert "metrics.k8s.io" not in groups
    assert http.get("/apis/metrics.k8s.io/v1beta1").status_code == 404
    assert http.get(PODS.format(ns=measured)).status_code == 404
    top = kubectl("top", "pod", "-n", measured, check=False)
    assert top.returncode != 0
    assert "Metrics API not available" in top.stderr
    # Other resources are unaffected.
    assert kubectl("get", "pods", "-n", measured, "-o", "name").stdout.split() == [
        "pod/db-1", "pod/web-1", "pod/web-2"]


def test_unavailable_metrics_server(kube_api: KubeApi, http: httpx.Client, kubectl: Kubectl,
                                    measured: str) -> None:
    kube_api.call(lambda api: api.resource_metrics.set_state("unavailable"))
    assert "metrics.k8s.io" in [g["name"] for g in http.get("/apis").json()["groups"]]
    discovery = http.get("/apis/metrics.k8s.io/v1beta1")
    assert discovery.status_code == 503
    answer = http.get(PODS.format(ns=measured))
    assert answer.status_code == 503
    assert answer.json()["reason"] == "ServiceUnavailable"
    # kubectl warns about the group it cannot discover, and carries on with the others.
    pods = kubectl("get", "pods", "-n", measured, "-o", "name")
    assert pods.stdout.split() == ["pod/db-1", "pod/web-1", "pod/web-2"]
    assert kubectl("top", "pod", "-n", measured, check=False).returncode != 0


def test_each_test_starts_with_an_installed_empty_metrics_server(
    kube_api: KubeApi, http: httpx.Client, kube_namespace: str
) -> None:
    state = kube_api.call(lambda api: api.resource_metrics.state)
    assert state == "available"
    assert http.get(PODS.format(ns=kube_namespace)).json()["items"] == []
