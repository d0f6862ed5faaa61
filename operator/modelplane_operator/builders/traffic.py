"""Canary traffic split by replica ratio: the only split plain Kubernetes can do.

The Service selects the stable and the canary pods alike, and kube-proxy spreads
connections evenly over ready endpoints (iptables mode picks one at random per connection;
IPVS round-robins). So the canary's share of traffic is its share of ready replicas, and
``trafficPercent`` is honoured to the nearest 1/N of N replicas. Exact percentages need a
mesh or a Gateway API HTTPRoute with weights; this works on every cluster without one.
"""

from __future__ import annotations


def split(total: int, percent: int) -> tuple[int, int]:
    """(stable, canary) replica counts approximating ``percent`` of ``total`` for the canary.

    Each side keeps at least one replica while its share is non-zero, so a 5 % canary on a
    single replica still runs (as 1 + 1 pods: the granularity limit of a replica split).
    """
    if total <= 0 or percent <= 0:
        return max(total, 0), 0
    if percent >= 100:
        return 0, total
    canary = (total * percent + 50) // 100  # round half up, in integers: deterministic
    if total == 1:
        return 1, 1
    canary = min(max(1, canary), total - 1)
    return total - canary, canary
