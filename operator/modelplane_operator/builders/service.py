"""The ClusterIP Service in front of every replica of a ModelDeployment (both tracks)."""

from __future__ import annotations

from typing import Any

from modelplane_runtime import contract

from modelplane_operator.builders.deployment import PORT_NAME
from modelplane_operator.builders.labels import common_labels, service_selector
from modelplane_operator.builders.owner import Owner
from modelplane_operator.spec import ModelDeploymentSpec

ROUTING_ANNOTATION = "modelplane.io/routing-strategy"
"""Carries ``spec.routing.strategy`` for an ingress, gateway or mesh to apply.

kube-proxy has no per-Service balancing algorithm (iptables mode picks an endpoint at
random per connection, IPVS mode uses one scheduler for the whole node), so plain
Kubernetes cannot honour least-request or weighted routing by itself; the annotation is
where a smarter proxy in front of the Service reads the intent.
"""


def service_port(tls: bool) -> int:
    """Port the Service listens on: the runtime's own, so port-forward and URLs match pods.

    With TLS the same port speaks HTTPS (``appProtocol: https`` says so).
    """
    return contract.HTTP_PORT


def service_url(name: str, namespace: str, tls: bool, cluster_domain: str = "cluster.local") -> str:
    """The in-cluster URL of a ModelDeployment's Service (``status.url``)."""
    scheme = "https" if tls else "http"
    return f"{scheme}://{name}.{namespace}.svc.{cluster_domain}:{service_port(tls)}"


def build_service(owner: Owner, spec: ModelDeploymentSpec, version: str | None) -> dict[str, Any]:
    """ClusterIP Service with one port named ``http``, targeting the runtime's named port."""
    tls = spec.tls is not None
    port: dict[str, Any] = {
        "name": PORT_NAME,
        "port": service_port(tls),
        "targetPort": PORT_NAME,
        "protocol": "TCP",
        "appProtocol": "https" if tls else "http",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(
            owner.name,
            common_labels(owner.name, "model-server", version),
            {ROUTING_ANNOTATION: spec.routing.strategy},
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": service_selector(owner.name),
            "ports": [port],
        },
    }
