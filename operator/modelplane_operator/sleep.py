"""Scale to zero, scale from zero, and suspension: each ModelDeployment's sleep state.

Pure bookkeeping, no I/O: the controller feeds it what it sees (the balancers' traffic,
the wake Lease, the Deployments) and acts on its answers (render with ``asleep``, scale a
Deployment up, write the status).

- Awake -> asleep: ``minReplicas: 0``, and for ``idleSeconds`` no request as the balancers
  count them (their answers, held requests and requests in flight), measured only while
  the balancers can be scraped: a model whose traffic cannot be seen is never put to sleep.
- Asleep -> waking: a balancer renews the wake Lease after the model went to sleep (it
  holds a request), or a scrape finds requests held. The stable track wakes first and the
  canary once a stable replica is ready: the requests held during a cold start (possibly
  a large burst) land on the known-good model, never wholly on the canary, and the canary
  takes its share again a few seconds later.
- Waking -> awake: a stable replica is ready; the time since the first held request is the
  cold start (``status.lastColdStartSeconds``).
- Suspend: the replica counts the autoscalers had are kept to restore on resume.

The state survives an operator restart through the status (``status.scaling``): a model
asleep before the restart stays asleep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelplane_operator.cache import Key
from modelplane_operator.spec import ModelDeploymentSpec


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (a Kubernetes Time or MicroTime), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def stamp(when: datetime) -> str:
    """RFC 3339 in UTC with milliseconds (cold starts are measured in fractions)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class State:
    """One ModelDeployment's sleep state."""

    awake_since: datetime
    """When it was last seen awake with nothing to count from (start, wake-up, resume)."""
    asleep_since: datetime | None = None
    demanded_at: datetime | None = None
    """While waking: when the first held request arrived (the balancer's word)."""
    canary_pending: bool = False
    """While waking: the canary still waits for a ready stable replica."""
    cold_start_s: float | None = None
    before_suspend: dict[str, int] | None = None
    """Deployment name -> replicas it had when suspended (autoscaled tracks)."""


def eligible(spec: ModelDeploymentSpec) -> bool:
    """Whether the model may scale to zero at all."""
    autoscaling = spec.autoscaling
    return (autoscaling is not None and autoscaling.scales_to_zero and spec.routing.balancer
            and not spec.suspend)


class Sleep:
    """Every ModelDeployment's sleep state."""

    def __init__(self) -> None:
        self._states: dict[Key, State] = {}

    def state(self, key: Key, now: datetime) -> State:
        """The state of one object (created awake)."""
        found = self._states.get(key)
        if found is None:
            found = self._states[key] = State(awake_since=now)
        return found

    def restore(self, key: Key, status: Mapping[str, Any], now: datetime) -> None:
        """Take over the state the status recorded (once per object and process)."""
        if key in self._states:
            return
        state = self.state(key, now)
        scaling = status.get("scaling") or {}
        state.asleep_since = parse_time(scaling.get("scaledToZeroAt"))
        state.demanded_at = parse_time(scaling.get("wakingSince"))
        before = scaling.get("replicasBeforeSuspend")
        if isinstance(before, Mapping):
            state.before_suspend = {str(k): int(v) for k, v in before.items()
                                    if isinstance(v, int) and not isinstance(v, bool)}
        cold = status.get("lastColdStartSeconds")
        if isinstance(cold, int | float) and not isinstance(cold, bool):
            state.cold_start_s = float(cold)

    def forget(self, key: Key) -> None:
        """A deleted object."""
        self._states.pop(key, None)

    def asleep(self, key: Key, spec: ModelDeploymentSpec) -> bool:
        """Whether the object is scaled to zero for want of requests."""
        state = self._states.get(key)
        return eligible(spec) and state is not None and state.asleep_since is not None

    def waking(self, key: Key) -> bool:
        """Whether a wake-up is under way (no stable replica ready yet)."""
        state = self._states.get(key)
        return state is not None and state.demanded_at is not None

    def idle(self, key: Key, spec: ModelDeploymentSpec, last_request: datetime | None,
             busy: bool, seen: bool, now: datetime) -> bool:
        """Whether to scale to zero now: eligible, awake, traffic seen, and quiet for
        ``idleSeconds``."""
        if not eligible(spec) or not seen or busy:
            return False
        state = self.state(key, now)
        if state.asleep_since is not None or state.demanded_at is not None:
            return False
        assert spec.autoscaling is not None
        last = max(filter(None, (last_request, state.awake_since)))
        return (now - last).total_seconds() >= spec.autoscaling.idle_seconds

    def sleep(self, key: Key, now: datetime) -> None:
        """Scaled to zero from now."""
        self.state(key, now).asleep_since = now

    def wake(self, key: Key, spec: ModelDeploymentSpec, demanded_at: datetime,
             now: datetime) -> bool:
        """A request waits (since ``demanded_at``): True if this wakes the model."""
        state = self.state(key, now)
        if not eligible(spec) or state.asleep_since is None:
            return False
        if demanded_at < state.asleep_since:
            return False  # a demand from before it went to sleep (or the Lease's first write)
        state.asleep_since = None
        state.demanded_at = demanded_at
        state.canary_pending = spec.canary is not None
        state.awake_since = now
        return True

    def woke(self, key: Key, now: datetime) -> float | None:
        """A stable replica is ready: the cold start in seconds, if one was under way."""
        state = self._states.get(key)
        if state is None or state.demanded_at is None:
            return None
        seconds = max(0.0, (now - state.demanded_at).total_seconds())
        state.cold_start_s = seconds
        state.demanded_at = None
        state.awake_since = now
        return seconds

    def suspended(self, key: Key, replicas: Mapping[str, int], now: datetime) -> None:
        """Remember the counts to restore (only the first time: a suspended model has 0)."""
        state = self.state(key, now)
        if state.before_suspend is None:
            state.before_suspend = dict(replicas)
        state.asleep_since = state.demanded_at = None  # suspension wins over sleep

    def resumed(self, key: Key, now: datetime) -> dict[str, int]:
        """The counts to restore now that the model is resumed (then forgotten)."""
        state = self.state(key, now)
        counts, state.before_suspend = state.before_suspend or {}, None
        state.awake_since = now
        return counts

    def status(self, key: Key) -> dict[str, Any]:
        """``status.scaling`` and ``status.lastColdStartSeconds`` (None removes a field)."""
        state = self._states.get(key)
        if state is None:
            return {}
        scaling = {
            "scaledToZeroAt": stamp(state.asleep_since) if state.asleep_since else None,
            "wakingSince": stamp(state.demanded_at) if state.demanded_at else None,
            "replicasBeforeSuspend": state.before_suspend,
        }
        kept = {k: v for k, v in scaling.items() if v is not None}
        return {"scaling": kept or None,
                "lastColdStartSeconds": None if state.cold_start_s is None
                else round(state.cold_start_s, 3)}
