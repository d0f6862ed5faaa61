"""Following the cluster: WATCH the track Services' EndpointSlices and the ModelDeployment.

The informer pattern of client-go: LIST (the whole state, reconciled against what was
known, so objects deleted while disconnected are dropped), then WATCH from the list's
resourceVersion with bookmarks; a 410 Gone means list again; any other failure backs off
and retries. Every event recomputes the tracks' members (endpoints.py) and updates the
fleet in place: replicas that stay keep their connections and books, removed ones finish
their requests, and strategy or canary changes apply to the next request. Nothing restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from modelplane_balancer import contract
from modelplane_balancer.endpoints import Routing, members, routing_from
from modelplane_balancer.fleet import Fleet
from modelplane_balancer.kube import ApiError, CredentialsError, KubeClient, load_credentials
from modelplane_balancer.settings import BalancerSettings

logger = logging.getLogger("modelplane.balancer.discovery")

WATCH_TIMEOUT_S: Final = 300
RETRY_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class DiscoveryError(RuntimeError):
    """Discovery cannot start (no credentials, no namespace)."""


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Watch:
    """LIST then WATCH one collection, keeping its objects by name."""

    def __init__(self, client: KubeClient, path: str, params: dict[str, str], what: str,
                 on_change: Callable[[], None]) -> None:
        self.client = client
        self.path = path
        self.params = params
        self.what = what
        self.on_change = on_change
        self.objects: dict[str, dict[str, Any]] = {}
        self.version: str | None = None
        self.listed = asyncio.Event()

    async def _list(self) -> None:
        found = await self.client.get(self.path, self.params)
        self.objects = {
            str((item.get("metadata") or {}).get("name")): item
            for item in found.get("items") or []
        }
        self.version = str((found.get("metadata") or {}).get("resourceVersion") or "")
        self.listed.set()
        self.on_change()

    async def _watch(self) -> None:
        params = {**self.params, "watch": "true", "resourceVersion": self.version or "",
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        async with self.client.watch(self.path, params, WATCH_TIMEOUT_S + 30) as stream:
            async for line in stream:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(str(obj.get("message", "")))
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message", "")))
                meta = obj.get("metadata") or {}
                self.version = str(meta.get("resourceVersion") or self.version)
                name = str(meta.get("name"))
                if kind in ("ADDED", "MODIFIED"):
                    self.objects[name] = obj
                elif kind == "DELETED":
                    self.objects.pop(name, None)
                else:
                    continue  # BOOKMARK: only the resourceVersion moves
                self.on_change()

    async def run(self) -> None:
        """List, then watch, forever; reconnects with back-off."""
        failures = 0
        while True:
            try:
                if self.version is None:
                    await self._list()
                await self._watch()
                failures = 0
            except Gone:
                self.version = None
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError,
                    CredentialsError, OSError) as exc:
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                if isinstance(exc, ApiError) and exc.status == 410:
                    self.version = None
                logger.warning("watch of %s failed (%s); again in %.1fs", self.what, exc, delay)
                await asyncio.sleep(delay)


def micro_time(wall: float) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC): a Lease's times."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Demand:
    """Tells the operator that requests wait for a model scaled to zero: renews the wake
    Lease (``contract.wake_lease``), which the operator created and watches. At most one
    write in flight and one a second; a failed write is repeated by the next renewal."""

    def __init__(self, client: KubeClient, namespace: str, model: str, holder: str) -> None:
        self.client = client
        self.path = (f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases/"
                     f"{quote(contract.wake_lease(model))}")
        self.holder = holder
        self.last = 0.0
        self.writing: asyncio.Task[None] | None = None
        self.written = 0

    def signal(self, held_since: float) -> None:
        """Requests have been held since ``held_since`` (the event loop's clock)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if (self.writing is not None and not self.writing.done()) or now - self.last < 1.0:
            return
        self.last = now
        first = time.time() - (now - held_since)
        self.writing = loop.create_task(self._write(first))

    async def _write(self, first: float) -> None:
        body = {"spec": {"holderIdentity": self.holder, "acquireTime": micro_time(first),
                         "renewTime": micro_time(time.time())}}
        try:
            await self.client.patch(self.path, body)
            self.written += 1
        except (ApiError, aiohttp.ClientError, TimeoutError, ValueError, CredentialsError,
                OSError) as exc:
            logger.warning("could not renew the wake Lease (%s); again in a second", exc)
            self.last = 0.0


class Discovery:
    """The two watches of one balancer and what they change in its fleet."""

    def __init__(self, settings: BalancerSettings, fleet: Fleet, client: KubeClient,
                 session: aiohttp.ClientSession, namespace: str) -> None:
        self.settings = settings
        self.fleet = fleet
        self.session = session
        self.namespace = namespace
        self.routing = Routing(strategy=settings.strategy)
        model = settings.model
        self.services = {
            contract.STABLE: contract.replicas_service(model),
            contract.CANARY: contract.canary_replicas_service(model),
        }
        ns = quote(namespace)
        self.slices = Watch(
            client, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            {"labelSelector": f"{contract.SERVICE_NAME_LABEL} in "
                              f"({self.services[contract.STABLE]},"
                              f"{self.services[contract.CANARY]})"},
            "EndpointSlices", self._slices_changed,
        )
        self.model_deployment = Watch(
            client,
            f"/apis/{contract.MD_GROUP}/{contract.MD_VERSION}/namespaces/{ns}/{contract.MD_PLURAL}",
            {"fieldSelector": f"metadata.name={model}"}, "ModelDeployment",
            self._model_deployment_changed,
        )
        self.demand = Demand(client, namespace, model, settings.pod_name or socket.gethostname())
        fleet.on_demand = self.demand.signal

    @classmethod
    async def connect(cls, settings: BalancerSettings, fleet: Fleet) -> Discovery:
        """Load credentials (service account, else kubeconfig) and set up the watches."""
        try:
            credentials = load_credentials()
        except CredentialsError as exc:
            raise DiscoveryError(f"{exc}; or give --backends to run without a cluster") from None
        namespace = settings.namespace or credentials.namespace
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        logger.info("watching the cluster", extra={
            "server": credentials.server, "namespace": namespace, "model": settings.model})
        return cls(settings, fleet, KubeClient(credentials, session), session, namespace)

    async def run(self) -> None:
        """Both watches until cancelled."""
        try:
            await asyncio.gather(self.slices.run(), self.model_deployment.run())
        finally:
            await self.session.close()

    def _slices_changed(self) -> None:
        slices = list(self.slices.objects.values())
        for track, service in self.services.items():
            self.fleet.update(track, members(slices, service, self.routing.weights))

    def _model_deployment_changed(self) -> None:
        found = self.model_deployment.objects.get(self.settings.model)
        if found is None:
            logger.info("ModelDeployment %s not found: keeping the routing in force",
                        self.settings.model)
            return
        routing = routing_from(found)
        previous, self.routing = self.routing, routing
        fleet = self.fleet
        if routing.strategy is not None:
            fleet.set_strategy(routing.strategy)
        fleet.set_canary_percent(routing.canary_percent)
        fleet.suspended = routing.suspended
        fleet.scaled_to_zero = routing.scaled_to_zero
        if routing.weights != previous.weights and self.slices.listed.is_set():
            self._slices_changed()
