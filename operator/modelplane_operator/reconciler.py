"""Reconciling ModelDeployments: render, apply, prune; no kopf here (handlers.py wires it).

- a ModelDeployment created, changed or resumed -> validate, render the children, apply
  them (unchanged children are not written), prune children no longer rendered, and return
  the status change for kopf to write together with its own bookkeeping (one request);
  a child the API server refuses is reported (``ChildRejected``) instead of half-applied
  in silence, and retried every ``refused_retry_s``;
- a ModelDeployment deleted -> delete its children, retrying until they are gone;
- a ModelDeployment whose generation kopf left unreconciled (resync.py) -> reconciled here.

controller.py adds what the live cluster says (children, pods, scrapes) on top of this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from modelplane_operator.apply import (
    Applier,
    rejection_message,
    with_last_applied,
)
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.render import (
    OPTIONAL_KINDS,
    Observed,
    RenderDefaults,
    render_spec,
)
from modelplane_operator.cache import Cache, ChildKey, Key, child_key, key_of
from modelplane_operator.events import EventPoster
from modelplane_operator.kube import ApiError, KubeClient
from modelplane_operator.load import Snapshot
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.observe import observe
from modelplane_operator.podmetrics import PodMetricsReader
from modelplane_operator.repair import Repairer
from modelplane_operator.reporter import StatusReporter
from modelplane_operator.resync import Resync
from modelplane_operator.retry import Backoff
from modelplane_operator.scrape import LoadTracker, Scraper, TrafficTracker
from modelplane_operator.settings import OperatorSettings
from modelplane_operator.shares import BalancerSnapshot
from modelplane_operator.sleep import Sleep
from modelplane_operator.spec import InvalidSpec, ModelDeploymentSpec, validate_spec
from modelplane_operator.waker import Waker

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

CONVERGE_BACKOFF = Backoff(first_s=0.5, max_s=30.0)
"""Between attempts of a convergence the controller started itself."""


class SpecRejected(Exception):
    """The spec is invalid: nothing was applied; ``status_patch`` says so in the status."""

    def __init__(self, message: str, status_patch: dict[str, Any]) -> None:
        super().__init__(message)
        self.status_patch = status_patch


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """The operator's state, and the reconcile path through it; one per process (as the
    Controller that extends it with watching and status)."""

    def __init__(
        self, settings: OperatorSettings, client: KubeClient, scraper: Scraper[Snapshot],
        metrics: OperatorMetrics, *, clock: Clock = _utcnow,
        balancer_scraper: Scraper[BalancerSnapshot] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = Cache()
        self.metrics = metrics
        self.defaults = RenderDefaults(runtime_image=settings.runtime_image,
                                       runtime_gpu_image=settings.runtime_gpu_image,
                                       cluster_domain=settings.cluster_domain,
                                       keda_load_url=settings.keda_load_url,
                                       balancer=settings.balancer_defaults())
        self.last_tick = time.monotonic()
        self._client = client
        self._applier = Applier(client, self.cache)
        self._events = EventPoster(client)
        self._clock = clock
        self._rendered: dict[Key, tuple[tuple[str, int, Observed], ModelDeploymentSpec,
                                        list[dict[str, Any]]]] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._applied: dict[Key, Observed] = {}
        """The observation each object's children were last applied with."""
        self._observed: dict[Key, int] = {}
        self._invalid: dict[Key, str] = {}
        self._rejected: dict[Key, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resync = Resync(settings.lost_after_s)
        self._loads = LoadTracker(scraper)
        self._resource_use = PodMetricsReader(client, settings.namespaces)
        self._usage_read: asyncio.Task[object] | None = None
        self._traffic = TrafficTracker(balancer_scraper) if balancer_scraper else None
        self.status = StatusReporter(client, self.cache, self._events, metrics,
                                     self._wanted_status, clock, self._spawn)
        self._repairs = Repairer(self._applier, self._events, metrics, self._wanted_child,
                                 clock)
        self.sleep = Sleep()
        self._waker = Waker(client, self.cache, self.sleep, self._events, metrics, clock,
                            lambda md: self.converge_soon(key_of(md), "scale"))

    def render(self, md: Mapping[str, Any]) -> tuple[ModelDeploymentSpec, list[dict[str, Any]]]:
        """The validated spec and children of a ModelDeployment (memoized per generation)."""
        key = key_of(md)
        meta = md.get("metadata", {})
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        cached = self._rendered.get(key)
        owner = Owner.from_object(dict(md))  # InvalidSpec unless the name fits every child
        if cached is not None and cached[0][:2] == (uid, generation):
            spec = cached[1]
        else:
            spec = validate_spec(md.get("spec"))
        observed = observe(self.cache.children, key, spec, self.sleep.asleep(key, spec))
        if cached is not None and cached[0] == (uid, generation, observed):
            return spec, cached[2]
        # Annotated once per generation and observation: later comparisons reuse the record.
        manifests = [with_last_applied(m)
                     for m in render_spec(owner, spec, self.defaults, observed)]
        self._rendered[key] = ((uid, generation, observed), spec, manifests)
        return spec, manifests

    def _observation(self, key: Key) -> Observed | None:
        cached = self._rendered.get(key)
        return None if cached is None else cached[0][2]

    async def reconcile(self, md: Mapping[str, Any], trigger: str) -> dict[str, Any]:
        """Converge the children to the spec; returns the status patch (may be empty).

        Raises SpecRejected for an invalid spec (after creating nothing) and ApiError when
        the API server failed; the caller decides about retries. Children the API server
        refused are reported in the status (``ChildRejected``) and retried every
        ``refused_retry_s`` by the controller itself, so kopf counts the change as handled
        and the next spec change is handled at once.
        """
        key = key_of(md)
        self._resync.active(key)
        try:
            await self._converge(md, trigger)
        except InvalidSpec as exc:
            raise SpecRejected(str(exc), await self._hand(key, md)) from exc
        finally:
            self._resync.active(key)
        return await self._hand(key, md)

    def retry_scheduled(self, md: Mapping[str, Any], delay: float) -> None:
        """kopf will call ``reconcile`` again for this object in ``delay`` seconds."""
        self._resync.active(key_of(md), delay)

    async def _converge(self, md: Mapping[str, Any], trigger: str) -> None:
        # One convergence per object at a time: kopf's, and the controller's own (a live
        # decision changed: observe.py), must not prune what the other just applied.
        async with self._locks.setdefault(key_of(md), asyncio.Lock()):
            await self._converge_once(md, trigger)

    async def _converge_once(self, md: Mapping[str, Any], trigger: str) -> None:
        started = time.monotonic()
        key = key_of(md)
        self.cache.put_md(md)
        self.sleep.restore(key, md.get("status") or {}, self._clock())
        generation = int(md.get("metadata", {}).get("generation") or 0)
        try:
            try:
                spec, manifests = self.render(md)
                observation = self._observation(key)
            except InvalidSpec as exc:
                self._invalid[key] = str(exc)
                self._observed[key] = generation
                self.metrics.errors.labels("invalid_spec").inc()
                self.metrics.reconciles.labels(trigger, "invalid").inc()
                raise
            self._invalid.pop(key, None)
            if observation is not None:
                self._applied[key] = observation
            self._waker.before_apply(md, spec)  # suspending: remember what to restore
            results = await asyncio.gather(
                *(self._applier.apply(m) for m in manifests), return_exceptions=True
            )
            refused: list[tuple[Mapping[str, Any], ApiError]] = []
            for manifest, result in zip(manifests, results, strict=True):
                if isinstance(result, ApiError) and result.refused:
                    refused.append((manifest, result))
                elif isinstance(result, ApiError) and result.status == 404 and (
                        manifest["apiVersion"], manifest["kind"]) in OPTIONAL_KINDS:
                    refused.append((manifest, ApiError(404, "NotFound", (
                        f"the API server does not serve {manifest['apiVersion']} "
                        f"{manifest['kind']}: autoscaling.engine keda needs KEDA installed"))))
                elif isinstance(result, BaseException):
                    raise result
                elif result != "unchanged":
                    self.metrics.child_writes.labels(manifest["kind"], result).inc()
            # Pruning comes after every child is applied: turning the balancer off moves the
            # Service to the runtime pods before the balancer goes. A refused Service keeps
            # everything until it is accepted.
            if not any(m["kind"] == "Service" and m["metadata"]["name"] == key[1]
                       for m, _ in refused):
                await self._prune(key, md, manifests)
            await self._waker.after_apply(md, spec)
            self._observed[key] = generation
            if refused:
                applied = [m for m, r in zip(manifests, results, strict=True)
                           if not isinstance(r, BaseException)]
                message = rejection_message(refused, applied)
                self._rejected[key] = message
                self.metrics.errors.labels("child_rejected").inc()
                self.metrics.reconciles.labels(trigger, "rejected").inc()
                log.warning("%s/%s: %s", *key, message)
                self._retry_refused(key, generation)
                return
            self._rejected.pop(key, None)
            self.metrics.reconciles.labels(trigger, "ok").inc()
        except ApiError:
            self.metrics.errors.labels("api").inc()
            self.metrics.reconciles.labels(trigger, "error").inc()
            raise
        finally:
            self.metrics.duration.observe(time.monotonic() - started)

    def converge_soon(self, key: Key, trigger: str) -> None:
        """Converge one object again outside kopf (a live decision changed), retrying
        failures with backoff while the object and its generation stay the same."""
        async def converge() -> None:
            attempt = 0
            while True:
                md = self.cache.mds.get(key)
                if md is None or key in self._invalid or md.get("metadata", {}).get(
                        "deletionTimestamp"):
                    return
                try:
                    await self._converge(md, trigger)
                except InvalidSpec:
                    return  # kopf reports it
                except ApiError as exc:
                    delay = CONVERGE_BACKOFF.delay(attempt, exc.retry_after)
                    attempt += 1
                    log.warning("converging %s/%s (%s) failed: %s; again in %.1fs",
                                *key, trigger, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                await self.status.refresh(key)
                return

        self._spawn(converge())

    def _retry_refused(self, key: Key, generation: int) -> None:
        async def retry() -> None:
            md = self.cache.mds.get(key)
            if md is None or key not in self._rejected or int(
                    md.get("metadata", {}).get("generation") or 0) != generation:
                return  # gone, accepted meanwhile, or changed (kopf handles the change)
            try:
                await self._converge(md, "retry")
            except ApiError as exc:
                log.warning("retrying the refused children of %s/%s failed: %s", *key, exc)
                self._retry_refused(key, generation)
            except InvalidSpec:
                pass  # the spec changed under us: kopf reconciles the new one
            await self.status.refresh(key)

        asyncio.get_running_loop().call_later(self.settings.refused_retry_s,
                                              lambda: self._spawn(retry()))

    async def _hand(self, key: Key, md: Mapping[str, Any]) -> dict[str, Any]:
        async with self.status.lock(key):
            wanted = self._wanted_status(key, md, self.status.current(key, md))
            return {} if wanted is None else self.status.hand(key, md, wanted)

    def md_seen(self, event_type: str | None, md: Mapping[str, Any]) -> None:
        """Track a ModelDeployment from a watch event (kopf's); deletion starts the cleanup."""
        key = key_of(md)
        if event_type == "DELETED":
            self.cache.drop_md(key)
            self._loads.forget(key)
            if self._traffic is not None:
                self._traffic.forget(key)
            self.status.forget(key)
            self._resync.forget(key)
            for store in (self._rendered, self._observed, self._invalid, self._rejected,
                          self._locks, self._applied):
                store.pop(key, None)  # type: ignore[attr-defined]
            self.sleep.forget(key)
            self._applier.owner_deleted(key, str(md.get("metadata", {}).get("uid", "")))
            self._spawn(self._delete_children(md))
        else:
            self.cache.put_md(md)
            self.sleep.restore(key, md.get("status") or {}, self._clock())
            self._resync.active(key)
            self.status.seen(key)
        self.metrics.managed.set(len(self.cache.mds))

    async def _delete_children(self, md: Mapping[str, Any]) -> None:
        # Delete the children that still name the deleted ModelDeployment as their owner
        # (see Applier.delete_owned: the garbage collector does it on a real cluster too).
        key, uid = key_of(md), str(md.get("metadata", {}).get("uid", ""))
        for kind in await self._applier.delete_owned(key, uid):
            self.metrics.child_writes.labels(kind, "deleted").inc()

    async def _delete_late_child(self, child: Mapping[str, Any], owner: tuple[Key, str]) -> None:
        if await self._applier.delete_late_child(child, owner):
            self.metrics.child_writes.labels(str(child.get("kind")), "deleted").inc()

    async def _prune(self, key: Key, md: Mapping[str, Any],
                     manifests: list[dict[str, Any]]) -> None:
        # Children we rendered before and no longer do (the HPA after autoscaling was
        # turned off, the canary Deployment after the canary was removed).
        uid = str(md.get("metadata", {}).get("uid", ""))
        wanted = {child_key(m) for m in manifests}
        for kind in await self._applier.prune(key, uid, wanted):
            self.metrics.child_writes.labels(kind, "deleted").inc()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _desired(self, md: Mapping[str, Any], ck: ChildKey) -> dict[str, Any] | None:
        try:
            _, manifests = self.render(md)
        except InvalidSpec:
            return None
        return next((m for m in manifests if child_key(m) == ck), None)

    def _wanted_child(self, md_key: Key, ck: ChildKey,
                      ) -> tuple[Mapping[str, Any], dict[str, Any]] | None:
        md = self.cache.mds.get(md_key)
        if md is None or md_key in self._invalid or md.get("metadata", {}).get(
                "deletionTimestamp"):
            return None
        desired = self._desired(md, ck)
        return None if desired is None else (md, desired)

    def resync_lost(self) -> None:
        """Reconcile, in the background, every object kopf has lost (see resync.py)."""
        busy = {key for key, lock in self._locks.items() if lock.locked()}
        for key in self._resync.lost(self.cache.mds, self._observed, busy.__contains__):
            self._resync.active(key)  # not again before lost_after, whatever happens
            self._spawn(self._reconcile_lost(key))

    async def _reconcile_lost(self, key: Key) -> None:
        md = self.cache.mds.get(key)
        lock = self._locks.get(key)
        if md is None or (lock is not None and lock.locked()):
            return
        generation = md.get("metadata", {}).get("generation")
        log.warning("%s/%s: generation %s still not reconciled %.0fs after kopf last acted "
                    "on it (kopf lost its retry); reconciling it", *key, generation,
                    self._resync.lost_after)
        try:
            await self._converge(md, "resync")
        except InvalidSpec:
            pass  # recorded: the status refresh below reports it
        except ApiError as exc:
            log.warning("reconciling %s/%s failed (%s); again in %.0fs", *key, exc,
                        self._resync.lost_after)
            return
        await self.status.refresh(key)

    def _wanted_status(self, key: Key, md: Mapping[str, Any],
                       current: Mapping[str, Any]) -> dict[str, Any] | None:
        """The status this object should have now (the Controller computes it from the
        live children and scrapes)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop background work and flush queued Events."""
        self.status.close()
        await self._repairs.close()
        tasks: list[asyncio.Task[Any]] = list(self._tasks)
        if self._usage_read is not None:
            tasks.append(self._usage_read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._events.drain()
