"""uvicorn's httptools protocol, answering the hot routes without going through ASGI.

Under load the runtime spent more CPU in uvicorn's ASGI plumbing than in its own request
logic: per request, a scope dict, a ``RequestResponseCycle`` with an ``asyncio.Event``, the
``receive`` round trip for the body, message dicts for the answer, header validation, and
two ``transport.write`` calls (status and headers, then the body). Two writes are two
``send`` system calls, the largest single cost left in the profile.

``HotProtocol`` keeps uvicorn for everything a server must get right (connections,
keep-alive and its timeout, pipelining order, flow control, TLS, graceful shutdown, the
``Date`` header) and changes one thing: once a request's headers show one of the hot
routes (router.match: predict, infer, the health probes), the body is collected here and
the request is served by ``router.HotPath`` directly, its answer written in one call.
Every other request, and any hot request that needs more care (a query string, percent
escapes, ``Expect: 100-continue``, a declared body over the limit, an upgrade), takes
uvicorn's normal ASGI path, where the same HotPath serves it through ASGI.

It relies on ``HttpToolsProtocol``'s per-connection state (``cycle``, ``pipeline``,
``flow``, ``tasks``, ``on_response_complete``): the attributes uvicorn's own parser
callbacks use. tests/integration/runtime/test_protocol.py exercises each over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelplane_runtime.errors import PayloadTooLarge
from modelplane_runtime.router import (
    ClientGone,
    Headers,
    HotPath,
    RequestHead,
    Route,
    match,
    read_head,
)
from modelplane_runtime.state import decode_content

logger = logging.getLogger("modelplane.http")

_MODEL_KINDS: Final = frozenset({"predict", "infer"})
_CLOSE: Final = b"connection: close\r\n"


class _Wakeup:
    """Stands in for the ``asyncio.Event`` uvicorn sets when a cycle's connection drops."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class HotCycle:
    """One hot request on a connection: its body, then its one-write answer.

    Has the attributes uvicorn's protocol reads on ``self.cycle`` (``response_complete``,
    ``disconnected``, ``keep_alive``, ``message_event``) and ``run_asgi`` for when uvicorn
    starts it from its pipeline queue.
    """

    __slots__ = (
        "chunks",
        "disconnected",
        "head",
        "keep_alive",
        "limit",
        "message_event",
        "method",
        "more_body",
        "path",
        "protocol",
        "received",
        "response_complete",
        "route",
    )

    def __init__(
        self,
        protocol: HotProtocol,
        route: Route,
        head: RequestHead,
        method: str,
        path: str,
        keep_alive: bool,
        limit: int,
    ) -> None:
        self.protocol = protocol
        self.route = route
        self.head = head
        self.method = method
        self.path = path
        self.keep_alive = keep_alive
        self.limit = limit
        self.chunks: list[bytes] = []
        self.received = 0
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.message_event = _Wakeup()

    # Request side (parser callbacks, on the event loop).

    def feed(self, chunk: bytes) -> None:
        """Keep a body chunk; past the limit, only count (``read`` answers 413)."""
        self.received += len(chunk)
        if self.received <= self.limit:
            self.chunks.append(chunk)

    async def read(self) -> bytes:
        """The whole body, decompressed if need be; waits for the rest of it to arrive."""
        if self.more_body:
            # Serving starts with the headers, so the request timeout covers a slow body.
            waiter = asyncio.get_running_loop().create_future()
            self.message_event.waiter = waiter
            await waiter
        if self.disconnected:
            raise ClientGone
        if self.received > self.limit:
            raise PayloadTooLarge(f"the body is over the limit of {self.limit} bytes")
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = self.head.encoding
        if encoding is None:
            return body
        return decode_content(body, encoding.decode("latin-1"), self.limit)

    # Serving.

    async def run_asgi(self, app: Any) -> None:
        """Serve this request when uvicorn takes it off its pipeline queue (``app`` unused)."""
        await self.serve()

    async def serve(self) -> None:
        """Answer the request; never leaves the connection without an answer or a close."""
        hot = self.protocol.hot
        try:
            if self.route.kind in _MODEL_KINDS:
                await hot.model_request(
                    self.route, self.head, self.method, self.path, self.read, self.reply
                )
            else:
                await hot.probe(self.route, self.head, self.reply)
        except asyncio.CancelledError:  # a forced shutdown: do not leave the client waiting
            self._abort()
            raise
        except Exception:  # a bug: HotPath answers every error it knows itself
            logger.exception("unhandled error while answering %s %s", self.method, self.path)
            self._abort()

    def _abort(self) -> None:
        if not self.response_complete:
            self.keep_alive = False
            self.protocol.transport.close()

    async def reply(self, status: int, body: bytes, headers: Headers, request_id: bytes) -> None:
        """Write the whole answer in one call, then hand the connection to the next request."""
        protocol = self.protocol
        if protocol.flow.write_paused and not self.disconnected:
            await protocol.flow.drain()
        transport = protocol.transport
        if self.disconnected or transport.is_closing():
            raise ClientGone
        parts = [STATUS_LINE[status]]
        for name, value in (*protocol.server_state.default_headers, *headers):
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-length: %d\r\nx-request-id: " % len(body), request_id, b"\r\n")
        if not self.keep_alive:
            parts.append(_CLOSE)
        parts += (b"\r\n", body)
        transport.write(b"".join(parts))
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        protocol.on_response_complete()


class HotProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that serves the hot routes itself (see the module docstring)."""

    hot: ClassVar[HotPath]

    def on_headers_complete(self) -> None:
        cycle = self._hot_cycle()
        if cycle is None:
            super().on_headers_complete()
            return
        previous = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            # Started now, like uvicorn's ASGI task; the body is usually complete before
            # the task first runs (same feed), else ``read`` waits for it.
            task = self.loop.create_task(cycle.serve())
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:
            # Pipelined behind an unanswered request: uvicorn starts it (run_asgi) in order.
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, HotCycle):
            if not cycle.response_complete:
                cycle.feed(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if not isinstance(cycle, HotCycle):
            super().on_message_complete()
            return
        if not cycle.response_complete:
            cycle.more_body = False
            cycle.message_event.set()

    def _hot_cycle(self) -> HotCycle | None:
        """A cycle for a hot request this protocol can serve whole, else None (ASGI)."""
        url = self.url
        if (
            self.expect_100_continue
            or self.root_path
            or self.limit_concurrency is not None
            or not url.startswith(b"/")
            or b"?" in url
            or b"%" in url
        ):
            return None
        parser = self.parser
        try:
            method = parser.get_method().decode("ascii")
            path = url.decode("ascii")
        except UnicodeDecodeError:
            return None
        route = match(method, path)
        if route is None or parser.should_upgrade():
            return None
        head = read_head(self.headers)
        limit = self.hot.runtime.settings.max_body_bytes
        if head.length is not None and not _within(head.length, limit):
            return None  # ASGI answers 400 or 413 before the body arrives
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return HotCycle(self, route, head, method, path, keep_alive, limit)


def _within(length: bytes, limit: int) -> bool:
    return length.isdigit() and int(length) <= limit


def protocol_for(hot: HotPath) -> type[HotProtocol]:
    """The protocol class uvicorn should use for an app whose hot routes ``hot`` serves."""
    return type("HotProtocol", (HotProtocol,), {"hot": hot})

