"""``spec.routing``: how requests are spread over the replicas (issue 10's part of the spec).

With ``balancer: true`` (the default) a ``<name>-balancer`` Deployment sits behind the
Service ``<name>`` and picks a replica per request (balancer/); the ModelDeployment's
``strategy``, ``weights`` and ``canary.trafficPercent`` reach it through its watch, so a
change applies to the next request, without a restart. With ``balancer: false`` the Service
selects the runtime pods directly and kube-proxy picks one per TCP connection: ``strategy``
is then only published as an annotation for a gateway or mesh, and ``weights`` (which
nothing would apply) are refused.

Names and bounds come from the balancer's own contract (its strategies, its weight range
and key prefixes), so the operator never accepts what the balancer would ignore.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from modelplane_balancer import contract as balancer
from pydantic import Field, field_validator, model_validator

from modelplane_operator.messages import FieldError
from modelplane_operator.passthrough import DNS1123_SUBDOMAIN, LABEL_NAME
from modelplane_operator.resource import ResourceModel

Strategy = Literal[
    "round-robin", "random", "weighted", "least-request", "power-of-two", "latency-aware"
]
"""The balancer's strategies (``modelplane_balancer.contract.STRATEGIES``, checked by a test)."""

MAX_WEIGHT = 1_000_000
"""Largest weight, as the balancer accepts it (``--weights``)."""
MAX_WEIGHTS = 256
"""Most entries in ``routing.weights``."""
WEIGHT_KEY_PATTERN = rf"^(pod/{DNS1123_SUBDOMAIN}|node/{DNS1123_SUBDOMAIN}|zone/{LABEL_NAME})$"
"""``pod/<pod name>``, ``node/<node name>`` or ``zone/<topology.kubernetes.io/zone value>``."""
_WEIGHT_KEY = re.compile(WEIGHT_KEY_PATTERN)

Weight = Annotated[int, Field(ge=1, le=MAX_WEIGHT)]


class Routing(ResourceModel):
    """How requests are spread over replicas."""

    strategy: Strategy = balancer.DEFAULT_STRATEGY
    """How the balancer picks a replica per request: round-robin, random, weighted (smooth
    weighted round-robin over ``weights``), least-request, power-of-two (the less busy of two
    random replicas), or latency-aware (power of two choices on peak-EWMA latency and
    in-flight requests). Without the balancer only published on the Service."""
    balancer: bool = True
    """Put the request-level balancer between the Service and the replicas (default). false:
    the Service selects the replicas directly (kube-proxy balances per TCP connection)."""
    weights: dict[str, Weight] = Field(default_factory=dict, max_length=MAX_WEIGHTS)
    """Weights for the weighted strategy, by ``pod/<name>``, ``node/<name>`` or
    ``zone/<zone>`` (the most specific match wins; replicas matching none weigh 1)."""

    @field_validator("weights")
    @classmethod
    def _check_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            if len(key) > 5 + 253 or not _WEIGHT_KEY.match(key):
                raise FieldError(f'["{key[:100]}"]', "keys are pod/<pod name>, "
                                 "node/<node name> or zone/<zone>")
        return value

    @model_validator(mode="after")
    def _applied(self) -> Routing:
        if not self.balancer and self.weights:
            raise FieldError("weights", "weights are applied by the balancer: set "
                             "routing.balancer: true, or remove them")
        return self
