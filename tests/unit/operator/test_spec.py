"""The spec model: aliases, defaults, canonical quantities, and field-named validation errors."""

from __future__ import annotations

from typing import Any

import pytest
from modelplane_operator.quantity import canonical_quantity
from modelplane_operator.spec import (
    InvalidSpec,
    ModelDeploymentSpec,
    validate_name,
    validate_spec,
)
from modelplane_operator.status_schema import ModelDeploymentStatus

from .cases import SPECS


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_representative_spec_is_valid(name: str) -> None:
    spec = validate_spec(SPECS[name])
    # camelCase out is exactly camelCase in: no field renamed or dropped on the way.
    dumped = spec.model_dump(by_alias=True, exclude_unset=True)
    assert dumped == _normalized(SPECS[name])


def _normalized(raw: dict[str, Any]) -> dict[str, Any]:
    # Quantities come back canonical; everything else unchanged.
    out = dict(raw)
    if "resources" in raw:
        out["resources"] = {
            k: canonical_quantity(v) if k in ("cpu", "memory") else v
            for k, v in raw["resources"].items()
        }
    return out


def test_snake_case_names_work_in_python() -> None:
    spec = ModelDeploymentSpec(
        model={"uri": "demo://x", "credentials_secret": "creds"},  # type: ignore[arg-type]
        autoscaling={"min_replicas": 2, "max_replicas": 3,  # type: ignore[arg-type]
                     "target_cpu_utilization": 50},
    )
    assert spec.model.credentials_secret == "creds"
    assert spec.autoscaling is not None
    assert spec.autoscaling.target_cpu_utilization == 50
    assert spec.model_dump(by_alias=True)["autoscaling"]["targetCPUUtilization"] == 50


