"""The ModelDeployment resource: one pydantic model of its spec, and validation.

This module is the single source of truth for the resource. The CRD's OpenAPI schema is
generated from these models (see crd.py), the builders read the parsed spec, and
``validate_spec`` turns any problem into an ``InvalidSpec`` that names the field path as a
user wrote it (``spec.autoscaling.maxReplicas``), because that message ends up in the
``Ready`` condition and an Event.

Fields are snake_case in Python and camelCase in YAML. Defaults live here only: the CRD
carries no ``default`` keys, so the API server stores what the user wrote and the operator
decides what an absent field means (``replicas`` must stay absent under autoscaling).

Types are strict, as in the CRD schema: ``"3"`` or ``true`` is no integer. Every field is
bounded (lengths, counts, ranges) and the bounds are in the generated schema too, so on a
real cluster the API server refuses a hostile object before the operator sees it; the
checks here cover what a schema cannot say (label keys, cross-field rules) and clusters
running an older CRD.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.uri import is_object_store_uri, parse_uri
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from modelplane_operator.autoscaling import Autoscaling
from modelplane_operator.messages import FieldError, problems
from modelplane_operator.messages import InvalidSpec as InvalidSpec  # raised by validate_spec
from modelplane_operator.passthrough import (
    LABEL_VALUE_PATTERN,
    MAX_LABEL_VALUE,
    Affinity,
    EnvVar,
    Toleration,
    label_key_problem,
)
from modelplane_operator.processing import DType as DType  # public name of the spec
from modelplane_operator.processing import InputProcessing, OutputProcessing
from modelplane_operator.quantity import MAX_LENGTH, PATTERN, canonical_quantity, quantity_value
from modelplane_operator.resource import MAX_NAME, Name, ResourceModel
from modelplane_operator.routing import Routing

GROUP = "modelplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("md",)

URI_SCHEMES = ("file", "pvc", "http", "https", "s3", "gs", "az", "demo")
"""Model URI schemes; ``demo://`` serves the bundled demo model (no storage needed)."""
URI_PATTERN = "^(" + "|".join(URI_SCHEMES) + ")://"
"""The CRD's pattern for ``model.uri``: the API server refuses other schemes too."""
MAX_POLL_SECONDS = 86_400
"""Longest ``model.pollSeconds``: once a day."""
FILE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz", ".keras", ".h5")
"""Names of one file (an archive or a Keras file; the runtime's storage/content.py): a URI
ending so names one object, not a repository folder that can be polled for versions."""

MAX_NAME_LENGTH = 56
"""Longest ModelDeployment name: children add ``-canary`` and must stay 63-character labels."""

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

MAX_CPU = Decimal(4096)
"""Most CPU cores per replica: above any node built (the largest have about 2,000)."""
MAX_MEMORY = Decimal(64 * 2**40)
"""Most memory per replica, 64Ti: above any node built (the largest have 32 TiB)."""
MAX_PROCESSING_BYTES = 64 * 1024
"""Largest pre/post-processing config: it reaches the runtime as one environment variable,
and Linux refuses a process any single environment string over 128 KiB (MAX_ARG_STRLEN)."""


def _quantity(maximum: Decimal, unit: str) -> Any:
    def check(value: Any) -> Any:
        # Integers and strings, as the CRD's int-or-string: a float is refused there too.
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a quantity such as 500m, 2 or 4Gi (a string or integer)")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must not be negative")
            if value > maximum:
                raise ValueError(f"must be at most {maximum} {unit}")
            return canonical_quantity(str(value))
        if quantity_value(value) > maximum:  # ValueError for a malformed one
            raise ValueError(f"must be at most {maximum} {unit}")
        return canonical_quantity(value)
    return check


def _quantity_schema(maximum: Decimal) -> dict[str, Any]:
    return {"x-kubernetes-int-or-string": True, "maxLength": MAX_LENGTH, "pattern": PATTERN,
            "maximum": int(maximum)}


CpuQuantity = Annotated[str, BeforeValidator(_quantity(MAX_CPU, "cores")),
                        WithJsonSchema(_quantity_schema(MAX_CPU))]
"""CPU cores as a Kubernetes quantity (``500m``, ``2``)."""
MemoryQuantity = Annotated[str, BeforeValidator(_quantity(MAX_MEMORY, "bytes (64Ti)")),
                           WithJsonSchema(_quantity_schema(MAX_MEMORY))]
