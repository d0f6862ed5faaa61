"""The Controller: the reconciler (reconciler.py) plus what the live cluster says.

kopf delivers ModelDeployment events (handlers.py); watch.py delivers the children and Pods:

- a child changed, deleted or stripped of its ownerReference by someone else -> re-apply
  that child, retrying until it is back (repair.py); a live decision changed (a balancer
  became ready) -> converge again;
- a Deployment or Pod changed -> recompute the status; reporter.py writes it if it differs;
- every ``scrape_interval_s`` -> scrape ready pods and balancers, recompute every status (a
  resync), put idle models to sleep (waker.py), and reconcile any ModelDeployment whose
  generation kopf left unreconciled (resync.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelplane_operator.apply import apply_patch
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
from modelplane_operator.builders.render import CHILD_KINDS, OPTIONAL_KINDS
from modelplane_operator.builders.service import service_url
from modelplane_operator.cache import Key, child_key, key_of, owner_of
from modelplane_operator.kube import ApiError
from modelplane_operator.observe import balancer_ready, observe, service_on_balancer
from modelplane_operator.reconciler import Reconciler
from modelplane_operator.spec import InvalidSpec, ModelDeploymentSpec
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
from modelplane_operator.watch import Watcher

log = logging.getLogger(__name__)

class Controller(Reconciler):
    """The operator's state and decisions; one per process."""

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
            gone = self._applier.deleted_owner_of(body) if event_type != "DELETED" else None
            if gone is not None:
                self._spawn(self._delete_late_child(body, gone))
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
