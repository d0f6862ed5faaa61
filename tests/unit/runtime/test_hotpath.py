"""Which requests the hot path takes: exactly the ones Starlette's routes would match."""

from __future__ import annotations

import pytest
from modelplane_runtime.http.hotpath import HotRoute, match


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/models/m:predict", HotRoute("predict", "m")),
        ("POST", "/v1/models/m/versions/2:predict", HotRoute("predict", "m", version="2")),
        ("POST", "/v1/models/m/labels/stable:predict", HotRoute("predict", "m", label="stable")),
        ("POST", "/v1/models/a:b:predict", HotRoute("predict", "a:b")),
        ("POST", "/v1/models/m/versions/x:predict", HotRoute("predict", "m", version="x")),
        ("POST", "/v2/models/m/infer", HotRoute("infer", "m")),
        ("POST", "/v2/models/m/versions/3/infer", HotRoute("infer", "m", version="3")),
        ("GET", "/v2/health/live", HotRoute("live")),
        ("GET", "/v2/health/ready", HotRoute("ready")),
    ],
)
def test_hot_routes(method: str, path: str, route: HotRoute) -> None:
    assert match(method, path) == route


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/m:predict"),  # 405 from the app
        ("POST", "/v1/models/:predict"),  # no name: 404 from the app
        ("POST", "/v1/models/a/b:predict"),
        ("POST", "/v1/models/m/versions/:predict"),
        ("POST", "/v1/models/m/versions/1/x:predict"),
        ("POST", "/v2/models/m/labels/stable/infer"),  # v2 has no labels
        ("POST", "/v2/models/m/infer/"),
        ("POST", "/v2/health/ready"),
        ("GET", "/v2/models/m"),
        ("GET", "/metrics"),
    ],
)
def test_everything_else_falls_through(method: str, path: str) -> None:
    assert match(method, path) is None
