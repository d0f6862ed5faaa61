"""How many replicas each track runs, and who decides: the spec, an autoscaler, or nobody
(suspended, or scaled to zero). Pure: the spec and the observed sleep state in, a plan out.

- ``suspend``: every track at zero, no autoscaler.
- no autoscaling: ``replicas`` split between the tracks by ``canary.trafficPercent``.
- autoscaling: each track with a share of the traffic gets an autoscaler between its split
  of ``max(1, minReplicas)`` and of ``maxReplicas``, and the Deployment leaves
  ``replicas`` to it. Scaled to zero (``minReplicas: 0``, idle): zero replicas, the HPA
  removed, the ScaledObject paused at zero; at wake-up each track gets its floor back.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelplane_operator.builders.labels import Track
from modelplane_operator.builders.traffic import split
from modelplane_operator.spec import ModelDeploymentSpec

TRACKS: tuple[Track, Track] = ("stable", "canary")


@dataclass(frozen=True)
class TrackScale:
    """One track's plan."""

    replicas: int | None
    """The Deployment's ``replicas``; None leaves it to the autoscaler."""
    bounds: tuple[int, int] | None = None
    """The autoscaler's (min, max); None: no autoscaler."""
    paused: bool = False
    """The autoscaler holds the track at zero (KEDA's paused-replicas)."""


def plan(spec: ModelDeploymentSpec, asleep: bool = False) -> dict[Track, TrackScale]:
    """Every track's plan (the canary's even without a canary: zero)."""
    percent = spec.canary.traffic_percent if spec.canary is not None else 0
    if spec.suspend:
        return {track: TrackScale(0) for track in TRACKS}
    autoscaling = spec.autoscaling
    if autoscaling is None:
        counts = split(spec.effective_replicas, percent)
        return {track: TrackScale(count) for track, count in zip(TRACKS, counts, strict=True)}
    low = dict(zip(TRACKS, split(autoscaling.floor, percent), strict=True))
    high = dict(zip(TRACKS, split(autoscaling.max_replicas, percent), strict=True))
    out: dict[Track, TrackScale] = {}
    for track in TRACKS:
        bounds = (low[track], max(low[track], high[track]))
        if low[track] == 0:
            # No share of the traffic (canary at 0 %, stable at 100 %): an explicit zero and
            # no autoscaler (an HPA cannot go below one replica).
            out[track] = TrackScale(0)
        elif asleep and autoscaling.scales_to_zero:
            paused = autoscaling.engine == "keda"
            out[track] = TrackScale(0, bounds if paused else None, paused)
        else:
            out[track] = TrackScale(None, bounds)
    return out


def wake_replicas(spec: ModelDeploymentSpec) -> dict[Track, int]:
    """What each track scales to when the model wakes: its autoscaler's floor."""
    return {track: scale.bounds[0] for track, scale in plan(spec).items()
            if scale.bounds is not None}
