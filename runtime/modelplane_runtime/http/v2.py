"""The Open Inference Protocol (v2) as thin routes over the data plane.

Health, server and model metadata, readiness, and ``/infer`` with JSON or binary tensors
(Triton's binary tensor data extension, which tritonclient uses by default).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from modelplane_runtime import __version__, contract
from modelplane_runtime.codecs import v2 as codec_v2
from modelplane_runtime.errors import ModelNotReady
from modelplane_runtime.http.messages import json_response
from modelplane_runtime.rules import version_number
from modelplane_runtime.serving import Runtime

SERVER_NAME = "modelplane"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "tensorflow"


def routes(runtime: Runtime, infer: ASGIApp) -> list[Route]:
    """The v2 routes, bound to ``runtime``; ``infer`` answers ``/infer`` (router.HotPath)."""
    dataplane = runtime.dataplane

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        is_ready = runtime.ready
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    async def server_metadata(request: Request) -> Response:
        return json_response(
            {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}
        )

    def resolve(request: Request) -> tuple[str, int]:
        params = request.path_params
        name: str = params["name"]
        return name, dataplane.resolve(name, version_number(params.get("version")))

    async def model_metadata(request: Request) -> Response:
        name, version = resolve(request)
        available = [
            str(status.version)
            for status in dataplane.versions(name)
            if status.state == "AVAILABLE"
        ]
        spec = dataplane.signature(name, version)
        return json_response(codec_v2.model_metadata(name, available, spec, PLATFORM))

    async def model_ready(request: Request) -> Response:
        name: str = request.path_params["name"]
        try:
            resolve(request)
        except ModelNotReady:
            return json_response({"name": name, "ready": False}, 503)
        is_ready = runtime.ready
        return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    table = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route(contract.LIVE_PATH, live, methods=["GET"]),
        Route(contract.READY_PATH, ready, methods=["GET"]),
    ]
    for selector in ("", "/versions/{version}"):
        base = "/v2/models/{name}" + selector
        table.append(Route(base, model_metadata, methods=["GET"]))
        table.append(Route(base + "/ready", model_ready, methods=["GET"]))
        table.append(Route(base + "/infer", infer, methods=["POST"]))
    return table


def resolve(runtime: Runtime, name: str, version: str | None) -> int:
    """The version an infer URL names (404 for an unknown model or version)."""
    return runtime.dataplane.resolve(name, version_number(version))
