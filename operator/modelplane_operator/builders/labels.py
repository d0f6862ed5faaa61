"""Labels and selectors shared by every child, so Service, PDB and Deployments agree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

Track = Literal["stable", "canary"]

SELECTOR_LABEL = "modelplane.io/deployment"
"""Every pod of a ModelDeployment carries this label with the ModelDeployment's name."""
TRACK_LABEL = "modelplane.io/track"
"""``stable`` or ``canary``: keeps the two Deployments' selectors from overlapping."""
BALANCER_LABEL = "modelplane.io/balancer"
"""Every balancer pod carries this label with the ModelDeployment's name, and never
``SELECTOR_LABEL``: the runtime's headless Services, its PDB, the scale subresource's
selector and the operator's pod watch select runtime pods only."""

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
"""Marks every child the operator writes; its watches select children by it."""
VERSION_LABEL = "app.kubernetes.io/version"

APP_NAME = "modelplane-runtime"
BALANCER_APP_NAME = "modelplane-balancer"
PART_OF = "modelplane"
MANAGED_BY = "modelplane-operator"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def image_version(image: str) -> str | None:
    """The tag of an image reference if it is a valid label value (digests are not)."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    return tag if len(tag) <= 63 and _LABEL_VALUE.match(tag) else None


def common_labels(name: str, component: str, version: str | None = None,
                  app: str = APP_NAME) -> dict[str, str]:
    """The ``app.kubernetes.io`` recommended labels plus the selector label."""
    labels = {
        NAME_LABEL: app,
        INSTANCE_LABEL: name,
        COMPONENT_LABEL: component,
        PART_OF_LABEL: PART_OF,
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    if version:
        labels[VERSION_LABEL] = version
    labels[SELECTOR_LABEL] = name
    return labels


def pod_labels(name: str, track: Track, version: str | None) -> dict[str, str]:
    """Labels of a runtime pod of one track."""
    return {**common_labels(name, "model-server", version), TRACK_LABEL: track}


def is_runtime(child: Mapping[str, Any]) -> bool:
    """Whether a child belongs to the runtime (not to the balancer)."""
    return bool((child.get("metadata") or {}).get("labels", {}).get(NAME_LABEL) == APP_NAME)


def balancer_labels(name: str, version: str | None) -> dict[str, str]:
    """Labels of the balancer's children (its Deployment, ServiceAccount, Role, PDB): the
    selector label stays, so a child stripped of its ownerReference is still recognised."""
    return common_labels(name, "balancer", version, BALANCER_APP_NAME)


def balancer_pod_labels(name: str, version: str | None) -> dict[str, str]:
    """Labels of a balancer pod: ``BALANCER_LABEL`` instead of the runtime's selector label."""
    labels = balancer_labels(name, version)
    del labels[SELECTOR_LABEL]
    labels[BALANCER_LABEL] = name
    return labels


def balancer_selector(name: str) -> dict[str, str]:
    """Selects the balancer pods of one ModelDeployment (the Service ``<name>`` in front)."""
    return {BALANCER_LABEL: name}


def service_selector(name: str) -> dict[str, str]:
    """Selects every pod of the ModelDeployment, stable and canary (traffic split by count)."""
    return {SELECTOR_LABEL: name}


def deployment_selector(name: str, track: Track) -> dict[str, str]:
    """Selects one track's pods (its Deployment, and its headless ``-replicas`` Service);
    immutable once the Deployment exists, so never add to it."""
    return {SELECTOR_LABEL: name, TRACK_LABEL: track}


def managed_selector() -> str:
    """Label selector of every child the operator writes (for its LIST+WATCH streams)."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def selector_string(name: str) -> str:
    """``status.selector`` for the scale subresource (label-selector string form)."""
    return f"{SELECTOR_LABEL}={name}"
