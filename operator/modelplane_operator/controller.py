"""Reconciling ModelDeployments: render, apply, and keep ``status`` current. No kopf here.

kopf delivers events (handlers.py); this class decides what they mean:

- a ModelDeployment created, changed or resumed -> validate, render the children, apply
  them (unchanged children are not written), prune children no longer rendered, and return
  the status change for kopf to write together with its own bookkeeping (one request);
- a child changed or deleted by someone else (seen by watch.py) -> re-apply that child;
- a Deployment or Pod changed -> recompute the status, write it only if it differs;
- every ``scrape_interval_s`` -> scrape ready pods, update ``status.load`` of each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from modelplane_operator.apply import Applier, apply_patch, with_last_applied
from modelplane_operator.builders.labels import SELECTOR_LABEL, managed_selector, selector_string
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.render import CHILD_KINDS, RenderDefaults, render_spec
from modelplane_operator.builders.service import service_url
from modelplane_operator.cache import Cache, Key, child_key, key_of, owner_of
from modelplane_operator.events import EventPoster, transitions
from modelplane_operator.kube import ApiError, KubeClient
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.scrape import LoadTracker, Scraper
from modelplane_operator.settings import OperatorSettings
from modelplane_operator.spec import (
    API_VERSION,
    KIND,
    InvalidSpec,
    ModelDeploymentSpec,
    validate_spec,
)
from modelplane_operator.status import (
    OWNED_KEYS,
    Target,
    build_status,
    invalid_status,
    status_patch,
)
from modelplane_operator.watch import Watcher

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

REFRESH_DELAY_S = 0.05
"""Events for one object arriving within this window share one status refresh."""


class SpecRejected(Exception):
    """The spec is invalid: nothing was applied; ``status_patch`` says so in the status."""

    def __init__(self, message: str, status_patch: dict[str, Any]) -> None:
        super().__init__(message)
        self.status_patch = status_patch


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    """The operator's state and decisions; one per process."""

    def __init__(
        self, settings: OperatorSettings, client: KubeClient, scraper: Scraper,
        metrics: OperatorMetrics, *, clock: Clock = _utcnow,
    ) -> None:
        self.settings = settings
        self.cache = Cache()
        self.metrics = metrics
        self.defaults = RenderDefaults(runtime_image=settings.runtime_image,
                                       runtime_gpu_image=settings.runtime_gpu_image,
                                       cluster_domain=settings.cluster_domain)
        self.last_tick = time.monotonic()
        self._client = client
        self._applier = Applier(client, self.cache)
        self._events = EventPoster(client)
        self._clock = clock
        self._rendered: dict[Key, tuple[tuple[str, int], ModelDeploymentSpec,
                                        list[dict[str, Any]]]] = {}
        self._written: dict[Key, dict[str, Any]] = {}
        self._observed: dict[Key, int] = {}
        self._invalid: dict[Key, str] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresh_pending: set[Key] = set()
        self._loads = LoadTracker(scraper)

    # ---- rendering ----------------------------------------------------------------------

    def render(self, md: Mapping[str, Any]) -> tuple[ModelDeploymentSpec, list[dict[str, Any]]]:
        """The validated spec and children of a ModelDeployment (memoized per generation)."""
        key = key_of(md)
        meta = md.get("metadata", {})
        version = (str(meta.get("uid", "")), int(meta.get("generation") or 0))
        cached = self._rendered.get(key)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        owner = Owner.from_object(dict(md))
        spec = validate_spec(md.get("spec"))
        # Annotated once per generation: every later comparison reuses the record.
        manifests = [with_last_applied(m) for m in render_spec(owner, spec, self.defaults)]
        self._rendered[key] = (version, spec, manifests)
        return spec, manifests

    # ---- ModelDeployment events ----------------------------------------------------------

    async def reconcile(self, md: Mapping[str, Any], trigger: str) -> dict[str, Any]:
        """Converge the children to the spec; returns the status patch (may be empty).

        Raises SpecRejected for an invalid spec (after creating nothing) and ApiError when
        the API server refuses or fails; the caller decides about retries.
        """
        started = time.monotonic()
        key = key_of(md)
        self.cache.put_md(md)
        generation = int(md.get("metadata", {}).get("generation") or 0)
        try:
            try:
                spec, manifests = self.render(md)
            except InvalidSpec as exc:
                self._invalid[key] = str(exc)
                self._observed[key] = generation
                wanted = invalid_status(message=str(exc), generation=generation,
                                        previous=self._current_status(key, md), now=self._clock())
                self.metrics.errors.labels("invalid_spec").inc()
                self.metrics.reconciles.labels(trigger, "invalid").inc()
                raise SpecRejected(str(exc), self._status_change(key, md, wanted)) from exc
            self._invalid.pop(key, None)
            results = await asyncio.gather(
                *(self._applier.apply(m) for m in manifests), return_exceptions=True
            )
            for manifest, result in zip(manifests, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                if result != "unchanged":
                    self.metrics.child_writes.labels(manifest["kind"], result).inc()
            await self._prune(key, md, manifests)
            self._observed[key] = generation
            async with self._lock(key):
                wanted = self._compute_status(key, md, spec, manifests, generation)
                patch = self._status_change(key, md, wanted)
            self.metrics.reconciles.labels(trigger, "ok").inc()
            return patch
        except ApiError:
            self.metrics.errors.labels("api").inc()
            self.metrics.reconciles.labels(trigger, "error").inc()
            raise
        finally:
            self.metrics.duration.observe(time.monotonic() - started)

    def md_seen(self, event_type: str | None, md: Mapping[str, Any]) -> None:
        """Track a ModelDeployment from a watch event."""
        key = key_of(md)
        if event_type == "DELETED":
            self.cache.drop_md(key)
            self._loads.forget(key)
            for store in (self._rendered, self._written, self._observed, self._invalid,
                          self._locks):
                store.pop(key, None)  # type: ignore[attr-defined]
        else:
            self.cache.put_md(md)
        self.metrics.managed.set(len(self.cache.mds))

    async def md_deleted(self, md: Mapping[str, Any]) -> None:
        """Delete the children that still name the deleted ModelDeployment as their owner
        (see Applier.delete_owned: the garbage collector does it on a real cluster too)."""
        key, uid = key_of(md), str(md.get("metadata", {}).get("uid", ""))
        for kind in await self._applier.delete_owned(key, uid):
            self.metrics.child_writes.labels(kind, "deleted").inc()

    async def _prune(self, key: Key, md: Mapping[str, Any],
                     manifests: list[dict[str, Any]]) -> None:
        # Children we rendered before and no longer do (the HPA after autoscaling was
        # turned off, the canary Deployment after the canary was removed).
        uid = str(md.get("metadata", {}).get("uid", ""))
        wanted = {child_key(m) for m in manifests}
        for kind in await self._applier.prune(key, uid, wanted):
            self.metrics.child_writes.labels(kind, "deleted").inc()

    # ---- children and pods ---------------------------------------------------------------

    def watchers(self, namespaces: tuple[str, ...]) -> list[Watcher]:
        """LIST+WATCH streams feeding the cache: every child kind and the runtime Pods."""
        kinds = [(api_version, kind, managed_selector(), self.child_event)
                 for api_version, kind in CHILD_KINDS]
        kinds.append(("v1", "Pod", SELECTOR_LABEL, self.pod_event))
        return [
            Watcher(self._client, api_version=api_version, kind=kind, namespace=namespace,
                    selector=selector, on_event=on_event)
            for api_version, kind, selector, on_event in kinds
            for namespace in namespaces or (None,)
        ]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def child_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A child changed or was deleted: restore it if it no longer matches the spec.

        Runs inline in the watch stream, so it only touches the cache; writes go to tasks.
        """
        ck = child_key(body)
        if event_type == "DELETED":
            self.cache.drop_child(ck)
            self._applier.forget(ck)
        elif not self.cache.put_child(body):
            return  # older than what our own write returned
        owner = owner_of(body)
        if owner is None:
            return
        md_key, uid = owner
        md = self.cache.mds.get(md_key)
        if (md is None or md.get("metadata", {}).get("uid") != uid
                or md.get("metadata", {}).get("deletionTimestamp") or md_key in self._invalid):
            return  # ownerless, being deleted, or invalid: leave it to GC or to the user
        try:
            _, manifests = self.render(md)
        except InvalidSpec:
            return
        desired = next((m for m in manifests if child_key(m) == ck), None)
        if desired is None:
            return
        if event_type == "DELETED" or (not self._applier.matches_own_write(desired, body)
                                       and apply_patch(desired, body) is not None):
            self._spawn(self._restore(md, desired, "deleted" if event_type == "DELETED"
                                      else "changed"))
        if ck[0] == "Deployment":
            self.schedule_refresh(md_key)

    async def _restore(self, md: Mapping[str, Any], desired: Mapping[str, Any],
                       how: str) -> None:
        ck = child_key(desired)
        try:
            outcome = await self._applier.apply(desired)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.errors.labels("api").inc()
            # 403/404 while the namespace is being deleted are expected: nothing to restore.
            status = exc.status if isinstance(exc, ApiError) else 0
            level = logging.INFO if status in (403, 404) else logging.WARNING
            log.log(level, "could not restore %s %s/%s: %s", *ck, exc)
            return
        if outcome != "unchanged":
            self.metrics.child_writes.labels(ck[0], outcome).inc()
            log.info("%s %s/%s was %s; restored", ck[0], ck[1], ck[2], how)
            self._events.post(md, "Normal", "Restored",
                              f"{ck[0]} {ck[2]} was {how} outside the operator; restored",
                              self._clock())

    def pod_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A runtime Pod changed: replica health is part of the status."""
        md_key = self.cache.drop_pod(body) if event_type == "DELETED" else self.cache.put_pod(body)
        if md_key is not None:
            self.schedule_refresh(md_key)

    def schedule_refresh(self, key: Key) -> None:
        """Refresh a status soon; a burst of events for one object gives one refresh."""
        if key in self._refresh_pending:
            return
        self._refresh_pending.add(key)

        async def refresh() -> None:
            await asyncio.sleep(REFRESH_DELAY_S)
            self._refresh_pending.discard(key)
            await self.refresh_status(key)

        self._spawn(refresh())

    # ---- status ----------------------------------------------------------------------------

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _current_status(self, key: Key, md: Mapping[str, Any]) -> dict[str, Any]:
        live = dict(md.get("status") or {})
        return {**live, **self._written.get(key, {})}

    def _status_change(self, key: Key, md: Mapping[str, Any],
                       wanted: Mapping[str, Any]) -> dict[str, Any]:
        current = self._current_status(key, md)
        patch = status_patch(current, wanted)
        if patch:
            for kind, reason, message in transitions(current, wanted):
                self._events.post(md, kind, reason, message, self._clock())
            merged = {**current, **wanted}
            self._written[key] = {k: v for k, v in merged.items()
                                  if k in OWNED_KEYS and v is not None}
        return patch

    def _compute_status(self, key: Key, md: Mapping[str, Any], spec: ModelDeploymentSpec,
                        manifests: list[dict[str, Any]], generation: int) -> dict[str, Any]:
        namespace, name = key
        autoscaler_min = {
            m["spec"]["scaleTargetRef"]["name"]: int(m["spec"].get("minReplicas", 1))
            for m in manifests if m["kind"] == "HorizontalPodAutoscaler"
        }
        deployments: list[dict[str, Any] | None] = []
        desired = 0
        for manifest in manifests:
            if manifest["kind"] != "Deployment":
                continue
            dep_name = manifest["metadata"]["name"]
            live = self.cache.children.get(("Deployment", namespace, dep_name))
            deployments.append(live)
            replicas = (live or {}).get("spec", {}).get("replicas")
            if replicas is None:
                replicas = manifest["spec"].get("replicas")
            if replicas is None:
                replicas = autoscaler_min.get(dep_name, 1)
            desired += int(replicas)
        load, at = self._loads.load(key)
        target = Target(
            url=service_url(name, namespace, spec.tls is not None, self.defaults.cluster_domain),
            selector=selector_string(name),
            desired_replicas=desired,
        )
        return build_status(
            generation=generation, target=target, deployments=deployments,
            pods=list(self.cache.pods.get(key, {}).values()), load=load, load_updated_at=at,
            previous=self._current_status(key, md), now=self._clock(),
        )

    async def refresh_status(self, key: Key) -> bool:
        """Recompute one status from the cache; write it if it changed. True if written."""
        async with self._lock(key):
            md = self.cache.mds.get(key)
            if md is None or key in self._invalid or md.get("metadata", {}).get(
                    "deletionTimestamp"):
                return False
            generation = self._observed.get(key)
            if generation is None:
                generation = (md.get("status") or {}).get("observedGeneration")
            if generation is None:
                return False  # never reconciled: the reconcile writes the first status
            try:
                spec, manifests = self.render(md)
            except InvalidSpec:
                return False
            wanted = self._compute_status(key, md, spec, manifests, int(generation))
            patch = self._status_change(key, md, wanted)
            if not patch:
                return False
            try:
                await self._client.merge_patch(API_VERSION, KIND, key[0], key[1],
                                               {"status": patch}, subresource="status")
            except ApiError as exc:
                self._written.pop(key, None)  # unknown what stuck: compare with live next time
                if exc.status != 404:
                    self.metrics.errors.labels("api").inc()
                    log.warning("could not write the status of %s/%s: %s", *key, exc)
                return False
            self.metrics.status_writes.inc()
            return True

    # ---- scraping ----------------------------------------------------------------------------

    async def scrape_round(self) -> None:
        """Scrape every ready pod once and refresh every status."""
        answered, asked = await self._loads.round(self.cache.pods, self._clock())
        self.metrics.scrapes.labels("ok").inc(answered)
        self.metrics.scrapes.labels("failed").inc(asked - answered)
        keys = list(self.cache.mds)
        for start in range(0, len(keys), 64):
            await asyncio.gather(*(self.refresh_status(k) for k in keys[start:start + 64]))

    async def run_scrapes(self) -> None:
        """The status timer: scrape and refresh every ``scrape_interval_s``, forever."""
        interval = self.settings.scrape_interval_s
        while True:
            started = time.monotonic()
            try:
                await self.scrape_round()
            except Exception:  # one bad round must not stop the timer (or the liveness)
                self.metrics.errors.labels("unexpected").inc()
                log.exception("status refresh round failed")
            self.last_tick = time.monotonic()
            self.metrics.rounds.inc()
            await asyncio.sleep(max(0.0, interval - (self.last_tick - started)))

    async def close(self) -> None:
        """Stop background work and flush queued Events."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._events.drain()
