"""Fixtures of the emulator's own tests: an HTTP client and the Widget test CRD."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.kube import KubeApi

WIDGETS_CRD = Path(__file__).with_name("widgets-crd.yaml")
WIDGETS = "/apis/emulator.example.com/v1"


@pytest.fixture
def http(kube_api: KubeApi) -> Iterator[httpx.Client]:
    """A plain HTTP client on the emulator (no Kubernetes client library in between)."""
    with httpx.Client(base_url=kube_api.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def widgets_crd(apply_crd: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The Widget CRD (status and scale subresources, printer columns), applied once."""
    return apply_crd(WIDGETS_CRD)


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A Widget manifest."""
    return {"apiVersion": "emulator.example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
