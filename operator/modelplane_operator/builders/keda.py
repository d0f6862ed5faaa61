"""KEDA ScaledObject (keda.sh/v1alpha1) for one track's Deployment: ``autoscaling.engine: keda``.

KEDA creates and drives an HPA of its own from the ScaledObject's triggers:
- ``targetCPUUtilization``: KEDA's ``cpu`` scaler (a Resource metric, as the HPA engine's).
- the load targets: KEDA's ``metrics-api`` scaler reading the operator's own aggregate of
  the track's replicas (``GET <operator>/load/<namespace>/<name>/<track>``: in-flight and
  requests per second summed over the ready pods, from the /metrics the operator scrapes
  for ``status.load``), with ``metricType: AverageValue``, so KEDA divides the sum by the
  target per replica, as the HPA engine's ``Pods`` metrics do. No Prometheus and no
  metrics adapter needed.

``minReplicaCount`` is never zero: scaling to zero and back is the operator's (see
autoscaling.py). While the model is scaled to zero the ScaledObject carries
``autoscaling.keda.sh/paused-replicas: "0"``, KEDA's documented way to hold a target at a
fixed count with its autoscaling paused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelplane_operator.autoscaling import Autoscaling
from modelplane_operator.builders.autoscaler import DEFAULT_CPU_UTILIZATION, quantity
from modelplane_operator.builders.labels import Track, common_labels
from modelplane_operator.builders.owner import Owner

API_VERSION = "keda.sh/v1alpha1"
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
POLLING_INTERVAL_S = 15
"""Seconds between KEDA's reads of the load (KEDA's default is 30; the operator's own
aggregate refreshes every scrape interval, 10 s by default)."""


def load_url(base: str, namespace: str, name: str, track: Track) -> str:
    """Where KEDA reads one track's load from the operator."""
    return f"{base.rstrip('/')}/load/{quote(namespace)}/{quote(name)}/{track}"


def _metrics_api(url: str, field: str, target: float) -> dict[str, Any]:
    return {
        "type": "metrics-api",
        "metricType": "AverageValue",
        "metadata": {"url": url, "format": "json", "valueLocation": field,
                     "targetValue": quantity(target)},
    }


def triggers(autoscaling: Autoscaling, url: str) -> list[dict[str, Any]]:
    """The ScaledObject's triggers, in a fixed order (CPU, in-flight, requests/s)."""
    cpu = autoscaling.target_cpu_utilization
    in_flight = autoscaling.target_in_flight_per_replica
    rps = autoscaling.target_requests_per_second_per_replica
    if cpu is None and in_flight is None and rps is None:
        cpu = DEFAULT_CPU_UTILIZATION
    out: list[dict[str, Any]] = []
    if cpu is not None:
        out.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(cpu)}})
    if in_flight is not None:
        out.append(_metrics_api(url, "inFlight", in_flight))
    if rps is not None:
        out.append(_metrics_api(url, "requestsPerSecond", rps))
    return out


def build_scaled_object(
    owner: Owner, autoscaling: Autoscaling, *, name: str, track: Track, min_replicas: int,
    max_replicas: int, version: str | None, load_base_url: str, paused: bool,
) -> dict[str, Any]:
    """ScaledObject ``name`` scaling the Deployment ``name`` between the bounds."""
    annotations = {PAUSED_REPLICAS: "0"} if paused else None
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": owner.metadata(name, common_labels(owner.name, "autoscaler", version),
                                   annotations),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max_replicas,
            "pollingInterval": POLLING_INTERVAL_S,
            "triggers": triggers(autoscaling, load_url(load_base_url, owner.namespace,
                                                       owner.name, track)),
        },
    }
