"""``render``: a ModelDeployment object in, every child manifest out (pure, deterministic).

Children, in apply order: the stable Deployment, the canary Deployment (when a canary is
set), with the balancer (``routing.balancer``, the default) its ServiceAccount, Role,
RoleBinding, Deployment and PDB, the headless ``-replicas`` Service of each track, the
Service ``<name>``, one HPA per Deployment (when autoscaling is set), and the PDB. Each
carries a controller ownerReference to the ModelDeployment, so deleting it lets the
garbage collector remove them.

Replica ownership: without autoscaling the Deployments get ``replicas`` split between
tracks by ``canary.trafficPercent`` (see traffic.py). With autoscaling the Deployments omit
``replicas`` entirely (leaving it to the HPA: re-applying a value would fight the HPA and
restart the scale on every reconcile) and each track gets its own HPA whose bounds are the
split of ``minReplicas``/``maxReplicas``; the same per-pod targets then keep the ratio. A
track with no share of the traffic runs zero replicas and has no HPA.

What the live children decide beyond the spec comes in as ``Observed`` (the controller
reads it from the cluster; ``modelplane render`` shows the steady state): whether the
Service ``<name>`` may select the balancer pods yet. The balancer Deployment is rendered
first and the Service moves to it only once a balancer pod is ready, so turning the
balancer on never leaves the Service without endpoints; turning it off moves the Service
back to the runtime pods before the balancer's children are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelplane_operator.builders.autoscaler import build_autoscaler
from modelplane_operator.builders.balancer import (
    build_balancer,
    build_balancer_access,
    build_balancer_budget,
)
from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.deployment import (
    build_deployment,
    deployment_name,
    runtime_image,
)
from modelplane_operator.builders.disruption import build_disruption_budget
from modelplane_operator.builders.labels import Track, image_version
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.service import build_replicas_service, build_service
from modelplane_operator.builders.traffic import split
from modelplane_operator.spec import ModelDeploymentSpec, validate_spec

__all__ = ["CHILD_KINDS", "Observed", "RenderDefaults", "render", "render_spec"]

CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
)
"""(apiVersion, kind) of every child ``render_spec`` can produce: what the operator writes,
watches and asks RBAC for."""


@dataclass(frozen=True)
class Observed:
    """What the live children decide beyond the spec (the defaults: the steady state)."""

    service_on_balancer: bool = True
    """The Service ``<name>`` may select the balancer pods: one of them has been ready (or
    the Service selects them already). Ignored without the balancer."""


def render(md: dict[str, Any], defaults: RenderDefaults,
           observed: Observed | None = None) -> list[dict[str, Any]]:
    """Every child of a ModelDeployment object; raises InvalidSpec naming the bad field."""
    owner = Owner.from_object(md)
    spec = validate_spec(md.get("spec"))
    return render_spec(owner, spec, defaults, observed)


def render_spec(
    owner: Owner, spec: ModelDeploymentSpec, defaults: RenderDefaults,
    observed: Observed | None = None,
) -> list[dict[str, Any]]:
    """Every child for an already validated spec."""
    observed = observed or Observed()
    version = image_version(runtime_image(spec, defaults))
    canary = spec.canary
    percent = canary.traffic_percent if canary is not None else 0
    tracks: list[Track] = ["stable", "canary"] if canary is not None else ["stable"]

    autoscaling = spec.autoscaling
    total = spec.effective_replicas if autoscaling is None else autoscaling.min_replicas
    counts = dict(zip(("stable", "canary"), split(total, percent), strict=True))
    if autoscaling is not None:
        low = dict(zip(("stable", "canary"), split(autoscaling.min_replicas, percent),
                       strict=True))
        high = dict(zip(("stable", "canary"), split(autoscaling.max_replicas, percent),
                        strict=True))

    def scaled(track: Track) -> bool:
        # A track with no share of the traffic (canary at 0 %, stable at 100 %) gets no HPA
        # (an HPA cannot go below one replica) and an explicit zero instead.
        return autoscaling is not None and counts[track] > 0

    children: list[dict[str, Any]] = []
    for track in tracks:
        model = spec.model if track == "stable" or canary is None else canary.model
        children.append(
            build_deployment(
                owner,
                spec,
                defaults,
                track=track,
                model=model,
                replicas=None if scaled(track) else counts[track],
                version=version,
            )
        )
    with_balancer = spec.routing.balancer
    if with_balancer:
        balancer_version = image_version(defaults.balancer.image)
        children += build_balancer_access(owner, balancer_version)
        children.append(build_balancer(owner, spec, defaults, balancer_version))
        children.append(build_balancer_budget(owner, balancer_version))
    children += [build_replicas_service(owner, spec, version, track) for track in tracks]
    children.append(build_service(
        owner, spec, version, through_balancer=with_balancer and observed.service_on_balancer))
    for track in tracks:
        if autoscaling is not None and scaled(track):
            name = deployment_name(owner.name, track)
            children.append(
                build_autoscaler(
                    owner,
                    autoscaling,
                    name=name,
                    target=name,
                    min_replicas=low[track],
                    max_replicas=max(low[track], high[track]),
                    version=version,
                )
            )
    children.append(build_disruption_budget(owner, version))
    # No deepcopy: every builder makes fresh containers, and pass-through values (affinity,
    # tolerations, env, nodeSelector) are copied as they are key-sorted, so a caller that
    # edits a manifest never edits the spec or another manifest (tested in test_render).
    return children
