"""What the live children decide beyond the spec: pure reads of the operator's cache.

``render`` is pure and takes these decisions as ``Observed``; the controller computes them
from the children it has seen, and renders again when they change. Today one decision:
whether the Service ``<name>`` may select the balancer pods. It may once a balancer pod
has been ready, that is, once the balancer Deployment reports a ready replica or the live
Service already selects the balancer (so an operator restart, or a balancer rollout that
briefly has no ready pod, never moves the Service back to the runtime pods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelplane_operator.builders.balancer import balancer_name
from modelplane_operator.builders.labels import balancer_selector
from modelplane_operator.builders.render import Observed
from modelplane_operator.cache import ChildKey, Key
from modelplane_operator.spec import ModelDeploymentSpec


def balancer_ready(deployment: Mapping[str, Any] | None) -> int:
    """Ready pods of a balancer Deployment as its status reports them (0 when unknown)."""
    if deployment is None:
        return 0
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def service_on_balancer(service: Mapping[str, Any] | None, name: str) -> bool:
    """Whether the live Service ``<name>`` selects the balancer pods."""
    if service is None:
        return False
    return (service.get("spec") or {}).get("selector") == balancer_selector(name)


def observe(children: Mapping[ChildKey, Mapping[str, Any]], key: Key,
            spec: ModelDeploymentSpec, asleep: bool = False) -> Observed:
    """The decisions for one ModelDeployment from the live children (and whether it is
    scaled to zero for want of requests: sleep.py's state, passed through)."""
    namespace, name = key
    if not spec.routing.balancer:
        return Observed(service_on_balancer=False, asleep=asleep)
    deployment = children.get(("Deployment", namespace, balancer_name(name)))
    service = children.get(("Service", namespace, name))
    return Observed(service_on_balancer=balancer_ready(deployment) > 0
                    or service_on_balancer(service, name), asleep=asleep)
