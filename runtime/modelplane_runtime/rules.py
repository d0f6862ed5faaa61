"""The request rules every front door applies: both HTTP paths (direct and ASGI) and gRPC.

Written once so that the same request gets the same answer, with the same message, however
it arrives: refusals (draining, bearer tokens), request ids, body limits, the versions a
request names, deadlines, and the error answer with its log line. Front doors translate
what these return into their own wire form (an HTTP status and ``{"error": ...}`` body, or
a gRPC status code); nothing here knows about either.

Periodic work (request deadlines, idle keep-alive connections) runs on one ``Ticker`` per
event loop instead of a timer per request: on uvloop a timer handle armed and cancelled
per request cost ~3 us, more than the rest of the timeout logic.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import orjson

from modelplane_runtime.errors import (
    InvalidInput,
    ModelplaneError,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
    Unauthenticated,
)

if TYPE_CHECKING:
    from modelplane_runtime.logs import RequestIds
    from modelplane_runtime.serving import Runtime

errors_log = logging.getLogger("modelplane.app")
"""Where client errors are logged (info for 4xx, warning for 5xx we chose to answer)."""
bugs_log = logging.getLogger("modelplane.http")
"""Where unexpected errors (bugs) are logged with their traceback."""

# Refusals.

SHUTTING_DOWN: Final = "the server is shutting down"
BEARER_CHALLENGE: Final = "Bearer"
"""What a 401 asks for (RFC 6750's ``WWW-Authenticate: Bearer``)."""


def auth_refusal(authorization: bytes | None) -> str:
    """The 401 message for a request that sent ``authorization`` (or none)."""
    if authorization is None:
        return "missing bearer token (send 'Authorization: Bearer <token>')"
    return "invalid bearer token"


def refusal(
    runtime: Runtime, authorization: bytes | None, *, drain: bool = True, auth: bool = True
) -> ModelplaneError | None:
    """Why a request must not be served (503 draining, 401 token), or None.

    ``drain=False`` for requests still served while draining (the server's metadata);
    ``auth=False`` for those that stay open with tokens configured (health, metrics).
    """
    if drain and runtime.draining:
        return ShuttingDown(SHUTTING_DOWN)
    if auth and runtime.auth is not None and not runtime.auth.accepts(authorization):
        return Unauthenticated(auth_refusal(authorization))
    return None


# Request ids.

REQUEST_ID_MAX: Final = 128
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def request_id(given: bytes | str | None, ids: RequestIds) -> str:
    """The client's request id (``X-Request-Id`` / ``x-request-id`` metadata), or a new one.

    Its first 128 bytes are kept (as nginx and Envoy cap header-borne ids) unless they hold
    a control character: it is echoed in a header (or trailing metadata) and written to the
    logs. gRPC delivers metadata values as text (printable ASCII, checked by grpc itself).
    """
    if given:
        if isinstance(given, str):
            given = given.encode("latin-1", "replace")
        given = given[:REQUEST_ID_MAX]
        if not _CONTROL.search(given):
            return given.decode("latin-1")
    return ids.next()


# Body limits.

_MAX_DIGITS: Final = 19
"""Longest decimal number read from a header or URL: int64, as TF Serving parses them.

Python's ``int()`` refuses more than 4,300 digits with a ValueError of its own, and
``str.isdigit`` accepts superscripts like '²': both are checked before converting."""


def _number(raw: bytes | str) -> int | None:
    """A non-negative decimal of at most 19 ASCII digits, or None."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    raw = raw.strip()
    if not raw or len(raw) > _MAX_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def declared_length(raw: bytes | str, limit: int) -> int:
    """A declared body length: 400 when it is not a number, 413 when over ``limit``."""
    declared = _number(raw)
    if declared is None:
        if len(raw) > _MAX_DIGITS and raw.isascii() and raw.strip().isdigit():
            raise too_large(limit)  # more digits than any real length has
        raise InvalidInput("invalid Content-Length header")
    if declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    return declared


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 for a body that grew past ``limit`` while it arrived."""
    return PayloadTooLarge(f"the body is over the limit of {limit} bytes")


def header_length(raw: bytes | str | None) -> int | None:
    """The binary extension's ``Inference-Header-Content-Length``; 400 when not a number."""
    if raw is None:
        return None
    value = _number(raw)
    if value is None:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        raise InvalidInput(f"invalid Inference-Header-Content-Length {_clip(text)!r}")
    return value


# Request heads.

MAX_URL_BYTES: Final = 8192
"""Longest request target accepted (414 beyond): nginx's default header buffer size."""
MAX_HEADER_BYTES: Final = 64 * 1024
"""Most bytes of header names and values in one request (431 beyond)."""


# Versions named in a request.

def version_number(raw: str | None) -> int | None:
    """A version from a URL or a message; 400 unless a non-negative 64-bit integer."""
    if raw is None:
        return None
    value = _number(raw) if raw == raw.strip() else None
    if value is None or value >= 2**63:
        raise InvalidInput(f"version must be a non-negative integer, got {_clip(raw)!r}")
    return value


def _clip(text: str, limit: int = 64) -> str:
    """``text`` cut for a message: a client's 8 KB value is not echoed back whole."""
    return text if len(text) <= limit else text[:limit] + "..."


# The error answer.

def error_body(message: str) -> bytes:
    """The ``{"error": ...}`` body of every 4xx/5xx answer (HTTP here and in the balancer)."""
    try:
        return orjson.dumps({"error": message})
    except orjson.JSONEncodeError:
        # A lone surrogate (from a client's "\\ud800") cannot be UTF-8: replace it.
        return orjson.dumps({"error": message.encode("utf-8", "replace").decode("utf-8")})


class Failure(NamedTuple):
    """How an error is answered: the HTTP status, the gRPC code name, the message."""

    status: int
    grpc_code: str
    """The name of the ``grpc.StatusCode`` member (errors.py chose it beside the status)."""
    message: str


INTERNAL_ERROR: Final = "internal server error"


def failure(exc: BaseException, *, log: bool = True) -> Failure:
    """The answer to an error raised while serving, logged once, for every front door.

    Our errors carry their status and gRPC code (4xx logged at info, 5xx at warning, unless
    ``log`` is false: refusals are not errors); anything else is a bug, logged with its
    traceback and answered 500 / INTERNAL "internal server error" (never a bare connection
    reset, never the exception's text).
    """
    if isinstance(exc, ModelplaneError):
        if not log:
            pass
        elif exc.status_code >= 500:
            errors_log.warning("%s: %s", type(exc).__name__, exc.message)
        else:
            errors_log.info(
                "%s: %s", type(exc).__name__, exc.message, extra={"status": exc.status_code}
            )
        return Failure(exc.status_code, exc.grpc_code, exc.message)
    bugs_log.error("unhandled error while serving a request", exc_info=exc)
    return Failure(500, "INTERNAL", INTERNAL_ERROR)


def error_status(exc: BaseException, *, log: bool = True) -> tuple[int, str]:
    """The HTTP status and message for an error raised while serving (see ``failure``)."""
    answer = failure(exc, log=log)
    return answer.status, answer.message


def timed_out(timeout_s: float) -> RequestTimeout:
    """The 503 for a request its deadline cancelled (logged as a warning)."""
    bugs_log.warning("request timed out after %ss", timeout_s)
    return RequestTimeout(f"the request was not answered within {timeout_s} s")


# Periodic work and deadlines.

class Sweep(Protocol):
    """Periodic work on the ticker: returns False when it has nothing left to watch."""

    def __call__(self, now: float) -> bool: ...


class Ticker:
    """One periodic timer per event loop for every time-based rule.

    Rules register a sweep with the period they need; the timer runs at the shortest
    registered period while any sweep still has work, and stops when none has.
    """

    def __init__(self) -> None:
        self._sweeps: dict[Sweep, float] = {}
        self._active: set[Sweep] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last: dict[Sweep, float] = {}

    def register(self, sweep: Sweep, period_s: float) -> None:
        """Run ``sweep`` about every ``period_s`` seconds while it has work."""
        self._sweeps[sweep] = period_s

    def wake(self, sweep: Sweep, loop: asyncio.AbstractEventLoop) -> None:
        """``sweep`` has work now: make sure the timer runs."""
        if sweep not in self._active:
            self._active.add(sweep)
            self._last[sweep] = loop.time()
        if self._timer is None:
            self._loop = loop
            self._timer = loop.call_later(self._period(), self._tick)

    def _period(self) -> float:
        return min(self._sweeps[sweep] for sweep in self._active)

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for sweep in list(self._active):
            if now - self._last[sweep] + 1e-3 < self._sweeps[sweep]:
                continue  # a slower sweep, not due at this tick
            self._last[sweep] = now
            if not sweep(now):
                self._active.discard(sweep)
        self._timer = loop.call_later(self._period(), self._tick) if self._active else None


class Cancellable(Protocol):
    """What a deadline cancels: a request's task, or a request served by callbacks."""

    def cancel(self) -> Any: ...


class Deadlines:
    """The request timeout for every request, swept by the loop's ``Ticker``.

    Entering and leaving is a dict insert and delete; a sweep every ``tick_s`` cancels the
    requests past their deadline, so a request times out between ``timeout_s`` and
    ``timeout_s + tick_s``. A task is cancelled as ``asyncio.timeout`` would: it gets
    CancelledError, which the caller turns into a 503 when ``expired`` says the deadline
    did it.
    """

    def __init__(self, timeout_s: float, ticker: Ticker) -> None:
        self.timeout_s = timeout_s
        self.tick_s = min(1.0, max(0.01, timeout_s / 20))
        self._ticker = ticker
        ticker.register(self._sweep, self.tick_s)
        self._deadlines: dict[Cancellable, float] = {}
        self._expired: set[Cancellable] = set()

    def enter(self, request: Cancellable, loop: asyncio.AbstractEventLoop) -> None:
        """Start the clock of a request."""
        self._deadlines[request] = loop.time() + self.timeout_s
        self._ticker.wake(self._sweep, loop)

    def leave(self, request: Cancellable) -> None:
        """The request is answered (or failed): stop its clock."""
        self._deadlines.pop(request, None)
        self._expired.discard(request)

    def expired(self, request: Cancellable) -> bool:
        """True when ``request`` was cancelled because its deadline passed."""
        return request in self._expired

    def _sweep(self, now: float) -> bool:
        late = [request for request, deadline in self._deadlines.items() if deadline <= now]
        for request in late:
            del self._deadlines[request]
            self._expired.add(request)
            request.cancel()
        return bool(self._deadlines)

