"""One pure ASGI middleware for every request: id, limits, timeout, draining, metrics, logs.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware`` (which wraps every request in an
extra task and stream): this runs on every prediction, so it must stay cheap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelplane_runtime.errors import PayloadTooLarge
from modelplane_runtime.logs import REQUEST_ID, RequestIds
from modelplane_runtime.serving import Runtime, error_body

logger = logging.getLogger("modelplane.http")

_MODEL_PREFIXES: Final = (("/v1/models/", "v1"), ("/v2/models/", "v2"))


def _classify(path: str) -> tuple[str | None, str | None]:
    """(protocol, model name) of a model request, or (None, None) for server-level paths."""
    for prefix, protocol in _MODEL_PREFIXES:
        if path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[0]
            if protocol == "v1":
                name = name.split(":", 1)[0]  # "/v1/models/NAME:predict"
            return protocol, name
    return None, None


def needs_auth(path: str) -> bool:
    """True for the v1/v2 inference and metadata routes; health and /metrics stay open
    (kubelet probes and Prometheus scrapes carry no token)."""
    if path.startswith("/v1/"):
        return True
    return (path == "/v2" or path.startswith("/v2/")) and not path.startswith("/v2/health/")


CHALLENGE: Final = ((b"www-authenticate", b"Bearer"),)
"""The header a 401 carries (RFC 6750): the client should send a bearer token."""


def auth_refusal(authorization: bytes | None) -> str:
    """The 401 message for a request that sent ``authorization`` (or none)."""
    if authorization is None:
        return "missing bearer token (send 'Authorization: Bearer <token>')"
    return "invalid bearer token"


async def _answer(
    send: Send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def log_request_line(
    method: str, path: str, status: int, seconds: float, request_id: str | None = None
) -> None:
    """The debug-level access line of a finished request (every request path logs it).

    ``request_id`` stamps the line when the caller runs outside the request's context.
    """
    if logger.isEnabledFor(logging.DEBUG):
        token = REQUEST_ID.set(request_id) if request_id is not None else None
        try:
            logger.debug(
                "%s %s -> %s", method, path, status,
                extra={"status": status, "seconds": round(seconds, 6)},
            )
        finally:
            if token is not None:
                REQUEST_ID.reset(token)


class RequestMiddleware:
    """Request id, body and time limits, refusal while draining, and request metrics."""

    def __init__(self, app: ASGIApp, runtime: Runtime, ids: RequestIds | None = None) -> None:
        self.app = app
        self.runtime = runtime
        self.ids = ids or RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (lifespan and other scopes pass straight through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = self.runtime
        protocol, model = _classify(scope["path"])
        request_id = ""
        length: bytes | None = None
        authorization: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif key == b"content-length":
                length = value
            elif key == b"authorization":
                authorization = value
        request_id = request_id or self.ids.next()
        token = REQUEST_ID.set(request_id)
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        label = runtime.metric_model(model) if model is not None else None
        started = time.perf_counter()
        if label is not None:
            runtime.metrics.request_started(label)
        try:
            if label is not None and runtime.draining:
                await _answer(send_with_id, 503, "the server is shutting down")
            elif (
                runtime.auth is not None
                and needs_auth(scope["path"])
                and not runtime.auth.accepts(authorization)
            ):
                await _answer(send_with_id, 401, auth_refusal(authorization), CHALLENGE)
            else:
                await self._limited(scope, receive, send_with_id, length, lambda: status)
        finally:
            seconds = time.perf_counter() - started
            if label is not None and protocol is not None:
                runtime.metrics.request_finished(label, protocol, status or 500, seconds)
            log_request_line(scope["method"], scope["path"], status, seconds)
            REQUEST_ID.reset(token)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, length: bytes | None, status: Any
    ) -> None:
        settings = self.runtime.settings
        limit = settings.max_body_bytes
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, "invalid Content-Length header")
                return
            if declared > limit:
                await _answer(send, 413, f"the body is {declared} bytes; the limit is {limit}")
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            return message

        timeout = asyncio.timeout(settings.request_timeout_s)
        try:
            async with timeout:
                await self.app(scope, limited_receive, send)
        except TimeoutError:
            if not timeout.expired():
                raise
            logger.warning("request timed out after %ss", settings.request_timeout_s)
            if not status():
                await _answer(
                    send,
                    503,
                    f"the request was not answered within {settings.request_timeout_s} s",
                )
        except Exception:
            # Anything a route did not turn into an HTTP error is a bug: log it with the
            # request id and answer a JSON 500 rather than a bare connection reset.
            logger.exception("unhandled error while serving %s", scope["path"])
            if not status():
                await _answer(send, 500, "internal server error")
