"""Header rules of a proxy (RFC 9110 section 7.6.1) and the heads the balancer writes.

Hop-by-hop fields (``Connection`` and the fields it names, ``Keep-Alive``,
``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) describe one
connection and are dropped; every other field passes through byte for byte, in order.
Framing is recomputed per connection: a length passes as ``Content-Length``, anything
else as ``Transfer-Encoding: chunked`` (or, to an HTTP/1.0 client, until close).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from modelplane_runtime import rules

# What the request side does with a field (anything not listed passes through).
DROP: Final = 0
"""Hop-by-hop: not forwarded."""
CONNECTION: Final = 1
"""``Connection``: read for ``close`` and for the names of more hop-by-hop fields."""
REQUEST_ID: Final = 2
"""``X-Request-Id``: kept, and noted so the balancer does not add another."""
TRACK: Final = 3
"""``X-Modelplane-Track``: the balancer's own; read, not forwarded."""
EXPECT: Final = 4
"""``Expect``: answered by the balancer (100 Continue), not forwarded (as nginx does)."""
FORWARDED_FOR: Final = 5
"""``X-Forwarded-For``: the client's address is appended."""
CONTENT_LENGTH: Final = 6
"""``Content-Length``: forwarded as is when the body is forwarded as is."""
TRANSFER_ENCODING: Final = 7
"""``Transfer-Encoding``: hop-by-hop; the parser tells chunked bodies apart."""
DEADLINE: Final = 8
"""``X-Modelplane-Deadline-Ms``: read (how long a held request may wait) and forwarded."""

_HOP_BY_HOP: Final = (b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade")

REQUEST_FIELDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(_HOP_BY_HOP, DROP),
    b"connection": CONNECTION,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"x-request-id": REQUEST_ID,
    b"x-modelplane-track": TRACK,
    b"expect": EXPECT,
    b"x-forwarded-for": FORWARDED_FOR,
    b"content-length": CONTENT_LENGTH,
    b"x-modelplane-deadline-ms": DEADLINE,
}

RESPONSE_FIELDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(_HOP_BY_HOP, DROP),
    b"connection": CONNECTION,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"content-length": CONTENT_LENGTH,
}


def connection_tokens(value: bytes) -> list[bytes]:
    """The lower-cased option names of a ``Connection`` field value."""
    return [token.strip().lower() for token in value.split(b",") if token.strip()]


def without_fields(head: bytes, names: set[bytes]) -> bytes:
    """``head`` (``name: value\\r\\n`` lines) without the lines whose field is in ``names``
    (the extra hop-by-hop fields a ``Connection`` header named)."""
    kept = [
        line for line in head.split(b"\r\n")
        if line and line.split(b":", 1)[0].strip().lower() not in names
    ]
    return b"".join(line + b"\r\n" for line in kept)


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (cached: the same few repeat)."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        if len(_STATUS_LINES) > 256:
            _STATUS_LINES.clear()
        line = _STATUS_LINES[(status, reason)] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (empty when unknown)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def retry_after(seconds: int) -> bytes:
    """A ``Retry-After`` field (RFC 9110 10.2.3), in whole seconds."""
    return b"retry-after: %d\r\n" % max(1, seconds)


def error_answer(status: int, message: str, request_id: bytes, *, close: bool,
                 extra: bytes = b"", head_only: bool = False) -> bytes:
    """A whole JSON error answer from the balancer itself: the runtime's ``{"error": message}``
    body (rules.error_body), with the request's id."""
    body = rules.error_body(message)
    return b"%scontent-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\n%s%s\r\n%s" % (  # noqa: E501
        status_line(status, reason_phrase(status)), len(body), request_id, extra,
        b"connection: close\r\n" if close else b"", b"" if head_only else body,
    )


def plain_answer(status: int, body: bytes, content_type: bytes, *, close: bool,
                 head_only: bool = False) -> bytes:
    """A whole answer of the balancer's own endpoints (health, metrics)."""
    return b"%scontent-type: %s\r\ncontent-length: %d\r\ncache-control: no-store\r\n%s\r\n%s" % (
        status_line(status, reason_phrase(status)), content_type, len(body),
        b"connection: close\r\n" if close else b"", b"" if head_only else body,
    )


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
