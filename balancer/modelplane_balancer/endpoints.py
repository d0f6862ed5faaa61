"""What discovery reads, as pure functions: EndpointSlices -> members of a track, and a
ModelDeployment -> routing settings. No I/O: discovery.py feeds them what it watches.

The contract (contract.py): the stable track's pods are the endpoints of the headless
Service ``<model>-replicas``, the canary's of ``<model>-canary-replicas``; their slices
carry ``kubernetes.io/service-name``. Endpoint conditions follow the EndpointSlice API:
``ready`` unset means ready; a terminating endpoint is not ready, but when a track has no
ready endpoint at all its ``serving`` terminating ones are used (as kube-proxy does since
KEP-1672), so a track whose last pod is being replaced keeps answering.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelplane_balancer import contract
from modelplane_balancer.fleet import Member
from modelplane_balancer.settings import Address

logger = logging.getLogger("modelplane.balancer.discovery")

WEIGHT_PREFIXES = ("pod/", "node/", "zone/")
"""Keys of ``spec.routing.weights``: ``pod/<pod name>``, ``node/<node name>`` or
``zone/<zone>``; the most specific match wins; replicas matching none weigh 1."""


@dataclass(frozen=True)
class Routing:
    """The ModelDeployment's settings the balancer follows."""

    strategy: str | None = None
    """None: the object names none (or one the balancer does not know): keep the current."""
    canary_percent: int = 0
    weights: Mapping[str, int] = field(default_factory=dict)
    suspended: bool = False
    scaled_to_zero: bool = False


def routing_from(model_deployment: Mapping[str, Any]) -> Routing:
    """Read ``spec.routing.strategy``, ``spec.routing.weights``,
    ``spec.canary.trafficPercent``, ``spec.suspend`` and ``spec.autoscaling.minReplicas``;
    anything malformed is logged and left at its default, never fatal."""
    spec = model_deployment.get("spec") or {}
    routing = spec.get("routing") or {}
    strategy = routing.get("strategy")
    if strategy is not None and strategy not in contract.STRATEGIES:
        logger.warning("unknown routing.strategy %r: keeping the current one", strategy)
        strategy = None
    canary = spec.get("canary") or {}
    percent = canary.get("trafficPercent", 0) if canary else 0
    if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        logger.warning("canary.trafficPercent %r is not 0-100: using 0", percent)
        percent = 0
    weights: dict[str, int] = {}
    for key, value in (routing.get("weights") or {}).items():
        if (isinstance(key, str) and key.startswith(WEIGHT_PREFIXES) and isinstance(value, int)
                and not isinstance(value, bool) and value > 0):
            weights[key] = value
        else:
            logger.warning("ignoring routing.weights entry %r: %r", key, value)
    autoscaling = spec.get("autoscaling") or {}
    return Routing(
        strategy=strategy,
        canary_percent=percent,
        weights=weights,
        suspended=spec.get("suspend") is True,
        scaled_to_zero=autoscaling.get("minReplicas") == 0,
    )


def _port(slice_: Mapping[str, Any]) -> int | None:
    ports = [p for p in slice_.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
    named = [p for p in ports if p.get("name") == contract.REPLICA_PORT_NAME]
    chosen = named or (ports if len(ports) == 1 else [])
    return int(chosen[0]["port"]) if chosen else None


def _weight(endpoint: Mapping[str, Any], weights: Mapping[str, int]) -> int:
    if not weights:
        return 1
    target = endpoint.get("targetRef") or {}
    for key in (f"pod/{target.get('name')}", f"node/{endpoint.get('nodeName')}",
                f"zone/{endpoint.get('zone')}"):
        if key in weights:
            return weights[key]
    return 1


def members(slices: Iterable[Mapping[str, Any]], service: str,
            weights: Mapping[str, int] | None = None) -> list[Member]:
    """The members of the track whose Service is ``service``, from every known slice."""
    found: dict[str, tuple[Member, bool]] = {}
    for slice_ in slices:
        labels = (slice_.get("metadata") or {}).get("labels") or {}
        if labels.get(contract.SERVICE_NAME_LABEL) != service:
            continue
        port = _port(slice_)
        if port is None:
            logger.warning("EndpointSlice %s has no port named %s",
                           (slice_.get("metadata") or {}).get("name"), contract.REPLICA_PORT_NAME)
            continue
        for endpoint in slice_.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            conditions = endpoint.get("conditions") or {}
            ready = conditions.get("ready") is not False
            terminating = conditions.get("terminating") is True
            serving = conditions.get("serving", ready) is not False
            # Only the first address is used: the API says they are fungible.
            address = Address(str(addresses[0]), port)
            member = Member(address, _weight(endpoint, weights or {}), ready and not terminating)
            fallback = serving and terminating
            known = found.get(address.key)
            # An endpoint can sit in two slices while the controller moves it: ready wins.
            if known is None or (member.ready and not known[0].ready):
                found[address.key] = (member, fallback)
    chosen = [member for member, _ in found.values()]
    if chosen and not any(member.ready for member in chosen):
        chosen = [Member(m.address, m.weight, fallback) for m, fallback in found.values()]
    return sorted(chosen, key=lambda m: m.address.key)
