"""A ModelDeployment's ``status`` from what its children report: pure aggregation.

Inputs are plain objects as the API returns them (the live Deployment and its Pods) plus
the load measured by scraping; the output is the ``status`` mapping. Conditions follow the
Kubernetes convention (``metav1.Condition``): ``lastTransitionTime`` moves only when a
condition's ``status`` flips, so a refresh that changes nothing produces an equal status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from modelplane_operator.builders.labels import TRACK_LABEL
from modelplane_operator.diff import merge_diff
from modelplane_operator.load import Load
from modelplane_operator.shares import Traffic
from modelplane_operator.termination import detail as termination_detail

OWNED_KEYS = (
    "replicas", "readyReplicas", "updatedReplicas", "ready", "selector", "url",
    "observedGeneration", "conditions", "pods", "load", "modelVersion", "resources",
    "balancer", "scaling", "lastColdStartSeconds",
)
"""Top-level status fields this operator writes (``status.kopf`` belongs to kopf)."""

MAX_REPLICA_STATUSES = 10
"""A short per-replica list: enough for ``kubectl describe``, small enough for 500 objects."""

INVALID_SPEC = "InvalidSpec"
CHILD_REJECTED = "ChildRejected"
MODEL_LOAD_FAILED = "ModelLoadFailed"
UNSCHEDULABLE = "Unschedulable"
CRASH_LOOP = "CrashLoopBackOff"
IMAGE_PULL_FAILED = "ImagePullFailed"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
REPLICA_FAILURE = "ReplicaFailure"

_IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


@dataclass(frozen=True)
class Problem:
    """Why the ModelDeployment is degraded."""

    reason: str
    message: str


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC, second precision, as Kubernetes writes timestamps."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, status: bool, reason: str, message: str, *,
    generation: int, previous: Sequence[Mapping[str, Any]], now: datetime,
) -> dict[str, Any]:
    """One condition; keeps the previous ``lastTransitionTime`` unless the status flipped."""
    value = "True" if status else "False"
    since = timestamp(now)
    for old in previous:
        if old.get("type") == kind and old.get("status") == value and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
    return {
        "type": kind, "status": value, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": since,
    }


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """The Pod's ``Ready`` condition is True (and it is not being deleted)."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def replica_statuses(pods: Sequence[Mapping[str, Any]],
                     traffic: Traffic | None = None) -> list[dict[str, Any]]:
    """A short per-replica list: name, readiness, restarts, phase, why it is unwell, and
    with a balancer its share of the traffic, rate and p99 latency as the balancer saw."""
    out = []
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        entry: dict[str, Any] = {
            "name": pod.get("metadata", {}).get("name", ""),
            "ready": pod_ready(pod),
            "restarts": _restarts(pod),
            "phase": pod.get("status", {}).get("phase", "Pending"),
            "track": pod.get("metadata", {}).get("labels", {}).get(TRACK_LABEL, "stable"),
        }
        node = pod.get("spec", {}).get("nodeName")
        if node:
            entry["node"] = node
        problem = pod_problem(pod)
        if problem is not None:
            entry["message"] = f"{problem.reason}: {problem.message}"
        seen = traffic.replicas.get(str(pod.get("status", {}).get("podIP"))) if (
            traffic is not None) else None
        if seen is not None:
            # Rounded so that noise does not rewrite the status every round.
            entry["share"] = round(seen.share, 2)
            entry["requestsPerSecond"] = round(seen.requests_per_second, 1)
            if seen.latency_p99_ms is not None:
                entry["latencyP99Ms"] = round(seen.latency_p99_ms, 1)
        out.append(entry)
    return out[:MAX_REPLICA_STATUSES]


def pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    """What keeps one Pod from serving, if it is something that will not fix itself."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {})
    for cond in status.get("conditions") or []:
        if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == UNSCHEDULABLE):
            return Problem(UNSCHEDULABLE, f"pod {name}: {cond.get('message', 'unschedulable')}")
    # The init container is the storage initializer (`modelplane fetch`): its failure
    # means the model could not be fetched.
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state", {})
        terminated = state.get("terminated") or init.get("lastState", {}).get("terminated")
        waiting = state.get("waiting") or {}
        if (terminated and int(terminated.get("exitCode", 0)) != 0) or (
            waiting.get("reason") == CRASH_LOOP
        ):
            detail = (termination_detail((terminated or {}).get("message"))
                      or termination_detail(waiting.get("message"))
                      or (terminated or {}).get("reason") or "failed")
            return Problem(MODEL_LOAD_FAILED, f"pod {name}: fetching the model failed: {detail}")
    for container in status.get("containerStatuses") or []:
        waiting = container.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _IMAGE_PULL_REASONS:
            return Problem(IMAGE_PULL_FAILED, f"pod {name}: {waiting.get('message', reason)}")
        if reason == CRASH_LOOP:
            last = container.get("lastState", {}).get("terminated") or {}
            never_ready = not container.get("ready") and not container.get("started")
            kind = MODEL_LOAD_FAILED if never_ready else CRASH_LOOP
            detail = (termination_detail(last.get("message")) or last.get("reason")
                      or termination_detail(waiting.get("message")) or "")
            return Problem(kind, f"pod {name}: runtime keeps exiting: {detail}".rstrip(": "))
    return None


def deployment_problem(deployment: Mapping[str, Any]) -> Problem | None:
    """A Deployment condition that says the rollout is stuck."""
    for cond in deployment.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == DEADLINE_EXCEEDED:
            return Problem(DEADLINE_EXCEEDED, str(cond.get("message", "")))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return Problem(REPLICA_FAILURE, str(cond.get("message", "")))
    return None


def desired_replicas(manifests: Sequence[Mapping[str, Any]],
                     live: Sequence[Mapping[str, Any] | None]) -> int:
    """Replicas wanted over every rendered Deployment (``live``: the same Deployments as
    stored, None where missing): the live count where an HPA owns it, else the rendered
    one, else the HPA's minimum."""
    autoscaler_min = {
        m["spec"]["scaleTargetRef"]["name"]: int(m["spec"].get("minReplicas", 1))
        for m in manifests if m["kind"] == "HorizontalPodAutoscaler"
    }
    rendered = [m for m in manifests if m["kind"] == "Deployment"]
    total = 0
    for manifest, current in zip(rendered, live, strict=True):
        replicas = (current or {}).get("spec", {}).get("replicas")
        if replicas is None:
            replicas = manifest["spec"].get("replicas")
        if replicas is None:
            replicas = autoscaler_min.get(manifest["metadata"]["name"], 1)
        total += int(replicas)
    return total


@dataclass(frozen=True)
class BalancerState:
    """The balancer in front of the replicas, as its Deployment and the Service show it."""

    ready: int
    desired: int
    serving: bool
    """The Service ``<name>`` selects the balancer pods (else, still the runtime pods)."""

    def as_status(self) -> dict[str, Any]:
        """``status.balancer``."""
        return {"ready": f"{self.ready}/{self.desired}", "readyReplicas": self.ready,
                "serving": self.serving}


BALANCER_NOT_READY = "BalancerNotReady"
SCALED_TO_ZERO = "ScaledToZero"
WAKING_UP = "WakingUp"
SUSPENDED = "Suspended"
Mode = Literal["active", "asleep", "waking", "suspended"]


@dataclass(frozen=True)
class Target:
    """What the rendered children say about where the model is served."""

    url: str
    selector: str
    desired_replicas: int
    """Replicas wanted over all tracks (the live count where an HPA owns it)."""
    balancer: BalancerState | None = None
    """The balancer, when ``routing.balancer`` is on."""
    mode: Mode = "active"
    """Suspended, scaled to zero for want of requests, waking from zero, or neither."""
    idle_seconds: int | None = None


