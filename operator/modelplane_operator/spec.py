"""The ModelDeployment resource: one pydantic model of its spec, and validation.

This module is the single source of truth for the resource. The CRD's OpenAPI schema is
generated from these models (see crd.py), the builders read the parsed spec, and
``validate_spec`` turns any problem into an ``InvalidSpec`` that names the field path as a
user wrote it (``spec.autoscaling.maxReplicas``), because that message ends up in the
``Ready`` condition and an Event.

Fields are snake_case in Python and camelCase in YAML. Defaults live here only: the CRD
carries no ``default`` keys, so the API server stores what the user wrote and the operator
decides what an absent field means (``replicas`` must stay absent under autoscaling).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from modelplane_operator.messages import FieldError, problems
from modelplane_operator.messages import InvalidSpec as InvalidSpec  # raised by validate_spec
from modelplane_operator.quantity import QUANTITY, canonical_quantity

GROUP = "modelplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("md",)

URI_SCHEMES = ("file", "pvc", "http", "https", "s3", "gs", "demo")
"""Model URI schemes; ``demo://`` serves the bundled demo model (no storage needed)."""

MAX_NAME_LENGTH = 56
"""Longest ModelDeployment name: children add ``-canary`` and must stay 63-character labels."""

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")



def _quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a Kubernetes quantity such as 500m, 2 or 4Gi")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        value = repr(value)
    if not isinstance(value, str) or not QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")
    return canonical_quantity(value)


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""A Kubernetes resource quantity (``500m``, ``2``, ``4Gi``); numbers are accepted too."""

KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes API object passed through unchanged (affinity, a toleration, an env var)."""


