"""The ModelDeployment CustomResourceDefinition, generated from the pydantic models (spec.py,
passthrough.py and status_schema.py).

Kubernetes requires a *structural* OpenAPI v3 schema (apiextensions.k8s.io/v1): every node
has a ``type``, no ``$ref``, no ``anyOf`` of types, no ``additionalProperties: false``,
boolean ``exclusiveMinimum``. Pydantic writes JSON Schema 2020-12, so ``structural``
converts: refs inlined, ``X | None`` becomes ``nullable: true``, free-form Kubernetes types
keep ``x-kubernetes-preserve-unknown-fields`` (set on them in passthrough.py), and
``default``s are dropped so the API server stores what users wrote (spec.py decides what
absence means). The models' bounds (lengths, counts, ranges, patterns) are kept, so a real
API server refuses what the operator would (int-or-string quantities keep their string
``pattern`` and ``maxLength`` and their integer ``maximum``).

``status.kopf`` is declared free-form: kopf keeps its diff base there (StatusDiffBaseStorage)
and the API server would prune an undeclared field. ``modelplane crd --write`` writes the
result to ``manifests/crd/``; a test fails when the file drifts from this generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelplane_operator.builders.document import dump
from modelplane_operator.spec import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ModelDeploymentSpec,
)
from modelplane_operator.status_schema import ModelDeploymentStatus

CRD_PATH = Path("manifests/crd/modelplane.io_modeldeployments.yaml")
"""Where ``modelplane crd --write`` puts the CRD, relative to the repository root."""
HEADER = (
    "# Generated from operator/modelplane_operator/spec.py by `modelplane crd --write`.\n"
    "# Do not edit: change the pydantic models and regenerate (a test checks for drift).\n"
)

_KEPT = (
    "description", "type", "format", "enum", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "minProperties", "maxProperties", "nullable",
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready",
     "description": "Ready replicas over desired replicas"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri",
     "description": "Model URI"},
    {"name": "RPS", "type": "number", "jsonPath": ".status.load.requestsPerSecond",
     "description": "Requests per second across replicas"},
    {"name": "P99", "type": "number", "jsonPath": ".status.load.latencyP99Ms",
     "description": "99th percentile request latency in milliseconds"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url",
     "description": "In-cluster URL of the Service"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # Resource use, shown by `kubectl get md -o wide` (priority 1).
    {"name": "CPU", "type": "string", "jsonPath": ".status.resources.cpu", "priority": 1,
     "description": "CPU in use by every replica (metrics.k8s.io)"},
    {"name": "Memory", "type": "string", "jsonPath": ".status.resources.memory",
     "priority": 1, "description": "Memory in use by every replica (metrics.k8s.io)"},
    {"name": "GPU%", "type": "integer", "jsonPath": ".status.resources.gpuUtilization",
     "priority": 1, "description": "Mean utilisation of the replicas' GPUs, in percent"},
]


class SchemaError(ValueError):
    """The pydantic schema uses a construct with no structural equivalent."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target = defs[ref.rsplit("/", 1)[-1]]
    # Keys beside $ref (a field's own description) win over the referenced model's.
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


_ORDER = (
    "description", "type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "nullable", "format", "enum",
)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    # Description and type first, children last: the file reads like hand-written CRDs.
    head = [key for key in _ORDER if key in node]
    return {key: node[key] for key in head + [k for k in node if k not in head]}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node (and its children) to a structural schema."""
    return _ordered(_structural(_resolve(node, defs), defs))


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) != 1:
            raise SchemaError(f"cannot express anyOf {node['anyOf']!r} structurally")
        inner = structural(branches[0], defs)
        # An explicit null is fine either way: the API server prunes nulls of non-nullable
        # fields. Enums stay non-nullable because the server checks a null against the enum.
        if len(branches) < len(node["anyOf"]) and "enum" not in inner:
            inner["nullable"] = True
        if "description" in node:
            inner["description"] = node["description"]
        return inner
    if node.get("x-kubernetes-int-or-string"):
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        for key in ("description", "maxLength", "pattern", "maximum"):
            if key in node:
                out[key] = node[key]
        return out
    if "type" not in node:
        raise SchemaError(f"schema node without a type: {node!r}")
    out = {key: node[key] for key in _KEPT if key in node}
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema: a number; OpenAPI v3.0: a flag on minimum/maximum
            out[flag] = node[bound]
            out[bound] = True
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in node:
        out["properties"] = {
            name: structural(child, defs) for name, child in node["properties"].items()
        }
        if node.get("required"):
            out["required"] = list(node["required"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if "properties" in out:
            raise SchemaError("properties and additionalProperties together")
        out["additionalProperties"] = structural(extra, defs)
    elif extra is True and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = structural(node["items"], defs)
    return out


def _model_schema(model: type[ModelDeploymentSpec] | type[ModelDeploymentStatus]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return structural(schema, schema.get("$defs", {}))


def status_schema() -> dict[str, Any]:
    """The status schema, with ``kopf`` kept and conditions keyed by type."""
    schema = _model_schema(ModelDeploymentStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema["properties"]["kopf"] = {
        "type": "object",
        "description": "kopf's handler progress and diff base (StatusDiffBaseStorage).",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return schema


def openapi_schema() -> dict[str, Any]:
    """The CRD version's ``openAPIV3Schema``."""
    return {
        "type": "object",
        "description": "A model served on Kubernetes by the Modelplane runtime.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _model_schema(ModelDeploymentSpec),
            "status": status_schema(),
        },
        "required": ["spec"],
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelplane"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["modelplane"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML text with a do-not-edit header (what manifests/crd/ holds)."""
    return HEADER + dump(crd())


def to_jsonschema(node: dict[str, Any]) -> dict[str, Any]:
    """A structural OpenAPI schema as JSON Schema, to validate custom resources offline.

    Follows the API server's reading: ``nullable`` admits null, int-or-string admits both,
    preserved-unknown objects accept any keys, and (as pruning would drop them) unknown keys
    elsewhere are reported instead of silently accepted.
    """
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
                "minItems", "maxItems", "minProperties", "maxProperties", "required"):
        if key in node:
            out[key] = node[key]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound):
            out[bound] = out.pop(flag)
    if "properties" in node:
        out["properties"] = {k: to_jsonschema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "additionalProperties" in node:
        out["additionalProperties"] = to_jsonschema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_jsonschema(node["items"])
    return out
