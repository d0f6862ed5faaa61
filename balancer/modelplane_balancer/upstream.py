"""One keep-alive connection from the balancer to a replica, parsing its answers.

The answer's head is rewritten (hop-by-hop fields dropped, framing recomputed) and handed
to the request's Exchange with its body as it arrives; the body bytes themselves are
never decoded. Between requests the connection waits in its replica's idle pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httptools

from modelplane_balancer import headers
from modelplane_balancer.replica import Replica

if TYPE_CHECKING:
    from modelplane_balancer.exchange import Exchange

logger = logging.getLogger("modelplane.balancer.upstream")

_NO_BODY = frozenset({204, 304})


class Upstream(asyncio.Protocol):
    """The replica side of at most one Exchange at a time."""

    __slots__ = (
        "chunked", "exchange", "fields", "idle_since", "interim", "length", "parser",
        "reason", "replica", "reusable", "tokens", "transport",
    )

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.idle_since = 0.0
        self.reusable = True
        """False once this connection must close after its current answer."""
        self.fields = bytearray()
        self.reason = b""
        self.length: bytes | None = None
        self.chunked = False
        self.tokens: list[bytes] | None = None
        self.interim = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Connected (and, over HTTPS, handshaken)."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Bytes of an answer."""
        if self.exchange is None:
            # Nothing was asked: a server speaking out of turn cannot be trusted with the next.
            self.reusable = False
            assert self.transport is not None
            self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            exchange = self.exchange
            if exchange is not None:
                exchange.upstream_failed(f"invalid answer from {self.replica.key}: {exc}")
            elif self.transport is not None:  # bytes after a complete answer: not HTTP
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection closed: end an answer delimited by the close, tell the exchange
        of a broken one, or leave the idle pool."""
        self.reusable = False
        replica = self.replica
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            replica.busy -= 1
            if exchange.until_close and exchange.answering and exc is None:
                exchange.response_complete(self, reusable=False)
            else:
                exchange.upstream_lost(self, exc)
        else:
            with contextlib.suppress(ValueError):
                replica.idle.remove(self)

    def pause_writing(self) -> None:
        """The replica is not reading the body fast enough: stop reading the client."""
        if self.exchange is not None:
            self.exchange.front.transport.pause_reading()

    def resume_writing(self) -> None:
        """The replica caught up."""
        if self.exchange is not None:
            self.exchange.front.resume()

    # httptools callbacks.

    def on_message_begin(self) -> None:
        """A new answer starts."""
        self.fields = bytearray()
        self.reason = b""
        self.length = None
        self.chunked = False
        self.tokens = None

    def on_status(self, reason: bytes) -> None:
        """The reason phrase (may arrive in pieces)."""
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header field: hop-by-hop fields are dropped, the rest kept as sent."""
        kind = headers.RESPONSE_FIELDS.get(name.lower())
        if kind is None:
            self.fields += b"%s: %s\r\n" % (name, value)
        elif kind == headers.CONTENT_LENGTH:
            self.length = value
        elif kind == headers.TRANSFER_ENCODING:
            self.chunked = b"chunked" in value.lower()
        elif kind == headers.CONNECTION:
            tokens = headers.connection_tokens(value)
            if b"close" in tokens:
                self.reusable = False
            extra = [t for t in tokens if t not in (b"close", b"keep-alive")]
            if extra:
                self.tokens = (self.tokens or []) + extra

    def on_headers_complete(self) -> None:
        """The head is complete: hand it to the exchange."""
        exchange = self.exchange
        assert exchange is not None
        status = self.parser.get_status_code()
        self.interim = 100 <= status < 200 and status != 101
        if self.interim:
            return  # 1xx (e.g. 103 Early Hints): not forwarded; the real answer follows
        if not self.parser.should_keep_alive():
            self.reusable = False
        fields = bytes(self.fields)
        if self.tokens:
            fields = headers.without_fields(fields, set(self.tokens))
        if exchange.is_head:
            # httptools cannot be told that a HEAD answer has no body: finish it here and
            # close the connection rather than let the parser wait for the announced body.
            self.reusable = False
            exchange.response_head(status, self.reason, fields, self.length, has_body=False)
            self.exchange = None
            self.replica.busy -= 1
            exchange.response_complete(self, reusable=False)
            return
        has_body = status not in _NO_BODY and status != 101
        exchange.response_head(status, self.reason, fields,
                               self.length if not self.chunked else None, has_body=has_body,
                               until_close=has_body and self.length is None and not self.chunked)

    def on_body(self, body: bytes) -> None:
        """A piece of the answer's body."""
        exchange = self.exchange
        if exchange is not None and not self.interim:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        """The answer is complete."""
        if self.interim:
            self.interim = False
            return
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        self.replica.busy -= 1
        exchange.response_complete(self, reusable=self.reusable)

