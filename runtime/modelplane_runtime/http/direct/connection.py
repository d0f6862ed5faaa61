"""uvicorn's httptools protocol, answering the hot routes without going through ASGI.

Under load the runtime spent more CPU in uvicorn's ASGI plumbing than in its own request
logic: per request, a scope dict, a ``RequestResponseCycle`` with an ``asyncio.Event``, the
``receive`` round trip for the body, message dicts for the answer, header validation, and
two ``transport.write`` calls (status and headers, then the body). Two writes are two
``send`` system calls, the largest single cost left in the profile.

``DirectConnection`` keeps uvicorn for everything a server must get right (connections,
keep-alive and its timeout, pipelining order, flow control, TLS, graceful shutdown, the
``Date`` header) and changes one thing: once a request's headers show one of the hot
routes (hotpath.match: predict, infer, the health probes), the body is collected here and
the request is served by ``hotpath.HotPath`` directly, its answer written in one call.
Every other request, and any hot request that needs more care (a query string, percent
escapes, ``Expect: 100-continue``, a declared body over the limit, an upgrade), takes
uvicorn's normal ASGI path, where the same HotPath serves it through ASGI.

It relies on ``HttpToolsProtocol``'s per-connection state (``cycle``, ``pipeline``,
``flow``, ``tasks``, ``on_response_complete``, ...): the attributes uvicorn's own parser
callbacks use. fence.py checks at start-up that the installed uvicorn still has each
(the server falls back to plain httptools with a warning if not), pyproject.toml pins
uvicorn to the tested minor versions, and tests/integration/runtime/test_protocol*.py
exercise each over real sockets, on both paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelplane_runtime import rules
from modelplane_runtime.http.direct.wire import Heads, KeepAlive, Routes
from modelplane_runtime.http.hotpath import (
    CLIENT_GONE,
    Answer,
    Headers,
    HotPath,
    HotRoute,
    RequestHead,
    match,
    read_head,
)
from modelplane_runtime.http.messages import decode_content
from modelplane_runtime.logs import REQUEST_ID
from modelplane_runtime.serving import Decoded, Outputs

logger = logging.getLogger("modelplane.http")

_MODEL_KINDS: Final = frozenset({"predict", "infer"})
_CLOSE: Final = b"connection: close\r\n"


class DirectRequest:
    """One hot request on a connection, served by callbacks rather than a task.

    ``begin`` runs when the headers are complete (probes and refusals answer at once),
    ``body_complete`` when the body is in: it decodes and queues the request for the model
    with the cycle itself as the batcher's Waiter, so the batch's completion calls
    ``set_result`` (or ``set_exception``), which encodes and writes the answer. A deadline
    calls ``cancel`` (503) and a dropped connection calls ``set`` (uvicorn's name for it);
    once answered, ``done()`` is true and the batcher skips the request.

    Has the attributes uvicorn's protocol reads on ``self.cycle`` (``response_complete``,
    ``keep_alive``, ``disconnected``, ``message_event``) and ``run_asgi`` for when uvicorn
    starts it from its pipeline queue.
    """

    __slots__ = (
        "answered",
        "chunks",
        "connection",
        "decoded",
        "disconnected",
        "head",
        "keep_alive",
        "label",
        "limit",
        "message_event",
        "method",
        "more_body",
        "number",
        "path",
        "received",
        "request_id",
        "response_complete",
        "route",
        "started",
        "waiting",
    )

    def __init__(
        self,
        connection: DirectConnection,
        route: HotRoute,
        head: RequestHead,
        method: str,
        path: str,
        keep_alive: bool,
        limit: int,
    ) -> None:
        self.connection = connection
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
        self.message_event = self  # uvicorn calls ``cycle.message_event.set()`` on a drop
        self.request_id = ""
        self.label = ""
        self.started = 0.0
        self.number = 0
        self.waiting = False  # for the body, to submit it
        self.decoded: Decoded | None = None
        self.answered = False

    async def run_asgi(self, app: Any) -> None:
        """Begin when uvicorn takes this request off its pipeline queue (``app`` unused)."""
        self.begin()

    def begin(self) -> None:
        """The headers are complete: start the request's clock, or answer it at once."""
        hot = self.connection.hot
        route = self.route
        self.request_id = hot.request_id(self.head)
        if route.kind not in _MODEL_KINDS:
            self._answer(*hot.probe(route))
            return
        self.label = hot.started(route)
        self.started = time.perf_counter()
        answer = hot.refusal(self.head)
        if answer is None and self.received > self.limit:
            answer = self._too_large()  # arrived while pipelined behind another request
        if answer is None:
            try:
                self.number = hot.resolve(route)
            except Exception as exc:
                answer = self._failure(exc)
        if answer is not None:
            self._answer(*answer)
            return
        hot.deadlines.enter(self, self.connection.loop)
        if self.more_body:
            self.waiting = True
        else:
            self._submit()

    # Parser callbacks.

    def feed(self, chunk: bytes) -> None:
        """Keep a body chunk; past the limit, answer 413 without waiting for the rest."""
        self.received += len(chunk)
        if self.received <= self.limit:
            self.chunks.append(chunk)
            return
        self.chunks.clear()
        if self.started and not self.answered:
            # Not before it begins: a request pipelined behind another answers in its turn.
            self._answer(*self._too_large())

    def _too_large(self) -> Answer:
        return self._failure(rules.too_large(self.limit))

    def body_complete(self) -> None:
        """The whole body is in: submit it if the request is waiting for it."""
        self.more_body = False
        if self.waiting:
            self.waiting = False
            self._submit()

    def set(self) -> None:
        """The connection dropped (uvicorn's ``message_event.set()``): withdraw the request."""
        self.disconnected = True
        if self.started and not self.answered:
            self._answer(CLIENT_GONE, b"", ())  # answered = withdrawn from its batch

    def cancel(self) -> None:
        """The request's deadline passed: withdraw it from the model and answer 503."""
        if not self.answered:
            self._answer(*self._logged(self.connection.hot.timed_out))

    # Serving.

    def _submit(self) -> None:
        if self.answered:
            return
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        hot = self.connection.hot
        try:
            encoding = self.head.encoding
            if encoding is not None:
                body = decode_content(body, encoding.decode("latin-1"), self.limit)
            self.decoded = hot.decode(self.route, self.number, self.head, body)
            hot.submit(self.route, self.number, self.decoded, self)
        except Exception as exc:
            self._answer(*self._failure(exc))

    # The batcher's Waiter: called on the loop when the batch is done; must not raise.

    def done(self) -> bool:
        """True once answered: a request answered early (timeout, client gone) is withdrawn."""
        return self.answered

    def set_result(self, outputs: Outputs, /) -> None:
        """The model's outputs for this request: encode and answer."""
        if self.answered:
            return
        try:
            assert self.decoded is not None
            answer = self.connection.hot.success(self.decoded.encode(outputs))
        except Exception as exc:
            answer = self._failure(exc)
        self._safely(answer)

    def set_exception(self, exception: BaseException, /) -> None:
        """The model call failed for this request: answer its error."""
        if self.answered:
            return
        self._safely(self._failure(exception))

    def _safely(self, answer: Answer) -> None:
        try:
            self._answer(*answer)
        except Exception:  # never break the batcher's loop over the rest of the batch
            logger.exception("could not answer %s %s", self.method, self.path)
            self.connection.transport.close()

    def _failure(self, exc: BaseException) -> Answer:
        return self._logged(self.connection.hot.failure, exc)

    def _logged(self, step: Callable[..., Answer], *args: Any) -> Answer:
        """Run a step that may log, with this request's id on its log lines."""
        token = REQUEST_ID.set(self.request_id)
        try:
            return step(*args)
        finally:
            REQUEST_ID.reset(token)

    def _answer(self, status: int, body: bytes, headers: Headers) -> None:
        """Write the whole answer in one call (unless the client is gone), then the books."""
        self.answered = True
        connection = self.connection
        transport = connection.transport
        if self.disconnected or transport.is_closing():
            status = CLIENT_GONE
        else:
            head = connection.heads.get(status, headers, connection.server_state.default_headers)
            transport.write(
                b"%scontent-length: %d\r\nx-request-id: %s\r\n%s\r\n%s" % (
                    head, len(body), self.request_id.encode("latin-1"),
                    b"" if self.keep_alive else _CLOSE, body,
                )
            )
            if connection.flow.write_paused:
                # The client is not reading: hold the connection (and any pipelined
                # request) until it does, as uvicorn's send does by awaiting drain.
                task = connection.loop.create_task(self._complete_after_drain())
                connection.tasks.add(task)
                task.add_done_callback(connection.tasks.discard)
            else:
                self._complete()
        if self.started:
            hot = connection.hot
            hot.deadlines.leave(self)
            seconds = time.perf_counter() - self.started
            hot.finished(
                self.route, self.label, status, seconds, self.method, self.path, self.request_id
            )

    async def _complete_after_drain(self) -> None:
        await self.connection.flow.drain()
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        if not self.keep_alive:
            self.connection.transport.close()
        self.connection.on_response_complete()