def build_status(
    *,
    generation: int,
    target: Target,
    deployments: Sequence[Mapping[str, Any] | None],
    pods: Sequence[Mapping[str, Any]],
    load: Load | None,
    load_updated_at: datetime | None,
    previous: Mapping[str, Any],
    now: datetime,
    traffic: Traffic | None = None,
) -> dict[str, Any]:
    """The full status this operator owns, from the live Deployments (one per track, None
    where missing), their Pods, the load, and the traffic through the balancers."""
    live = [d for d in deployments if d is not None]
    all_exist = bool(deployments) and len(live) == len(deployments)
    desired = target.desired_replicas
    ready = updated = existing = 0
    rolled_out = True
    for dep in live:
        dep_status = dep.get("status", {})
        ready += int(dep_status.get("readyReplicas", 0))
        updated += int(dep_status.get("updatedReplicas", 0))
        existing += int(dep_status.get("replicas", 0))
        rolled_out = rolled_out and int(dep_status.get("observedGeneration", 0)) >= int(
            dep.get("metadata", {}).get("generation", 1)
        )

    problem = next((p for p in map(deployment_problem, live) if p is not None), None)
    if problem is None:
        problem = next((p for p in map(pod_problem, pods) if p is not None), None)
    balancer = target.balancer
    if problem is None and balancer is not None and balancer.serving and balancer.ready == 0:
        # The Service sends every request to the balancer: with none ready, none is served.
        problem = Problem(BALANCER_NOT_READY, f"0/{balancer.desired} balancer pods ready; "
                          "the Service selects them")

    def cond(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(kind, status, reason, message, generation=generation,
                         previous=previous.get("conditions") or [], now=now)

    if not all_exist:
        ready_cond = cond("Ready", False, "Creating", "the Deployment does not exist yet")
        progressing = cond("Progressing", True, "Creating", "creating children")
    else:
        complete = rolled_out and updated >= desired and ready >= desired
        counts = f"{ready}/{desired} replicas ready, {updated} updated"
        if target.mode == "suspended":
            ready_cond = cond("Ready", False, SUSPENDED,
                              "spec.suspend: no replicas; requests are answered 503")
        elif target.mode == "asleep":
            # Still ready: the balancer holds requests and wakes the model.
            ready_cond = cond("Ready", True, SCALED_TO_ZERO,
                              f"no request for {target.idle_seconds}s: scaled to zero; the "
                              "next request wakes it")
        elif target.mode == "waking" and ready == 0:
            ready_cond = cond("Ready", True, WAKING_UP,
                              "a request woke the model: its replicas start; the balancer "
                              "holds requests until one is ready")
        elif desired == 0:
            # replicas: 0 by hand: nothing serves, and nothing will wake it.
            ready_cond = cond("Ready", False, "NoReplicas", "replicas is 0")
        elif complete and problem is not None and problem.reason == BALANCER_NOT_READY:
            ready_cond = cond("Ready", False, problem.reason, problem.message)
        elif complete:
            ready_cond = cond("Ready", True, "AllReplicasReady", counts)
        elif problem is not None:
            ready_cond = cond("Ready", False, problem.reason, problem.message)
        else:
            ready_cond = cond("Ready", False, "ReplicasNotReady", counts)
        if target.mode == "suspended":
            progressing = cond("Progressing", False, SUSPENDED, "suspended")
        elif complete:
            progressing = cond("Progressing", False, "RolloutComplete", counts)
        elif problem is not None and problem.reason == DEADLINE_EXCEEDED:
            progressing = cond("Progressing", False, problem.reason, problem.message)
        else:
            progressing = cond("Progressing", True, "RollingOut", counts)
    if problem is not None:
        degraded = cond("Degraded", True, problem.reason, problem.message)
    else:
        degraded = cond("Degraded", False, "AsExpected", "no replica reports a problem")

    status: dict[str, Any] = {
        "replicas": existing,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "ready": f"{ready}/{desired}",
        "selector": target.selector,
        "url": target.url,
        "observedGeneration": generation,
        "conditions": [ready_cond, progressing, degraded],
        "pods": replica_statuses(pods, traffic),
        "balancer": None if balancer is None else balancer.as_status(),
    }
    status["load"] = None  # no ready pod scraped: the last numbers would be stale
    if load is not None:
        status["load"] = dict(load.as_status())
        if load_updated_at is not None:
            status["load"]["updatedAt"] = timestamp(load_updated_at)
        if load.model_version is not None:
            status["modelVersion"] = load.model_version  # kept while no pod is scraped
    return status


def invalid_status(
    *, message: str, generation: int, previous: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The status fields an invalid spec sets; children are left as they were."""
    def cond(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(kind, status, reason, message, generation=generation,
                         previous=previous.get("conditions") or [], now=now)

    return {
        "observedGeneration": generation,
        "conditions": [
            cond("Ready", False, INVALID_SPEC, message),
            cond("Progressing", False, INVALID_SPEC, "the spec must be fixed first"),
            cond("Degraded", True, INVALID_SPEC, message),
        ],
    }


def rejected_status(
    status: Mapping[str, Any], *, message: str, generation: int, previous: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """``status`` with the conditions of a child the API server refused (``message`` names
    it and quotes the server); the counts still describe the children that exist."""
    def cond(kind: str, value: bool, reason: str, text: str) -> dict[str, Any]:
        return condition(kind, value, reason, text, generation=generation,
                         previous=previous.get("conditions") or [], now=now)

    return {
        **status,
        "conditions": [
            cond("Ready", False, CHILD_REJECTED, message),
            cond("Progressing", False, CHILD_REJECTED,
                 "retried slowly until the spec or the cluster's policy changes"),
            cond("Degraded", True, CHILD_REJECTED, message),
        ],
    }


def status_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch of ``status`` that writes ``wanted``; empty when nothing changed.

    Only the fields in ``wanted`` are compared (``status.kopf`` is kopf's business); a None
    in ``wanted`` removes the field. A new ``load.updatedAt`` alone is no change: an idle
    model must not cause writes.
    """
    old = {key: current[key] for key in wanted if key in current}
    new = {key: value for key, value in wanted.items() if value is not None or key in old}
    old_load, new_load = old.get("load"), new.get("load")
    if isinstance(old_load, Mapping) and isinstance(new_load, Mapping):
        new["load"] = {**new_load, "updatedAt": old_load.get("updatedAt")}
        if not merge_diff(old, new):
            return {}
        new["load"] = dict(new_load)
    return merge_diff(old, new)


def condition_of(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of that type, if any."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None
