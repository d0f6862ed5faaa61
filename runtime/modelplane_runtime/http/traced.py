"""The hot path with tracing on: every model request's spans (tracing.py), over ASGI.

``create_app`` picks ``TracedHotPath`` instead of ``HotPath`` once, when tracing is on, so
HotPath itself holds no tracing code and an untraced runtime runs none of this. Each ASGI
request is its own task, so the request's trace rides in a context variable from
``__call__`` to the steps it times (decode, submit, encode). The direct path's counterpart
is direct/traced.py; both start traces with ``start_trace``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Final

from starlette.types import Message, Receive, Scope, Send

from modelplane_runtime.codecs.decoded import Decoded, Outputs
from modelplane_runtime.http.hotpath import CLIENT_GONE, HotPath, HotRoute, RequestHead
from modelplane_runtime.logs import RequestIds
from modelplane_runtime.rules import Ticker
from modelplane_runtime.serving import Runtime
from modelplane_runtime.tracing import RequestTrace, Tracing

CURRENT: ContextVar[RequestTrace | None] = ContextVar("modelplane_trace", default=None)
"""The trace of the ASGI request the current task serves."""

MODEL_KINDS: Final = frozenset({"predict", "infer"})


def route_template(route: HotRoute) -> str:
    """The route as the app declares it (OpenTelemetry's ``http.route``: low cardinality)."""
    if route.kind == "predict":
        if route.version is not None:
            return "/v1/models/{name}/versions/{version}:predict"
        if route.label is not None:
            return "/v1/models/{name}/labels/{label}:predict"
        return "/v1/models/{name}:predict"
    if route.version is not None:
        return "/v2/models/{name}/versions/{version}/infer"
    return "/v2/models/{name}/infer"


def start_trace(
    tracing: Tracing,
    route: HotRoute,
    method: str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
) -> RequestTrace | None:
    """The trace of a model request whose headers are ``headers`` (lower-case names)."""
    traceparent = tracestate = None
    for key, value in headers:
        if key == b"traceparent":
            traceparent = value
        elif key == b"tracestate":
            tracestate = value
    template = route_template(route)
    attributes = {
        "http.request.method": method,
        "http.route": template,
        "url.path": path,
        "modelplane.model": route.name,
    }
    if route.version is not None:
        attributes["modelplane.model.version"] = route.version
    if route.label is not None:
        attributes["modelplane.model.label"] = route.label
    return tracing.start(f"{method} {template}", traceparent, tracestate, attributes)


class TracedHotPath(HotPath):
    """HotPath that records each model request's trace (see the module docstring)."""

    def __init__(self, runtime: Runtime, ids: RequestIds, ticker: Ticker) -> None:
        super().__init__(runtime, ids, ticker)
        assert runtime.tracing is not None
        self.tracing: Tracing = runtime.tracing

    async def __call__(self, route: HotRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request that ``match`` accepted, inside its trace."""
        trace = None
        if route.kind in MODEL_KINDS:
            trace = start_trace(
                self.tracing, route, scope["method"], scope["path"], scope["headers"]
            )
        if trace is None:
            await super().__call__(route, scope, receive, send)
            return
        status, request_id = CLIENT_GONE, ""

        async def noted(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message["headers"]:
                    if key == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        token = CURRENT.set(trace)
        try:
            await super().__call__(route, scope, receive, noted)
        finally:
            CURRENT.reset(token)
            trace.finish_http(status, request_id)

    def decode_body(
        self, route: HotRoute, number: int, head: RequestHead, body: bytes
    ) -> Decoded:
        """HotPath's, inside a ``decode`` span."""
        trace = CURRENT.get()
        if trace is None:  # the direct path's requests time themselves
            return super().decode_body(route, number, head, body)
        trace.decoding()
        try:
            decoded = super().decode_body(route, number, head, body)
        except BaseException as exc:
            trace.decoded(exc)
            raise
        trace.decoded()
        return decoded

    def decode_later(
        self, route: HotRoute, number: int, head: RequestHead, body: bytes
    ) -> asyncio.Future[Decoded]:
        """HotPath's, its ``decode`` span ending when the decoder process answers."""
        trace = CURRENT.get()
        if trace is None:
            return super().decode_later(route, number, head, body)
        trace.decoding()
        future = super().decode_later(route, number, head, body)
        future.add_done_callback(lambda done: _decoded(trace, done))
        return future

    def submit_future(
        self, route: HotRoute, number: int, decoded: Decoded
    ) -> asyncio.Future[Outputs]:
        """HotPath's, the future wrapped as a Waiter that carries the trace to the batch."""
        trace = CURRENT.get()
        if trace is None:
            return super().submit_future(route, number, decoded)
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self.runtime.dataplane.submit_to(
            trace.waiter(future), route.name, number, decoded.signature, decoded.inputs,
            strict_dtypes=decoded.strict_dtypes,
        )
        return future

    @staticmethod
    def encode(decoded: Decoded, outputs: Outputs) -> tuple[bytes, int | None]:
        """HotPath's, inside an ``encode`` span."""
        trace = CURRENT.get()
        if trace is None:
            return decoded.encode(outputs)
        trace.encoding()
        try:
            encoded = decoded.encode(outputs)
        except BaseException as exc:
            trace.encoded(exc)
            raise
        trace.encoded()
        return encoded


def _decoded(trace: RequestTrace, done: asyncio.Future[Decoded]) -> None:
    error = None if done.cancelled() else done.exception()
    trace.decoded(error)
