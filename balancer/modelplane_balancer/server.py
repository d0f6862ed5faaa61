"""The balancer process: bind, serve on uvloop, follow discovery, drain on SIGTERM.

With the runtime's lifecycle helpers (server/lifecycle.py) it binds the socket itself, so
that ``--port 0`` reports the port bound on one ``"event": "ready"`` log line (with ``url``
and ``port``). On SIGTERM readiness turns false, the listening socket closes, idle client
connections close, busy ones close after their answer, and the process exits 0 once they
are done or ``drain_timeout_s`` has passed: the Kubernetes pod-termination contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl

import uvloop
from modelplane_runtime.logs import configure_logging
from modelplane_runtime.server.lifecycle import (
    EXIT_USAGE,
    announce_ready,
    bind_socket,
    public_url,
)

from modelplane_balancer import contract
from modelplane_balancer.balancer import Balancer, front_context, upstream_context
from modelplane_balancer.fleet import Member
from modelplane_balancer.front import Front
from modelplane_balancer.settings import BalancerSettings

logger = logging.getLogger("modelplane.balancer.server")
lifecycle = logging.getLogger("modelplane.lifecycle")

BACKLOG = 4096


def serve(settings: BalancerSettings) -> int:
    """Run the balancer until SIGTERM/SIGINT; the process exit code."""
    configure_logging(settings.log_level)
    lifecycle.setLevel(logging.INFO)
    try:
        front_tls = front_context(settings)
        upstream_context(settings)
    except (OSError, ssl.SSLError) as exc:
        logger.error("TLS settings unusable: %s", exc)
        return EXIT_USAGE
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot bind %s:%d: %s", settings.host, settings.port, exc.strerror)
        return EXIT_USAGE
    try:
        return uvloop.run(_main(settings, sock, front_tls))
    finally:
        sock.close()


async def _main(settings: BalancerSettings, sock: socket.socket,
                front_tls: ssl.SSLContext | None) -> int:
    loop = asyncio.get_running_loop()
    balancer = Balancer(settings, loop)
    discovery_task: asyncio.Task[None] | None = None
    if settings.static:
        for track in contract.TRACKS:
            balancer.fleet.update(track, [
                Member(address, weight) for address, weight in settings.static_replicas(track)
            ])
        balancer.fleet.set_canary_percent(settings.canary_percent)
    else:
        from modelplane_balancer.discovery import Discovery, DiscoveryError

        try:
            discovery = await Discovery.connect(settings, balancer.fleet)
        except DiscoveryError as exc:
            logger.error("%s", exc)
            return EXIT_USAGE
        discovery_task = loop.create_task(discovery.run())
    server = await loop.create_server(lambda: Front(balancer), sock=sock, ssl=front_tls,
                                      backlog=BACKLOG)
    balancer.start_sweeping()
    host, port = sock.getsockname()[:2]
    url = public_url(str(host), int(port), "https" if front_tls else "http")
    announce_ready(url, sock, model=settings.model, strategy=balancer.fleet.strategy_name,
                   discovery="static" if settings.static else "kubernetes")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    balancer.draining = True
    lifecycle.info("draining: not ready, finishing in-flight requests",
                   extra={"event": "draining", "timeout_s": settings.drain_timeout_s})
    server.close()
    for front in list(balancer.connections):
        front.shutdown()
    if balancer.connections:
        try:
            await asyncio.wait_for(balancer.drained.wait(), settings.drain_timeout_s)
        except TimeoutError:
            logger.warning("drain timeout: closing %d connections", len(balancer.connections))
    for front in list(balancer.connections):
        front.transport.abort()
    balancer.stop_sweeping()
    if discovery_task is not None:
        discovery_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await discovery_task
    lifecycle.info("stopped", extra={"event": "stopped"})
    return 0
