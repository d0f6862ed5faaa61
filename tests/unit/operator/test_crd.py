"""The generated CRD: structural, complete, in sync with manifests/crd/, and usable offline."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml
from modelplane_operator.crd import CRD_PATH, crd, crd_yaml, openapi_schema, to_jsonschema
from modelplane_operator.spec import ModelDeploymentSpec

from .cases import SPECS, md

ROOT = Path(__file__).resolve().parents[3]


def _nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or "<root>", node)]
    for name, child in node.get("properties", {}).items():
        found += _nodes(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        found += _nodes(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        found += _nodes(node["items"], f"{path}[]")
    return found


def test_crd_file_matches_the_generator() -> None:
    committed = (ROOT / CRD_PATH).read_text()
    assert committed == crd_yaml(), (
        f"{CRD_PATH} is stale: run `modelplane crd --write` and commit the result"
    )


def test_generation_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert yaml.safe_load(crd_yaml()) == crd()


@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_crd_object_validates_against_kubernetes(version: str) -> None:
    kubernetes_validate.validate(crd(), version, strict=True)


def test_schema_is_structural() -> None:
    """The rules apiextensions.k8s.io/v1 enforces on a structural schema."""
    allowed_typeless = ("x-kubernetes-int-or-string",)
    for path, node in _nodes(openapi_schema()):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "title",
                    "default", "examples"} & set(node), path
        if not any(node.get(flag) for flag in allowed_typeless):
            assert node.get("type") in ("object", "array", "string", "integer", "number",
                                        "boolean"), path
        if node.get("type") == "array":
            assert "items" in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        # The server checks a null against an enum, so a nullable enum could never be null.
        assert not ("enum" in node and node.get("nullable")), path
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(flag, True) is True, path
        for required in node.get("required", []):
            assert required in node["properties"], f"{path}: required {required} undeclared"


def test_free_form_only_where_kubernetes_types_pass_through() -> None:
    free = sorted(
        path for path, node in _nodes(openapi_schema())
        if node.get("x-kubernetes-preserve-unknown-fields")
    )
    assert free == [
        ".spec.runtime.env[].valueFrom",
        ".spec.scheduling.affinity.nodeAffinity",
        ".spec.scheduling.affinity.podAffinity",
        ".spec.scheduling.affinity.podAntiAffinity",
        ".status.kopf",
    ]


def _aliases(model: type[Any]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_spec_field_is_in_the_schema() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert set(spec) == _aliases(ModelDeploymentSpec)
    assert set(spec["autoscaling"]["properties"]) == {
        "engine", "minReplicas", "maxReplicas", "idleSeconds", "targetCPUUtilization",
        "targetInFlightPerReplica", "targetRequestsPerSecondPerReplica",
    }
    assert spec["autoscaling"]["properties"]["engine"]["enum"] == ["hpa", "keda"]
    assert spec["autoscaling"]["properties"]["minReplicas"]["minimum"] == 0
    assert spec["suspend"]["type"] == "boolean"
    assert set(spec["model"]["properties"]) == {"uri", "format", "version", "credentialsSecret",
                                                "serviceAccountName", "pollSeconds"}
    assert spec["model"]["required"] == ["uri"]
    assert set(spec["resources"]["properties"]) == {"cpu", "memory", "gpu"}
    assert spec["resources"]["properties"]["cpu"]["x-kubernetes-int-or-string"] is True
    assert set(spec["scheduling"]["properties"]) == {
        "nodeSelector", "tolerations", "affinity", "priorityClassName"}
    assert spec["routing"]["properties"]["strategy"]["enum"] == [
        "round-robin", "random", "weighted", "least-request", "power-of-two", "latency-aware"]
    assert set(spec["routing"]["properties"]) == {"strategy", "balancer", "weights"}
    weights = spec["routing"]["properties"]["weights"]
    assert weights["additionalProperties"] == {"type": "integer", "minimum": 1,
                                               "maximum": 1_000_000}
    assert weights["maxProperties"] == 256
    assert spec["canary"]["required"] == ["model", "trafficPercent"]
    # Optional fields accept an explicit null as the pydantic model does.
    assert spec["autoscaling"]["nullable"] is True
    assert spec["model"]["properties"]["version"]["nullable"] is True
    for path, node in _nodes(openapi_schema()):
        if path.startswith(".spec") and not path.endswith(("[]", ".*")):
            assert node.get("description"), f"{path} has no description"


def test_status_declares_load_pods_and_kopf() -> None:
    status = openapi_schema()["properties"]["status"]["properties"]
    assert {"conditions", "replicas", "readyReplicas", "updatedReplicas", "url",
            "observedGeneration", "modelVersion", "load", "pods", "selector", "ready",
            "kopf"} <= set(status)
    assert set(status["load"]["properties"]) == {
        "requestsPerSecond", "inFlight", "latencyP50Ms", "latencyP99Ms", "errorRate",
        "updatedAt"}
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["items"]["required"] == ["type", "status"]


def test_names_subresources_and_columns() -> None:
    obj = crd()
    spec = obj["spec"]
    assert obj["metadata"]["name"] == "modeldeployments.modelplane.io"
    assert spec["group"] == "modelplane.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ModelDeployment"
    assert spec["names"]["plural"] == "modeldeployments"
    assert spec["names"]["shortNames"] == ["md"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"]
    assert version["storage"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [(c["name"].upper(), c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    shown = [c["name"].upper() for c in version["additionalPrinterColumns"]
             if not c.get("priority")]
    assert shown == ["READY", "MODEL", "RPS", "P99", "URL", "AGE"]
    wide = [c["name"].upper() for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide == ["CPU", "MEMORY", "GPU%"]  # kubectl get md -o wide
    schema = version["schema"]["openAPIV3Schema"]
    for _, json_path in columns:
        node = schema
        for part in json_path.strip(".").split("."):
            if part in ("metadata",):
                break
            node = node["properties"][part]  # every column points at a declared field


# ---- custom resources against the CRD schema ------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = to_jsonschema(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_sample_like_resources_validate(validator: jsonschema.Validator, name: str) -> None:
    validator.validate(md(SPECS[name]))


def test_status_with_kopf_state_validates(validator: jsonschema.Validator) -> None:
    obj = md(SPECS["demo"])
    obj["status"] = {
        "replicas": 1, "readyReplicas": 1, "ready": "1/1", "url": "http://x:8080",
        "load": {"requestsPerSecond": 3.2, "inFlight": 0, "latencyP50Ms": None,
                 "latencyP99Ms": 12.0, "errorRate": 0},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available"}],
        "pods": [{"name": "x-1", "ready": True, "restarts": 2}],
        "kopf": {"dummy": "2026", "progress": {"h": {"retries": 1}}},
    }
    validator.validate(obj)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "model", "format"), "onnx"),
        (("spec", "replicas"), -1),
        (("spec", "replicas"), "3"),
        (("spec", "routing", "strategy"), "fastest"),
        (("spec", "resources", "gpu"), 1.5),
        (("spec", "resources", "cpu"), {"cores": 2}),
        (("spec", "resources", "cpu"), "1e999000"),
        (("spec", "resources", "cpu"), "9" * 4000),
        (("spec", "resources", "cpu"), 5000),
        (("spec", "resources", "memory"), 0.5),
        (("spec", "scheduling", "nodeSelector"), {"zone": "has space"}),
        (("spec", "scheduling", "nodeSelector"), {f"k{i}": "v" for i in range(65)}),
        (("spec", "scheduling", "tolerations"), [{"key": "a", "tolerationSeconds": "30"}]),
        (("spec", "scheduling", "tolerations"), [{"key": "a", "operator": "In"}]),
        (("spec", "scheduling", "affinity"), {"nodeAfinity": {}}),
        (("spec", "runtime", "env"), [{"name": "A", "value": "x" * 40_000}]),
        (("spec", "runtime", "env"), [{"name": "1=bad"}]),
        (("spec", "runtime", "postprocessing"), {"p": {"labels": ["x"] * 10_001}}),
        (("spec", "model", "uri"), "https://x/" + "a" * 5000),
        (("spec", "autoscaling"), {"minReplicas": 1}),
        (("spec", "autoscaling"), {"maxReplicas": 2, "targetInFlightPerReplica": 0}),
        (("spec", "canary"), {"model": {"uri": "demo://"}, "trafficPercent": 150}),
        (("spec", "runtime", "logLevel"), "loud"),
        (("spec", "modle"), {"uri": "demo://"}),
        (("status", "conditions"), [{"type": "Ready"}]),
    ],
)
def test_invalid_resources_are_rejected_by_the_schema(
    validator: jsonschema.Validator, path: tuple[str, ...], value: Any
) -> None:
    obj = md(SPECS["demo"])
    target = obj
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = copy.deepcopy(value)
    assert list(validator.iter_errors(obj)), f"{'.'.join(path)}={value!r} was accepted"
