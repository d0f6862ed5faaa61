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
the request is served by ``hotpath.HotPath`` directly (request.py), its answer written in
one call.
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

import asyncio
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelplane_runtime import rules
from modelplane_runtime.http.direct.request import DirectRequest
from modelplane_runtime.http.direct.wire import Heads, KeepAlive, Routes
from modelplane_runtime.http.hotpath import JSON_HEADER as _JSON
from modelplane_runtime.http.hotpath import HotPath, match, read_head


class DirectConnection(HttpToolsProtocol):
    """``HttpToolsProtocol`` that serves the hot routes itself (see the module docstring)."""

    hot: ClassVar[HotPath]
    heads: ClassVar[Heads]
    routes: ClassVar[Routes]
    idle_sweeper: ClassVar[KeepAlive]
    request_class: ClassVar[type[DirectRequest]] = DirectRequest
    """DirectRequest, or its traced subclass when tracing is on (chosen once: traced.py)."""
    idle_since: float | None = None
    """Loop time the connection went idle with keep-alive (None while a request is on)."""
    head_since: float | None = None
    """Loop time a request's first byte arrived, until its headers are complete."""
    header_bytes = 0
    refusal: tuple[int, str] | None = None
    """Why the parser was stopped: answered in place of uvicorn's plain-text 400."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and never sends is closed after the keep-alive timeout,
        # as an idle keep-alive connection is (uvicorn would hold it for good).
        self.idle_sweeper.watch(self)

    def on_message_begin(self) -> None:
        # uvicorn builds the ASGI scope here; only requests left to ASGI need it (below).
        # A request is under way: not idle, even if the previous answer was written during
        # this same read (which made the connection look idle to the keep-alive sweep).
        self.idle_since = None
        self.head_since = self.loop.time()
        self.header_bytes = 0
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > rules.MAX_URL_BYTES:
            self._stop(414, f"the request target is over {rules.MAX_URL_BYTES} bytes")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > rules.MAX_HEADER_BYTES:
            self._stop(431, f"the request headers are over {rules.MAX_HEADER_BYTES} bytes")
        super().on_header(name, value)

    def _stop(self, status: int, message: str) -> None:
        """Stop parsing this connection; ``send_400_response`` answers ``status``."""
        self.refusal = (status, message)
        raise ValueError(message)  # httptools turns a callback's error into a parser error

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request the parser refused, as JSON like every other error,
        # and after the answers still owed to requests that came before it on the wire.
        status, message = self.refusal or (400, "invalid HTTP request")
        self.refusal = None
        self.head_since = None
        body = rules.error_body(message)
        head = self.heads.get(status, (_JSON,), self.server_state.default_headers)
        self.bad_request = b"%scontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
            head, len(body), body,
        )
        self.flow.pause_reading()
        if self.cycle is None or self.cycle.response_complete:
            self._refuse_now()

    bad_request: bytes | None = None
    """The answer to a request the parser refused, held until earlier ones are answered."""

    def _refuse_now(self) -> None:
        answer, self.bad_request = self.bad_request, None
        if answer is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timer replaced by KeepAlive's sweep.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.bad_request is None:
            self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.bad_request is not None:
            self._refuse_now()  # every request before the refused one is answered
        else:
            self.idle_sweeper.watch(self)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's timer is never armed here (see on_response_complete).
        self.idle_since = None  # data arrived, or the connection is gone

    def on_headers_complete(self) -> None:
        self.head_since = None
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
        return self.request_class(self, route, head, method, path, keep_alive, limit)


def _within(length: bytes, limit: int) -> bool:
    try:
        rules.declared_length(length, limit)
    except Exception:
        return False
    return True


def connection_class(hot: HotPath) -> type[DirectConnection]:
    """The protocol class uvicorn should use for an app whose hot routes ``hot`` serves."""
    request_class: type[DirectRequest] = DirectRequest
    if hot.runtime.tracing is not None:
        from modelplane_runtime.http.direct.traced import TracedDirectRequest

        request_class = TracedDirectRequest
    shared = {
        "request_class": request_class,
        "hot": hot,
        "heads": Heads(),
        "routes": Routes(),
        "idle_sweeper": KeepAlive(hot.ticker, hot.runtime.settings.headers_timeout_s),
    }
    return type("DirectConnection", (DirectConnection,), shared)

