"""HTTP messages: request bodies' ``Content-Encoding``, JSON answers, the access log line."""

from __future__ import annotations

import logging
import zlib
from typing import Final

import orjson
from starlette.responses import Response

from modelplane_runtime.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from modelplane_runtime.logs import REQUEST_ID

JSON: Final = "application/json"


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` decompressed as its ``Content-Encoding`` says (none, gzip or deflate)."""
    if encoding is None:
        return body
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _DECODERS:
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding[:64]!r}")
    inflater = zlib.decompressobj(_DECODERS[encoding])
    try:
        # Bounded, so a small compressed body cannot expand without limit (a "zip bomb").
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding} data: {exc}") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the decompressed body is over the limit of {limit} bytes")
    return plain


_DECODERS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def json_response(body: bytes | object, status: int = 200) -> Response:
    """A JSON response from bytes already encoded, or from a plain object."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type=JSON)


CHALLENGE: Final = ((b"www-authenticate", b"Bearer"),)
"""The header a 401 carries (RFC 6750): the client should send a bearer token."""

_access = logging.getLogger("modelplane.http")


def log_request_line(
    method: str, path: str, status: int, seconds: float, request_id: str | None = None
) -> None:
    """The debug-level access line of a finished request (every request path logs it).

    ``request_id`` stamps the line when the caller runs outside the request's context.
    """
    if _access.isEnabledFor(logging.DEBUG):
        token = REQUEST_ID.set(request_id) if request_id is not None else None
        try:
            _access.debug(
                "%s %s -> %s", method, path, status,
                extra={"status": status, "seconds": round(seconds, 6)},
            )
        finally:
            if token is not None:
                REQUEST_ID.reset(token)
