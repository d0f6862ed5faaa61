"""The HTTP hot path: v1 ``:predict``, v2 ``/infer`` and the health probes, with the
middleware's guarantees and none of the framework.

Every other request (metadata, status, /metrics, and anything that does not parse as one
of these routes) goes to the FastAPI app and its middleware. Profiles under load showed
the per-request cost dominated by the framework (Starlette's routing, the exception and
body-limit middlewares, ``Request`` objects, ``asyncio.timeout``) rather than inference.

``HotPath`` holds the steps of a hot request as plain methods: refusals, resolving the
model, decoding and queueing the body, turning outputs or errors into ``{"error": ...}``
answers, the request timeout, metrics and logs; the rules behind each (messages, limits,
request ids, deadlines) are rules.py's, shared with the middleware and gRPC. Two adapters
run the steps: ``HotPath.__call__`` over ASGI (in-process apps, and the requests the direct
path leaves to uvicorn's ASGI path), and direct/connection.py, which runs them from parser
and batch-completion callbacks and writes each answer in one call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Final, NamedTuple

from starlette.types import Receive, Scope, Send

from modelplane_runtime import contract, rules
from modelplane_runtime.codecs.decoded import Decoded, Outputs
from modelplane_runtime.dataplane.batching import Waiter
from modelplane_runtime.http import v1, v2
from modelplane_runtime.http.decoder import OFF_LOOP_BYTES, Decoder, decode_body
from modelplane_runtime.http.messages import CHALLENGE, log_request_line
from modelplane_runtime.logs import REQUEST_ID, RequestIds
from modelplane_runtime.rules import Deadlines, Ticker
from modelplane_runtime.serving import Runtime

_V1_PREFIX: Final = "/v1/models/"
_V1_SUFFIX: Final = ":predict"
_V2_PREFIX: Final = "/v2/models/"
_V2_SUFFIX: Final = "/infer"
JSON_HEADER: Final = (b"content-type", b"application/json")
_JSON: Final = JSON_HEADER
_BINARY: Final = (b"content-type", b"application/octet-stream")
CLIENT_GONE: Final = 499
"""Status recorded (never sent) when the client disconnects before its answer (nginx's)."""


class HotRoute(NamedTuple):
    """A request the hot path serves: what it is, and the model it names."""

    kind: str
    """``predict`` (v1), ``infer`` (v2), ``live`` or ``ready``."""
    name: str = ""
    version: str | None = None
    label: str | None = None


_LIVE: Final = HotRoute("live")
_READY: Final = HotRoute("ready")


def match(method: str, path: str) -> HotRoute | None:
    """The hot route for a request, or None to let the FastAPI app answer it.

    Parses exactly what Starlette's routes would match (``{name}`` and friends never hold
    a ``/``), so anything else (a 404, a 405, a stray slash) gets the app's own answer.
    """
    if method == "POST":
        if path.startswith(_V1_PREFIX) and path.endswith(_V1_SUFFIX):
            return _model_route("predict", path[len(_V1_PREFIX) : -len(_V1_SUFFIX)], True)
        if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
            return _model_route("infer", path[len(_V2_PREFIX) : -len(_V2_SUFFIX)], False)
    elif method == "GET":
        if path == contract.READY_PATH:
            return _READY
        if path == contract.LIVE_PATH:
            return _LIVE
    return None


def _model_route(kind: str, rest: str, labels: bool) -> HotRoute | None:
    parts = rest.split("/")
    if not all(parts):
        return None
    if len(parts) == 1:
        return HotRoute(kind, parts[0])
    if len(parts) == 3 and parts[1] == "versions":
        return HotRoute(kind, parts[0], version=parts[2])
    if len(parts) == 3 and labels and parts[1] == "labels":
        return HotRoute(kind, parts[0], label=parts[2])
    return None


class ClientGone(Exception):
    """The client disconnected before its body arrived or before its answer was sent."""


Headers = tuple[tuple[bytes, bytes], ...]
Answer = tuple[int, bytes, Headers]
BodyReader = Callable[[], Awaitable[bytes]]
"""Reads the whole request body (after the route has checked the model exists)."""


class RequestHead(NamedTuple):
    """The request headers the hot path reads, from one pass over them."""

    request_id: bytes = b""
    length: bytes | None = None
    authorization: bytes | None = None
    encoding: bytes | None = None
    header_length: bytes | None = None


def read_head(headers: Iterable[tuple[bytes, bytes]]) -> RequestHead:
    """The headers the hot path needs (names already lower-case, as servers deliver them)."""
    request_id = b""
    length = authorization = encoding = header_length = None
    for key, value in headers:
        if key == b"content-length":
            length = value
        elif key == b"x-request-id":
            request_id = value
        elif key == b"authorization":
            authorization = value
        elif key == b"content-encoding":
            encoding = value
        elif key == b"inference-header-content-length":
            header_length = value
    return RequestHead(request_id, length, authorization, encoding, header_length)


class HotPath:
    """Serves the routes ``match`` returns, with the request middleware's guarantees.

    The steps of a request (refusals, submitting to the model, turning outputs or errors
    into answers, the books) are plain methods, shared by the ASGI adapter here
    (``__call__``: in-process apps and the requests the direct path leaves to ASGI) and by
    direct/connection.py, which runs them from parser and future callbacks.
    """

    def __init__(self, runtime: Runtime, ids: RequestIds, ticker: Ticker) -> None:
        self.runtime = runtime
        self.ids = ids
        self.ticker = ticker
        self.deadlines = Deadlines(runtime.settings.request_timeout_s, ticker)
        self.decoder = Decoder()

    def close(self) -> None:
        """Stop the decoder process (bodies still being decoded are abandoned)."""
        self.decoder.close()

    # The steps.

    def request_id(self, head: RequestHead) -> str:
        """The client's ``X-Request-Id`` (see rules.request_id), or a new one."""
        return rules.request_id(head.request_id, self.ids)

    def probe(self, route: HotRoute) -> Answer:
        """The answer to ``/v2/health/live`` or ``/v2/health/ready``."""
        if route.kind == "live":
            return 200, b'{"live":true}', (_JSON,)
        if self.runtime.ready:
            return 200, b'{"ready":true}', (_JSON,)
        return 503, b'{"ready":false}', (_JSON,)

    def refusal(self, head: RequestHead) -> Answer | None:
        """503 while draining, 401 without an accepted token; None to serve the request."""
        refused = rules.refusal(self.runtime, head.authorization)
        return None if refused is None else error_answer(refused, log=False)

    def resolve(self, route: HotRoute) -> int:
        """The model version a request names (before its body is read: 404s come first)."""
        if route.kind == "predict":
            return v1.resolve(self.runtime, route.name, route.version, route.label)
        return v2.resolve(self.runtime, route.name, route.version)

    def decode_body(
        self, route: HotRoute, number: int, head: RequestHead, body: bytes
    ) -> Decoded:
        """Decompress and decode a body for the model here (4xx errors raise here)."""
        settings = self.runtime.settings
        return decode_body(
            route.kind, body, head.encoding, head.header_length,
            partial(self.runtime.dataplane.signature, route.name, number), route.name, number,
            settings.max_rows_per_request, settings.max_body_bytes,
        )

    def decode_later(
        self, route: HotRoute, number: int, head: RequestHead, body: bytes
    ) -> asyncio.Future[Decoded]:
        """``decode_body`` in the decoder process, for bodies of OFF_LOOP_BYTES or more."""
        settings = self.runtime.settings
        return self.decoder.submit(
            route.kind, body, head.encoding, head.header_length,
            self.runtime.dataplane.signature_choice(route.name, number), route.name, number,
            settings.max_rows_per_request, settings.max_body_bytes,
        )

    def submit(self, route: HotRoute, number: int, decoded: Decoded, waiter: Waiter) -> None:
        """Queue a decoded request for the model; ``waiter`` gets the outputs or the error."""
        self.runtime.dataplane.submit_to(
            waiter, route.name, number, decoded.signature, decoded.inputs,
            strict_dtypes=decoded.strict_dtypes,
        )

    def submit_future(
        self, route: HotRoute, number: int, decoded: Decoded
    ) -> asyncio.Future[Outputs]:
        """``submit`` with a future of its own (the ASGI adapter awaits it)."""
        return self.runtime.dataplane.submit(
            route.name, number, decoded.signature, decoded.inputs,
            strict_dtypes=decoded.strict_dtypes,
        )

    @staticmethod
    def encode(decoded: Decoded, outputs: Outputs) -> tuple[bytes, int | None]:
        """The response body for ``outputs`` (the ASGI adapter's step; see http/traced.py)."""
        return decoded.encode(outputs)

    @staticmethod
    def success(encoded: tuple[bytes, int | None]) -> Answer:
        """The 200 answer for an encoded body (binary v2 outputs get their two headers)."""
        body, json_length = encoded
        if json_length is None:
            return 200, body, (_JSON,)
        return 200, body, (_BINARY, (b"inference-header-content-length", b"%d" % json_length))

    @staticmethod
    def failure(exc: BaseException) -> Answer:
        """The answer for an error raised while serving (logged; see rules.error_status)."""
        return error_answer(exc)

    def timed_out(self) -> Answer:
        """The 503 for a request its deadline cancelled."""
        return error_answer(rules.timed_out(self.runtime.settings.request_timeout_s), log=False)

    def started(self, route: HotRoute) -> str:
        """Count a model request in flight; its ``model`` metrics label."""
        label = self.runtime.metric_model(route.name)
        self.runtime.metrics.request_started(label)
        return label

    def finished(
        self,
        route: HotRoute,
        label: str,
        status: int,
        seconds: float,
        method: str,
        path: str,
        request_id: str | None = None,
    ) -> None:
        """Record an answered (or abandoned) model request in metrics and the access log."""
        protocol = "v1" if route.kind == "predict" else "v2"
        self.runtime.metrics.request_finished(label, protocol, status, seconds)
        log_request_line(method, path, status, seconds, request_id)

    # ASGI.

    async def __call__(self, route: HotRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI request that ``match`` accepted."""
        head = read_head(scope["headers"])
        request_id = self.request_id(head)
        if route.kind not in ("predict", "infer"):
            await _send(send, *self.probe(route), request_id.encode("latin-1"))
            return
        token = REQUEST_ID.set(request_id)
        label = self.started(route)
        started = time.perf_counter()
        status = 500
        try:
            answer = self.refusal(head) or await self._answer(route, head, receive)
            status = answer[0]
            await _send(send, *answer, request_id.encode("latin-1"))
        except ClientGone:
            status = CLIENT_GONE
        finally:
            seconds = time.perf_counter() - started
            self.finished(route, label, status, seconds, scope["method"], scope["path"])
            REQUEST_ID.reset(token)

    async def _answer(self, route: HotRoute, head: RequestHead, receive: Receive) -> Answer:
        """The response to a model request, errors included (never raises but ClientGone)."""
        task = asyncio.current_task()
        assert task is not None  # every ASGI request runs in its own task
        deadlines = self.deadlines
        deadlines.enter(task, task.get_loop())
        try:
            limit = self.runtime.settings.max_body_bytes
            if head.length is not None:
                rules.declared_length(head.length, limit)
            number = self.resolve(route)
            body = await _read(receive, limit)
            if len(body) >= OFF_LOOP_BYTES:
                decoded = await self.decode_later(route, number, head, body)
            else:
                decoded = self.decode_body(route, number, head, body)
            future = self.submit_future(route, number, decoded)
            return self.success(self.encode(decoded, await _unless_gone(future, receive)))
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            task.uncancel()
            return self.timed_out()
        except ClientGone:
            raise
        except Exception as exc:
            return self.failure(exc)
        finally:
            deadlines.leave(task)


async def _unless_gone(outputs: asyncio.Future[Outputs], receive: Receive) -> Outputs:
    """The outputs, or ClientGone (and the request withdrawn) if the client leaves first.

    uvicorn's ``send`` to a gone client returns quietly, so without watching ``receive``
    an abandoned request would run to the end and be counted as answered.
    """
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((outputs, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        outputs.cancel()
        raise
    finally:
        gone.cancel()
    if not outputs.done():
        outputs.cancel()
        raise ClientGone
    return outputs.result()


async def _disconnect(receive: Receive) -> None:
    """Returns when the ASGI server reports the client gone (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read(receive: Receive, limit: int) -> bytes:
    """The whole request body (413 past ``limit``; ClientGone if the client leaves)."""
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        received = len(body)
        while True:
            if received > limit:
                raise rules.too_large(limit)
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            chunks.append(chunk)
            received += len(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    if len(body) > limit:
        raise rules.too_large(limit)
    return body


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers,
    request_id: bytes,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", b"%d" % len(body)),
                (b"x-request-id", request_id),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})



def error_answer(exc: BaseException, *, log: bool = True) -> Answer:
    """The ``{"error": ...}`` answer to an error (a 401 with its ``WWW-Authenticate``)."""
    status, message = rules.error_status(exc, log=log)
    headers = (_JSON, *CHALLENGE) if status == 401 else (_JSON,)
    return status, rules.error_body(message), headers