def test_defaults() -> None:
    spec = validate_spec({"model": {"uri": "demo://"}})
    assert spec.effective_replicas == 1
    assert spec.model.format == "auto"
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.gpu) == ("1", "2Gi", 0)
    assert spec.routing.strategy == "latency-aware"
    assert spec.routing.balancer is True
    assert spec.routing.weights == {}
    assert spec.runtime.log_level == "info"
    assert spec.autoscaling is None
    assert spec.canary is None


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({}, "spec.model", "required"),
        ({"model": {}}, "spec.model.uri", "required"),
        ({"model": {"uri": "ftp://x/y"}}, "spec.model.uri", "unsupported scheme 'ftp'"),
        ({"model": {"uri": "models/x"}}, "spec.model.uri", "no scheme"),
        ({"model": {"uri": "pvc:///x"}}, "spec.model.uri", "claim"),
        ({"model": {"uri": "pvc://c/../etc"}}, "spec.model.uri", ".."),
        ({"model": {"uri": "https:///x.tar.gz"}}, "spec.model.uri", "host"),
        ({"model": {"uri": "file://relative"}}, "spec.model.uri", "absolute"),
        ({"model": {"uri": "demo://", "format": "onnx"}}, "spec.model.format", "savedmodel"),
        ({"model": {"uri": "demo://", "version": 0}}, "spec.model.version", "greater than"),
        ({"model": {"uri": "demo://", "credentialsSecret": "Bad_Name"}},
         "spec.model.credentialsSecret", "Secret name"),
        ({"model": {"uri": "demo://"}, "replicas": -1}, "spec.replicas", "greater than"),
        ({"model": {"uri": "demo://"}, "replicas": "two"}, "spec.replicas", "integer"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 2}},
         "spec.autoscaling.maxReplicas", "required"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
         "spec.autoscaling.maxReplicas", "must be >= minReplicas"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": -1, "maxReplicas": 2}},
         "spec.autoscaling.minReplicas", "greater than"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 0, "maxReplicas": 2},
          "routing": {"balancer": False}},
         "spec.autoscaling.minReplicas", "needs the balancer"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"maxReplicas": 2, "idleSeconds": 1}},
         "spec.autoscaling.idleSeconds", "greater than or equal to 5"),
        ({"model": {"uri": "demo://"}, "autoscaling": {"maxReplicas": 2, "engine": "knative"}},
         "spec.autoscaling.engine", "hpa"),
        ({"model": {"uri": "demo://"}, "suspend": "yes"}, "spec.suspend", "boolean"),
        ({"model": {"uri": "demo://"},
          "autoscaling": {"maxReplicas": 2, "targetInFlightPerReplica": 0}},
         "spec.autoscaling.targetInFlightPerReplica", "greater than"),
        ({"model": {"uri": "demo://"},
          "autoscaling": {"maxReplicas": 2, "targetCPUUtilization": 0}},
         "spec.autoscaling.targetCPUUtilization", "greater than"),
        ({"model": {"uri": "demo://"}, "resources": {"cpu": "lots"}},
         "spec.resources.cpu", "quantity"),
        ({"model": {"uri": "demo://"}, "resources": {"memory": "-1Gi"}},
         "spec.resources.memory", "quantity"),
        ({"model": {"uri": "demo://"}, "resources": {"cpu": 0}},
         "spec.resources.cpu", "greater than zero"),
        ({"model": {"uri": "demo://"}, "resources": {"gpu": -1}},
         "spec.resources.gpu", "greater than"),
        ({"model": {"uri": "demo://"}, "scheduling": {"nodeSelector": {"a": 1}}},
         "spec.scheduling.nodeSelector.a", "string"),
        ({"model": {"uri": "demo://"},
          "scheduling": {"nodeSelector": {"nvidia.com/gpu.present": True}}},
         'spec.scheduling.nodeSelector["nvidia.com/gpu.present"]', "string"),
        ({"model": {"uri": "demo://"}, "scheduling": {"tolerations": [{"key": "a"}, {"op": 1}]}},
         "spec.scheduling.tolerations[1].op", "unknown field"),
        ({"model": {"uri": "demo://"},
          "scheduling": {"tolerations": [{"key": "a", "operator": "In"}]}},
         "spec.scheduling.tolerations[0].operator", "'Equal' or 'Exists'"),
        ({"model": {"uri": "demo://"}, "scheduling": {"affinity": {"nodeAfinity": {}}}},
         "spec.scheduling.affinity.nodeAfinity", "unknown field"),
        ({"model": {"uri": "demo://"}, "scheduling": {"priorityClassName": "High"}},
         "spec.scheduling.priorityClassName", "PriorityClass"),
        ({"model": {"uri": "demo://"}, "runtime": {"batching": {"maxBatchSize": 0}}},
         "spec.runtime.batching.maxBatchSize", "greater than"),
        ({"model": {"uri": "demo://"}, "runtime": {"batching": {"maxLatencyMs": -1}}},
         "spec.runtime.batching.maxLatencyMs", "greater than"),
        ({"model": {"uri": "demo://"}, "runtime": {"logLevel": "verbose"}},
         "spec.runtime.logLevel", "debug"),
        ({"model": {"uri": "demo://"}, "runtime": {"image": "has space:1"}},
         "spec.runtime.image", "spaces"),
        ({"model": {"uri": "demo://"}, "runtime": {"env": [{"value": "x"}]}},
         "spec.runtime.env[0].name", "required"),
        ({"model": {"uri": "demo://"}, "runtime": {"env": [{"name": "1=x"}]}},
         "spec.runtime.env[0].name", "environment variable name"),
        ({"model": {"uri": "demo://"}, "runtime": {"env": [{"name": "A", "value": 1}]}},
         "spec.runtime.env[0].value", "string"),
        ({"model": {"uri": "demo://"},
          "runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
         "spec.runtime.env[1].name", "duplicate"),
        ({"model": {"uri": "demo://"},
          "runtime": {"preprocessing": {"x": {"std": [1.0, 0.0]}}}},
         "spec.runtime.preprocessing.x.std", "zero"),
        ({"model": {"uri": "demo://"},
          "runtime": {"preprocessing": {"x": {"shape": [-1, -1]}}}},
         "spec.runtime.preprocessing.x.shape", "at most once"),
        ({"model": {"uri": "demo://"},
          "runtime": {"preprocessing": {"x": {"dtype": "complex64"}}}},
         "spec.runtime.preprocessing.x.dtype", "float32"),
        ({"model": {"uri": "demo://"}, "runtime": {"preprocessing": {"x": {"mean": 0.5}}}},
         "spec.runtime.preprocessing.x.mean", "list"),
        ({"model": {"uri": "demo://"},
          "runtime": {"postprocessing": {"probs": {"topK": 0}}}},
         "spec.runtime.postprocessing.probs.topK", "greater than"),
        ({"model": {"uri": "demo://"},
          "runtime": {"postprocessing": {"probs": {"labels": []}}}},
         "spec.runtime.postprocessing.probs.labels", "at least 1"),
        ({"model": {"uri": "demo://"}, "runtime": {"signatureName": ""}},
         "spec.runtime.signatureName", "at least 1"),
        ({"model": {"uri": "demo://"}, "canary": {"model": {"uri": "demo://"}}},
         "spec.canary.trafficPercent", "required"),
        ({"model": {"uri": "demo://"},
          "canary": {"model": {"uri": "demo://"}, "trafficPercent": 101}},
         "spec.canary.trafficPercent", "less than"),
        ({"model": {"uri": "demo://"},
          "canary": {"model": {"uri": "bogus"}, "trafficPercent": 10}},
         "spec.canary.model.uri", "no scheme"),
        ({"model": {"uri": "demo://"}, "routing": {"strategy": "fastest"}},
         "spec.routing.strategy", "least-request"),
        ({"model": {"uri": "demo://"}, "routing": {"weights": {"pod/a": 0}}},
         'spec.routing.weights["pod/a"]', "greater than or equal to 1"),
        ({"model": {"uri": "demo://"}, "routing": {"weights": {"pod/a": 1_000_001}}},
         'spec.routing.weights["pod/a"]', "less than or equal to 1000000"),
        ({"model": {"uri": "demo://"}, "routing": {"weights": {"host/a": 2}}},
         'spec.routing.weights["host/a"]', "pod/<pod name>"),
        ({"model": {"uri": "demo://"}, "routing": {"weights": {"pod/Bad_Name": 2}}},
         'spec.routing.weights["pod/Bad_Name"]', "pod/<pod name>"),
        ({"model": {"uri": "demo://"}, "routing": {"weights": {"zone/eu-1a": True}}},
         'spec.routing.weights["zone/eu-1a"]', "integer"),
        ({"model": {"uri": "demo://"}, "routing": {"balancer": False, "weights": {"pod/a": 2}}},
         "spec.routing.weights", "balancer"),
        ({"model": {"uri": "demo://"}, "routing": {"balancer": "yes"}},
         "spec.routing.balancer", "boolean"),
        ({"model": {"uri": "demo://"}, "auth": {}}, "spec.auth.secretName", "required"),
        ({"model": {"uri": "demo://"}, "tls": {"secretName": "UPPER"}},
         "spec.tls.secretName", "Secret name"),
        ({"model": {"uri": "demo://"}, "replicsa": 2}, "spec.replicsa", "unknown field"),
        ({"model": {"uri": "demo://", "url": "x"}}, "spec.model.url", "unknown field"),
    ],
)
def test_invalid_spec_names_the_field(raw: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_spec(raw)
    assert caught.value.field == field, str(caught.value)
    assert fragment.lower() in caught.value.message.lower(), caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_every_problem_is_reported() -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_spec({"model": {"uri": "ftp://x"}, "replicas": -2, "routing": {"strategy": "x"}})
    fields = [field for field, _ in caught.value.problems]
    assert fields == ["spec.model.uri", "spec.replicas", "spec.routing.strategy"]
    for field in fields:
        assert field in str(caught.value)


@pytest.mark.parametrize("raw", [None, [], "spec", 3])
def test_spec_must_be_an_object(raw: Any) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_spec(raw)
    assert caught.value.field == "spec"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("seed-mlp", True), ("a", True), ("x" * 56, True), ("x" * 57, False), ("1abc", False),
     ("Seed", False), ("seed.mlp", False), ("seed-", False)],
)
def test_names_must_fit_every_child(name: str, ok: bool) -> None:
    if ok:
        validate_name(name)
    else:
        with pytest.raises(InvalidSpec) as caught:
            validate_name(name)
        assert caught.value.field == "metadata.name"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # Expected values are what apimachinery's resource.MustParse(x).String() returns.
        ("1024Mi", "1Gi"), ("1536Mi", "1536Mi"), ("0.5Gi", "512Mi"), ("1Ki", "1Ki"),
        ("1000", "1k"), ("1500", "1500"), ("0.5", "500m"), ("100m", "100m"), ("2", "2"),
        ("2.0", "2"), ("1e3", "1e3"), ("0.0001", "100u"), ("1.25", "1250m"), ("0", "0"),
        ("+4Gi", "4Gi"), ("512", "512"), ("1G", "1G"), ("1000M", "1G"),
    ],
)
def test_quantities_are_stored_in_the_api_servers_canonical_form(
    text: str, canonical: str
) -> None:
    assert canonical_quantity(text) == canonical


