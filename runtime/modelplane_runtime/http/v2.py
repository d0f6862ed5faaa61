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
EXTENSIONS = ("binary_tensor_data", "model_repository")
_REPOSITORY_STATES = {
    "START": "LOADING", "LOADING": "LOADING", "AVAILABLE": "READY", "UNLOADING": "UNLOADING",
    "END": "UNAVAILABLE",
}
"""TF Serving's version states as the repository extension names them (Triton's)."""
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
        # "devices" is ours (the protocol's three fields are kept): where TensorFlow placed
        # the served model, e.g. ["GPU:0"] (dataplane/devices.py).
        return json_response({
            "name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS),
            "devices": dataplane.devices(),
        })

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

    async def repository_index(request: Request) -> Response:
        # The model repository extension (Triton's and KServe's): one model per process.
        name = runtime.settings.served_name
        versions = dataplane.versions(name)
        if not versions:
            return json_response([{"name": name, "state": "UNAVAILABLE", "reason": "unloaded"}])
        return json_response([
            {"name": name, "version": str(v.version), "state": _REPOSITORY_STATES[v.state],
             "reason": v.error}
            for v in versions
        ])

    async def repository_load(request: Request) -> Response:
        dataplane.versions(request.path_params["name"])  # 404 for another name
        await dataplane.load_now()
        return json_response({})

    async def repository_unload(request: Request) -> Response:
        dataplane.versions(request.path_params["name"])
        await dataplane.unload_all()
        return json_response({})

    table = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
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
