"""The client side: one asyncio Protocol per client connection, parsing requests with
httptools and handing each to an Exchange.

No framework in between: the request head is rewritten in the parser's callbacks (the
fields pass through byte for byte, hop-by-hop ones dropped), the body is forwarded as it
arrives, and an answer that fits is written in one call. Pipelined requests are served
in order, one at a time; the balancer's own paths (``/healthz``, ``/readyz``,
``/metrics``) are answered here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from modelplane_balancer import contract, headers
from modelplane_balancer.exchange import Exchange

if TYPE_CHECKING:
    from modelplane_balancer.balancer import Balancer

logger = logging.getLogger("modelplane.balancer.front")

MAX_URL_BYTES: Final = 16 * 1024
MAX_HEAD_BYTES: Final = 64 * 1024
"""Longest request head accepted (431 past it), as the usual proxies' defaults."""

_LOCAL: Final = {
    contract.HEALTHZ_PATH.encode(): "healthz",
    contract.READYZ_PATH.encode(): "readyz",
    contract.METRICS_PATH.encode(): "metrics",
}
_TRACKS: Final = {b"stable": contract.STABLE, b"canary": contract.CANARY}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Local:
    """A request for one of the balancer's own paths (answered once its body is read)."""

    __slots__ = ("close", "complete", "done", "is_head", "method", "name")

    def __init__(self, name: str, method: bytes, close: bool) -> None:
        self.name = name
        self.complete = False
        self.method = method
        self.is_head = method == b"HEAD"
        self.close = close
        self.done = False

    def body(self, piece: bytes) -> None:
        """Request bodies of the local paths are ignored."""

    def client_lost(self) -> None:
        """Nothing to undo."""
        self.done = True


