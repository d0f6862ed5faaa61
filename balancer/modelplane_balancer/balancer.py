"""What the request path shares in one balancer process: settings, the fleet, the retry
budget, TLS contexts, the connections, counters, and the once-a-second sweep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from modelplane_runtime import rules
from modelplane_runtime.logs import RequestIds

from modelplane_balancer.budget import RetryBudget
from modelplane_balancer.exchange import Exchange
from modelplane_balancer.fleet import Fleet
from modelplane_balancer.replica import REMOVED, Replica
from modelplane_balancer.settings import BalancerSettings
from modelplane_balancer.upstream import Upstream

if TYPE_CHECKING:
    from modelplane_balancer.front import Front

logger = logging.getLogger("modelplane.balancer")

SWEEP_S: Final = 0.25
"""How often deadlines (requests, waits, idle connections) are checked: a timer per
request would cost more than the rest of its bookkeeping."""


def upstream_context(settings: BalancerSettings) -> ssl.SSLContext | None:
    """The TLS client context for the replicas, or None for plain HTTP."""
    if not settings.upstream_tls:
        return None
    context = ssl.create_default_context(
        cafile=str(settings.upstream_ca_file) if settings.upstream_ca_file else None)
    if settings.upstream_ca_file is not None:
        # A certificate in the CA file is a trust anchor even when it is not self-signed
        # (OpenSSL's partial chains): the replicas' own leaf certificate can be pinned.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if not settings.upstream_check_hostname:
        context.check_hostname = False
    if not settings.upstream_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def front_context(settings: BalancerSettings) -> ssl.SSLContext | None:
    """The TLS server context for clients, or None for plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


class Balancer:
    """One process's request path state."""

    def __init__(self, settings: BalancerSettings, loop: asyncio.AbstractEventLoop,
                 fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.loop = loop
        self.now: Callable[[], float] = loop.time
        self.fleet = fleet or Fleet(settings, self.now, self.probe)
        self.budget = RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min_per_s,
                                  self.now())
        self.decay_s = settings.ewma_decay_s
        self.front_tls = settings.tls_cert_file is not None
        self.upstream_ssl = upstream_context(settings)
        self.connections: set[Front] = set()
        self.retries: dict[str, int] = {}
        self.retries_denied = 0
        self.own_answers: dict[tuple[int, str], int] = {}
        """Answers the balancer made itself, by (status, track)."""
        self.draining = False
        self.drained = asyncio.Event()
        """Set when draining and the last client connection has closed."""
        self._ids = RequestIds()
        self._sweeper: asyncio.TimerHandle | None = None

    # ---- small services for the request path ----------------------------------------

    def request_id(self, given: bytes | None = None) -> bytes:
        """The client's request id if the runtime's rule keeps it, else a new one (a random
        per-process prefix and a counter: modelplane_runtime.logs.RequestIds)."""
        return rules.request_id(given, self._ids).encode("latin-1")

    def take_retry(self) -> bool:
        """Whether the retry budget allows one more retry now."""
        if self.budget.withdraw(self.now()):
            return True
        self.retries_denied += 1
        return False

    def retried(self, reason: str) -> None:
        """Count a retry."""
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def answered_itself(self, status: int, track: str) -> None:
        """Count an answer the balancer made without a replica's."""
        key = (status, track)
        self.own_answers[key] = self.own_answers.get(key, 0) + 1

    # ---- upstream connections --------------------------------------------------------

    def open(self, replica: Replica, exchange: Exchange) -> None:
        """Open a connection to ``replica`` for ``exchange`` (attached when ready)."""
        replica.connecting += 1
        self.loop.create_task(self._open(replica, exchange))

    async def _open(self, replica: Replica, exchange: Exchange) -> None:
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Upstream(replica), replica.host, replica.port, ssl=self.upstream_ssl,
                    server_hostname=(self.settings.upstream_server_name or replica.host)
                    if self.upstream_ssl is not None else None,
                ),
                self.settings.connect_timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            replica.connecting -= 1
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            reason = f"connect: {detail}"
            logger.debug("connect to %s failed: %s", replica.key, reason)
            exchange.connect_failed(replica, reason)
            return
        replica.connecting -= 1
        if exchange.done or exchange.replica is not replica:
            self.release(upstream, True)  # its client left meanwhile: keep it for the next
            return
        replica.busy += 1
        exchange.attach(upstream)

    def release(self, upstream: Upstream, reusable: bool) -> None:
        """An answered connection: back to its replica's idle pool, or closed."""
        replica = upstream.replica
        transport = upstream.transport
        if transport is None:
            return
        if (reusable and upstream.reusable and replica.state != REMOVED
                and len(replica.idle) < self.settings.max_idle_per_replica
                and not transport.is_closing()):
            upstream.idle_since = self.now()
            replica.idle.append(upstream)
        else:
            transport.close()

    async def probe(self, replica: Replica) -> bool:
        """GET the replica's readiness path on a connection of its own: True on 2xx."""
        settings = self.settings
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                replica.host, replica.port, ssl=self.upstream_ssl,
                server_hostname=(settings.upstream_server_name or replica.host)
                if self.upstream_ssl is not None else None,
            ), settings.connect_timeout_s)
            writer.write(b"GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: modelplane-balancer\r\n"
                         b"connection: close\r\n\r\n" % (settings.probe_path.encode(),
                                                          replica.key.encode()))
            line = await asyncio.wait_for(reader.readline(), settings.connect_timeout_s + 1)
            parts = line.split()
            return len(parts) >= 2 and parts[1].startswith(b"2")
        except (OSError, TimeoutError, ssl.SSLError, ValueError):
            return False
        finally:
            if writer is not None:
                writer.close()

    # ---- health of the balancer itself ---------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): ready once a replica is known, or when holding for a model
        scaled to zero, or suspended (its 503 is the answer); never while draining."""
        if self.draining:
            return False, "draining"
        fleet = self.fleet
        if fleet.known() or fleet.scaled_to_zero or fleet.suspended:
            return True, ""
        return False, "no replica known yet"

    def metrics_text(self) -> bytes:
        """The Prometheus exposition (metrics.py)."""
        from modelplane_balancer.metrics import render

        return render(self, os.getpid())

    # ---- the sweep -------------------------------------------------------------------

    def start_sweeping(self) -> None:
        """Check deadlines every SWEEP_S from now on."""
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def stop_sweeping(self) -> None:
        """No more sweeps."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        now = self.now()
        settings = self.settings
        try:
            request_deadline = now - settings.request_timeout_s
            idle_deadline = now - settings.client_idle_timeout_s
            for front in list(self.connections):
                current = front.current
                if isinstance(current, Exchange):
                    if not current.waiting and current.started < request_deadline:
                        current.timed_out()
                elif current is None and front.idle_since is not None and (
                        front.idle_since < idle_deadline):
                    front.transport.close()
            self.fleet.expire(now)
            pool_deadline = now - settings.upstream_idle_timeout_s
            for replica in self.fleet.replicas():
                idle = replica.idle
                while idle and idle[0].idle_since < pool_deadline:
                    stale = idle.pop(0)
                    if stale.transport is not None:
                        stale.transport.close()
        except Exception:  # never let one bad sweep end the sweeping
            logger.exception("sweep failed")
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)
