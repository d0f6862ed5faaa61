"""What the server process tells the outside world: its bound socket, URL, ready line, exit codes.

Split from process.py so the worker supervisor (workers.py) and the process share them
without importing each other.
"""

from __future__ import annotations

import logging
import socket
from typing import Final

lifecycle = logging.getLogger("modelplane.lifecycle")
"""Ready, draining and stopped events: logged whatever the log level (scripts parse them)."""

EXIT_STARTUP_FAILURE: Final = 3
EXIT_USAGE: Final = 2


def public_url(host: str, port: int, scheme: str = "http") -> str:
    """A URL a local client can use for a server bound to ``host``:``port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host``:``port`` (0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold ``host``:``port`` for the gRPC server(s) this process (or its workers) start.

    grpc binds its own listening sockets with SO_REUSEPORT (so that ``--workers N`` share
    one port), which would also let it share a port another server already listens on.
    A plain bind first fails on a taken port (OSError, reported like the HTTP port's);
    then a bound, never-listening SO_REUSEPORT socket keeps the port ours until exit.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as every server sets it: connections of a previous run lingering in
        # TIME_WAIT must not block a restart; a listener still fails the bind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def announce_ready(url: str, sock: socket.socket, **extra: object) -> None:
    """The one ``"event": "ready"`` log line (tests and scripts parse its url and port).

    It names the address actually bound (``0.0.0.0:8080`` takes every interface) beside
    the URL a local client can use.
    """
    port = int(url.rsplit(":", 1)[1])
    host, bound_port = sock.getsockname()[:2]
    listening = f"[{host}]:{bound_port}" if ":" in str(host) else f"{host}:{bound_port}"
    lifecycle.info(
        "serving at %s (listening on %s)", url, listening,
        extra={"event": "ready", "url": url, "port": port, "listening": listening, **extra},
    )
