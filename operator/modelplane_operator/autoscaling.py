"""``spec.autoscaling`` and ``spec.suspend``: load-based scaling, scale to zero, suspension.

- ``engine: hpa`` (default) renders a HorizontalPodAutoscaler per track: CPU from
  metrics-server, the load targets as ``Pods`` metrics served by prometheus-adapter (the
  chart's ``prometheusAdapter.rules``). ``engine: keda`` renders a KEDA ScaledObject per
  track instead, whose load triggers read the operator's own aggregate of the replicas'
  /metrics (KEDA's ``metrics-api`` scaler): no Prometheus needed.
- ``minReplicas: 0`` scales to zero after ``idleSeconds`` without a request, as the
  balancer counts them (so it needs the balancer, which holds requests while the model
  wakes). The operator decides 0 <-> 1 for both engines: the balancer signals demand at
  once (its wake Lease), where KEDA's own activation would wait for its next poll of a
  metric, and a plain HPA cannot go below one replica at all (only with the alpha
  ``HPAScaleToZero`` feature gate). While scaled to zero the HPA is removed and the
  ScaledObject paused at zero (``autoscaling.keda.sh/paused-replicas``), so neither fights
  the operator; at wake-up the operator scales the Deployment to ``max(1, minReplicas)``
  and hands it back to them.
- ``suspend: true`` scales every track to zero at once, removes the autoscalers, and the
  balancer answers 503 ``model suspended``; ``false`` restores the replica count (the
  autoscaled count it had, or ``replicas``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modelplane_operator.messages import FieldError
from modelplane_operator.resource import ResourceModel

DEFAULT_IDLE_SECONDS = 300
"""Requests-free seconds before a model with ``minReplicas: 0`` scales to zero (Knative's
scale-to-zero grace plus its stable window are of this order; KEDA's cooldown is 300 s)."""


class Autoscaling(ResourceModel):
    """Load-based scaling: present means the autoscaler owns the replica count."""

    engine: Literal["hpa", "keda"] = "hpa"
    """hpa: a HorizontalPodAutoscaler (load targets need prometheus-adapter); keda: a KEDA
    ScaledObject reading the operator's own load aggregate (needs KEDA installed)."""
    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas; 0 scales to zero after idleSeconds without a request."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""
    idle_seconds: int = Field(default=DEFAULT_IDLE_SECONDS, ge=5, le=7 * 86400)
    """With minReplicas 0: seconds without a request (as the balancer counts them) before
    scaling to zero. Measured at the operator's scrape interval."""
    target_cpu_utilization: int | None = Field(
        default=None, ge=1, le=1000, alias="targetCPUUtilization"
    )
    """Average CPU use as a percentage of the CPU request (default 80 when no target is set)."""
    target_in_flight_per_replica: float | None = Field(default=None, gt=0, le=1_000_000)
    """Average in-flight requests per replica (Pods metric modelplane_requests_in_flight)."""
    target_requests_per_second_per_replica: float | None = Field(default=None, gt=0,
                                                                  le=1_000_000)
    """Average requests per second per replica (Pods metric modelplane_requests_per_second)."""

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise FieldError(
                "maxReplicas", f"must be >= minReplicas ({self.min_replicas})"
            )
        return self

    @property
    def scales_to_zero(self) -> bool:
        """``minReplicas: 0``."""
        return self.min_replicas == 0

    @property
    def floor(self) -> int:
        """The autoscaler's own minimum: at least one (zero is the operator's business)."""
        return max(1, self.min_replicas)
