"""``render``: a ModelDeployment object in, every child manifest out (pure, deterministic).

Children, in apply order: the stable Deployment, the canary Deployment (when a canary is
set), with the balancer (``routing.balancer``, the default) its ServiceAccount, Role,
RoleBinding, Deployment and PDB (and with ``minReplicas: 0`` the wake Lease it renews to
wake the model), the headless ``-replicas`` Service of each track, the
Service ``<name>``, one HPA or KEDA ScaledObject per Deployment (when autoscaling is set),
and the PDB. Each
carries a controller ownerReference to the ModelDeployment, so deleting it lets the
garbage collector remove them.

Replica counts (builders/scale.py): without autoscaling the Deployments get ``replicas``
split between tracks by ``canary.trafficPercent`` (see traffic.py). With autoscaling the
Deployments omit ``replicas`` entirely (leaving it to the autoscaler: re-applying a value
would fight it and restart the scale on every reconcile) and each track gets its own
autoscaler whose bounds are the split of ``minReplicas``/``maxReplicas``; the same per-pod
targets then keep the ratio. A track with no share of the traffic runs zero replicas and
has no autoscaler; a suspended model, or one scaled to zero, runs none at all.

What the live children decide beyond the spec comes in as ``Observed`` (the controller
reads it from the cluster; ``modelplane render`` shows the steady state): whether the
Service ``<name>`` may select the balancer pods yet, and whether the model is scaled to zero
for want of requests. The balancer Deployment is rendered
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
    build_wake_lease,
)
from modelplane_operator.builders.defaults import RenderDefaults
from modelplane_operator.builders.deployment import (
    build_deployment,
    deployment_name,
    runtime_image,
)
from modelplane_operator.builders.disruption import build_disruption_budget
from modelplane_operator.builders.keda import build_scaled_object
from modelplane_operator.builders.labels import Track, image_version
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.scale import plan
from modelplane_operator.builders.service import build_replicas_service, build_service
from modelplane_operator.spec import ModelDeploymentSpec, validate_spec

__all__ = ["CHILD_KINDS", "OPTIONAL_KINDS", "Observed", "RenderDefaults", "render",
           "render_spec"]

CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("coordination.k8s.io/v1", "Lease"),
)
"""(apiVersion, kind) of every child ``render_spec`` can produce: what the operator writes,
watches and asks RBAC for."""
OPTIONAL_KINDS = (("keda.sh/v1alpha1", "ScaledObject"),)
"""Children of APIs a cluster may lack (KEDA): watched only where the API is served."""


@dataclass(frozen=True)
class Observed:
    """What the live children decide beyond the spec (the defaults: the steady state)."""

    service_on_balancer: bool = True
    """The Service ``<name>`` may select the balancer pods: one of them has been ready (or
    the Service selects them already). Ignored without the balancer."""
    asleep: bool = False
    """Scaled to zero for want of requests (``minReplicas: 0``; see builders/scale.py)."""


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
    tracks: list[Track] = ["stable", "canary"] if canary is not None else ["stable"]

    scales = plan(spec, observed.asleep)
    autoscaling = spec.autoscaling
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
                replicas=scales[track].replicas,
                version=version,
            )
        )
    with_balancer = spec.routing.balancer
    if with_balancer:
        balancer_version = image_version(defaults.balancer.image)
        children += build_balancer_access(owner, balancer_version)
        children.append(build_balancer(owner, spec, defaults, balancer_version))
        children.append(build_balancer_budget(owner, balancer_version))
        if autoscaling is not None and autoscaling.scales_to_zero:
            children.append(build_wake_lease(owner, balancer_version))
    children += [build_replicas_service(owner, spec, version, track) for track in tracks]
    children.append(build_service(
        owner, spec, version, through_balancer=with_balancer and observed.service_on_balancer))
    for track in tracks:
        bounds = scales[track].bounds
        if autoscaling is None or bounds is None:
            continue
        name = deployment_name(owner.name, track)
        if autoscaling.engine == "keda":
            children.append(build_scaled_object(
                owner, autoscaling, name=name, track=track, min_replicas=bounds[0],
                max_replicas=bounds[1], version=version,
                load_base_url=defaults.keda_load_url, paused=scales[track].paused))
        else:
            children.append(build_autoscaler(
                owner, autoscaling, name=name, target=name, min_replicas=bounds[0],
                max_replicas=bounds[1], version=version))
    children.append(build_disruption_budget(owner, version))
    # No deepcopy: every builder makes fresh containers, and pass-through values (affinity,
    # tolerations, env, nodeSelector) are copied as they are key-sorted, so a caller that
    # edits a manifest never edits the spec or another manifest (tested in test_render).
    return children
