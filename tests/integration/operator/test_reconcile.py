"""The real operator process, driven by real kubectl against the emulated API server."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import kmock
import yaml

from tests.fixtures.kube import KubeApi, Kubectl
from tests.fixtures.polling import eventually
from tests.integration.operator.conftest import TEST_IMAGE, Cluster, OperatorProcess

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
CHILD_KINDS = ("deployments", "services", "poddisruptionbudgets", "horizontalpodautoscalers")


def sample(name: str, namespace: str) -> dict[str, Any]:
    md: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    md["metadata"]["namespace"] = namespace
    return md


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def has_status(cluster: Cluster, name: str) -> bool:
    """Whether the operator has written a status with a URL."""
    return bool((cluster.get("md", name) or {}).get("status", {}).get("url"))


def none_left(cluster: Cluster, kind: str) -> bool:
    """Whether the namespace holds no object of that kind."""
    return not cluster.items(kind)


def versions(cluster: Cluster) -> dict[str, str]:
    """resourceVersion of the ModelDeployments and every child in the namespace."""
    out = {}
    for kind in ("modeldeployments", *CHILD_KINDS):
        for obj in cluster.items(kind):
            out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return out


def test_sample_gets_children_status_and_columns(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    kubectl.apply(sample("seed-mlp", kube_namespace))
    md = eventually(lambda: (cluster.get("md", "seed-mlp") or {}).get("status", {}).get("url")
                    and cluster.get("md", "seed-mlp"), what="status.url")
    deployment = eventually(lambda: cluster.get("deployment", "seed-mlp"), what="Deployment")
    service = eventually(lambda: cluster.get("service", "seed-mlp"), what="Service")
    budget = eventually(lambda: cluster.get("pdb", "seed-mlp"), what="PodDisruptionBudget")

    uid = md["metadata"]["uid"]
    for child in (deployment, service, budget):
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "name": "seed-mlp", "uid": uid, "controller": True, "blockOwnerDeletion": True}]
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
            "modelplane-operator")
    assert container(deployment)["image"] == TEST_IMAGE  # the operator's setting
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container(deployment)["resources"]["limits"]["memory"] == "1Gi"
    assert service["spec"]["ports"][0]["name"] == "http"
    assert cluster.items("horizontalpodautoscalers") == []  # no autoscaling in this sample

    status = md["status"]
    assert status["url"] == f"http://seed-mlp.{kube_namespace}.svc.cluster.local:" + str(
        service["spec"]["ports"][0]["port"])
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert status["ready"] == "0/1"
    assert status["selector"] == "modelplane.io/deployment=seed-mlp"

    table = kubectl("get", "md", "-n", kube_namespace).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == [
        "NAME", "READY", "MODEL", "RPS", "P99", "URL", "AGE"]
    assert table[1].split()[:3] == ["seed-mlp", "0/1", "demo://seed-mlp"]
    assert status["url"] in table[1]
    assert operator.metric("modelplane_operator_managed_objects") == 1


def test_spec_changes_are_followed(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    md = sample("seed-mlp", kube_namespace)
    kubectl.apply(md)
    first = eventually(lambda: cluster.get("deployment", "seed-mlp"), what="Deployment")
    assert "nvidia.com/gpu" not in container(first)["resources"]["limits"]

    # gpu 0 -> 1 and autoscaling between 2 and 4
    changed = copy.deepcopy(md)
    changed["spec"]["resources"]["gpu"] = 1
    del changed["spec"]["replicas"]
    changed["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 4}
    kubectl.apply(changed)

    def gpu_deployment() -> dict[str, Any] | None:
        dep = cluster.get("deployment", "seed-mlp")
        limits = container(dep)["resources"]["limits"] if dep else {}
        return dep if str(limits.get("nvidia.com/gpu")) == "1" else None

    dep = eventually(gpu_deployment, what="the GPU limit")
    tolerations = dep["spec"]["template"]["spec"].get("tolerations", [])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    hpa = eventually(lambda: cluster.get("hpa", "seed-mlp"), what="HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "seed-mlp"

    # new min/max: the HPA follows
    changed["spec"]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 8}
    kubectl.apply(changed)
    eventually(lambda: (cluster.get("hpa", "seed-mlp") or {}).get("spec", {}).get(
        "maxReplicas") == 8, what="maxReplicas 8")
    assert cluster.get("hpa", "seed-mlp")["spec"]["minReplicas"] == 3  # type: ignore[index]

    # autoscaling off again: the HPA goes, replicas come back
    kubectl.apply(md)
    eventually(lambda: cluster.get("hpa", "seed-mlp") is None, what="HPA deleted")
    dep = eventually(lambda: (d := cluster.get("deployment", "seed-mlp")) and (
        "nvidia.com/gpu" not in container(d)["resources"]["limits"]) and d, what="GPU removed")
    assert dep["spec"]["replicas"] == 1
    generation = cluster.get("md", "seed-mlp")["metadata"]["generation"]  # type: ignore[index]
    eventually(lambda: (cluster.get("md", "seed-mlp") or {}).get("status", {}).get(
        "observedGeneration") == generation, what="observedGeneration")


def test_children_changed_or_deleted_by_hand_are_restored(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    kubectl.apply(sample("seed-mlp", kube_namespace))
    service = eventually(lambda: cluster.get("service", "seed-mlp"), what="Service")
    eventually(lambda: cluster.get("deployment", "seed-mlp"), what="Deployment")

    kubectl("delete", "service", "seed-mlp", "-n", kube_namespace)
    restored = eventually(
        lambda: (s := cluster.get("service", "seed-mlp")) and s["metadata"]["uid"] != service[
            "metadata"]["uid"] and s, what="the Service recreated")
    assert restored["spec"]["ports"] == service["spec"]["ports"]

    kubectl("patch", "deployment", "seed-mlp", "-n", kube_namespace, "--type=merge", "-p",
            '{"spec": {"template": {"spec": {"containers": '
            '[{"name": "runtime", "image": "evil.example/miner:1"}]}}}}')
    eventually(lambda: container(cluster.get("deployment", "seed-mlp") or {})["image"]
               == TEST_IMAGE, what="the image restored")
    reasons = eventually(lambda: [e for e in cluster.events("seed-mlp")
                                  if e["reason"] == "Restored"][1:] and cluster.events("seed-mlp"),
                         what="two Restored events")
    messages = sorted(e["message"] for e in reasons if e["reason"] == "Restored")
    assert messages == [
        "Deployment seed-mlp was changed outside the operator; restored",
        "Service seed-mlp was deleted outside the operator; restored",
    ]


def test_invalid_spec_creates_nothing(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    bad = sample("seed-mlp", kube_namespace)
    bad["metadata"]["name"] = "broken"
    bad["spec"]["autoscaling"] = {"minReplicas": 5, "maxReplicas": 2}
    del bad["spec"]["replicas"]
    kubectl.apply(bad)

    ready = eventually(lambda: cluster.condition("broken"), what="a Ready condition")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.autoscaling.maxReplicas" in ready["message"]
    event = eventually(lambda: [e for e in cluster.events("broken")
                                if e["reason"] == "InvalidSpec"], what="an InvalidSpec Event")
    assert event[0]["type"] == "Warning"
    assert "spec.autoscaling.maxReplicas" in event[0]["message"]

    # A valid object handled after it proves the operator moved on; the invalid one was not
    # retried in between (no retry loop) and nothing was created for it.
    kubectl.apply(sample("seed-mlp", kube_namespace))
    eventually(lambda: cluster.get("deployment", "seed-mlp"), what="the valid one's Deployment")
    names = {obj["metadata"]["name"] for kind in CHILD_KINDS for obj in cluster.items(kind)}
    assert "broken" not in names
    assert operator.metric("modelplane_operator_reconciles_total", result="invalid") == 1
    assert len([e for e in cluster.events("broken") if e["reason"] == "InvalidSpec"]) == 1

    # Fixing the spec is a new change: the children appear.
    bad["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 5}
    kubectl.apply(bad)
    eventually(lambda: cluster.get("hpa", "broken"), what="the fixed object's HPA")
    eventually(lambda: (c := cluster.condition("broken")) and c["reason"] != "InvalidSpec",
               what="InvalidSpec cleared")


def test_restart_duplicates_and_rewrites_nothing(
    start_operator: Callable[..., OperatorProcess], kubectl: Kubectl, cluster: Cluster,
    kube_namespace: str,
) -> None:
    first = start_operator(kube_namespace)
    kubectl.apply(sample("seed-mlp", kube_namespace))
    kubectl.apply(sample("autoscaling", kube_namespace))
    for name in ("seed-mlp", "seed-mlp-autoscaled"):
        eventually(partial(has_status, cluster, name), what=f"{name} status")
    eventually(lambda: cluster.get("hpa", "seed-mlp-autoscaled"), what="HPA")
    assert first.metric("modelplane_operator_reconciles_total", result="ok") >= 2
    before = versions(cluster)
    assert first.stop() == 0

    second = start_operator(kube_namespace)
    eventually(lambda: second.metric("modelplane_operator_reconciles_total",
                                     trigger="resume") == 2, what="both objects resumed")
    # Two full status rounds after resuming (scrape, recompute, compare): still no write.
    rounds = second.metric("modelplane_operator_status_rounds_total")
    eventually(lambda: second.metric("modelplane_operator_status_rounds_total") >= rounds + 2,
               what="two status rounds")
    assert second.metric("modelplane_operator_managed_objects") == 2
    after = versions(cluster)
    assert after == before, f"first:\n{first.logs()}\nsecond:\n{second.logs()}"
    assert second.metric("modelplane_operator_child_writes_total") == 0
    assert second.metric("modelplane_operator_status_writes_total") == 0
    # Per object: the runtime's and the balancer's Deployments; the Service and the
    # headless -replicas Service.
    assert len(cluster.items("deployments")) == 4
    assert len(cluster.items("services")) == 4


def test_deleting_the_model_deployment_removes_its_children(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    kubectl.apply(sample("autoscaling", kube_namespace))
    for kind in ("deployment", "service", "pdb", "hpa"):
        eventually(partial(cluster.get, kind, "seed-mlp-autoscaled"), what=kind)
    kubectl("delete", "md", "seed-mlp-autoscaled", "-n", kube_namespace)
    for kind in CHILD_KINDS:
        eventually(partial(none_left, cluster, kind), what=f"{kind} deleted")


def test_a_child_that_turns_up_after_its_owner_was_deleted_is_deleted_too(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    # A create in flight when the ModelDeployment goes (retried under API errors), or a
    # child the operator learns of only from a relist, lands after the cleanup ran. Both
    # Services here are written as such a late write would be (labels, controller
    # reference); no garbage collector runs in the emulator, so only the operator can act.
    kubectl.apply(sample("seed-mlp", kube_namespace))
    service = eventually(lambda: cluster.get("service", "seed-mlp-replicas"), what="Service")
    kubectl("delete", "md", "seed-mlp", "-n", kube_namespace)
    for kind in CHILD_KINDS:
        eventually(partial(none_left, cluster, kind), what=f"{kind} deleted")
    deleted = operator.metric("modelplane_operator_child_writes_total", kind="Service",
                              action="deleted")

    def late(name: str, owner_uid: str) -> dict[str, Any]:
        meta = service["metadata"]
        owner = {**meta["ownerReferences"][0], "uid": owner_uid}
        return {"apiVersion": "v1", "kind": "Service", "spec": {
                    k: v for k, v in service["spec"].items()
                    if k in ("clusterIP", "ports", "selector", "publishNotReadyAddresses")},
                "metadata": {"name": name, "namespace": kube_namespace,
                             "labels": meta["labels"], "ownerReferences": [owner]}}

    # Same kind, so the same watch stream: the operator sees the stranger's first.
    stranger = late("seed-mlp-stranger", "00000000-0000-0000-0000-000000000000")
    kubectl.apply(stranger)
    kubectl.apply(late("seed-mlp-late", service["metadata"]["ownerReferences"][0]["uid"]))
    eventually(lambda: cluster.get("service", "seed-mlp-late") is None,
               what="the late child deleted")
    # An owner the operator never saw deleted is the garbage collector's business.
    assert cluster.get("service", "seed-mlp-stranger") is not None
    eventually(lambda: operator.metric("modelplane_operator_child_writes_total", kind="Service",
                                       action="deleted") == deleted + 1,
               what="the late child's deletion counted")


def test_api_errors_are_retried_with_backoff(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str,
    kube_api: KubeApi,
) -> None:
    # The API server fails the first two Deployment creates here (a 500, then throttling).
    def fail_twice(api: Any) -> None:
        view = api["post", kmock.resource("apps", "v1", "deployments"),
                   kmock.namespace(kube_namespace)]
        view[:1] << 500
        view[1:2] << 429

    kube_api.call(fail_twice)
    kubectl.apply(sample("seed-mlp", kube_namespace))
    eventually(lambda: cluster.get("deployment", "seed-mlp"), timeout=30,
               what="the Deployment after retries")
    eventually(partial(has_status, cluster, "seed-mlp"), what="status after retries")
    # The client sent the create again after each failure (the 500, then the 429).
    assert operator.metric("modelplane_operator_api_retries_total", code="500") == 1
    assert operator.metric("modelplane_operator_api_retries_total", code="429") == 1
    assert operator.process.poll() is None  # still running


def test_scale_subresource_reaches_the_deployment(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    kubectl.apply(sample("seed-mlp", kube_namespace))
    eventually(lambda: cluster.get("deployment", "seed-mlp"), what="Deployment")
    kubectl("scale", "md/seed-mlp", "--replicas=3", "-n", kube_namespace)
    eventually(lambda: (cluster.get("deployment", "seed-mlp") or {}).get("spec", {}).get(
        "replicas") == 3, what="3 replicas")
    eventually(lambda: (cluster.get("md", "seed-mlp") or {}).get("status", {}).get("ready")
               == "0/3", what="READY 0/3")


def test_canary_gets_its_own_deployment_and_loses_it_when_removed(
    operator: OperatorProcess, kubectl: Kubectl, cluster: Cluster, kube_namespace: str
) -> None:
    md = sample("seed-mlp", kube_namespace)
    md["spec"]["replicas"] = 4
    md["spec"]["canary"] = {"model": {"uri": "demo://seed-mlp-v2"}, "trafficPercent": 25}
    kubectl.apply(md)
    canary = eventually(lambda: cluster.get("deployment", "seed-mlp-canary"), what="canary")
    stable = eventually(lambda: cluster.get("deployment", "seed-mlp"), what="stable")
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (3, 1)
    eventually(lambda: (cluster.get("md", "seed-mlp") or {}).get("status", {}).get("ready")
               == "0/4", what="READY over both tracks")

    del md["spec"]["canary"]
    kubectl.apply(md)
    eventually(lambda: cluster.get("deployment", "seed-mlp-canary") is None,
               what="the canary Deployment pruned")
    eventually(lambda: (cluster.get("deployment", "seed-mlp") or {}).get("spec", {}).get(
        "replicas") == 4, what="all replicas back on stable")
