"""``grpc.health.v1.Health``: Check and Watch, as Kubernetes' ``grpc:`` probes and
grpc-health-probe call them. Open without a token, like the HTTP health routes.

The default service (``""``) and every served service name say SERVING while the runtime is
ready (model loaded, not draining) and NOT_SERVING otherwise, so a readiness probe takes a
draining pod out of its Services at once; ``liveness`` says SERVING while the process
serves at all (a liveness probe must not kill a pod that is loading or draining). Any
other name is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as the health protocol
says. Readiness is read from the runtime on every call, so Check never lags the drain;
watchers are woken by ``changed()`` (and look again every second regardless), and their
streams end once they have said NOT_SERVING for the drain, so that an open Watch never
keeps a draining server waiting for its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelplane_runtime import contract
from modelplane_runtime.serving import Runtime

SERVICE: Final = "grpc.health.v1.Health"
_RECHECK_S: Final = 1.0
_Status = health_pb2.HealthCheckResponse


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """The health of the runtime, per service name."""

    def __init__(self, runtime: Runtime, services: Iterable[str]) -> None:
        self.runtime = runtime
        self.services = frozenset(services) | {contract.GRPC_HEALTH_READY}
        self._changed = asyncio.Event()

    def status(self, service: str) -> int:
        """The ServingStatus of ``service`` now."""
        if service == contract.GRPC_HEALTH_LIVE:
            return _Status.SERVING  # type: ignore[no-any-return]
        if service not in self.services:
            return _Status.SERVICE_UNKNOWN  # type: ignore[no-any-return]
        return _Status.SERVING if self.runtime.ready else _Status.NOT_SERVING  # type: ignore[no-any-return]

    def changed(self) -> None:
        """Readiness changed (the drain began): wake every watcher."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The service's status now; NOT_FOUND for a service this server does not know."""
        status = self.status(request.service)
        if status == _Status.SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return _Status(status=status)

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """The status now, then each change, until the client goes away or the drain
        begins (after saying NOT_SERVING: an open watch must not hold the drain up)."""
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                last = status
                yield _Status(status=status)
            if self.runtime.draining:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), _RECHECK_S)