def _secret_name(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid Secret name (lowercase DNS subdomain)")
    return value


class ResourceModel(BaseModel):
    """Base of every spec/status model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


class ModelSource(ResourceModel):
    """Where a model lives and how to load it."""

    uri: str = Field(min_length=1)
    """file://PATH, pvc://CLAIM/PATH, http(s)://ARCHIVE (tar.gz or zip), s3://, gs://, or demo://."""
    format: Literal["auto", "savedmodel", "keras"] = "auto"
    """savedmodel, keras, or auto (detected from the files)."""
    version: int | None = Field(default=None, ge=1)
    """Serve only this version of a versioned repository (default: the newest)."""
    credentials_secret: str | None = None
    """Secret whose keys become environment variables of the model fetcher (e.g. AWS_*)."""

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, uri: str) -> str:
        scheme, sep, rest = uri.partition("://")
        if not sep:
            raise ValueError(f"{uri!r} has no scheme; use one of {', '.join(URI_SCHEMES)}")
        if scheme not in URI_SCHEMES:
            raise ValueError(
                f"unsupported scheme {scheme!r}; use one of {', '.join(URI_SCHEMES)}"
            )
        if scheme == "pvc":
            claim = rest.split("/", 1)[0]
            if not claim or len(claim) > 253 or not _DNS1123_SUBDOMAIN.match(claim):
                raise ValueError("must be pvc://CLAIM/PATH with a valid claim name")
            if ".." in rest.split("/"):
                raise ValueError("the path inside the claim must not contain '..'")
        elif scheme in ("http", "https", "s3", "gs") and not urlsplit(uri).netloc:
            raise ValueError(f"{scheme}:// needs a host or bucket")
        elif scheme == "file" and not rest.startswith("/"):
            raise ValueError("file:// needs an absolute path (file:///models/x)")
        return uri

    @field_validator("credentials_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        return None if value is None else _secret_name(value)

    @property
    def scheme(self) -> str:
        """The URI scheme (``pvc``, ``https``, ...)."""
        return self.uri.partition("://")[0]

    @property
    def pvc_claim(self) -> str | None:
        """The claim of a ``pvc://`` URI, else None."""
        if self.scheme != "pvc":
            return None
        return self.uri.partition("://")[2].split("/", 1)[0]

    @property
    def pvc_path(self) -> str:
        """The path inside the claim of a ``pvc://`` URI ('' for its root)."""
        rest = self.uri.partition("://")[2]
        return rest.split("/", 1)[1].strip("/") if "/" in rest else ""


class Autoscaling(ResourceModel):
    """HorizontalPodAutoscaler bounds and targets; present means the HPA owns the replica count."""

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""
    target_cpu_utilization: int | None = Field(
        default=None, ge=1, le=1000, alias="targetCPUUtilization"
    )
    """Average CPU use as a percentage of the CPU request (default 80 when no target is set)."""
    target_in_flight_per_replica: float | None = Field(default=None, gt=0)
    """Average in-flight requests per replica (Pods metric modelplane_requests_in_flight)."""
    target_requests_per_second_per_replica: float | None = Field(default=None, gt=0)
    """Average requests per second per replica (Pods metric modelplane_requests_per_second)."""

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise FieldError(
                "maxReplicas", f"must be >= minReplicas ({self.min_replicas})"
            )
        return self


class Resources(ResourceModel):
    """Compute per replica; requests equal limits (Guaranteed QoS: steady latency)."""

    cpu: Quantity = "1"
    """CPU request and limit (e.g. 500m, 2)."""
    memory: Quantity = "2Gi"
    """Memory request and limit (e.g. 4Gi)."""
    gpu: int = Field(default=0, ge=0, le=64)
    """NVIDIA GPUs per replica (nvidia.com/gpu limit; adds the usual GPU toleration)."""

    @field_validator("cpu", "memory")
    @classmethod
    def _positive(cls, value: str) -> str:
        if value == "0":
            raise ValueError("must be greater than zero")
        return value


_TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
_AFFINITY_KEYS = frozenset({"nodeAffinity", "podAffinity", "podAntiAffinity"})
_ENV_KEYS = frozenset({"name", "value", "valueFrom"})


class Scheduling(ResourceModel):
    """Where replicas may run; passed through to the pod spec unchanged."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels a node must carry."""
    tolerations: list[KubeObject] = Field(default_factory=list)
    """Pod tolerations (core/v1 Toleration)."""
    affinity: KubeObject | None = None
    """Pod affinity (core/v1 Affinity)."""
    priority_class_name: str | None = None
    """PriorityClass of the pods."""

    @field_validator("tolerations")
    @classmethod
    def _check_tolerations(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, item in enumerate(items):
            unknown = sorted(set(item) - _TOLERATION_KEYS)
            if unknown:
                raise FieldError(f"[{i}]", f"unknown toleration field {unknown[0]!r}")
            if item.get("operator", "Equal") not in ("Equal", "Exists"):
                raise FieldError(f"[{i}].operator", "must be Equal or Exists")
            effect = item.get("effect", "")
            if effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise FieldError(
                    f"[{i}].effect", "must be NoSchedule, PreferNoSchedule or NoExecute"
                )
        return items

    @field_validator("affinity")
    @classmethod
    def _check_affinity(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in sorted(value or {}):
            if key not in _AFFINITY_KEYS:
                raise FieldError(
                    key, "unknown affinity field (nodeAffinity, podAffinity, podAntiAffinity)"
                )
        return value

    @field_validator("priority_class_name")
    @classmethod
    def _check_priority(cls, value: str | None) -> str | None:
        if value is not None and not _DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid PriorityClass name")
        return value


class Batching(ResourceModel):
    """Dynamic batching: concurrent requests merged into one model call."""

    max_batch_size: int = Field(default=32, ge=1, le=65536)
    """Most rows per model call; 1 turns batching off."""
    max_latency_ms: float = Field(default=2.0, ge=0, le=10_000)
    """Longest a request waits for others to join its batch."""


DType = Literal[
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "string",
]
"""TensorFlow dtype names the runtime accepts (modelplane_runtime.signature.DTYPES)."""


class InputProcessing(ResourceModel):
    """Preprocessing of one model input (the runtime's modelplane.yaml ``inputs`` entry)."""

    dtype: DType | None = None
    """The dtype clients send; cast to the model input's dtype."""
    shape: list[int] | None = None
    """The non-batch shape clients send (-1 at most once); reshaped to the model's."""
    mean: list[float] | None = None
    """Subtracted after casting, broadcast over the trailing axes ([0.5] for a scalar)."""
    std: list[float] | None = None
    """Divided by after subtracting the mean; never zero."""

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if value.count(-1) > 1:
                raise ValueError("-1 may appear at most once")
            if any(d == 0 or d < -1 for d in value):
                raise ValueError("dimensions must be positive, or -1 once")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v == 0 for v in value):
            raise ValueError("standard deviations must not be zero")
        return value


class OutputProcessing(ResourceModel):
    """Postprocessing of one model output (the runtime's modelplane.yaml ``outputs`` entry)."""

    labels: list[str] | None = Field(default=None, min_length=1)
    """Class names, one per class (the output's last dimension); adds <output>_label."""
    top_k: int | None = Field(default=None, ge=1)
    """Add the k best classes per row (<output>_top_k_*)."""
    threshold: float | None = None
    """For a single-score output: class 1 at or above this score, else 0."""
    keep: bool = True
    """Keep the raw output beside the derived ones."""


class Runtime(ResourceModel):
    """The inference runtime in each replica."""

    image: str | None = None
    """Runtime image (default: the operator's configured runtime image)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy (default: Kubernetes' own)."""
    batching: Batching | None = None
    """Dynamic batching (default: the runtime's own defaults)."""
    log_level: Literal["error", "warning", "info", "debug"] = "info"
    """Runtime log level."""
    signature_name: str | None = Field(default=None, min_length=1)
    """Signature used when a request names none, and the one processing applies to."""
    preprocessing: dict[str, InputProcessing] = Field(default_factory=dict)
    """Preprocessing per model input name (cast, reshape, mean/std scaling)."""
    postprocessing: dict[str, OutputProcessing] = Field(default_factory=dict)
    """Postprocessing per model output name (labels, top-k, threshold)."""
    env: list[KubeObject] = Field(default_factory=list)
    """Extra container environment variables (core/v1 EnvVar); they win over the operator's."""

    @field_validator("env")
    @classmethod
    def _check_env(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            name = item.get("name")
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise FieldError(f"[{i}].name", "must be a valid environment variable name")
            if name in seen:
                raise FieldError(f"[{i}].name", f"duplicate variable {name!r}")
            seen.add(name)
            unknown = sorted(set(item) - _ENV_KEYS)
            if unknown:
                raise FieldError(f"[{i}]", f"unknown env field {unknown[0]!r}")
            if "value" in item and not isinstance(item["value"], str):
                raise FieldError(f"[{i}].value", "must be a string (quote numbers in YAML)")
        return items

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError("must be an image reference without spaces")
        return value


class Canary(ResourceModel):
    """A second model served beside the main one and given a share of the traffic."""

    model: ModelSource
    """The canary model."""
    traffic_percent: int = Field(ge=0, le=100)
    """Share of requests for the canary, approximated by its share of ready replicas."""


class Routing(ResourceModel):
    """How requests are spread over replicas."""

    strategy: Literal["round-robin", "random", "weighted", "least-request"] = "round-robin"
    """Balancing strategy, published on the Service for a gateway or mesh to apply."""


class Auth(ResourceModel):
    """Bearer-token authentication of inference requests."""

    secret_name: str
    """Secret whose values are the accepted bearer tokens (one per key)."""

    @field_validator("secret_name")
    @classmethod
    def _check(cls, value: str) -> str:
        return _secret_name(value)


class Tls(ResourceModel):
    """Serve HTTPS with a certificate from a Secret."""

    secret_name: str
    """A kubernetes.io/tls Secret (keys tls.crt and tls.key)."""

    @field_validator("secret_name")
    @classmethod
    def _check(cls, value: str) -> str:
        return _secret_name(value)


class ModelDeploymentSpec(ResourceModel):
    """Desired state of a ModelDeployment."""

    model: ModelSource
    """The model to serve."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Replica count when autoscaling is off (default 1); ignored when autoscaling is set."""
    autoscaling: Autoscaling | None = None
    """Scale on CPU and load with a HorizontalPodAutoscaler."""
    resources: Resources = Field(default_factory=Resources)
    """CPU, memory and GPUs per replica."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Node selection and placement."""
    runtime: Runtime = Field(default_factory=Runtime)
    """Runtime image and behaviour."""
    canary: Canary | None = None
    """A canary model taking a share of the traffic."""
    routing: Routing = Field(default_factory=Routing)
    """Request routing."""
    auth: Auth | None = None
    """Bearer-token authentication."""
    tls: Tls | None = None
    """HTTPS."""

    @property
    def effective_replicas(self) -> int:
        """Replicas to run when autoscaling is off."""
        return 1 if self.replicas is None else self.replicas


# ---- validation -----------------------------------------------------------------------


def validate_spec(raw: Any) -> ModelDeploymentSpec:
    """Parse a ModelDeployment's spec, or raise InvalidSpec naming every bad field."""
    if not isinstance(raw, dict):
        raise InvalidSpec("spec", "must be an object")
    try:
        return ModelDeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        (field, message), *more = problems(exc)
        raise InvalidSpec(field, message, more) from None


def validate_name(name: str) -> None:
    """Raise InvalidSpec unless ``name`` can name every child (Service, labels, canary)."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec("metadata.name", f"must be at most {MAX_NAME_LENGTH} characters")
    if not _DNS1035_LABEL.match(name):
        raise InvalidSpec(
            "metadata.name",
            "must be lowercase letters, digits and '-', starting with a letter "
            "(it names the Service)",
        )