class _Refusal(_Local):
    """A request refused before routing (4xx): answered once its head is parsed."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        super().__init__("refusal", b"GET", True)
        self.status = status
        self.message = message


class Front(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "balancer", "chunked", "client", "closing", "current", "deadline_ms", "expect", "fields",
        "forwarded_for", "head_bytes", "http10", "idle_since", "incoming", "parser", "peer",
        "queue", "request_id", "scheme", "tokens", "track", "transport", "url",
    )

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.current: Exchange | _Local | None = None
        """The request being answered."""
        self.incoming: Exchange | _Local | None = None
        """The request whose body is being read (later than ``current`` when pipelined)."""
        self.queue: deque[Exchange | _Local] = deque()
        self.idle_since: float | None = None
        self.closing = False
        self.http10 = False
        self.peer = b""
        self.scheme = b"https" if balancer.front_tls else b"http"
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.fields = bytearray()
        self.head_bytes = 0
        self.request_id: bytes | None = None
        self.track: bytes | None = None
        self.expect: bytes | None = None
        self.forwarded_for: bytes | None = None
        self.tokens: list[bytes] | None = None
        self.chunked = False
        self.deadline_ms: bytes | None = None

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A client connected."""
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.idle_since = self.balancer.now()
        self.balancer.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """The client went away: abandon what it asked for."""
        balancer = self.balancer
        balancer.connections.discard(self)
        if balancer.draining and not balancer.connections:
            balancer.drained.set()
        current = self.current
        self.current = None
        if current is not None:
            current.client_lost()
        incoming = self.incoming
        if incoming is not None and incoming is not current:
            incoming.client_lost()
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client (an idle connection stays idle until a whole head is in,
        so a head sent slowly is timed out like an idle connection)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse_now(501, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse_now(400, f"malformed request: {exc}")

    def _refuse_now(self, status: int, message: str) -> None:
        if self.current is None and not self.transport.is_closing():
            self.transport.write(headers.error_answer(
                status, message, self.balancer.request_id(), close=True))
        self.transport.close()

    def pause_writing(self) -> None:
        """The client is not reading its answer fast enough: stop reading the replica."""
        current = self.current
        if isinstance(current, Exchange) and current.upstream is not None:
            transport = current.upstream.transport
            if transport is not None:
                transport.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up."""
        current = self.current
        if isinstance(current, Exchange) and current.upstream is not None:
            transport = current.upstream.transport
            if transport is not None:
                transport.resume_reading()

    def resume(self) -> None:
        """Read from the client again (unless a pipelined request is queued)."""
        if not self.queue and not self.transport.is_closing():
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """The balancer drains: close when idle, else after the current answer."""
        self.closing = True
        if self.current is None and not self.transport.is_closing():
            self.transport.close()

    # ---- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request starts."""
        self._reset()

    def on_url(self, url: bytes) -> None:
        """The request target (may arrive in pieces)."""
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One field: kept as sent unless the proxy rules say otherwise (headers.py)."""
        self.head_bytes += len(name) + len(value) + 4
        kind = headers.REQUEST_FIELDS.get(name.lower())
        if kind is None:
            self.fields += b"%s: %s\r\n" % (name, value)
        elif kind == headers.REQUEST_ID:
            self.request_id = value  # forwarded by _exchange once the runtime's rule allows it
        elif kind == headers.CONTENT_LENGTH:
            self.fields += b"%s: %s\r\n" % (name, value)
        elif kind == headers.TRANSFER_ENCODING:
            self.chunked = True  # llhttp refuses any other coding on a request
        elif kind == headers.TRACK:
            self.track = value.strip().lower()
        elif kind == headers.DEADLINE:
            self.deadline_ms = value.strip()
            self.fields += b"%s: %s\r\n" % (name, value)
        elif kind == headers.FORWARDED_FOR:
            self.forwarded_for = value
        elif kind == headers.EXPECT:
            self.expect = value.strip().lower()
        elif kind == headers.CONNECTION:
            tokens = headers.connection_tokens(value)
            extra = [t for t in tokens if t not in (b"close", b"keep-alive")]
            if extra:
                self.tokens = (self.tokens or []) + extra

    def on_headers_complete(self) -> None:
        """The head is complete: build the request to forward (or answer it here)."""
        parser = self.parser
        self.http10 = parser.get_http_version() == "1.0"
        keep_alive = parser.should_keep_alive() and not self.closing
        method = parser.get_method()
        request: Exchange | _Local | None = self._refusal(method) or self._local(
            method, keep_alive)
        if request is None:
            request = self._exchange(method, keep_alive)
        self.incoming = request
        self.idle_since = None
        if self.current is None:
            self.current = request
            self._begin(request)
        else:
            self.queue.append(request)
            self.transport.pause_reading()

    def _refusal(self, method: bytes) -> _Refusal | None:
        if len(self.url) > MAX_URL_BYTES:
            return _Refusal(414, f"the request target is over {MAX_URL_BYTES} bytes")
        if self.head_bytes > MAX_HEAD_BYTES:
            return _Refusal(431, f"the request head is over {MAX_HEAD_BYTES} bytes")
        if method == b"CONNECT":
            return _Refusal(405, "CONNECT is not supported")
        if self.track is not None and self.track not in _TRACKS:
            return _Refusal(400, f"{contract.TRACK_HEADER} must be stable or canary")
        if self.expect is not None and self.expect != b"100-continue":
            return _Refusal(417, "only Expect: 100-continue is supported")
        if self.deadline_ms is not None and not (
                self.deadline_ms.isdigit() and 0 < len(self.deadline_ms) <= 9
                and int(self.deadline_ms) > 0):
            return _Refusal(400, f"{contract.DEADLINE_HEADER} must be a whole number of "
                                 "milliseconds (1 to 999999999)")
        if not self.url.startswith(b"/"):
            url = self.url
            if url.startswith((b"http://", b"https://")):  # absolute form (RFC 9112 3.2.2)
                slash = url.find(b"/", url.find(b"//") + 2)
                self.url = url[slash:] if slash >= 0 else b"/"
            else:
                return _Refusal(400, "the request target must be a path")
        return None

    def _local(self, method: bytes, keep_alive: bool) -> _Local | None:
        name = _LOCAL.get(self.url)
        if name is None:
            return None
        return _Local(name, method, not keep_alive)

    def _exchange(self, method: bytes, keep_alive: bool) -> Exchange:
        balancer = self.balancer
        # The runtime's rule (rules.request_id): the client's id, cut to 128 bytes, unless it
        # holds a control character; else a new one. The replicas then log the same id.
        request_id = balancer.request_id(self.request_id)
        fields = bytes(self.fields)
        if self.tokens:
            fields = headers.without_fields(fields, set(self.tokens))
        extra = b"x-request-id: %s\r\n" % request_id
        forwarded = self.peer if self.forwarded_for is None else (
            self.forwarded_for + b", " + self.peer)
        head = b"%s %s HTTP/1.1\r\n%s%sx-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n%s\r\n" % (
            method, self.url, fields, extra, forwarded, self.scheme,
            b"transfer-encoding: chunked\r\n" if self.chunked else b"",
        )
        track = self.track
        exchange = Exchange(
            self, head, is_head=method == b"HEAD", keep_alive=keep_alive,
            request_id=request_id, pinned=_TRACKS[track] if track is not None else None,
            started=balancer.now(),
        )
        if self.deadline_ms is not None:
            exchange.patience = int(self.deadline_ms) / 1000.0
        return exchange

    def on_body(self, body: bytes) -> None:
        """A piece of the request body: framed again only when it came chunked."""
        incoming = self.incoming
        if incoming is not None:
            incoming.body(headers.chunk(body) if self.chunked else body)

    def on_message_complete(self) -> None:
        """The request is complete."""
        incoming = self.incoming
        if incoming is None:
            return
        if isinstance(incoming, Exchange):
            if self.chunked:
                incoming.body(headers.LAST_CHUNK)
            incoming.request_complete()
        else:
            incoming.complete = True
            if incoming is self.current and not incoming.done:
                self._answer_local(incoming)

    # ---- answering -------------------------------------------------------------------

    def _begin(self, request: Exchange | _Local) -> None:
        if isinstance(request, Exchange):
            if self.expect is not None and request is self.incoming:
                self.transport.write(_CONTINUE)
            request.start()
        elif isinstance(request, _Refusal):
            self._answer_local(request)
        elif request.complete:
            self._answer_local(request)  # its whole message arrived while it was queued

    def _answer_local(self, request: _Local) -> None:
        balancer = self.balancer
        request.done = True
        if isinstance(request, _Refusal):
            self.transport.write(headers.error_answer(
                request.status, request.message, balancer.request_id(), close=True))
            balancer.answered_itself(request.status, "")
            self.exchange_done(request, close=True)
            return
        if request.method not in (b"GET", b"HEAD"):
            answer = headers.error_answer(405, "only GET and HEAD", balancer.request_id(),
                                          close=request.close, extra=b"allow: GET, HEAD\r\n")
        elif request.name == "metrics":
            answer = headers.plain_answer(
                200, balancer.metrics_text(), b"text/plain; version=0.0.4; charset=utf-8",
                close=request.close, head_only=request.is_head)
        elif request.name == "healthz":
            answer = headers.plain_answer(200, b'{"live":true}', b"application/json",
                                          close=request.close, head_only=request.is_head)
        else:
            ready, why = balancer.readiness()
            body = b'{"ready":true}' if ready else b'{"ready":false,"reason":"%s"}' % why.encode()
            answer = headers.plain_answer(200 if ready else 503, body, b"application/json",
                                          close=request.close, head_only=request.is_head)
        self.transport.write(answer)
        self.exchange_done(request, close=request.close)

    def exchange_done(self, request: Exchange | _Local, *, close: bool) -> None:
        """``request`` is answered: close, or go on with the next pipelined one."""
        if request is not self.current:
            return
        self.current = None
        if request is self.incoming:
            self.incoming = None
        if close or self.closing:
            self.queue.clear()
            self.transport.close()
            return
        if self.queue:
            following = self.queue.popleft()
            self.current = following
            if not self.queue:
                self.transport.resume_reading()
            self._begin(following)
        else:
            self.idle_since = self.balancer.now()
