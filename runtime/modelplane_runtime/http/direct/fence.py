"""What the direct path needs from uvicorn's internals, checked before it is used.

connection.py subclasses ``HttpToolsProtocol`` and works with its per-connection state;
none of that is public API, so a uvicorn release may rename any of it. pyproject.toml pins
uvicorn to the minor versions the wire tests ran on; this check covers an install outside
that range (a distribution's own package, a forced upgrade): the server then serves every
request through uvicorn's plain httptools protocol and ASGI, and logs why, instead of
failing on the first request.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

METHODS: Final = (
    "connection_made",
    "data_received",
    "send_400_response",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "_start_asgi_task",
    "_unset_keepalive_if_required",
)
"""Methods connection.py overrides or calls on ``HttpToolsProtocol``."""

ATTRIBUTES: Final = (
    "app",
    "cycle",
    "expect_100_continue",
    "flow",
    "headers",
    "limit_concurrency",
    "loop",
    "parser",
    "pipeline",
    "root_path",
    "scope",
    "server_state",
    "tasks",
    "timeout_keep_alive",
    "transport",
)
"""Per-connection state ``HttpToolsProtocol.__init__`` sets and connection.py reads."""

SERVER_STATE: Final = ("connections", "default_headers", "tasks", "total_requests")
FLOW: Final = ("write_paused", "drain", "pause_reading", "resume_reading")
PARSER: Final = ("get_method", "get_http_version", "should_keep_alive", "should_upgrade")


def missing_internals(config: Any = None, protocol_class: type | None = None) -> list[str]:
    """The uvicorn internals the direct path uses that this uvicorn lacks (empty: all there).

    ``config`` is a loaded ``uvicorn.Config`` (one with a trivial app is made otherwise):
    a protocol instance is built from it, off any running loop, to see its attributes.
    ``protocol_class`` replaces uvicorn's ``HttpToolsProtocol`` (to test the check).
    """
    try:
        from uvicorn import Config
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.protocols.http.flow_control import FlowControl
        from uvicorn.server import ServerState
    except ImportError as exc:
        return [f"import: {exc}"]
    missing = []
    if not isinstance(getattr(httptools_impl, "STATUS_LINE", None), dict):
        missing.append("httptools_impl.STATUS_LINE")
    if protocol_class is None:
        protocol_class = getattr(httptools_impl, "HttpToolsProtocol", None)
    if protocol_class is None:
        return [*missing, "httptools_impl.HttpToolsProtocol"]
    missing += [f"HttpToolsProtocol.{name}" for name in METHODS
                if not callable(getattr(protocol_class, name, None))]
    try:
        flow = FlowControl(_Transport())  # type: ignore[arg-type]
    except Exception as exc:
        return [*missing, f"FlowControl(): {type(exc).__name__}: {exc}"]
    missing += [f"FlowControl.{name}" for name in FLOW if not hasattr(flow, name)]
    if config is None:
        config = Config(_no_app, http="httptools", lifespan="off", log_config=None)
    state = ServerState()
    missing += [f"ServerState.{name}" for name in SERVER_STATE if not hasattr(state, name)]
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
    except Exception as exc:  # a changed constructor
        return [*missing, f"HttpToolsProtocol(): {type(exc).__name__}: {exc}"]
    finally:
        loop.close()
    missing += [f"HttpToolsProtocol().{name}" for name in ATTRIBUTES
                if not hasattr(protocol, name)]
    parser = getattr(protocol, "parser", None)
    missing += [f"HttpRequestParser.{name}" for name in PARSER
                if not callable(getattr(parser, name, None))]
    return missing


class _Transport:
    """Enough of a transport for ``FlowControl``'s constructor."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool:
        return False


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that is never called: the check only builds a protocol instance."""