def test_integer_quantities_are_accepted_and_floats_refused_as_the_crd_does() -> None:
    spec = validate_spec({"model": {"uri": "demo://"},
                          "resources": {"cpu": 2, "memory": 1073741824}})
    assert (spec.resources.cpu, spec.resources.memory) == ("2", "1073741824")
    # The CRD says int-or-string: the API server refuses 0.5 before the operator sees it.
    with pytest.raises(InvalidSpec) as caught:
        validate_spec({"model": {"uri": "demo://"}, "resources": {"memory": 0.5}})
    assert caught.value.field == "spec.resources.memory"
    assert "string or integer" in caught.value.message


DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(300):
    _node["x"] = {}
    _node = _node["x"]


@pytest.mark.timeout(20)  # a hang here is the bug: 1e999000 once took 22 s to refuse
@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"resources": {"cpu": "1e999000"}}, "spec.resources.cpu", "not a Kubernetes quantity"),
        ({"resources": {"cpu": "1e999999"}}, "spec.resources.cpu", "not a Kubernetes quantity"),
        ({"resources": {"cpu": "9" * 4000}}, "spec.resources.cpu", "at most 64 characters"),
        ({"resources": {"cpu": "1e99"}}, "spec.resources.cpu", "at most 4096 cores"),
        ({"resources": {"cpu": "4097"}}, "spec.resources.cpu", "at most 4096 cores"),
        ({"resources": {"cpu": 10**30}}, "spec.resources.cpu", "at most 4096 cores"),
        ({"resources": {"memory": "65Ti"}}, "spec.resources.memory", "at most"),
        ({"resources": {"memory": "1Ei"}}, "spec.resources.memory", "at most"),
        ({"replicas": "3"}, "spec.replicas", "integer"),
        ({"replicas": True}, "spec.replicas", "integer"),
        ({"replicas": 3.0}, "spec.replicas", "integer"),
        ({"resources": {"gpu": "1"}}, "spec.resources.gpu", "integer"),
        ({"autoscaling": {"maxReplicas": "4"}}, "spec.autoscaling.maxReplicas", "integer"),
        ({"autoscaling": {"maxReplicas": 4, "targetInFlightPerReplica": 1e300}},
         "spec.autoscaling.targetInFlightPerReplica", "less than or equal"),
        ({"model": {"uri": "demo://", "version": 2**64}}, "spec.model.version", "less than"),
        ({"model": {"uri": "https://x/" + "a" * 5000}}, "spec.model.uri", "at most 4096"),
        ({"scheduling": {"nodeSelector": {"bad key!": "x"}}},
         'spec.scheduling.nodeSelector["bad key!"]', "not a label key"),
        ({"scheduling": {"nodeSelector": {"Example.com/zone": "a"}}},
         'spec.scheduling.nodeSelector["Example.com/zone"]', "prefix"),
        ({"scheduling": {"nodeSelector": {"zone": "has space"}}},
         "spec.scheduling.nodeSelector.zone", "pattern"),
        ({"scheduling": {"nodeSelector": {"zone": "a" * 64}}},
         "spec.scheduling.nodeSelector.zone", "at most 63"),
        ({"scheduling": {"nodeSelector": {f"k{i}": "v" for i in range(65)}}},
         "spec.scheduling.nodeSelector", "at most 64"),
        ({"scheduling": {"tolerations": [{"key": "a", "effect": "NoExecute",
                                          "tolerationSeconds": "30"}]}},
         "spec.scheduling.tolerations[0].tolerationSeconds", "integer"),
        ({"scheduling": {"tolerations": [{"key": "a", "effect": "NoSchedule",
                                          "tolerationSeconds": 30}]}},
         "spec.scheduling.tolerations[0].tolerationSeconds", "NoExecute"),
        ({"scheduling": {"tolerations": [{"value": "x"}]}},
         "spec.scheduling.tolerations[0].operator", "Exists when the key is empty"),
        ({"scheduling": {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}},
         "spec.scheduling.tolerations[0].value", "empty"),
        ({"scheduling": {"tolerations": [{"key": "bad key"}]}},
         "spec.scheduling.tolerations[0].key", "not a label key"),
        ({"scheduling": {"tolerations": [{"key": "a"}] * 65}},
         "spec.scheduling.tolerations", "at most 64"),
        ({"scheduling": {"affinity": {"nodeAffinity": DEEP}}},
         "spec.scheduling.affinity.nodeAffinity", "nested deeper than 16"),
        ({"scheduling": {"affinity": {"nodeAffinity": {"x": list(range(5000))}}}},
         "spec.scheduling.affinity.nodeAffinity", "more than 2000 values"),
        ({"runtime": {"env": [{"name": "A", "valueFrom": DEEP}]}},
         "spec.runtime.env[0].valueFrom", "nested deeper"),
        ({"runtime": {"env": [{"name": f"V{i}", "value": "x"} for i in range(257)]}},
         "spec.runtime.env", "at most 256"),
        ({"runtime": {"env": [{"name": "BIG", "value": "x" * 40_000}]}},
         "spec.runtime.env[0].value", "at most 32768"),
        ({"runtime": {"postprocessing": {"p": {"labels": ["x"] * 10_001}}}},
         "spec.runtime.postprocessing.p.labels", "at most 10000"),
        ({"runtime": {"postprocessing": {"p": {"labels": ["x" * 200] * 9_000}}}},
         "spec.runtime.postprocessing", "KiB"),
        ({"runtime": {"postprocessing": {"p": {"threshold": float("inf")}}}},
         "spec.runtime.postprocessing.p.threshold", "finite"),
        ({"runtime": {"preprocessing": {"x": {"shape": [1] * 33}}}},
         "spec.runtime.preprocessing.x.shape", "at most 32"),
        ({"runtime": {"image": "r/" + "a" * 2000}}, "spec.runtime.image", "at most 1024"),
    ],
)
def test_hostile_specs_are_refused_quickly_naming_the_field(
        raw: dict[str, Any], field: str, fragment: str) -> None:
    spec = {"model": {"uri": "demo://"}, **raw}
    with pytest.raises(InvalidSpec) as caught:
        validate_spec(spec)
    assert caught.value.field == field, str(caught.value)
    assert fragment.lower() in caught.value.message.lower(), caught.value.message


