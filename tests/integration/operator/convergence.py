"""What "converged" means for a namespace of ModelDeployments, and the controllers the
emulator lacks, played by the test through the real API.

- ``Rollouts``: the Deployment controller and the kubelet do not run here, so a background
  thread does their part for the objects a test marks ready: it writes each Deployment's
  ``/status`` as a finished rollout of its current generation (all replicas ready and
  updated), as the controller would once the pods are ready; the others stay unrolled.
- ``problems``: every way the namespace differs from converged: a ModelDeployment whose
  status does not match its children (observedGeneration, replica counts, Ready), whose
  children are not exactly those ``render`` gives for its spec (missing, extra,
  duplicated, not owned), and any child left whose owner is gone (orphaned).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx
from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.labels import (
    APP_NAME,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
)
from modelplane_operator.builders.render import render
from modelplane_operator.messages import InvalidSpec

from tests.fixtures.kube import KubeApi

CHILDREN = {"Deployment": ("apps", "deployments"), "Service": ("", "services"),
            "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
            "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
            "ServiceAccount": ("", "serviceaccounts"),
            "Role": ("rbac.authorization.k8s.io", "roles"),
            "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings")}
MERGE = {"Content-Type": "application/merge-patch+json"}


def model_deployment(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment of the demo model (``spec`` adds or replaces fields; None drops
    one)."""
    fields = {"model": {"uri": "demo://seed-mlp"}, "replicas": 1, **spec}
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {key: value for key, value in fields.items() if value is not None}}


def owner_uid(child: dict[str, Any]) -> str | None:
    """The uid of the ModelDeployment controlling a child, if any."""
    for ref in child["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "ModelDeployment" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def condition(md: dict[str, Any], kind: str = "Ready") -> dict[str, Any] | None:
    """A condition of a ModelDeployment's status."""
    for cond in (md.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


class Rollouts:
    """Plays the Deployment controller for the ModelDeployments named in ``ready``."""

    def __init__(self, kube_api: KubeApi, namespace: str) -> None:
        self.kube_api = kube_api
        self.namespace = namespace
        self.ready: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rollouts")
        self._client = httpx.Client(base_url=kube_api.url, timeout=10)

    def complete(self, deployment: dict[str, Any]) -> bool:
        """Write a finished rollout into one Deployment's status; False if it was there."""
        meta, spec = deployment["metadata"], deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        wanted = {"observedGeneration": meta["generation"], "replicas": replicas,
                  "readyReplicas": replicas, "updatedReplicas": replicas,
                  "availableReplicas": replicas}
        status = deployment.get("status") or {}
        if all(status.get(k) == v for k, v in wanted.items()):
            return False
        self._client.patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{meta['name']}/status",
            headers=MERGE, json={"status": wanted})
        return True

    def sweep(self) -> None:
        """Roll out every Deployment of a ready ModelDeployment once."""
        names = {md["metadata"]["uid"]: md["metadata"]["name"] for md in
                 self.kube_api.objects("modelplane.io", "modeldeployments", self.namespace)}
        for deployment in self.kube_api.objects("apps", "deployments", self.namespace):
            if names.get(owner_uid(deployment) or "") in self.ready:
                self.complete(deployment)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            self.sweep()

    def __enter__(self) -> Rollouts:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()


def _desired_replicas(deployments: Iterable[dict[str, Any]],
                      autoscalers: dict[str, dict[str, Any]]) -> int:
    total = 0
    for dep in deployments:
        replicas = dep["spec"].get("replicas")
        if replicas is None:
            replicas = autoscalers.get(dep["metadata"]["name"], {}).get("spec", {}).get(
                "minReplicas", 1)
        total += int(replicas)
    return total


def status_problems(md: dict[str, Any], deployments: list[dict[str, Any]],
                    autoscalers: dict[str, dict[str, Any]]) -> list[str]:
    """How a valid ModelDeployment's status disagrees with its live Deployments."""
    status = md.get("status") or {}
    out = []
    generation = md["metadata"]["generation"]
    if status.get("observedGeneration") != generation:
        out.append(f"observedGeneration {status.get('observedGeneration')} != {generation}")
    desired = _desired_replicas(deployments, autoscalers)
    ready = sum(int((d.get("status") or {}).get("readyReplicas", 0)) for d in deployments)
    if status.get("ready") != f"{ready}/{desired}":
        out.append(f"ready {status.get('ready')!r} but the Deployments say {ready}/{desired}")
    rolled = all(int((d.get("status") or {}).get("observedGeneration", 0))
                 >= d["metadata"]["generation"]
                 and int((d.get("status") or {}).get("updatedReplicas", 0))
                 >= int(d["spec"].get("replicas", 1)) for d in deployments)
    should_be_ready = bool(deployments) and desired > 0 and ready >= desired and rolled
    ready_condition = condition(md)
    if ready_condition is None:
        out.append("no Ready condition")
    elif (ready_condition["status"] == "True") != should_be_ready:
        out.append(f"Ready={ready_condition['status']} ({ready_condition.get('reason')}) but "
                   f"the Deployments are {'ready' if should_be_ready else 'not ready'}")
    return out


def problems(kube_api: KubeApi, namespace: str, defaults: RenderDefaults,
             deleted: Iterable[str] = ()) -> dict[str, list[str]]:
    """Everything that keeps the namespace from being converged, by object name."""
    mds = kube_api.objects("modelplane.io", "modeldeployments", namespace)
    children = {kind: kube_api.objects(group, plural, namespace)
                for kind, (group, plural) in CHILDREN.items()}
    by_uid: dict[str, list[tuple[str, str]]] = {}
    out: dict[str, list[str]] = {}
    live_uids = {md["metadata"]["uid"] for md in mds}
    for kind, items in children.items():
        for child in items:
            uid = owner_uid(child)
            labels = child["metadata"].get("labels") or {}
            if uid is not None:
                by_uid.setdefault(uid, []).append((kind, child["metadata"]["name"]))
            if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and uid not in live_uids:
                name = labels.get("modelplane.io/deployment", "?")
                out.setdefault(name, []).append(
                    f"orphaned {kind} {child['metadata']['name']} (owner {uid})")
    for name in deleted:
        if any(md["metadata"]["name"] == name for md in mds):
            out.setdefault(name, []).append("still exists after deletion")
    for md in mds:
        name, uid = md["metadata"]["name"], md["metadata"]["uid"]
        if md["metadata"].get("deletionTimestamp"):
            out.setdefault(name, []).append("being deleted")
            continue
        try:
            expected = {(c["kind"], c["metadata"]["name"]) for c in render(md, defaults)}
        except InvalidSpec:
            continue  # checked by the tests of invalid specs
        owned = by_uid.get(uid, [])
        found: list[str] = []
        duplicates = [k for k, n in Counter(owned).items() if n > 1]
        if duplicates:
            found.append(f"duplicated {duplicates}")
        if set(owned) != expected:
            missing = sorted(expected - set(owned))
            extra = sorted(set(owned) - expected)
            found.append(f"children: missing {missing}, extra {extra}")
        # The model's replicas are the runtime Deployments' (the balancer's are apart).
        deployments = [d for d in children["Deployment"] if owner_uid(d) == uid
                       and d["metadata"]["labels"].get(NAME_LABEL) == APP_NAME]
        autoscalers = {h["metadata"]["name"]: h for h in children["HorizontalPodAutoscaler"]
                       if owner_uid(h) == uid}
        found += status_problems(md, deployments, autoscalers)
        if found:
            out.setdefault(name, []).extend(found)
    return out
