"""The Services of a ModelDeployment: ``<name>`` for clients, headless ``-replicas`` per track.

- ``<name>`` (ClusterIP) is what clients call, and its URL is ``status.url``. With the
  balancer it selects the balancer pods; without it (``routing.balancer: false``), every
  runtime pod of both tracks, and kube-proxy picks one per TCP connection. Its port and
  name are the same either way, so switching changes no client.
- ``<name>-replicas`` and ``<name>-canary-replicas`` (headless: ``clusterIP: None``) select
  one track's runtime pods each. The balancer watches their EndpointSlices to find the
  replicas (the balancer's discovery contract), and DNS answers their names with every
  ready pod's address, for clients that balance themselves.

gRPC: the runtime's ``grpc`` port is on the headless Services always, and on ``<name>``
only without the balancer (the balancer proxies HTTP/1.1). One HTTP/2 connection carries
every call of a gRPC channel, so a ClusterIP Service pins a client to one pod; gRPC
clients balance per call with ``dns:///<name>-replicas.<namespace>.svc:8081`` and the
``round_robin`` policy, which resolves every ready pod from the headless Service.
"""

from __future__ import annotations

from typing import Any

from modelplane_balancer import contract as balancer
from modelplane_runtime import contract

from modelplane_operator.builders.deployment import GRPC_PORT_NAME, PORT_NAME
from modelplane_operator.builders.labels import (
    Track,
    balancer_selector,
    common_labels,
    deployment_selector,
    service_selector,
)
from modelplane_operator.builders.owner import Owner
from modelplane_operator.spec import ModelDeploymentSpec

ROUTING_ANNOTATION = "modelplane.io/routing-strategy"
"""Carries ``spec.routing.strategy`` for an ingress, gateway or mesh to apply.

kube-proxy has no per-Service balancing algorithm (iptables mode picks an endpoint at
random per connection, IPVS mode uses one scheduler for the whole node), so plain
Kubernetes cannot honour least-request or weighted routing by itself; without the balancer
the annotation is where a smarter proxy in front of the Service reads the intent.
"""


def service_port(tls: bool) -> int:
    """Port the Service listens on: the runtime's own, so port-forward and URLs match pods.

    With TLS the same port speaks HTTPS (``appProtocol: https`` says so). The balancer
    listens on the same port number, so the URL does not depend on the balancer.
    """
    assert balancer.HTTP_PORT == contract.HTTP_PORT
    return contract.HTTP_PORT


def service_url(name: str, namespace: str, tls: bool, cluster_domain: str = "cluster.local") -> str:
    """The in-cluster URL of a ModelDeployment's Service (``status.url``)."""
    scheme = "https" if tls else "http"
    return f"{scheme}://{name}.{namespace}.svc.{cluster_domain}:{service_port(tls)}"


def replicas_service_name(name: str, track: Track) -> str:
    """The headless Service of one track (the balancer contract's names)."""
    if track == "stable":
        return balancer.replicas_service(name)
    return balancer.canary_replicas_service(name)


def _http_port(tls: bool) -> dict[str, Any]:
    return {
        "name": PORT_NAME,
        "port": service_port(tls),
        "targetPort": PORT_NAME,
        "protocol": "TCP",
        "appProtocol": "https" if tls else "http",
    }


def _grpc_port(tls: bool) -> dict[str, Any]:
    # h2c is the standard name for HTTP/2 without TLS (KEP-3726); with TLS there is none,
    # and "grpc" is what Istio, Linkerd and the Gateway API's GRPCRoute read.
    return {
        "name": GRPC_PORT_NAME,
        "port": contract.GRPC_PORT,
        "targetPort": GRPC_PORT_NAME,
        "protocol": "TCP",
        "appProtocol": "grpc" if tls else "kubernetes.io/h2c",
    }


def build_service(owner: Owner, spec: ModelDeploymentSpec, version: str | None, *,
                  through_balancer: bool) -> dict[str, Any]:
    """The ClusterIP Service ``<name>`` with its port ``http``: in front of the balancer
    pods, or (``through_balancer`` False) of every runtime pod, with ``grpc`` beside it."""
    selector = balancer_selector(owner.name) if through_balancer else service_selector(
        owner.name)
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
            "selector": selector,
            "ports": [_http_port(spec.tls is not None)] + (
                # By the spec, not by whether the balancer serves yet: the port does not
                # come and go while the first balancer pod starts.
                [] if spec.routing.balancer else [_grpc_port(spec.tls is not None)]),
        },
    }


def build_replicas_service(owner: Owner, spec: ModelDeploymentSpec, version: str | None,
                           track: Track) -> dict[str, Any]:
    """The headless Service of one track's runtime pods.

    Not-ready pods are left out of DNS (``publishNotReadyAddresses: false``); their
    EndpointSlice entries stay, marked not ready, which is how the balancer tells a
    replica that is starting or draining from one that is gone.
    """
    assert balancer.REPLICA_PORT_NAME == PORT_NAME
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(
            replicas_service_name(owner.name, track),
            common_labels(owner.name, "replicas", version),
        ),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": deployment_selector(owner.name, track),
            "ports": [_http_port(spec.tls is not None), _grpc_port(spec.tls is not None)],
        },
    }
