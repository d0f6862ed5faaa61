"""TF Serving's REST API (v1) as thin routes over the data plane.

``GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]`` and
``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict`` (the colon is part of the path,
as in TF Serving's URLs).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from modelplane_runtime.codecs import v1 as codec_v1
from modelplane_runtime.errors import ModelNotFound
from modelplane_runtime.http.messages import json_response
from modelplane_runtime.rules import version_number
from modelplane_runtime.serving import Runtime

_SELECTORS = ("", "/versions/{version}", "/labels/{label}")


def routes(runtime: Runtime, predict: ASGIApp) -> list[Route]:
    """The v1 routes, bound to ``runtime``; ``predict`` answers ``:predict`` (router.HotPath)."""
    dataplane = runtime.dataplane

    def resolve(request: Request) -> tuple[str, int]:
        params = request.path_params
        name: str = params["name"]
        number = version_number(params.get("version"))
        version = dataplane.resolve(name, number, params.get("label"))
        return name, version

    async def status(request: Request) -> Response:
        params = request.path_params
        if any(str(value).endswith(":predict") for value in params.values()):
            # ``{name}`` also matches "NAME:predict": a GET there is a wrong method, not an
            # unknown model (the POST route is the one it meant).
            raise HTTPException(405, headers={"Allow": "POST"})
        name: str = params["name"]
        versions = dataplane.versions(name)
        if "version" in params or "label" in params:
            if "label" in params:
                wanted: int | None = dataplane.resolve(name, label=params["label"])
            else:
                wanted = version_number(params["version"])
            versions = [v for v in versions if v.version == wanted]
            if not versions:
                raise ModelNotFound(f"Could not find version {wanted} of model {name}")
        return json_response(codec_v1.model_status(versions))

    async def metadata(request: Request) -> Response:
        name, version = resolve(request)
        return json_response(
            codec_v1.model_metadata(name, version, dataplane.signatures(name, version))
        )

    table: list[Route] = []
    for selector in _SELECTORS:
        base = "/v1/models/{name}" + selector
        table.append(Route(base, status, methods=["GET"]))
        table.append(Route(base + "/metadata", metadata, methods=["GET"]))
        table.append(Route(base + ":predict", predict, methods=["POST"]))
    return table


def resolve(runtime: Runtime, name: str, version: str | None, label: str | None) -> int:
    """The version a predict URL names (404 for an unknown model, version or label)."""
    return runtime.dataplane.resolve(name, version_number(version), label)
