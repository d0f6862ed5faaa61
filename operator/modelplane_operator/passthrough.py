"""Kubernetes values the spec passes through to the pods: checked here as the API server
would check them, so that a spec it would refuse becomes ``InvalidSpec`` before anything
is created (never a Deployment refused at create, with the Service already there).

- Label keys and values (``nodeSelector``, toleration keys and values) follow
  apimachinery's ``IsQualifiedName`` and ``IsValidLabelValue``.
- Tolerations follow core/v1 validation (``ValidateTolerations``): an empty key needs
  ``Exists``, ``Exists`` takes no value, ``tolerationSeconds`` only with ``NoExecute``.
- Affinity and ``valueFrom`` stay free-form objects, but bounded in depth, size and string
  length: a 300-level affinity passed the API server and kopf, then broke the JSON encoder
  of the operator's own request. The bounds leave room for every real affinity (its
  deepest path, a pod anti-affinity term's label selector values, is 10 levels).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from modelplane_operator.messages import FieldError
from modelplane_operator.resource import ResourceModel

LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_VALUE_PATTERN = rf"^({LABEL_NAME})?$"
"""A label value: empty, or up to 63 alphanumerics with ``-``, ``_``, ``.`` inside."""
MAX_LABEL_VALUE = 63
MAX_LABEL_KEY = 253 + 1 + 63
"""A prefix (DNS subdomain, 253) and ``/`` and a name (63)."""
_LABEL_NAME = re.compile(rf"^{LABEL_NAME}$")
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
_SUBDOMAIN = re.compile(rf"^{DNS1123_SUBDOMAIN}$")

MAX_TREE_DEPTH = 16
"""Deepest nesting of a free-form object (mappings and lists)."""
MAX_TREE_NODES = 2000
"""Most values in one free-form object."""
MAX_TREE_STRING = 4096
"""Longest string or key in a free-form object."""


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    if len(key) > MAX_LABEL_KEY:
        return f"a label key has at most {MAX_LABEL_KEY} characters"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return f"{_short(key)}: the prefix must be a lowercase DNS subdomain"
    if not name or len(name) > MAX_LABEL_VALUE or not _LABEL_NAME.match(name):
        return (f"{_short(key)} is not a label key: at most 63 letters, digits, '-', '_' or "
                "'.', starting and ending with a letter or digit, after an optional "
                "'prefix/'")
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None."""
    if len(value) > MAX_LABEL_VALUE or not _LABEL_VALUE.match(value):
        return (f"{_short(value)} is not a label value: at most 63 letters, digits, '-', "
                "'_' or '.', starting and ending with a letter or digit")
    return None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def tree_problem(value: Any, max_depth: int = MAX_TREE_DEPTH,
                 max_nodes: int = MAX_TREE_NODES) -> str | None:
    """Why a free-form value is too deep, too large or holds too long a string, or None.

    Iterative, and it stops at the first excess: a hostile value costs at most
    ``max_nodes`` steps, however deep or wide it is.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            return f"more than {max_nodes} values"
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(node, Mapping):
            for key, item in node.items():
                if len(str(key)) > MAX_TREE_STRING:
                    return f"a key longer than {MAX_TREE_STRING} characters"
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and len(node) > MAX_TREE_STRING:
            return f"a string longer than {MAX_TREE_STRING} characters"
    return None


def _bounded_tree(value: Any) -> Any:
    problem = tree_problem(value)
    if problem is not None:
        raise ValueError(f"too large: {problem}")
    return value


KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes API object passed through unchanged (a node affinity, an env source)."""


class PassThrough(ResourceModel):
    """Base of the Kubernetes types the spec embeds: their own camelCase field names,
    unknown fields rejected, strict types (no "3" or true for an integer)."""

    def manifest(self) -> dict[str, Any]:
        """The object as the pod spec takes it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Toleration(PassThrough):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = Field(default=None, max_length=MAX_LABEL_KEY)
    """Taint key to tolerate (a label key); empty with Exists tolerates every taint."""
    operator: Literal["Equal", "Exists"] | None = None
    """Equal (the default) or Exists."""
    value: str | None = Field(default=None, max_length=MAX_LABEL_VALUE,
                              pattern=LABEL_VALUE_PATTERN)
    """Taint value (a label value) for Equal."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to tolerate; empty tolerates every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0, le=2**63 - 1)
    """How long a NoExecute taint is tolerated before eviction (default: forever)."""

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        problem = label_key_problem(key) if key else None
        if problem is not None:
            raise ValueError(problem)
        return key

    @model_validator(mode="after")
    def _together(self) -> Toleration:
        # The rules core/v1 validation applies across fields.
        if not self.key and self.operator != "Exists":
            raise FieldError("operator", "must be Exists when the key is empty")
        if self.operator == "Exists" and self.value:
            raise FieldError("value", "must be empty when the operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise FieldError("tolerationSeconds", "only applies to the NoExecute effect")
        return self


class Affinity(PassThrough):
    """Pod affinity (core/v1 Affinity): each part passed through, bounded in size."""

    node_affinity: KubeObject | None = None
    """core/v1 NodeAffinity."""
    pod_affinity: KubeObject | None = None
    """core/v1 PodAffinity."""
    pod_anti_affinity: KubeObject | None = None
    """core/v1 PodAntiAffinity."""

    @field_validator("node_affinity", "pod_affinity", "pod_anti_affinity")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _bounded_tree(value)


ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
MAX_ENV_VALUE = 32 * 1024
"""Longest environment variable value: Linux refuses to start a process with any single
environment string over 128 KiB (MAX_ARG_STRLEN), and the pod carries several."""


class EnvVar(PassThrough):
    """A container environment variable (core/v1 EnvVar)."""

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)
    """Variable name."""
    value: str | None = Field(default=None, max_length=MAX_ENV_VALUE)
    """Value (quote numbers in YAML: values are strings)."""
    value_from: KubeObject | None = None
    """core/v1 EnvVarSource: a Secret or ConfigMap key, a pod field, a resource."""

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, name: Any) -> Any:
        if isinstance(name, str) and not re.match(ENV_NAME_PATTERN, name):
            raise ValueError("must be a valid environment variable name")
        return name

    @field_validator("value_from")
    @classmethod
    def _source(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _bounded_tree(value)
