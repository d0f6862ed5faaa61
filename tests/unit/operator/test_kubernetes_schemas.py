"""Every rendered child validates against the real Kubernetes OpenAPI schemas (strict).

kubernetes-validate ships the JSON schemas of each Kubernetes release; strict mode rejects
unknown fields, so a misspelt key fails here instead of being pruned by the API server.
1.30 is the oldest release we support (the preStop ``sleep`` action is on by default from
1.30); 1.35 is the newest that the project tests with kubectl.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions
from modelplane_operator.builders.render import render

from .cases import DEFAULTS, SPECS, md

VERSIONS = ("1.30", "1.35")


def test_the_installed_package_ships_both_versions() -> None:
    shipped = {v.rsplit(".", 1)[0] for v in all_versions()}
    assert set(VERSIONS) <= shipped


def _cases() -> list[Any]:
    return [
        pytest.param(name, version, id=f"{name}-k8s{version}")
        for name in sorted(SPECS)
        for version in VERSIONS
    ]


@pytest.mark.parametrize(("name", "version"), _cases())
def test_every_child_validates(name: str, version: str) -> None:
    children = render(md(SPECS[name]), DEFAULTS)
    assert children
    for child in children:
        try:
            validated = kubernetes_validate.validate(child, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{child['kind']}/{child['metadata']['name']}: {path}: {exc.message}")
        assert validated == version


def test_the_validator_catches_a_misspelt_field() -> None:
    """Guards the test above: strict validation really rejects unknown fields."""
    child = render(md(SPECS["demo"]), DEFAULTS)[0]
    child["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    for version in VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(child, version, strict=True)
