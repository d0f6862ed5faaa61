"""PodDisruptionBudget (policy/v1) over every replica of a ModelDeployment.

Policy: ``maxUnavailable: 25%`` for every replica count. The disruption controller rounds
a percentage of maxUnavailable up, so at least one pod may always be evicted: a node drain
never blocks (a single replica with ``minAvailable: 1`` would block ``kubectl drain``
forever), while larger deployments keep three quarters of their replicas through voluntary
disruptions. A percentage also follows the HPA as it changes the replica count.
``unhealthyPodEvictionPolicy: AlwaysAllow`` lets drains evict pods that are not ready
(crash-looping, or still loading a model), which protect no traffic.
"""

from __future__ import annotations

from typing import Any

from modelplane_operator.builders.labels import common_labels, service_selector
from modelplane_operator.builders.owner import Owner

MAX_UNAVAILABLE = "25%"


def build_disruption_budget(owner: Owner, version: str | None) -> dict[str, Any]:
    """The PDB selecting the same pods as the Service."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(owner.name, common_labels(owner.name, "model-server", version)),
        "spec": {
            "maxUnavailable": MAX_UNAVAILABLE,
            "selector": {"matchLabels": service_selector(owner.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
