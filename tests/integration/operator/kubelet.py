"""The cluster's missing controllers, played by the test through the real API.

No kubelet, Deployment controller or EndpointSlice controller runs against the emulator.
Where a test needs their effects, ``Kubelet`` writes what they would, through the same
API a cluster would: a Pod with the Deployment's template labels, its IP and its Ready
condition (the kubelet); a Deployment's ``/status`` (the Deployment controller); and the
EndpointSlice of a Service from the pods it selects (the EndpointSlice controller). Real
processes (``modelplane serve``, ``modelplane balancer``) on loopback addresses stand in
for the pods' containers; their addresses are the pods' IPs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fixtures.kube import KubeApi, Kubectl


@dataclass(frozen=True)
class FakePod:
    """A pod the test runs: its name, IP, node and readiness."""

    name: str
    ip: str
    ready: bool = True
    node: str = "node-0"


class Kubelet:
    """Writes pods, rollouts and EndpointSlices of one namespace."""

    def __init__(self, kube_api: KubeApi, kubectl: Kubectl, namespace: str) -> None:
        self.kube_api = kube_api
        self.kubectl = kubectl
        self.namespace = namespace

    def _patch_status(self, kind: str, name: str, status: Mapping[str, Any]) -> None:
        self.kubectl("patch", kind, name, "-n", self.namespace, "--subresource=status",
                     "--type=merge", "-p", json.dumps({"status": status}))

    def deployment(self, name: str) -> dict[str, Any] | None:
        """A Deployment as stored."""
        found: dict[str, Any] | None = self.kube_api.object("apps", "deployments",
                                                            self.namespace, name)
        return found

    def run_pod(self, deployment: Mapping[str, Any], pod: FakePod) -> None:
        """A running pod of ``deployment`` (its template's labels), ready or not."""
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        self.kubectl.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": self.namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "stand-in"}],
                     "nodeName": pod.node},
        })
        self.set_ready(pod)

    def set_ready(self, pod: FakePod) -> None:
        """The pod's status as the kubelet reports it after its readiness probe."""
        value = "True" if pod.ready else "False"
        self._patch_status("pod", pod.name, {
            "phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": value}],
            "containerStatuses": [{"name": "main", "ready": pod.ready, "started": True,
                                   "restartCount": 0, "image": "stand-in", "imageID": "",
                                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
        })

    def delete_pod(self, name: str) -> None:
        """The pod is gone."""
        self.kubectl("delete", "pod", name, "-n", self.namespace, "--wait=false")

    def rollout(self, name: str, ready: int) -> None:
        """The Deployment controller's view: ``ready`` replicas ready and updated."""
        deployment = self.deployment(name)
        assert deployment is not None, f"no Deployment {name}"
        self._patch_status("deployment", name, {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": ready, "readyReplicas": ready, "updatedReplicas": ready,
            "availableReplicas": ready,
        })

    def endpoints(self, service: str, pods: Sequence[FakePod], port: int,
                  port_name: str = "http") -> None:
        """The EndpointSlice of ``service`` listing ``pods`` (empty: no endpoints)."""
        self.kubectl.apply({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-abcde", "namespace": self.namespace,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by":
                                        "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [p.ip], "nodeName": p.node,
                           "conditions": {"ready": p.ready, "serving": p.ready,
                                          "terminating": False},
                           "targetRef": {"kind": "Pod", "name": p.name,
                                         "namespace": self.namespace}}
                          for p in pods],
        })

    def selected(self, selector: Mapping[str, str],
                 pods: Mapping[str, tuple[Mapping[str, str], FakePod]]) -> list[FakePod]:
        """The pods whose labels match ``selector`` (what a Service's slice would list)."""
        return [pod for labels, pod in pods.values() if selector.items() <= labels.items()]
