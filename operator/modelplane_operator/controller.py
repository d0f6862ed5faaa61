"""Reconciling ModelDeployments: render, apply, and keep ``status`` current. No kopf here.

kopf delivers events (handlers.py); this class decides what they mean:

- a ModelDeployment created, changed or resumed -> validate, render the children, apply
  them (unchanged children are not written), prune children no longer rendered, and return
  the status change for kopf to write together with its own bookkeeping (one request);
  a child the API server refuses is reported (``ChildRejected``) instead of half-applied
  in silence;
- a child changed, deleted or stripped of its ownerReference by someone else (seen by
  watch.py) -> re-apply that child, retrying until it is back;
- a ModelDeployment deleted -> delete its children, retrying until they are gone;
- a Deployment or Pod changed -> recompute the status; reporter.py writes it if it differs;
- every ``scrape_interval_s`` -> scrape ready pods, recompute every status (a resync), and
  reconcile any ModelDeployment whose generation kopf left unreconciled (resync.py).
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
    apply_patch,
    rejection_message,
    with_last_applied,
)
from modelplane_operator.builders.balancer import balancer_name
from modelplane_operator.builders.labels import (
    BALANCER_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SELECTOR_LABEL,
    is_runtime,
    managed_selector,
    selector_string,
)
from modelplane_operator.builders.owner import Owner
from modelplane_operator.builders.render import (
    CHILD_KINDS,
    OPTIONAL_KINDS,
    Observed,
    RenderDefaults,
    render_spec,
)
from modelplane_operator.builders.service import service_url
from modelplane_operator.cache import Cache, ChildKey, Key, child_key, key_of, owner_of
from modelplane_operator.events import EventPoster
from modelplane_operator.kube import ApiError, KubeClient
from modelplane_operator.load import Snapshot
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.observe import balancer_ready, observe, service_on_balancer
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
from modelplane_operator.status import (
    BalancerState,
    Mode,
    Target,
    build_status,
    desired_replicas,
    invalid_status,
    rejected_status,
)
from modelplane_operator.usage import with_readings
from modelplane_operator.waker import Waker
from modelplane_operator.watch import Watcher

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


class Controller:
    """The operator's state and decisions; one per process."""

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

    # ---- rendering ----------------------------------------------------------------------

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

    # ---- ModelDeployment events ----------------------------------------------------------

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

    async def _prune(self, key: Key, md: Mapping[str, Any],
                     manifests: list[dict[str, Any]]) -> None:
        # Children we rendered before and no longer do (the HPA after autoscaling was
        # turned off, the canary Deployment after the canary was removed).
        uid = str(md.get("metadata", {}).get("uid", ""))
        wanted = {child_key(m) for m in manifests}
        for kind in await self._applier.prune(key, uid, wanted):
            self.metrics.child_writes.labels(kind, "deleted").inc()

    # ---- children and pods ---------------------------------------------------------------

    async def served(self) -> tuple[tuple[str, str], ...]:
        """The optional child kinds (KEDA's ScaledObject) this API server serves now."""
        found = []
        for api_version, kind in OPTIONAL_KINDS:
            try:
                resources = await self._client.request("GET", f"/apis/{api_version}")
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("cannot tell whether %s is served: %s", api_version, exc)
                continue
            if any(r.get("kind") == kind for r in resources.get("resources") or []):
                found.append((api_version, kind))
        log.info("optional APIs served: %s", [k for _, k in found] or "none")
        return tuple(found)

    def watchers(self, namespaces: tuple[str, ...],
                 optional: tuple[tuple[str, str], ...] | None = None) -> list[Watcher]:
        """LIST+WATCH streams feeding the cache: every child kind, the runtime Pods and the
        balancer Pods; with ``optional`` (what ``served()`` found), only those kinds."""
        kinds: list[tuple[str, str, str, Callable[[str, dict[str, Any]], None]]]
        if optional is not None:
            kinds = [(api_version, kind, managed_selector(), self.child_event)
                     for api_version, kind in optional]
        else:
            kinds = [(api_version, kind, managed_selector(), self.child_event)
                     for api_version, kind in CHILD_KINDS]
            kinds.append(("v1", "Pod", SELECTOR_LABEL, self.pod_event))
            kinds.append(("v1", "Pod", BALANCER_LABEL, self.balancer_pod_event))
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

    def _owner(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The live, valid ModelDeployment a child belongs to: by its controller reference,
        or, when someone stripped that, by the labels the operator put on it."""
        owner = owner_of(body)
        if owner is not None:
            md_key, uid = owner
        else:
            labels = body.get("metadata", {}).get("labels") or {}
            name = labels.get(SELECTOR_LABEL)
            if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not name:
                return None
            md_key, uid = (key_of(body)[0], str(name)), None
        md = self.cache.mds.get(md_key)
        if md is None:
            return None
        meta = md.get("metadata", {})
        if (uid is not None and meta.get("uid") != uid) or meta.get("deletionTimestamp") or (
                md_key in self._invalid):
            return None  # another object's, being deleted, or invalid: leave it alone
        return md

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
        md = self._owner(body)
        if md is None:
            return
        desired = self._desired(md, ck)
        if desired is None:
            return
        if event_type == "DELETED" or (not self._applier.matches_own_write(desired, body)
                                       and apply_patch(desired, body) is not None):
            self._repairs.request(key_of(md), ck,
                                  "deleted" if event_type == "DELETED" else "changed")
        if ck[0] == "Deployment":
            self.status.schedule(key_of(md))
        if ck[0] in ("Deployment", "Service"):
            self._check_observation(md)
        spec = self._rendered[key_of(md)][1] if key_of(md) in self._rendered else None
        if spec is not None and event_type != "DELETED":
            if ck[0] == "Lease":
                self._waker.lease(md, spec, body)
            elif ck[0] == "Deployment":
                self._waker.deployment(md, spec, body)

    def _check_observation(self, md: Mapping[str, Any]) -> None:
        """Render again when a live decision changed (the balancer became ready)."""
        key = key_of(md)
        applied = self._applied.get(key)
        if applied is None or key not in self._rendered:
            return  # not reconciled yet: the first reconcile observes for itself
        now = observe(self.cache.children, key, self._rendered[key][1])
        if now == applied:
            return
        self._applied[key] = now  # one convergence per change, not one per event
        log.info("%s/%s: the live children changed a decision: %s", *key, now)
        if now.service_on_balancer and not applied.service_on_balancer:
            self._events.post(md, "Normal", "BalancerReady", "a balancer pod is ready: the "
                              f"Service {key[1]} moves to the balancer", self._clock())
        self.converge_soon(key, "observed")

    def pod_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A runtime Pod changed: replica health is part of the status."""
        md_key = self.cache.drop_pod(body) if event_type == "DELETED" else self.cache.put_pod(body)
        if md_key is not None:
            self.status.schedule(md_key)

    def balancer_pod_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A balancer Pod changed: its IP is scraped for the traffic each replica gets."""
        if event_type == "DELETED":
            self.cache.drop_pod(body, BALANCER_LABEL)
        else:
            self.cache.put_pod(body, BALANCER_LABEL)

    def schedule_refresh(self, key: Key) -> None:
        """Refresh a status soon (see StatusReporter.schedule)."""
        self.status.schedule(key)

    # ---- status ----------------------------------------------------------------------------

    def _wanted_status(self, key: Key, md: Mapping[str, Any],
                       current: Mapping[str, Any]) -> dict[str, Any] | None:
        """The status this object should have now, or None before its first reconcile."""
        generation = self._observed.get(key)
        if generation is None:
            generation = (md.get("status") or {}).get("observedGeneration")
        if generation is None:
            return None
        invalid = self._invalid.get(key)
        if invalid is not None:
            return invalid_status(message=invalid, generation=int(generation),
                                  previous=current, now=self._clock())
        try:
            spec, manifests = self.render(md)
        except InvalidSpec:
            return None  # changed to an invalid spec: the reconcile reports it
        status = self._compute_status(key, spec, manifests, int(generation), current)
        rejected = self._rejected.get(key)
        if rejected is not None:
            status = rejected_status(status, message=rejected, generation=int(generation),
                                     previous=current, now=self._clock())
        return status

    def _compute_status(self, key: Key, spec: ModelDeploymentSpec,
                        manifests: list[dict[str, Any]], generation: int,
                        current: Mapping[str, Any]) -> dict[str, Any]:
        namespace, name = key
        children = self.cache.children
        runtime = [m for m in manifests if m["kind"] != "Deployment" or is_runtime(m)]
        deployments = [children.get(("Deployment", namespace, m["metadata"]["name"]))
                       for m in runtime if m["kind"] == "Deployment"]
        desired = desired_replicas(runtime, deployments)
        load, at = self._loads.load(key)
        balancer = None
        if spec.routing.balancer:
            live = children.get(("Deployment", namespace, balancer_name(name)))
            wanted = next(m for m in manifests if m["kind"] == "Deployment"
                          and m["metadata"]["name"] == balancer_name(name))
            balancer = BalancerState(
                ready=balancer_ready(live), desired=int(wanted["spec"]["replicas"]),
                serving=service_on_balancer(children.get(("Service", namespace, name)), name))
        mode: Mode = "active"
        if spec.suspend:
            mode = "suspended"
        elif self.sleep.asleep(key, spec):
            mode = "asleep"
        elif self.sleep.waking(key):
            mode = "waking"
        target = Target(
            url=service_url(name, namespace, spec.tls is not None, self.defaults.cluster_domain),
            selector=selector_string(name),
            desired_replicas=desired,
            balancer=balancer,
            mode=mode,
            idle_seconds=spec.autoscaling.idle_seconds if spec.autoscaling else None,
        )
        pods = list(self.cache.pods.get(key, {}).values())
        status = build_status(
            generation=generation, target=target, deployments=deployments,
            pods=pods, load=load, load_updated_at=at, previous=current, now=self._clock(),
            traffic=self._traffic.traffic(key) if self._traffic and balancer else None,
        )
        # CPU, memory and GPUs per replica and in total, and each replica's versions.
        status = with_readings(status, pods, self._resource_use.usage(),
                               self._loads.replicas(key), current)
        return {**status, "scaling": None, "lastColdStartSeconds": None,
                **self.sleep.status(key)}

    def track_load(self, namespace: str, name: str, track: str) -> dict[str, float] | None:
        """One track's load for KEDA (zeros while none is measured); None if unknown."""
        if (namespace, name) not in self.cache.mds:
            return None
        found = self._loads.track_load((namespace, name), track)
        if found is None:
            return {"inFlight": 0.0, "requestsPerSecond": 0.0}
        return {"inFlight": found.in_flight,
                "requestsPerSecond": found.requests_per_second or 0.0}

    async def refresh_status(self, key: Key) -> bool:
        """Recompute one status from the cache; write it if it differs. True if written."""
        return await self.status.refresh(key)

    # ---- scraping, resync and health ---------------------------------------------------------

    async def scrape_round(self) -> None:
        """Scrape every ready pod once and recompute every status (the periodic resync)."""
        # The resource metrics API is read beside the round, never waited for: a hanging
        # metrics-server delays no status (its reading is used once it arrives).
        if self._usage_read is None or self._usage_read.done():
            self._usage_read = asyncio.create_task(self._resource_use.round(),
                                                   name="resource metrics read")
        answered, asked = await self._loads.round(self.cache.pods, self._clock())
        if self._traffic is not None:
            more, of = await self._traffic.round(self.cache.balancer_pods, self._clock())
            answered, asked = answered + more, asked + of
        self.metrics.scrapes.labels("ok").inc(answered)
        self.metrics.scrapes.labels("failed").inc(asked - answered)
        self.resync_lost()
        for key, md in list(self.cache.mds.items()):
            if key in self._rendered and key not in self._invalid:
                self._waker.round(md, self._rendered[key][1], self._traffic)
        keys = list(self.cache.mds)
        for start in range(0, len(keys), 64):
            await asyncio.gather(*(self.refresh_status(k) for k in keys[start:start + 64]))

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

    def health_problems(self, watchers: list[Watcher],
                        tasks: list[asyncio.Task[None]]) -> list[str]:
        """Why the operator should be restarted, if it should: a stalled status loop, a
        watch down for longer than ``unhealthy_after_s``, a background task that ended."""
        problems = []
        age = time.monotonic() - self.last_tick
        if age > 3 * self.settings.scrape_interval_s + 30:
            problems.append(f"the status loop has not run for {age:.0f}s")
        limit = self.settings.unhealthy_after_s
        for watcher in watchers:
            down = watcher.failing_for()
            if down > limit:
                problems.append(f"the watch of {watcher.name} has failed for {down:.0f}s: "
                                f"{watcher.last_error}")
        for task in tasks:
            if task.done():
                problems.append(f"background task {task.get_name()} ended")
        return problems

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
