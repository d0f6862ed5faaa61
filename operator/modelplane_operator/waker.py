"""Acting on the sleep state (sleep.py): putting models to sleep, waking them, suspending.

The controller renders; this module decides when the sleep state changes and does the one
thing rendering cannot: scaling a Deployment whose replicas an autoscaler owns (the
rendered Deployment leaves ``replicas`` alone then) up from zero, when the model wakes or
is resumed. Decisions come from:

- every status round: the balancers' traffic (idle long enough: sleep; requests held
  while asleep: wake), from the operator's scrapes (scrape.TrafficTracker);
- the wake Lease's watch events: a balancer renewed it after the model went to sleep;
- the runtime Deployments' watch events: the first stable replica of a waking model is
  ready (the cold start is over; the canary may start now).

A change of the sleep state goes through the controller's ``reconsider`` (observe.py's
decision changed: converge again), which renders the model asleep or awake; the scaling
up happens after that convergence (``after_apply``), inside the same per-object lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modelplane_balancer import contract as balancer

from modelplane_operator.builders.deployment import deployment_name
from modelplane_operator.builders.scale import plan, wake_replicas
from modelplane_operator.cache import Cache, key_of
from modelplane_operator.events import EventPoster
from modelplane_operator.kube import KubeClient
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.scrape import TrafficTracker
from modelplane_operator.sleep import Sleep, eligible, parse_time
from modelplane_operator.spec import ModelDeploymentSpec

log = logging.getLogger(__name__)


class Waker:
    """Sleep, wake, suspend and resume, for every ModelDeployment."""

    def __init__(self, client: KubeClient, cache: Cache, sleep: Sleep, events: EventPoster,
                 metrics: OperatorMetrics, clock: Callable[[], datetime],
                 reconsider: Callable[[Mapping[str, Any]], None]) -> None:
        self._client = client
        self._cache = cache
        self.sleep = sleep
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._reconsider = reconsider

    # ---- decisions ---------------------------------------------------------------------

    def round(self, md: Mapping[str, Any], spec: ModelDeploymentSpec,
              traffic: TrafficTracker | None) -> None:
        """After a scrape round: sleep an idle model, wake one whose requests are held."""
        if traffic is None or not eligible(spec):
            return
        key, now = key_of(md), self._clock()
        seen = traffic.traffic(key)
        if self.sleep.asleep(key, spec):
            if seen is not None and seen.waiting > 0:
                self.wake(md, spec, now, "requests are held by the balancer")
            return
        stable = self._cache.children.get(
            ("Deployment", key[0], deployment_name(key[1], "stable")))
        if not int(((stable or {}).get("status") or {}).get("readyReplicas") or 0):
            # Starting (or failing to): the idle clock starts once a replica serves.
            self.sleep.state(key, now).awake_since = now
            return
        busy = seen is not None and (seen.waiting > 0 or seen.in_flight > 0)
        if self.sleep.idle(key, spec, traffic.last_request.get(key), busy, seen is not None,
                           now):
            assert spec.autoscaling is not None
            self.sleep.sleep(key, now)
            self._metrics.sleeps.inc()
            log.info("%s/%s: no request for %ss: scaling to zero", *key,
                     spec.autoscaling.idle_seconds)
            self._events.post(md, "Normal", "ScaledToZero",
                              f"no request for {spec.autoscaling.idle_seconds}s: scaled to "
                              "zero; the next request wakes it", now)
            self._reconsider(md)

    def lease(self, md: Mapping[str, Any], spec: ModelDeploymentSpec,
              lease: Mapping[str, Any]) -> None:
        """The wake Lease changed: a balancer holds requests (since ``acquireTime``)."""
        name = key_of(md)[1]
        if lease.get("metadata", {}).get("name") != balancer.wake_lease(name):
            return
        lease_spec = lease.get("spec") or {}
        renewed = parse_time(lease_spec.get("renewTime"))
        if renewed is None:
            return
        first = parse_time(lease_spec.get("acquireTime")) or renewed
        state = self.sleep.state(key_of(md), self._clock())
        if state.asleep_since is None or renewed < state.asleep_since:
            return  # awake, or a renewal from before it went to sleep
        self.wake(md, spec, max(first, state.asleep_since), f"{lease_spec.get('holderIdentity')} "
                  "holds requests")

    def wake(self, md: Mapping[str, Any], spec: ModelDeploymentSpec, demanded_at: datetime,
             why: str) -> None:
        """Wake a sleeping model: render it awake, then scale the stable track up."""
        key, now = key_of(md), self._clock()
        if not self.sleep.wake(key, spec, demanded_at, now):
            return
        self._metrics.wakes.inc()
        log.info("%s/%s: waking up (%s)", *key, why)
        self._events.post(md, "Normal", "WakingUp", f"{why}: scaling up from zero", now)
        self._reconsider(md)

    def deployment(self, md: Mapping[str, Any], spec: ModelDeploymentSpec,
                   deployment: Mapping[str, Any]) -> None:
        """A runtime Deployment changed: the end of a cold start when a stable replica is
        ready; then the canary's turn."""
        key = key_of(md)
        if deployment.get("metadata", {}).get("name") != deployment_name(key[1], "stable"):
            return
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        if ready < 1 or not self.sleep.waking(key):
            return
        now = self._clock()
        seconds = self.sleep.woke(key, now)
        if seconds is None:
            return
        self._metrics.cold_start.observe(seconds)
        log.info("%s/%s: awake after a cold start of %.2fs", *key, seconds)
        self._events.post(md, "Normal", "Awake", f"a replica is ready {seconds:.1f}s after "
                          "the first request held at zero", now)
        self._reconsider(md)  # the canary, held back until now, scales up after this

    # ---- scaling up what an autoscaler owns -------------------------------------------

    def before_apply(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> None:
        """Suspending: remember the replica counts of the autoscaled Deployments."""
        key, now = key_of(md), self._clock()
        if not spec.suspend:
            return
        state = self.sleep.state(key, now)
        if state.before_suspend is not None:
            return  # suspended already
        counts = {}
        for track, scale in plan(spec.model_copy(update={"suspend": False})).items():
            name = deployment_name(key[1], track)
            live = self._cache.children.get(("Deployment", key[0], name))
            if scale.replicas is None and live is not None:
                counts[name] = int((live.get("spec") or {}).get("replicas") or 0)
        self.sleep.suspended(key, counts, now)
        log.info("%s/%s: suspended (replicas to restore: %s)", *key, counts)
        self._events.post(md, "Normal", "Suspended", "spec.suspend: every replica stops; "
                          "requests are answered 503", now)

    async def after_apply(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> None:
        """After a convergence: scale up the Deployments a wake-up or a resume needs."""
        key, now = key_of(md), self._clock()
        if spec.suspend or self.sleep.asleep(key, spec):
            return
        state = self.sleep.state(key, now)
        targets: dict[str, int] = {}
        if state.before_suspend is not None:
            floors = wake_replicas(spec)
            for track, floor in floors.items():
                name = deployment_name(key[1], track)
                targets[name] = max(floor, state.before_suspend.get(name, floor))
            self.sleep.resumed(key, now)
            self._events.post(md, "Normal", "Resumed", "spec.suspend is false: replicas "
                              f"restored ({targets or 'as spec.replicas says'})", now)
        waking = wake_replicas(spec) if eligible(spec) else {}
        for track, count in waking.items():
            # Stable first; the canary once a stable replica is ready (see sleep.py).
            if track == "canary" and (state.demanded_at is not None):
                continue
            targets.setdefault(deployment_name(key[1], track), count)
        for name, count in targets.items():
            live = self._cache.children.get(("Deployment", key[0], name))
            if live is None or int((live.get("spec") or {}).get("replicas") or 0) > 0:
                continue
            patched = await self._client.merge_patch("apps/v1", "Deployment", key[0], name,
                                                     {"spec": {"replicas": count}})
            self._cache.put_child(patched)
            self._metrics.child_writes.labels("Deployment", "scaled").inc()
            log.info("%s/%s: scaled %s from 0 to %d", *key, name, count)
