"""What the direct HTTP path (connection.py) shares across connections of one server.

Encoded answer heads, remembered routes, and the keep-alive sweep: per-request work that
uvicorn repeats for every request, done once (or once a second) here.
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from modelplane_runtime.http.hotpath import Headers, HotRoute
from modelplane_runtime.rules import Ticker


class Heads:
    """Status line plus fixed headers of the answers, encoded once per ``Date`` tick.

    uvicorn replaces ``server_state.default_headers`` (the ``Date`` header) once a
    second; between ticks the same few status and header combinations repeat.
    """

    def __init__(self) -> None:
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._heads: dict[tuple[int, Headers], bytes] = {}

    def get(self, status: int, headers: Headers, defaults: list[tuple[bytes, bytes]]) -> bytes:
        """``HTTP/1.1 <status>`` and every header line but the per-answer ones."""
        if defaults is not self._defaults:
            self._defaults = defaults
            self._heads = {}
        head = self._heads.get((status, headers))
        if head is None:
            lines = [STATUS_LINE[status]]
            for name, value in (*defaults, *headers):
                lines += (name, b": ", value, b"\r\n")
            head = self._heads[(status, headers)] = b"".join(lines)
        return head


class KeepAlive:
    """Closes connections idle past uvicorn's ``timeout_keep_alive`` (from their start, or
    since their last answer), and those whose request headers take longer than
    the ``headers_timeout_s`` setting to arrive, on the loop's ticker.

    uvicorn arms a timer when each answer completes and cancels it when the next request
    arrives: ~3 us per request on uvloop. Here a connection only notes when it went idle;
    a sweep every second (rules.Ticker) closes those idle for longer than the timeout (so
    within one second past it).
    """

    TICK_S: Final = 1.0

    def __init__(self, ticker: Ticker, headers_timeout_s: float) -> None:
        self._ticker = ticker
        self._headers_timeout_s = headers_timeout_s
        self._connections: set[Any] = set()
        ticker.register(self._sweep, self.TICK_S)

    def watch(self, connection: Any) -> None:
        """``connection`` (a DirectConnection) just went idle: make sure a sweep is coming."""
        connection.idle_since = connection.loop.time()
        self._connections = connection.server_state.connections
        self._ticker.wake(self._sweep, connection.loop)

    def _sweep(self, now: float) -> bool:
        connections = self._connections
        for connection in list(connections):
            since = getattr(connection, "idle_since", None)
            head = getattr(connection, "head_since", None)
            if since is not None and now - since >= connection.timeout_keep_alive:
                connection.idle_since = None
            elif head is not None and now - head >= self._headers_timeout_s:
                connection.head_since = None  # headers trickling in for too long
            else:
                continue
            if not connection.transport.is_closing():
                connection.transport.close()
        return bool(connections)


class Routes:
    """``hotpath.match`` by method and URL, remembered: the same few URLs repeat.

    Bounded: past ``size`` distinct URLs (a scan, say) it starts over, and only URLs up to
    ``MAX_REMEMBERED`` bytes are kept, so a flood of long URLs cannot grow it.
    """

    MAX_REMEMBERED: Final = 256

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._known: dict[tuple[bytes, bytes], tuple[HotRoute | None, str, str]] = {}

    def get(self, key: tuple[bytes, bytes]) -> tuple[HotRoute | None, str, str] | None:
        """The remembered route, method and path of a request line, if any."""
        return self._known.get(key)

    def remember(
        self, key: tuple[bytes, bytes], known: tuple[HotRoute | None, str, str]
    ) -> tuple[HotRoute | None, str, str]:
        """Remember ``known`` for ``key`` (if its URL is short); returns it."""
        if len(key[1]) > self.MAX_REMEMBERED:
            return known
        if len(self._known) >= self.size:
            self._known.clear()
        self._known[key] = known
        return known
