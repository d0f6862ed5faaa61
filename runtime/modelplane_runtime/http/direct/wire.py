"""What the direct HTTP path (protocol.py) shares across connections of one server.

Encoded answer heads, remembered routes, and the keep-alive sweep: per-request work that
uvicorn repeats for every request, done once (or once a second) here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from modelplane_runtime.http.hotpath import Headers, Route


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
    """Closes connections idle past uvicorn's ``timeout_keep_alive``, on one periodic sweep.

    uvicorn arms a timer when each answer completes and cancels it when the next request
    arrives: ~3 us per request on uvloop. Here a connection only notes when it went idle;
    a sweep every second closes those idle for longer than the timeout (so within one
    second past it).
    """

    TICK_S: Final = 1.0

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, protocol: Any) -> None:
        """``protocol`` (a protocol.HotProtocol) just went idle: make sure a sweep is coming."""
        protocol.idle_since = protocol.loop.time()
        if self._timer is None:
            self._timer = protocol.loop.call_later(
                self.TICK_S, self._sweep, protocol.loop, protocol.server_state.connections
            )

    def _sweep(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for connection in list(connections):
            since = getattr(connection, "idle_since", None)
            if since is not None and now - since >= connection.timeout_keep_alive:
                connection.idle_since = None
                if not connection.transport.is_closing():
                    connection.transport.close()
        self._timer = (
            loop.call_later(self.TICK_S, self._sweep, loop, connections) if connections else None
        )


class Routes:
    """``router.match`` by method and URL, remembered: the same few URLs repeat.

    Bounded: past ``size`` distinct URLs (a scan, say) it starts over.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._known: dict[tuple[bytes, bytes], tuple[Route | None, str, str]] = {}

    def get(self, key: tuple[bytes, bytes]) -> tuple[Route | None, str, str] | None:
        """The remembered route, method and path of a request line, if any."""
        return self._known.get(key)

    def remember(
        self, key: tuple[bytes, bytes], known: tuple[Route | None, str, str]
    ) -> tuple[Route | None, str, str]:
        """Remember ``known`` for ``key``; returns it."""
        if len(self._known) >= self.size:
            self._known.clear()
        self._known[key] = known
        return known
