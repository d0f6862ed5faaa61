"""HorizontalPodAutoscaler (autoscaling/v2) for one track's Deployment.

CPU utilization is a Resource metric (metrics-server). The load targets are ``Pods``
metrics served by the custom metrics API, which prometheus-adapter provides from the
runtime's /metrics with the rules the chart ships (``prometheusAdapter.rules`` in
charts/modelplane/values.yaml, tested against the names below). ``autoscaling.engine:
keda`` needs no adapter (keda.py).

Without the adapter the HPA still scales on CPU and reports the missing metrics in its
conditions (ScalingActive stays true while any metric is available).
"""

from __future__ import annotations

from typing import Any

from modelplane_runtime import contract

from modelplane_operator.autoscaling import Autoscaling
from modelplane_operator.builders.labels import common_labels
from modelplane_operator.builders.owner import Owner
from modelplane_operator.quantity import canonical_quantity

IN_FLIGHT_METRIC = contract.METRIC_IN_FLIGHT
"""Pods metric for ``targetInFlightPerReplica`` (the runtime's gauge, unchanged)."""
RPS_METRIC = "modelplane_requests_per_second"
"""Pods metric for ``targetRequestsPerSecondPerReplica`` (rate of modelplane_requests_total)."""
DEFAULT_CPU_UTILIZATION = 80
"""CPU target when no target is given (the HPA's own default, made explicit)."""


def quantity(value: float) -> str:
    """A float as the canonical quantity the API server stores: 5 -> "5", 2.5 -> "2500m"."""
    return canonical_quantity(repr(float(value)))


def _pods_metric(name: str, value: float) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": quantity(value)},
        },
    }


def metrics(autoscaling: Autoscaling) -> list[dict[str, Any]]:
    """The HPA's metric list, in a fixed order."""
    cpu = autoscaling.target_cpu_utilization
    has_load = (
        autoscaling.target_in_flight_per_replica is not None
        or autoscaling.target_requests_per_second_per_replica is not None
    )
    if cpu is None and not has_load:
        cpu = DEFAULT_CPU_UTILIZATION
    out: list[dict[str, Any]] = []
    if cpu is not None:
        out.append({
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": cpu},
            },
        })
    if autoscaling.target_in_flight_per_replica is not None:
        out.append(_pods_metric(IN_FLIGHT_METRIC, autoscaling.target_in_flight_per_replica))
    if autoscaling.target_requests_per_second_per_replica is not None:
        out.append(
            _pods_metric(RPS_METRIC, autoscaling.target_requests_per_second_per_replica)
        )
    return out


def build_autoscaler(
    owner: Owner,
    autoscaling: Autoscaling,
    *,
    name: str,
    target: str,
    min_replicas: int,
    max_replicas: int,
    version: str | None,
) -> dict[str, Any]:
    """HPA named ``name`` scaling the Deployment ``target`` between the given bounds."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": owner.metadata(name, common_labels(owner.name, "autoscaler", version)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": metrics(autoscaling),
        },
    }
