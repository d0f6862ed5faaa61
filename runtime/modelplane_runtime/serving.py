"""What the HTTP layer shares across requests: settings, the data plane, metrics, draining.

Also the small helpers every route uses (request bodies, JSON responses, path parameters),
so the v1 and v2 route modules stay thin adapters over the data plane.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

import orjson
from starlette.responses import Response

from modelplane_runtime.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from modelplane_runtime.metrics import Metrics
from modelplane_runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    import numpy as np

    from modelplane_runtime.auth import TokenStore
    from modelplane_runtime.dataplane.plane import DataPlane

JSON: Final = "application/json"
UNKNOWN_MODEL: Final = "_unknown"
"""Metrics label for requests naming a model that is not served (keeps label sets bounded)."""


@dataclass
class Runtime:
    """One app's shared state; routes and middleware receive it explicitly."""

    settings: RuntimeSettings
    dataplane: DataPlane
    metrics: Metrics
    draining: bool = False
    """Set on SIGTERM: readiness turns false and new requests are refused."""
    served: frozenset[str] = field(default_factory=frozenset)
    """Names of the served models, known once the data plane has loaded."""
    auth: TokenStore | None = None
    """Accepted bearer tokens; ``None`` serves without authentication."""

    @property
    def ready(self) -> bool:
        """Ready to take inference requests: loaded and not draining."""
        return not self.draining and self.dataplane.ready

    def metric_model(self, name: str) -> str:
        """The ``model`` label for a request naming ``name``."""
        return name if name in self.served else UNKNOWN_MODEL


BodyReader = Callable[[], Awaitable[bytes]]
"""Reads the whole request body (after the route has checked the model exists)."""

Outputs = dict[str, "np.ndarray"]


class Decoded(NamedTuple):
    """A request body decoded for the model: what to run, and how to answer with it."""

    signature: str
    """The signature the request names (the server's default when it names none)."""
    inputs: dict[str, np.ndarray]
    strict_dtypes: bool
    """v2 requests declare datatypes, which must match; v1 values are cast as TF Serving does."""
    encode: Callable[[Outputs], tuple[bytes, int | None]]
    """The response body and, for v2 binary outputs, the length of its JSON header."""


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` decompressed as its ``Content-Encoding`` says (none, gzip or deflate)."""
    if encoding is None:
        return body
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _DECODERS:
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}")
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


def error_body(message: str) -> bytes:
    """The ``{"error": ...}`` body every 4xx/5xx answer carries."""
    return orjson.dumps({"error": message})


def version_param(raw: str | None) -> int | None:
    """A version from the URL; 400 when it is not a non-negative integer."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"version must be a non-negative integer, got {raw!r}")
    return int(raw)