def test_a_real_toleration_and_affinity_pass_through_unchanged() -> None:
    toleration = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 300}
    spec = validate_spec({"model": {"uri": "demo://"},
                          "scheduling": {"tolerations": [toleration, {"operator": "Exists"}],
                                         "affinity": SPECS["gpu"]["scheduling"]["affinity"]}})
    assert spec.scheduling.tolerations[0].manifest() == toleration
    assert spec.scheduling.affinity is not None
    assert spec.scheduling.affinity.manifest() == SPECS["gpu"]["scheduling"]["affinity"]


def test_the_message_of_many_problems_is_bounded() -> None:
    labels = [{"bad": i} for i in range(5000)]
    with pytest.raises(InvalidSpec) as caught:
        validate_spec({"model": {"uri": "demo://"},
                       "runtime": {"env": [{"name": f"V{i}", "value": i} for i in range(200)],
                                   "postprocessing": {"p": {"labels": labels}}}})
    assert len(caught.value.problems) == 5200
    message = str(caught.value)
    assert len(message) < 4000
    assert message.startswith("spec.runtime.postprocessing.p.labels[0]: ") or message.startswith(
        "spec.runtime.env[0].value: ")
    assert message.endswith("; and 5190 more problems")


def test_status_model_round_trips_with_camel_case() -> None:
    raw = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 2}],
        "replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "ready": "1/2",
        "selector": "modelplane.io/deployment=x", "url": "http://x.ml.svc.cluster.local:8080",
        "observedGeneration": 2, "modelVersion": "3",
        "load": {"requestsPerSecond": 12.5, "inFlight": 3, "latencyP50Ms": 4.1,
                 "latencyP99Ms": 20.0, "errorRate": 0.0, "updatedAt": "2026-01-01T00:00:05Z"},
        "pods": [{"name": "x-abc", "ready": True, "restarts": 0, "track": "stable"}],
        "kopf": {"progress": {}},
    }
    status = ModelDeploymentStatus.model_validate(raw)
    assert status.load is not None
    assert status.load.latency_p99_ms == 20.0
    dumped = status.model_dump(by_alias=True, exclude_unset=True)
    assert dumped == {k: v for k, v in raw.items() if k != "kopf"}
