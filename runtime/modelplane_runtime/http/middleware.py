"""One pure ASGI middleware for every request the FastAPI app serves: id, limits, timeout,
draining, auth, metrics, logs, each by the rules in rules.py (the hot path applies the same).

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware`` (which wraps every request in an
extra task and stream): this runs on metadata and status requests, so it must stay cheap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelplane_runtime import rules
from modelplane_runtime.http.messages import CHALLENGE, log_request_line
from modelplane_runtime.logs import REQUEST_ID, RequestIds
from modelplane_runtime.rules import Deadlines
from modelplane_runtime.serving import Runtime

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


async def _answer(send: Send, exc: BaseException, *, log: bool = True) -> None:
    status, message = rules.error_status(exc, log=log)
    body = rules.error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *(CHALLENGE if status == 401 else ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestMiddleware:
    """Request id, body and time limits, refusals, and request metrics."""

    def __init__(
        self, app: ASGIApp, runtime: Runtime, ids: RequestIds, deadlines: Deadlines
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.ids = ids
        self.deadlines = deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (lifespan and other scopes pass straight through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = self.runtime
        protocol, model = _classify(scope["path"])
        given: bytes | None = None
        length: bytes | None = None
        authorization: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value
            elif key == b"content-length":
                length = value
            elif key == b"authorization":
                authorization = value
        request_id = rules.request_id(given, self.ids)
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
            # Draining refuses model requests only: the server's metadata stays readable.
            refused = rules.refusal(
                runtime, authorization, drain=label is not None, auth=needs_auth(scope["path"])
            )
            if refused is not None:
                await _answer(send_with_id, refused, log=False)
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
        limit = self.runtime.settings.max_body_bytes
        if length is not None:
            try:
                rules.declared_length(length, limit)
            except Exception as exc:
                await _answer(send, exc)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise rules.too_large(limit)
            return message

        task = asyncio.current_task()
        assert task is not None  # every ASGI request runs in its own task
        deadlines = self.deadlines
        deadlines.enter(task, task.get_loop())
        try:
            await self.app(scope, limited_receive, send)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            task.uncancel()
            timed_out = rules.timed_out(self.runtime.settings.request_timeout_s)
            if not status():
                await _answer(send, timed_out, log=False)
        except Exception as exc:
            # Anything a route did not turn into an HTTP error is a bug: logged with the
            # request id and answered with a JSON 500 rather than a bare connection reset.
            if not status():
                await _answer(send, exc)
            else:
                rules.error_status(exc)
        finally:
            deadlines.leave(task)
