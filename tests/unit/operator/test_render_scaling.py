"""Scale to zero, suspension and the KEDA engine in rendering (builders/scale.py, keda.py)."""

from __future__ import annotations

from typing import Any

import pytest
from modelplane_operator.builders.render import Observed, render
from modelplane_operator.builders.scale import plan, wake_replicas
from modelplane_operator.spec import validate_spec

from .cases import DEFAULTS, md, named

ZERO = {"model": {"uri": "demo://seed-mlp"},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "targetInFlightPerReplica": 8}}
CANARY = {"model": {"uri": "demo://seed-mlp"}, "trafficPercent": 25}


def _kinds(children: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in children]


def _replicas(children: list[dict[str, Any]], name: str) -> int | None:
    replicas: int | None = named(children, "Deployment", name)["spec"].get("replicas")
    return replicas


def test_awake_model_that_may_sleep_has_an_autoscaler_with_a_floor_of_one() -> None:
    children = render(md(ZERO), DEFAULTS)
    assert _replicas(children, "seed-mlp") is None  # the HPA owns it
    hpa = named(children, "HorizontalPodAutoscaler", "seed-mlp")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    lease = named(children, "Lease", "seed-mlp-wake")
    assert lease["spec"] == {"leaseDurationSeconds": 10}
    # Without minReplicas 0 there is no wake Lease.
    plain = {**ZERO, "autoscaling": {**ZERO["autoscaling"], "minReplicas": 1}}
    assert ("Lease", "seed-mlp-wake") not in _kinds(render(md(plain), DEFAULTS))


def test_asleep_the_hpa_goes_and_every_track_is_at_zero() -> None:
    spec = {**ZERO, "canary": CANARY}
    children = render(md(spec), DEFAULTS, Observed(asleep=True))
    assert _replicas(children, "seed-mlp") == 0
    assert _replicas(children, "seed-mlp-canary") == 0
    assert [k for k in _kinds(children) if k[0] == "HorizontalPodAutoscaler"] == []
    # Awake again: both tracks autoscaled, floors of one each (the stable wakes first).
    assert wake_replicas(validate_spec(spec)) == {"stable": 1, "canary": 1}


def test_keda_engine_renders_scaled_objects_paused_at_zero_while_asleep() -> None:
    spec = {**ZERO, "autoscaling": {**ZERO["autoscaling"], "engine": "keda",
                                    "targetCPUUtilization": 70,
                                    "targetRequestsPerSecondPerReplica": 2.5}}
    awake = render(md(spec), DEFAULTS)
    scaled = named(awake, "ScaledObject", "seed-mlp")
    assert "HorizontalPodAutoscaler" not in {k for k, _ in _kinds(awake)}
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "seed-mlp"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    url = f"{DEFAULTS.keda_load_url}/load/ml/seed-mlp/stable"
    assert scaled["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}},
        {"type": "metrics-api", "metricType": "AverageValue",
         "metadata": {"url": url, "format": "json", "valueLocation": "inFlight",
                      "targetValue": "8"}},
        {"type": "metrics-api", "metricType": "AverageValue",
         "metadata": {"url": url, "format": "json", "valueLocation": "requestsPerSecond",
                      "targetValue": "2500m"}},
    ]
    assert "annotations" not in scaled["metadata"] or (
        "autoscaling.keda.sh/paused-replicas" not in scaled["metadata"]["annotations"])
    asleep = render(md(spec), DEFAULTS, Observed(asleep=True))
    paused = named(asleep, "ScaledObject", "seed-mlp")
    assert paused["metadata"]["annotations"]["autoscaling.keda.sh/paused-replicas"] == "0"
    assert _replicas(asleep, "seed-mlp") == 0


@pytest.mark.parametrize("spec", [
    {"model": {"uri": "demo://seed-mlp"}, "replicas": 3, "suspend": True},
    {**ZERO, "suspend": True, "canary": CANARY},
])
def test_suspended_runs_nothing_and_has_no_autoscaler(spec: dict[str, Any]) -> None:
    children = render(md(spec), DEFAULTS)
    for deployment in (c for c in children if c["kind"] == "Deployment"
                       and not c["metadata"]["name"].endswith("-balancer")):
        assert deployment["spec"]["replicas"] == 0
    assert not {"HorizontalPodAutoscaler", "ScaledObject"} & {k for k, _ in _kinds(children)}
    # The balancer stays: it answers 503 "model suspended".
    assert named(children, "Deployment", "seed-mlp-balancer")["spec"]["replicas"] == 2


def test_plan_of_a_plain_model_is_its_replica_split() -> None:
    scales = plan(validate_spec({"model": {"uri": "demo://"}, "replicas": 10,
                                 "canary": CANARY}))
    assert (scales["stable"].replicas, scales["canary"].replicas) == (7, 3)
    assert scales["stable"].bounds is None
    # Asleep means nothing without minReplicas 0.
    assert plan(validate_spec({"model": {"uri": "demo://"}, "replicas": 2}),
                asleep=True)["stable"].replicas == 2
