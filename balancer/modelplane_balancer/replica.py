"""One replica as the balancer knows it: address, state, load, latency, books, idle connections.

Everything here is plain bookkeeping, updated on the event loop by the request path
(``front.py``) and the fleet (``fleet.py``); the strategies read ``in_flight``, ``weight``
and ``cost``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Final

from modelplane_balancer.settings import Address

if TYPE_CHECKING:
    from modelplane_balancer.upstream import Upstream

ACTIVE: Final = "active"
"""Takes new requests."""
DRAINING: Final = "draining"
"""Answered 503 (shutting down, loading): no new requests until its readiness probe passes."""
EJECTED: Final = "ejected"
"""Failed repeatedly: no new requests until its ejection ends and a probe passes."""
NOT_READY: Final = "not-ready"
"""Its EndpointSlice says not ready: no new requests until it says ready."""
REMOVED: Final = "removed"
"""Gone from discovery: finishes what it has, then its connections close."""
STATES: Final = (ACTIVE, DRAINING, EJECTED, NOT_READY, REMOVED)

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)
"""Histogram bounds (seconds): sub-millisecond hops up to the runtime's 60 s deadline."""

WARM_SAMPLES: Final = 8
"""A new replica takes at most 1 + (answers so far) requests at once until it has this many
answers: probed gently rather than flooded while its latency is unknown."""


class Replica:
    """A replica of one track; identity is its address."""

    __slots__ = (
        "address",
        "buckets",
        "busy",
        "connecting",
        "ejections",
        "ewma",
        "failures",
        "host",
        "idle",
        "in_flight",
        "key",
        "latency_sum",
        "port",
        "probing",
        "requests",
        "samples",
        "stamp",
        "state",
        "track",
        "weight",
    )

    def __init__(self, address: Address, track: str, weight: int, rtt_s: float,
                 now: float) -> None:
        self.address = address
        self.host = address.host
        self.port = address.port
        self.key = address.key
        self.track = track
        self.weight = weight
        self.state = ACTIVE
        self.in_flight = 0
        self.ewma = rtt_s
        self.stamp = now
        self.samples = 0
        self.failures = 0
        """Consecutive failures (reset by any success)."""
        self.ejections = 0
        """Ejections in a row (doubles the next ejection time; decays after a healthy spell)."""
        self.probing = False
        self.idle: list[Upstream] = []
        """Idle keep-alive connections, most recently used last (reused first)."""
        self.busy = 0
        """Connections carrying a request now."""
        self.connecting = 0
        """Connections being opened."""
        self.requests: dict[int, int] = {}
        """Answers by HTTP status."""
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    @property
    def connections(self) -> int:
        """Open or opening connections to this replica."""
        return len(self.idle) + self.busy + self.connecting

    def cost(self, now: float, decay_s: float) -> float:
        """Peak-EWMA latency, decayed toward zero while unobserved, times (in flight + 1).

        The decay is what lets a replica that was slow once be tried again later (Finagle's
        PeakEwma, Linkerd's and tower's ``PeakEwma``).
        """
        elapsed = now - self.stamp
        ewma = self.ewma * math.exp(-elapsed / decay_s) if elapsed > 0 else self.ewma
        return ewma * (self.in_flight + 1)

    def warming_full(self) -> bool:
        """A replica still being probed gently that has as many requests as it may take."""
        return self.samples < WARM_SAMPLES and self.in_flight > self.samples

    def observe(self, seconds: float, now: float, decay_s: float) -> None:
        """Fold one answer's latency into the peak EWMA: a slower answer is taken at once,
        a faster one is averaged in with a weight that grows with the time since the last."""
        if seconds > self.ewma:
            self.ewma = seconds
        else:
            elapsed = now - self.stamp
            keep = math.exp(-elapsed / decay_s) if elapsed > 0 else 1.0
            self.ewma = self.ewma * keep + seconds * (1.0 - keep)
        self.stamp = now
        self.samples += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def answered(self, status: int) -> None:
        """Count one answer by status."""
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1

    def describe(self) -> dict[str, Any]:
        """A summary for logs."""
        return {"replica": self.key, "track": self.track, "state": self.state}
