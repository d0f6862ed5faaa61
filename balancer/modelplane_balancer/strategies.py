"""How a replica is chosen among a track's available replicas: one class per strategy.

Pure: a strategy sees a non-empty list of replicas (their ``in_flight``, ``weight`` and
``cost``) and returns one; the fleet calls ``reset`` whenever the list changes. Random
choices come from an injected ``random.Random`` so tests can seed them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from modelplane_balancer.replica import Replica


class Strategy(Protocol):
    """Chooses one replica per request."""

    name: ClassVar[str]

    def reset(self, replicas: Sequence[Replica]) -> None:
        """The list of available replicas changed (membership, state or weights)."""

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """One of ``replicas`` (never empty)."""


class RoundRobin:
    """Each replica in turn; the starting point is random so that several balancer pods do
    not all send their first requests to the same replica."""

    name: ClassVar[str] = "round-robin"

    def __init__(self, rng: random.Random) -> None:
        self._next = rng.randrange(1 << 30)

    def reset(self, replicas: Sequence[Replica]) -> None:
        """Nothing to rebuild: the counter wraps over whatever list comes."""

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """The next replica in order."""
        index = self._next % len(replicas)
        self._next = index + 1
        return replicas[index]


class RandomChoice:
    """Uniformly at random (what kube-proxy's iptables mode does per connection)."""

    name: ClassVar[str] = "random"

    def __init__(self, rng: random.Random) -> None:
        self._random = rng.random

    def reset(self, replicas: Sequence[Replica]) -> None:
        """Stateless."""

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """Any replica, each equally likely."""
        return replicas[int(self._random() * len(replicas))]


_SCHEDULE_LIMIT = 10_000
"""Longest precomputed weighted cycle; above it each pick computes the next step itself."""


class Weighted:
    """Smooth weighted round-robin (nginx's ``weight=``): shares proportional to the weights,
    interleaved (weights 5,1,1 give a a b a c a a, not a a a a a b c).

    The cycle (sum of weights divided by their gcd) is computed once per list change, so a
    pick is one index step; a retry's filtered list gets the O(n) step instead.
    """

    name: ClassVar[str] = "weighted"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._for: Sequence[Replica] | None = None
        self._cycle: list[Replica] = []
        self._position = 0
        self._current: dict[int, int] = {}

    def reset(self, replicas: Sequence[Replica]) -> None:
        """Precompute the cycle for ``replicas`` when it is short enough."""
        self._for = replicas
        self._current = {}
        divisor = math.gcd(*(r.weight for r in replicas)) if replicas else 1
        total = sum(r.weight for r in replicas) // max(divisor, 1)
        if not replicas or total > _SCHEDULE_LIMIT:
            self._cycle = []
            return
        current = [0] * len(replicas)
        weights = [r.weight // divisor for r in replicas]
        cycle = []
        for _ in range(total):
            best = _swrr_step(current, weights, total)
            cycle.append(replicas[best])
        self._cycle = cycle
        self._position = self._rng.randrange(total)

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """The next replica of the smooth weighted cycle."""
        cycle = self._cycle
        if replicas is self._for and cycle:
            position = self._position
            self._position = (position + 1) % len(cycle)
            return cycle[position]
        return self._step(replicas)

    def _step(self, replicas: Sequence[Replica]) -> Replica:
        current = [self._current.get(id(r), 0) for r in replicas]
        weights = [r.weight for r in replicas]
        best = _swrr_step(current, weights, sum(weights))
        for replica, value in zip(replicas, current, strict=True):
            self._current[id(replica)] = value
        return replicas[best]


def _swrr_step(current: list[int], weights: list[int], total: int) -> int:
    """One step of nginx's smooth weighted round-robin; updates ``current`` in place."""
    best = 0
    for index, weight in enumerate(weights):
        current[index] += weight
        if current[index] > current[best]:
            best = index
    current[best] -= total
    return best


class LeastRequest:
    """Fewest requests in flight; ties broken at random (so idle replicas share evenly)."""

    name: ClassVar[str] = "least-request"

    def __init__(self, rng: random.Random) -> None:
        self._random = rng.random

    def reset(self, replicas: Sequence[Replica]) -> None:
        """Stateless."""

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """A replica with the fewest requests in flight."""
        best = replicas[0]
        fewest = best.in_flight
        ties = 1
        for replica in replicas[1:]:
            count = replica.in_flight
            if count < fewest:
                best, fewest, ties = replica, count, 1
            elif count == fewest:
                ties += 1
                if self._random() * ties < 1.0:  # reservoir sampling over the ties
                    best = replica
        return best


class _TwoChoices:
    """Two distinct replicas at random; ``better`` decides (Mitzenmacher's power of two
    choices: close to least-request's balance without scanning every replica)."""

    def __init__(self, rng: random.Random) -> None:
        self._randrange: Callable[[int], int] = rng.randrange

    def reset(self, replicas: Sequence[Replica]) -> None:
        """Stateless."""

    def pick(self, replicas: Sequence[Replica], now: float) -> Replica:
        """The better of two random replicas."""
        count = len(replicas)
        if count == 1:
            return replicas[0]
        first = self._randrange(count)
        second = self._randrange(count - 1)
        if second >= first:
            second += 1
        a, b = replicas[first], replicas[second]
        return b if self.better(b, a, now) else a

    def better(self, a: Replica, b: Replica, now: float) -> bool:
        """True when ``a`` should win over ``b``."""
        raise NotImplementedError


class PowerOfTwo(_TwoChoices):
    """Of two random replicas, the one with fewer requests in flight."""

    name: ClassVar[str] = "power-of-two"

    def better(self, a: Replica, b: Replica, now: float) -> bool:
        """Fewer in flight."""
        return a.in_flight < b.in_flight


class LatencyAware(_TwoChoices):
    """Of two random replicas, the cheaper by peak-EWMA latency x (in flight + 1)
    (Finagle's ``P2CPeakEwma``, Linkerd's and Envoy-free meshes' default).

    A slow replica's cost jumps at once with its first slow answer and comes down gently;
    a replica still warming up (few answers yet) that already has as many requests as it
    may take loses to any other, so new replicas are probed, not flooded.
    """

    name: ClassVar[str] = "latency-aware"

    def __init__(self, rng: random.Random, decay_s: float) -> None:
        super().__init__(rng)
        self.decay_s = decay_s

    def better(self, a: Replica, b: Replica, now: float) -> bool:
        """Lower cost, a warming replica at its limit losing to one that is not."""
        a_full, b_full = a.warming_full(), b.warming_full()
        if a_full != b_full:
            return b_full
        decay = self.decay_s
        return a.cost(now, decay) < b.cost(now, decay)


def make_strategy(name: str, rng: random.Random, decay_s: float) -> Strategy:
    """The strategy called ``name`` (one of contract.STRATEGIES)."""
    if name == "latency-aware":
        return LatencyAware(rng, decay_s)
    kinds: dict[str, Callable[[random.Random], Strategy]] = {
        "round-robin": RoundRobin, "random": RandomChoice, "weighted": Weighted,
        "least-request": LeastRequest, "power-of-two": PowerOfTwo,
    }
    try:
        return kinds[name](rng)
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}") from None
