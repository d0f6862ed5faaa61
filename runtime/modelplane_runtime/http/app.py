"""The runtime's HTTP application: ``create_app(settings)`` builds it; nothing at import time.

The model loads in the lifespan (before the server accepts connections) and is released on
shutdown. Every error a client can cause answers ``{"error": ...}`` with a 4xx status: our
``ModelplaneError``s carry their status, and Starlette's own 404/405 and FastAPI's
validation errors are rewritten to the same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from modelplane_runtime import __version__, contract
from modelplane_runtime.auth import TokenStore
from modelplane_runtime.errors import ModelLoadError, ModelplaneError
from modelplane_runtime.http import v1, v2
from modelplane_runtime.http.hotpath import HotPath, match
from modelplane_runtime.http.messages import JSON
from modelplane_runtime.http.middleware import RequestMiddleware
from modelplane_runtime.http.traced import TracedHotPath
from modelplane_runtime.logs import RequestIds
from modelplane_runtime.metrics import CONTENT_TYPE, Metrics
from modelplane_runtime.rules import Ticker, error_body, error_status
from modelplane_runtime.serving import Runtime
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.tracing import Tracing
from modelplane_runtime.tracing import from_environment as tracing_from_environment

if TYPE_CHECKING:
    from modelplane_runtime.dataplane.plane import DataPlane

logger = logging.getLogger("modelplane.app")

CLOSE_TIMEOUT_S = 5.0
"""Longest the data plane may take to close after the HTTP server has drained."""


def create_app(
    settings: RuntimeSettings,
    dataplane: DataPlane | None = None,
    *,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> RuntimeApp:
    """Build the app; pass ``dataplane`` (observed by ``metrics``) to serve your own, and
    ``tracing`` to trace with your own provider (default: as the ``OTEL_*`` variables say)."""
    metrics = metrics or Metrics()
    if tracing is None:
        tracing = tracing_from_environment(settings.served_name)
    if dataplane is None:
        from modelplane_runtime.dataplane.plane import DataPlane

        mirror = None
        if settings.model_uri:
            from modelplane_runtime.mirror import Mirror

            mirror = Mirror(settings)
        dataplane = DataPlane(
            settings, observer=metrics, traced=tracing is not None, on_change=_refreeze,
            before_scan=mirror.sync if mirror is not None else None,
        )
    auth = None
    if settings.auth_tokens_dir is not None:
        # Raises AuthConfigError (a clear start-up failure) for a missing or empty folder.
        auth = TokenStore(settings.auth_tokens_dir)
    runtime = Runtime(
        settings=settings, dataplane=dataplane, metrics=metrics, auth=auth, tracing=tracing
    )
    ids = RequestIds()
    # Chosen once: with tracing off, requests run no tracing code at all (traced.py).
    hot = (HotPath if tracing is None else TracedHotPath)(runtime, ids, Ticker())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.dataplane.load()
        except ModelLoadError as exc:
            # The model the user pointed at (its path, format or files): one clear line.
            # The traceback would be noise; RuntimeApp keeps Starlette from printing it.
            logger.error("model load failed: %s", exc, extra={"path": str(settings.model_path)})
            runtime.startup_error = str(exc)
            raise
        except Exception:
            logger.exception("model load failed", extra={"path": str(settings.model_path)})
            raise
        runtime.served = frozenset(runtime.dataplane.model_names())
        await asyncio.to_thread(metrics.start_collectors)  # NVML, off the loop
        # TensorFlow leaves millions of long-lived objects; without this, each full
        # collection walks all of them (100s of ms, a p99 spike under load). Frozen
        # objects are never scanned again; what requests allocate is collected as usual.
        gc.collect()
        gc.freeze()
        logger.info("models loaded", extra={"models": sorted(runtime.served)})
        polling = None
        if settings.poll_seconds > 0:
            polling = asyncio.create_task(runtime.dataplane.poll(settings.poll_seconds))
        try:
            yield
        finally:
            if polling is not None:
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling
            try:
                # Bounded: a model call that never returns must not keep the process alive
                # past its drain (the server exits anyway; see server.serve).
                await asyncio.wait_for(runtime.dataplane.close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                logger.error("the model did not close within %ss", CLOSE_TIMEOUT_S)
            hot.close()
            if runtime.tracing is not None:
                await asyncio.to_thread(runtime.tracing.shutdown)  # the last spans out

    app = RuntimeApp(
        hot,
        title="Modelplane runtime",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **_without_native_telemetry(),
    )
    app.state.runtime = runtime
    # Plain Starlette routes: the bodies are parsed by the codecs (orjson + numpy), so
    # FastAPI's per-request validation machinery would only add cost.
    # predict and infer are answered by the hot path before FastAPI routes anything
    # (RuntimeApp.__call__); their routes exist so that other methods get a 405.
    endpoint = HotEndpoint(app.hot)
    app.router.routes.extend([*v1.routes(runtime, endpoint), *v2.routes(runtime, endpoint)])

    async def render_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.router.add_route(contract.METRICS_PATH, render_metrics, methods=["GET"])
    app.add_exception_handler(ModelplaneError, _on_modelplane_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_middleware(
        RequestMiddleware, runtime=runtime, ids=ids, deadlines=app.hot.deadlines
    )
    return app


class RuntimeApp(FastAPI):
    """FastAPI, with the hot routes (predict, infer, health) served before it (hotpath.py).

    Under ``modelplane serve`` most hot requests never get here: direct/connection.py answers them
    below ASGI.
    """

    def __init__(self, hot: HotPath, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a hot route directly; everything else (and lifespan) through FastAPI."""
        if scope["type"] == "http":
            route = match(scope["method"], scope["path"])
            if route is not None:
                await self.hot(route, scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            send = self._quiet_user_errors(send)
        await super().__call__(scope, receive, send)

    def _quiet_user_errors(self, send: Send) -> Send:
        """``send`` for the lifespan, without the traceback Starlette attaches to a failed
        start-up when the cause was the user's model (already logged in one line)."""
        runtime = self.hot.runtime

        async def quiet(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and runtime.startup_error:
                message = {**message, "message": ""}
            await send(message)

        return quiet


class HotEndpoint:
    """``HotPath`` as a Starlette route endpoint (an ASGI app: Starlette calls it as is)."""

    def __init__(self, hot: HotPath) -> None:
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a predict or infer request that reached the FastAPI routes."""
        route = match(scope["method"], scope["path"])
        if route is None:  # cannot happen: match parses these routes' paths exactly
            raise RuntimeError(f"no hot route for {scope['method']} {scope['path']}")
        await self.hot(route, scope, receive, send)


def _refreeze() -> None:
    """After versions changed while serving: collect the unloaded ones, freeze the new ones.

    One full collection per version change (the frozen objects are walked once), so a
    retired model's cycles are freed and the new model's objects are not rescanned.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _without_native_telemetry() -> dict[str, Any]:
    # FastAPI >= 0.16x asks the OpenTelemetry globals on every request whether tracing is
    # on (~15 us per request here); the runtime exports Prometheus metrics instead.
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def runtime_of(app: FastAPI) -> Runtime:
    """The shared state of an app built by ``create_app``."""
    runtime: Runtime = app.state.runtime
    return runtime


async def _on_modelplane_error(request: Request, exc: ModelplaneError) -> Response:
    status, message = error_status(exc)
    return Response(error_body(message), status_code=status, media_type=JSON)


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    message = exc.detail
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return Response(
        error_body(message), status_code=exc.status_code, media_type=JSON, headers=exc.headers
    )


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in exc.errors()
    )
    return Response(error_body(f"invalid request: {problems}"), status_code=400, media_type=JSON)
