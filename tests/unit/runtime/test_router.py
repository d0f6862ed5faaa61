"""Which requests the hot path takes: exactly the ones Starlette's routes would match."""

from __future__ import annotations

import pytest
from modelplane_runtime.http.hotpath import Route, match


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/models/m:predict", Route("predict", "m")),
        ("POST", "/v1/models/m/versions/2:predict", Route("predict", "m", version="2")),
        ("POST", "/v1/models/m/labels/stable:predict", Route("predict", "m", label="stable")),
        ("POST", "/v1/models/a:b:predict", Route("predict", "a:b")),
        ("POST", "/v1/models/m/versions/x:predict", Route("predict", "m", version="x")),
        ("POST", "/v2/models/m/infer", Route("infer", "m")),
        ("POST", "/v2/models/m/versions/3/infer", Route("infer", "m", version="3")),
        ("GET", "/v2/health/live", Route("live")),
        ("GET", "/v2/health/ready", Route("ready")),
    ],
)
def test_hot_routes(method: str, path: str, route: Route) -> None:
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