"""Bytes as a Kubernetes quantity (``512Mi``, ``4Gi``)."""
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE, pattern=LABEL_VALUE_PATTERN)]


def _secret_name(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid Secret name (lowercase DNS subdomain)")
    return value


class ModelSource(ResourceModel):
    """Where a model lives and how to load it."""

    # The scheme pattern is for the CRD only: _check_uri says more than pydantic would.
    uri: str = Field(min_length=1, max_length=4096, json_schema_extra={"pattern": URI_PATTERN})
    """file://PATH, pvc://CLAIM/PATH, http(s)://ARCHIVE (tar.gz or zip), s3://BUCKET/PREFIX,
    gs://BUCKET/PREFIX, az://CONTAINER/PREFIX (or https://ACCOUNT.blob.core.windows.net/...),
    or demo://."""
    format: Literal["auto", "savedmodel", "keras"] = "auto"
    """savedmodel, keras, or auto (detected from the files)."""
    version: int | None = Field(default=None, ge=1, le=2**63 - 1)
    """Serve only this version of a versioned repository (default: the newest)."""
    credentials_secret: str | None = Field(default=None, max_length=253)
    """Secret holding the object store's standard variables, one key each (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS,
    AZURE_STORAGE_CONNECTION_STRING, ...): mounted as files for s3://, gs:// and Azure; for
    http(s):// its keys (MODELPLANE_STORAGE_BEARER_TOKEN, ...) become variables of the
    fetcher. Without one, the cloud SDK's default chain (workload identity)."""
    service_account_name: str | None = Field(default=None, max_length=253)
    """ServiceAccount the pods run as: the cloud identity (EKS IRSA or Pod Identity, GKE or
    AKS Workload Identity) the model is read with when no credentialsSecret is given."""
    poll_seconds: int | None = Field(default=None, ge=0, le=MAX_POLL_SECONDS)
    """Look for new and removed version folders this often and serve them without a restart
    (0 or absent: read the model once at start). For pvc:// and object store repositories."""

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
        elif is_object_store_uri(uri):
            # The storage initializer's own parser: a bucket, container or account name it
            # would refuse in the init container is refused here, before anything runs.
            # Its messages never quote a SAS token (redacted to "?...").
            try:
                parse_uri(uri)
            except StorageError as exc:
                raise ValueError(str(exc)) from None
        elif scheme in ("http", "https") and not urlsplit(uri).netloc:
            raise ValueError(f"{scheme}:// needs a host or bucket")
        elif scheme == "file" and not rest.startswith("/"):
            raise ValueError("file:// needs an absolute path (file:///models/x)")
        return uri

    @field_validator("credentials_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        return None if value is None else _secret_name(value)

    @field_validator("service_account_name")
    @classmethod
    def _check_service_account(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value)):
            raise ValueError(f"{value!r} is not a valid ServiceAccount name (lowercase DNS "
                             "subdomain)")
        return value

    @model_validator(mode="after")
    def _check_polling(self) -> ModelSource:
        if not self.polls:
            return self
        if not (self.pvc_claim is not None or self.object_store):
            raise FieldError("pollSeconds", f"a {self.scheme}:// model is copied once at start "
                             "and cannot be polled; use pvc:// or an object store (s3://, "
                             "gs://, az://) repository")
        if self.object_store and self.uri.split("?", 1)[0].lower().endswith(FILE_SUFFIXES):
            raise FieldError("pollSeconds", "the URI names one file (an archive or a Keras "
                             "file); polling follows a folder of version folders (1/, 2/, ...)")
        return self

    @property
    def scheme(self) -> str:
        """The URI scheme (``pvc``, ``https``, ...)."""
        return self.uri.partition("://")[0]

    @property
    def object_store(self) -> bool:
        """An s3://, gs:// or Azure Blob (az:// or https://ACCOUNT.blob...) URI."""
        return is_object_store_uri(self.uri)

    @property
    def polls(self) -> bool:
        """Whether the runtime looks for new versions (``pollSeconds`` > 0)."""
        return bool(self.poll_seconds)

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


class Resources(ResourceModel):
    """Compute per replica; requests equal limits (Guaranteed QoS: steady latency)."""

    cpu: CpuQuantity = "1"
    """CPU request and limit (e.g. 500m, 2)."""
    memory: MemoryQuantity = "2Gi"
    """Memory request and limit (e.g. 4Gi)."""
    gpu: int = Field(default=0, ge=0, le=64)
    """NVIDIA GPUs per replica (nvidia.com/gpu limit; adds the usual GPU toleration)."""

    @field_validator("cpu", "memory")
    @classmethod
    def _positive(cls, value: str) -> str:
        if value == "0":
            raise ValueError("must be greater than zero")
        return value


class Scheduling(ResourceModel):
    """Where replicas may run; passed through to the pod spec unchanged."""

    node_selector: dict[str, LabelValue] = Field(default_factory=dict, max_length=64)
    """Node labels a node must carry."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Pod tolerations (core/v1 Toleration)."""
    affinity: Affinity | None = None
    """Pod affinity (core/v1 Affinity)."""
    priority_class_name: str | None = Field(default=None, max_length=253)
    """PriorityClass of the pods."""

    @field_validator("node_selector")
    @classmethod
    def _check_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            problem = label_key_problem(key)
            if problem is not None:
                raise FieldError(f'["{key[:100]}"]', problem)
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


class Runtime(ResourceModel):
    """The inference runtime in each replica."""

    image: str | None = Field(default=None, max_length=1024)
    """Runtime image (default: the operator's configured runtime image)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy (default: Kubernetes' own)."""
    batching: Batching | None = None
    """Dynamic batching (default: the runtime's own defaults)."""
    log_level: Literal["error", "warning", "info", "debug"] = "info"
    """Runtime log level."""
    signature_name: Name | None = None
    """Signature used when a request names none, and the one processing applies to."""
    preprocessing: dict[str, InputProcessing] = Field(default_factory=dict, max_length=64)
    """Preprocessing per model input name (cast, reshape, mean/std scaling)."""
    postprocessing: dict[str, OutputProcessing] = Field(default_factory=dict, max_length=64)
    """Postprocessing per model output name (labels, top-k, threshold)."""
    env: list[EnvVar] = Field(default_factory=list, max_length=256)
    """Extra container environment variables (core/v1 EnvVar); they win over the operator's."""

    @field_validator("env")
    @classmethod
    def _check_env(cls, items: list[EnvVar]) -> list[EnvVar]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                raise FieldError(f"[{i}].name", f"duplicate variable {item.name!r}")
            seen.add(item.name)
        return items

    @field_validator("preprocessing", "postprocessing")
    @classmethod
    def _check_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name or len(name) > MAX_NAME:
                raise FieldError(f'["{name[:100]}"]', f"names have 1 to {MAX_NAME} characters")
        return value

    @model_validator(mode="after")
    def _processing_fits(self) -> Runtime:
        # The builders pass this to the runtime as JSON in one environment variable.
        config = {
            "inputs": {k: v.model_dump(exclude_none=True) for k, v in self.preprocessing.items()},
            "outputs": {k: v.model_dump(exclude_none=True)
                        for k, v in self.postprocessing.items()},
        }
        size = len(json.dumps(config))
        if size > MAX_PROCESSING_BYTES:
            raise FieldError("postprocessing" if self.postprocessing else "preprocessing",
                             f"pre- and postprocessing take {size // 1024} KiB; at most "
                             f"{MAX_PROCESSING_BYTES // 1024} KiB fit in the runtime's "
                             "environment")
        return self

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
    """Share of requests for the canary: exact per request through the balancer, else its
    share of ready replicas (replicas are split by this share either way)."""


class Auth(ResourceModel):
    """Bearer-token authentication of inference requests."""

    secret_name: str = Field(max_length=253)
    """Secret whose values are the accepted bearer tokens (one per key)."""

    @field_validator("secret_name")
    @classmethod
    def _check(cls, value: str) -> str:
        return _secret_name(value)


class Tls(ResourceModel):
    """Serve HTTPS with a certificate from a Secret."""

    secret_name: str = Field(max_length=253)
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
    """Scale on CPU and load (HPA or KEDA), down to zero with minReplicas 0."""
    suspend: bool = False
    """Scale to zero now and answer 503 until false again (frees GPUs, keeps the object)."""
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

    @model_validator(mode="after")
    def _scale_to_zero_needs_the_balancer(self) -> ModelDeploymentSpec:
        if self.autoscaling is not None and self.autoscaling.scales_to_zero and (
                not self.routing.balancer):
            raise FieldError("autoscaling.minReplicas", "0 needs the balancer (routing."
                             "balancer: true), which holds requests while the model wakes")
        return self

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