class DirectConnection(HttpToolsProtocol):
    """``HttpToolsProtocol`` that serves the hot routes itself (see the module docstring)."""

    hot: ClassVar[HotPath]
    heads: ClassVar[Heads]
    routes: ClassVar[Routes]
    idle_sweeper: ClassVar[KeepAlive]
    idle_since: float | None = None
    """Loop time the connection went idle with keep-alive (None while a request is on)."""

    def on_message_begin(self) -> None:
        # uvicorn builds the ASGI scope here; only requests left to ASGI need it (below).
        # A request is under way: not idle, even if the previous answer was written during
        # this same read (which made the connection look idle to the keep-alive sweep).
        self.idle_since = None
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timer replaced by KeepAlive's sweep.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.idle_sweeper.watch(self)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's timer is never armed here (see on_response_complete).
        self.idle_since = None  # data arrived, or the connection is gone

    def on_headers_complete(self) -> None:
        cycle = self._hot_cycle()
        if cycle is None:
            url, expect, headers = self.url, self.expect_100_continue, self.headers
            super().on_message_begin()  # the ASGI scope
            self.url, self.expect_100_continue = url, expect
            self.headers = self.scope["headers"] = headers
            super().on_headers_complete()
            return
        previous = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            cycle.begin()
        else:
            # Pipelined behind an unanswered request: uvicorn starts it (run_asgi) in order.
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, DirectRequest):
            if not cycle.response_complete:
                cycle.feed(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, DirectRequest):
            if not cycle.response_complete:
                cycle.body_complete()
            return
        super().on_message_complete()

    def _hot_cycle(self) -> DirectRequest | None:
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
        raw_method = parser.get_method()
        known = self.routes.get((raw_method, url))
        if known is None:
            try:
                method = raw_method.decode("ascii")
                path = url.decode("ascii")
            except UnicodeDecodeError:
                return None
            known = self.routes.remember((raw_method, url), (match(method, path), method, path))
        route, method, path = known
        if route is None or parser.should_upgrade():
            return None
        head = read_head(self.headers)
        limit = self.hot.runtime.settings.max_body_bytes
        if head.length is not None and not _within(head.length, limit):
            return None  # ASGI answers 400 or 413 before the body arrives
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return DirectRequest(self, route, head, method, path, keep_alive, limit)


def _within(length: bytes, limit: int) -> bool:
    try:
        rules.declared_length(length, limit)
    except Exception:
        return False
    return True


def connection_class(hot: HotPath) -> type[DirectConnection]:
    """The protocol class uvicorn should use for an app whose hot routes ``hot`` serves."""
    shared = {
        "hot": hot, "heads": Heads(), "routes": Routes(), "idle_sweeper": KeepAlive(hot.ticker)
    }
    return type("DirectConnection", (DirectConnection,), shared)

