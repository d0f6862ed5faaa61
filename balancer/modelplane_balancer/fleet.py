"""The replicas of both tracks, their states, and which of them may take a request.

Discovery (or the static ``--backends``) says which replicas exist and whether they are
ready; the request path reports answers and failures; the fleet turns both into each
track's list of available replicas, rebuilt only when something changes, so a pick is
the strategy's work alone. Replicas that failed or refused are probed (readiness path)
before they take requests again; requests that find no replica wait, bounded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelplane_balancer import contract
from modelplane_balancer.budget import ejection_seconds, may_eject
from modelplane_balancer.replica import (
    ACTIVE,
    DRAINING,
    EJECTED,
    NOT_READY,
    REMOVED,
    WARM_SAMPLES,
    Replica,
)
from modelplane_balancer.settings import Address, BalancerSettings
from modelplane_balancer.split import CanarySplit
from modelplane_balancer.strategies import Strategy, make_strategy

if TYPE_CHECKING:
    from modelplane_balancer.exchange import Exchange

logger = logging.getLogger("modelplane.balancer.fleet")

REFUSED_FIRST_PROBE_S = 0.05
"""A replica that answered 503 is probed this soon (a runtime answering 503 to a request
over its deadline is still ready, and comes back at once)."""


@dataclass(frozen=True)
class Member:
    """A replica as discovery reports it."""

    address: Address
    weight: int = 1
    ready: bool = True


class Track:
    """The replicas of one track and the strategy choosing among them."""

    __slots__ = ("available", "name", "replicas", "strategy")

    def __init__(self, name: str, strategy: Strategy) -> None:
        self.name = name
        self.replicas: dict[str, Replica] = {}
        self.available: list[Replica] = []
        self.strategy = strategy


class Fleet:
    """Both tracks, the canary split, and the requests waiting for a replica."""

    def __init__(self, settings: BalancerSettings, now: Callable[[], float],
                 probe: Callable[[Replica], Awaitable[bool]], rng: random.Random | None = None,
                 ) -> None:
        self.settings = settings
        self.now = now
        self._probe = probe
        self.rng = rng or random.Random()
        self.strategy_name: str = settings.strategy
        self.tracks = {
            name: Track(name, make_strategy(settings.strategy, self.rng, settings.ewma_decay_s))
            for name in contract.TRACKS
        }
        self.split = CanarySplit(settings.canary_percent, self.rng)
        self.routed = dict.fromkeys(contract.TRACKS, 0)
        """Requests routed to each track (first attempts)."""
        self.ejections: dict[tuple[str, str], int] = {}
        self.suspended = False
        """The ModelDeployment is suspended: answer 503 at once."""
        self.scaled_to_zero = False
        """Zero replicas is expected (minReplicas 0): hold requests while the model wakes."""
        self.waiters: dict[Exchange, None] = {}
        """Requests held for a replica, in arrival order (released in that order)."""
        self.on_demand: Callable[[float], None] | None = None
        """Called, with when the first of them arrived, while requests are held for a model
        scaled to zero (discovery renews the wake Lease)."""
        self.held_since: float | None = None
        """When the oldest request still held while no replica was available arrived."""
        self.wakes = 0
        self.wake_seconds = 0.0
        """Count and sum of wake-ups: first request held -> a replica takes requests."""
        self._probes: set[asyncio.Task[None]] = set()

    # ---- picking ---------------------------------------------------------------------

    def choose_track(self, pinned: str | None) -> str:
        """The track for a new request: the pinned one, else the canary split's."""
        if pinned is not None:
            return pinned
        percent = self.split.percent
        if percent == 0:
            return contract.STABLE
        return contract.CANARY if self.split.canary() else contract.STABLE

    def pick(self, track: str, pinned: str | None, tried: Sequence[Replica]) -> Replica | None:
        """A replica of ``track`` (of the other track when ``track`` has none and the
        request is not pinned), not one of ``tried``; None when there is none."""
        candidates = self._candidates(track, tried)
        if not candidates and pinned is None:
            track = contract.CANARY if track == contract.STABLE else contract.STABLE
            candidates = self._candidates(track, tried)
        if not candidates:
            return None
        chosen = self.tracks[track].strategy.pick(candidates, self.now())
        if not tried:
            self.routed[chosen.track] += 1
        return chosen

    def _candidates(self, track: str, tried: Sequence[Replica]) -> list[Replica]:
        available = self.tracks[track].available
        if tried and available:
            return [r for r in available if r not in tried]
        return available

    def available(self) -> bool:
        """Whether any replica takes requests now."""
        return any(track.available for track in self.tracks.values())

    def known(self) -> int:
        """Replicas known in either track, whatever their state."""
        return sum(len(track.replicas) for track in self.tracks.values())

    # ---- membership and settings -----------------------------------------------------

    def update(self, track_name: str, members: Sequence[Member]) -> None:
        """Make ``track_name``'s replicas exactly ``members``; requests in flight on removed
        replicas finish (their connections close afterwards)."""
        track = self.tracks[track_name]
        now = self.now()
        wanted = {member.address.key: member for member in members}
        for key, replica in list(track.replicas.items()):
            if key not in wanted:
                replica.state = REMOVED
                for upstream in replica.idle:
                    if upstream.transport is not None:
                        upstream.transport.close()
                replica.idle.clear()
                del track.replicas[key]
                logger.info("replica removed", extra=replica.describe())
        for key, member in wanted.items():
            known = track.replicas.get(key)
            if known is None:
                replica = Replica(member.address, track_name, member.weight,
                                  self._neutral_rtt(track), now)
                replica.state = ACTIVE if member.ready else NOT_READY
                track.replicas[key] = replica
                logger.info("replica added", extra={**replica.describe(), "weight": member.weight})
                continue
            replica = known
            replica.weight = member.weight
            if not member.ready and replica.state != NOT_READY:
                replica.state = NOT_READY
                logger.info("replica not ready", extra=replica.describe())
            elif member.ready and replica.state == NOT_READY:
                self._rejoin(replica)
        self._rebuild(track)

    def set_strategy(self, name: str) -> None:
        """Switch every track to strategy ``name`` (requests in flight are unaffected)."""
        if name == self.strategy_name:
            return
        for track in self.tracks.values():
            track.strategy = make_strategy(name, self.rng, self.settings.ewma_decay_s)
            track.strategy.reset(track.available)
        logger.info("strategy changed", extra={"from": self.strategy_name, "to": name})
        self.strategy_name = name

    def set_canary_percent(self, percent: int) -> None:
        """A new canary share."""
        if percent != self.split.percent:
            logger.info("canary share changed", extra={"from": self.split.percent, "to": percent})
            self.split.set_percent(percent)

    def _neutral_rtt(self, track: Track) -> float:
        """A new replica's starting latency: the median of its measured peers', so it is
        neither flooded (too low) nor starved (too high)."""
        measured = [r.ewma for r in track.replicas.values()
                    if r.samples >= WARM_SAMPLES and r.state == ACTIVE]
        if measured:
            return float(statistics.median(measured))
        return self.settings.default_rtt_ms / 1000.0

    def _rebuild(self, track: Track) -> None:
        track.available = [r for r in track.replicas.values() if r.state == ACTIVE]
        track.strategy.reset(track.available)
        if track.available and self.waiters:
            if self.held_since is not None:
                self.wakes += 1
                self.wake_seconds += self.now() - self.held_since
                logger.info("a replica takes the held requests", extra={
                    "held": len(self.waiters), "waited_s": round(self.now() - self.held_since, 3)})
                self.held_since = None
            self._wake()

    # ---- health ----------------------------------------------------------------------

    def succeeded(self, replica: Replica) -> None:
        """An answer below 500 (or a 503 handled as a refusal elsewhere)."""
        replica.failures = 0

    def failed(self, replica: Replica, reason: str = "5xx") -> None:
        """A connect failure, a broken connection, or a 5xx other than 503."""
        replica.failures += 1
        if replica.state != ACTIVE or replica.failures < self.settings.eject_after_failures:
            return
        track = self.tracks.get(replica.track)
        if track is None or track.replicas.get(replica.key) is not replica:
            return
        ejected = sum(1 for r in track.replicas.values() if r.state == EJECTED)
        if not may_eject(ejected, len(track.replicas), self.settings.max_ejection_percent):
            return
        replica.ejections += 1
        replica.state = EJECTED
        key = (replica.key, replica.track)
        self.ejections[key] = self.ejections.get(key, 0) + 1
        seconds = ejection_seconds(replica.ejections, self.settings.eject_base_s,
                                   self.settings.eject_max_s)
        logger.warning("replica ejected", extra={
            **replica.describe(), "reason": reason, "failures": replica.failures,
            "seconds": seconds})
        self._rebuild(track)
        self._start_probing(replica, seconds)

    def refused(self, replica: Replica) -> None:
        """The replica answered 503 (draining, loading, or over its deadline): no new
        requests until its readiness probe passes."""
        if replica.state != ACTIVE:
            return
        track = self.tracks.get(replica.track)
        if track is None or track.replicas.get(replica.key) is not replica:
            return
        replica.state = DRAINING
        logger.info("replica refused a request: probing its readiness", extra=replica.describe())
        self._rebuild(track)
        self._start_probing(replica, REFUSED_FIRST_PROBE_S)

    def _start_probing(self, replica: Replica, delay: float) -> None:
        if replica.probing:
            return
        replica.probing = True
        task = asyncio.get_running_loop().create_task(self._probe_until_back(replica, delay))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe_until_back(self, replica: Replica, delay: float) -> None:
        try:
            while replica.state in (EJECTED, DRAINING):
                await asyncio.sleep(delay)
                if replica.state not in (EJECTED, DRAINING):
                    return
                if await self._probe(replica):
                    if replica.state in (EJECTED, DRAINING):
                        self._rejoin(replica)
                        track = self.tracks[replica.track]
                        if track.replicas.get(replica.key) is replica:
                            self._rebuild(track)
                    return
                if replica.state == EJECTED:
                    replica.ejections += 1
                    delay = ejection_seconds(replica.ejections, self.settings.eject_base_s,
                                             self.settings.eject_max_s)
                else:
                    delay = min(self.settings.eject_max_s, max(0.25, delay * 2))
        finally:
            replica.probing = False

    def _rejoin(self, replica: Replica) -> None:
        """Back to ACTIVE, warming up again from a neutral latency."""
        was = replica.state
        replica.state = ACTIVE
        replica.failures = 0
        replica.samples = 0
        replica.ewma = self._neutral_rtt(self.tracks[replica.track])
        replica.stamp = self.now()
        logger.info("replica rejoined", extra={**replica.describe(), "was": was})

    # ---- waiting ---------------------------------------------------------------------

    def hold(self, exchange: Exchange) -> None:
        """Keep ``exchange`` until a replica can take it or its wait is over: the
        balancer's limit (longer while the model is scaled to zero and wakes), or the
        client's own deadline when shorter. Past ``max_waiting`` held requests, 503 with
        ``Retry-After`` at once: the queue is bounded, so a burst cannot exhaust memory."""
        now = self.now()
        if not exchange.waiting:
            if len(self.waiters) >= self.settings.max_waiting:
                exchange.fail(503, f"{len(self.waiters)} requests are already waiting for a "
                              "replica", retry_after=True, retry_after_s=self._retry_after())
                return
            wait = (self.settings.cold_start_wait_s if self.scaled_to_zero
                    else self.settings.no_replica_wait_s)
            if exchange.patience is not None:
                wait = min(wait, max(0.0, exchange.patience - (now - exchange.started)))
            exchange.waiting = True
            exchange.deadline = now + wait
        self.waiters[exchange] = None
        if not self.available():
            if self.held_since is None:
                self.held_since = exchange.started
            if self.scaled_to_zero and self.on_demand is not None:
                self.on_demand(self.held_since)

    def _retry_after(self) -> int:
        """Seconds to suggest to a client turned away: the wake-ups seen so far, on average
        (a cold start), else one second."""
        if self.wakes:
            return max(1, round(self.wake_seconds / self.wakes))
        return 1

    def unhold(self, exchange: Exchange) -> None:
        """``exchange`` stops waiting (answered, or its client left)."""
        self.waiters.pop(exchange, None)
        exchange.waiting = False

    def _wake(self) -> None:
        waiting = list(self.waiters)
        self.waiters.clear()
        for exchange in waiting:
            exchange.resume()

    def expire(self, now: float) -> None:
        """Answer 503 to the requests whose wait is over; while requests stay held for a
        model scaled to zero, keep renewing the demand."""
        for exchange in [e for e in self.waiters if e.deadline <= now]:
            self.unhold(exchange)
            exchange.fail(503, "no replica is available", retry_after=True,
                          retry_after_s=self._retry_after())
        if not self.waiters:
            self.held_since = None
        elif self.held_since is not None and self.scaled_to_zero and self.on_demand:
            self.on_demand(self.held_since)

    def replicas(self) -> list[Replica]:
        """Every known replica of both tracks."""
        return [r for track in self.tracks.values() for r in track.replicas.values()]
