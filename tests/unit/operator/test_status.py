"""Status aggregation: counts, READY column, conditions with reasons, transitions, patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from modelplane_operator.events import event_body, transitions
from modelplane_operator.load import Load
from modelplane_operator.status import (
    Target,
    build_status,
    condition_of,
    desired_replicas,
    invalid_status,
    rejected_status,
    status_patch,
)

NOW = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)
TARGET = Target(url="http://m.ns.svc.cluster.local:80", selector="modelplane.io/deployment=m",
                desired_replicas=2)


def deployment(replicas: int = 2, ready: int = 2, updated: int = 2, generation: int = 1,
               observed: int = 1, conditions: list[dict[str, Any]] | None = None,
               ) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                   "observedGeneration": observed, "conditions": conditions or []},
    }


def pod(name: str, ready: bool = True, restarts: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"modelplane.io/track": "stable"}},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "runtime", "ready": ready, "started": ready,
                                   "restartCount": restarts, "state": {"running": {}}}],
            **status,
        },
    }


def status_of(deployments: list[dict[str, Any] | None], pods: list[dict[str, Any]],
              previous: dict[str, Any] | None = None, load: Load | None = None,
              now: datetime = NOW) -> dict[str, Any]:
    return build_status(generation=3, target=TARGET, deployments=deployments, pods=pods,
                        load=load, load_updated_at=now if load else None,
                        previous=previous or {}, now=now)


def reason(status: dict[str, Any], kind: str) -> tuple[str, str]:
    cond = condition_of(status, kind)
    assert cond is not None
    return cond["status"], cond["reason"]


def test_all_ready_is_ready_and_not_progressing() -> None:
    status = status_of([deployment()], [pod("a"), pod("b")])
    assert status["ready"] == "2/2"
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (2, 2, 2)
    assert status["url"] == TARGET.url
    assert status["selector"] == TARGET.selector
    assert status["observedGeneration"] == 3
    assert reason(status, "Ready") == ("True", "AllReplicasReady")
    assert reason(status, "Progressing") == ("False", "RolloutComplete")
    assert reason(status, "Degraded") == ("False", "AsExpected")
    assert [p["name"] for p in status["pods"]] == ["a", "b"]
    assert status["pods"][0] == {"name": "a", "ready": True, "restarts": 0, "phase": "Running",
                                 "track": "stable", "node": "node-1"}
    assert status["load"] is None


def test_missing_deployment_is_creating() -> None:
    status = status_of([None], [])
    assert reason(status, "Ready") == ("False", "Creating")
    assert reason(status, "Progressing") == ("True", "Creating")
    assert status["ready"] == "0/2"


def test_rollout_in_progress() -> None:
    status = status_of([deployment(ready=1, updated=1, generation=2, observed=1)],
                       [pod("a"), pod("b", ready=False)])
    assert reason(status, "Ready") == ("False", "ReplicasNotReady")
    assert reason(status, "Progressing") == ("True", "RollingOut")
    assert status["ready"] == "1/2"


def test_live_replica_count_wins_over_the_rendered_one() -> None:
    # The caller passes what the HPA set; desired comes from the target it computed.
    target = Target(url="u", selector="s", desired_replicas=5)
    status = build_status(generation=1, target=target, deployments=[deployment(5, 5, 5)],
                          pods=[], load=None, load_updated_at=None, previous={}, now=NOW)
    assert status["ready"] == "5/5"


def test_canary_tracks_add_up() -> None:
    status = status_of([deployment(1, 1, 1), deployment(1, 0, 1)], [])
    assert status["ready"] == "1/2"
    assert status["replicas"] == 2


def test_unschedulable_pod_degrades_with_that_reason() -> None:
    stuck = pod("a", ready=False, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])
    status = status_of([deployment(ready=0)], [stuck])
    assert reason(status, "Degraded") == ("True", "Unschedulable")
    assert reason(status, "Ready") == ("False", "Unschedulable")
    degraded = condition_of(status, "Degraded")
    assert degraded is not None
    assert "Insufficient nvidia.com/gpu" in degraded["message"]
    assert status["pods"][0]["message"].startswith("Unschedulable: pod a:")


def test_failed_model_fetch_is_model_load_failed() -> None:
    failed = pod("a", ready=False, phase="Pending", initContainerStatuses=[{
        "name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "404 from storage"}}}])
    status = status_of([deployment(ready=0)], [failed])
    assert reason(status, "Degraded") == ("True", "ModelLoadFailed")
    assert "404 from storage" in condition_of(status, "Degraded")["message"]  # type: ignore[index]


def test_runtime_that_never_started_is_model_load_failed_later_crashes_are_crashloop() -> None:
    never = pod("a", ready=False, restarts=3)
    never["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert reason(status_of([deployment(ready=0)], [never]), "Degraded") == (
        "True", "ModelLoadFailed")
    crashed = pod("a", ready=False, restarts=3)
    crashed["status"]["containerStatuses"][0].update(
        started=True, state={"waiting": {"reason": "CrashLoopBackOff"}})
    status = status_of([deployment(ready=0)], [crashed])
    assert reason(status, "Degraded") == ("True", "CrashLoopBackOff")
    assert status["pods"][0]["restarts"] == 3


def test_progress_deadline_stops_progressing() -> None:
    stuck = deployment(ready=1, conditions=[{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet m-abc has timed out progressing."}])
    status = status_of([stuck], [])
    assert reason(status, "Progressing") == ("False", "ProgressDeadlineExceeded")
    assert reason(status, "Degraded") == ("True", "ProgressDeadlineExceeded")


def test_zero_replicas_by_hand_is_not_ready() -> None:
    target = Target(url="u", selector="s", desired_replicas=0)
    status = build_status(generation=1, target=target, deployments=[deployment(0, 0, 0)],
                          pods=[], load=None, load_updated_at=None, previous={}, now=NOW)
    assert reason(status, "Ready") == ("False", "NoReplicas")


@pytest.mark.parametrize(("mode", "ready", "expected"), [
    ("asleep", 0, ("True", "ScaledToZero")),
    ("waking", 0, ("True", "WakingUp")),
    ("waking", 1, ("True", "AllReplicasReady")),
    ("suspended", 0, ("False", "Suspended")),
])
def test_scale_to_zero_and_suspension(mode: str, ready: int,
                                      expected: tuple[str, str]) -> None:
    """Scaled to zero for want of requests is still Ready (the balancer holds requests and
    wakes the model); suspended is not (requests get 503)."""
    desired = 1 if mode == "waking" else 0
    target = Target(url="u", selector="s", desired_replicas=desired,
                    mode=mode, idle_seconds=300)  # type: ignore[arg-type]
    status = build_status(generation=1, target=target,
                          deployments=[deployment(desired, ready, ready)], pods=[],
                          load=None, load_updated_at=None, previous={}, now=NOW)
    assert reason(status, "Ready") == expected
    assert status["ready"] == f"{ready}/{desired}"
    if mode == "suspended":
        assert reason(status, "Progressing") == ("False", "Suspended")


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = status_of([deployment(ready=1)], [], now=NOW)
    later = NOW + timedelta(minutes=5)
    same = status_of([deployment(ready=1)], [], previous=first, now=later)
    assert condition_of(same, "Ready") == condition_of(first, "Ready")
    flipped = status_of([deployment()], [], previous=first, now=later)
    ready = condition_of(flipped, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-11-24T03:05:00Z"


def test_invalid_spec_status_names_the_field() -> None:
    status = invalid_status(message="spec.autoscaling.maxReplicas: must be >= minReplicas",
                            generation=4, previous={}, now=NOW)
    ready = condition_of(status, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.autoscaling.maxReplicas" in ready["message"]
    assert status["observedGeneration"] == 4
    assert reason(status, "Degraded") == ("True", "InvalidSpec")


def test_a_rejected_child_keeps_the_counts_and_says_why() -> None:
    live = status_of([None], [])
    message = "the API server refused Deployment m: 422 Invalid: quota; applied: Service m"
    status = rejected_status(live, message=message, generation=3, previous={}, now=NOW)
    assert {k: status[k] for k in ("ready", "url", "observedGeneration")} == {
        "ready": "0/2", "url": TARGET.url, "observedGeneration": 3}
    assert reason(status, "Ready") == ("False", "ChildRejected")
    assert reason(status, "Degraded") == ("True", "ChildRejected")
    assert reason(status, "Progressing") == ("False", "ChildRejected")
    assert condition_of(status, "Ready")["message"] == message  # type: ignore[index]
    # One Warning per distinct message, none for the same one again.
    assert transitions(live, status) == [("Warning", "ChildRejected", message)]
    assert transitions(status, status) == []
    again = rejected_status(live, message=message + "!", generation=3, previous=status, now=NOW)
    assert transitions(status, again) == [("Warning", "ChildRejected", message + "!")]


def test_desired_replicas_follow_the_live_count_then_the_render_then_the_hpa() -> None:
    def dep(name: str, replicas: int | None) -> dict[str, Any]:
        spec = {} if replicas is None else {"replicas": replicas}
        return {"kind": "Deployment", "metadata": {"name": name}, "spec": spec}

    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "m"},
           "spec": {"scaleTargetRef": {"name": "m"}, "minReplicas": 3}}
    rendered = [dep("m", None), dep("m-canary", 1), hpa]
    assert desired_replicas(rendered, [None, None]) == 3 + 1  # HPA minimum, rendered count
    assert desired_replicas(rendered, [dep("m", 5), dep("m-canary", 1)]) == 5 + 1  # live wins


# ---- patches: no spurious writes ------------------------------------------------------------


def test_unchanged_status_gives_an_empty_patch() -> None:
    first = status_of([deployment()], [pod("a")])
    again = status_of([deployment()], [pod("a")], previous=first, now=NOW + timedelta(hours=1))
    live = {**first, "kopf": {"last-handled-configuration": "{}"}, "load": None}
    del live["load"]
    assert status_patch(live, again) == {}


def test_a_new_load_timestamp_alone_is_no_change() -> None:
    load = Load(12.0, 1, 3.0, 9.0, 0.0, 1)
    first = status_of([deployment()], [], load=load)
    second = status_of([deployment()], [], previous=first, load=load,
                       now=NOW + timedelta(seconds=10))
    assert status_patch(first, second) == {}
    busier = status_of([deployment()], [], previous=first, load=Load(20.0, 1, 3.0, 9.0, 0.0, 1),
                       now=NOW + timedelta(seconds=10))
    assert status_patch(first, busier) == {
        "load": {"requestsPerSecond": 20.0, "updatedAt": "2026-11-24T03:00:10Z"}}


def test_load_disappears_when_no_pod_is_scraped() -> None:
    first = status_of([deployment()], [], load=Load(12.0, 1, 3.0, 9.0, 0.0, 1))
    gone = status_of([deployment()], [], previous=first)
    assert status_patch(first, gone) == {"load": None}


def test_patch_never_touches_kopf_fields() -> None:
    status = status_of([deployment()], [])
    patch = status_patch({"kopf": {"progress": {}}}, status)
    assert "kopf" not in patch
    assert patch["ready"] == "2/2"


# ---- events -----------------------------------------------------------------------------------


def test_transition_events() -> None:
    creating = status_of([None], [])
    assert transitions({}, creating) == []  # the first status is no transition
    ready = status_of([deployment()], [], previous=creating)
    assert transitions(creating, ready) == [("Normal", "Ready", "2/2 replicas ready, 2 updated")]
    stuck = pod("a", ready=False, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no"}])
    broken = status_of([deployment(ready=1)], [stuck], previous=ready)
    kinds = [(kind, why) for kind, why, _ in transitions(ready, broken)]
    assert kinds == [("Warning", "NotReady"), ("Warning", "Unschedulable")]


def test_invalid_spec_event_once_per_message() -> None:
    bad = invalid_status(message="spec.replicas: must be >= 0", generation=2, previous={},
                         now=NOW)
    assert transitions({}, bad) == [("Warning", "InvalidSpec", "spec.replicas: must be >= 0")]
    assert transitions(bad, bad) == []


def test_event_body_refers_to_the_object() -> None:
    md = {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"}}
    body = event_body(md, "Warning", "InvalidSpec", "x" * 2000, NOW)
    assert body["involvedObject"] == {"apiVersion": "modelplane.io/v1alpha1",
                                      "kind": "ModelDeployment", "name": "m", "namespace": "ns",
                                      "uid": "u-1"}
    assert body["metadata"] == {"generateName": "m.", "namespace": "ns"}
    assert len(body["message"]) == 1024
    assert body["lastTimestamp"] == "2026-11-24T03:00:00Z"
