"""Scraping the runtime pods' ``/metrics`` concurrently, each with a short timeout.

A pod that does not answer in time is left out of this round (its previous snapshot is
kept, so the next successful scrape still gives a correct rate over a longer window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

import aiohttp
from modelplane_runtime import contract

from modelplane_operator.builders.labels import TRACK_LABEL
from modelplane_operator.load import Load, Snapshot, aggregate, parse_snapshot
from modelplane_operator.shares import BalancerSnapshot, Traffic, busy, traffic
from modelplane_operator.status import pod_ready

log = logging.getLogger(__name__)

T = TypeVar("T")
PodsByModel = Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]
"""Pods by ModelDeployment key, then by name."""


def pod_uid(pod: Mapping[str, Any]) -> str:
    """A pod's uid (its name where the uid is missing): the key of its scrapes."""
    meta = pod.get("metadata", {})
    return str(meta.get("uid") or meta.get("name"))


def ready_targets(pods: PodsByModel) -> tuple[dict[str, str], dict[tuple[str, str], list[str]]]:
    """The ready pods to scrape: ``{uid: ip}``, and their uids by ModelDeployment."""
    targets: dict[str, str] = {}
    members: dict[tuple[str, str], list[str]] = {}
    for key, by_name in pods.items():
        for pod in by_name.values():
            ip = pod.get("status", {}).get("podIP")
            if ip and pod_ready(pod):
                uid = pod_uid(pod)
                targets[uid] = str(ip)
                members.setdefault(key, []).append(uid)
    return targets, members


class Scraper(Generic[T]):
    """Scrapes pod IPs on one port with a shared session and a concurrency limit; ``parse``
    reads one answer (the runtime's metrics by default, the balancer's with
    ``shares.parse_balancer``)."""

    def __init__(
        self, session: aiohttp.ClientSession, *, port: int, timeout_s: float, concurrency: int,
        parse: Callable[[str, float], T] = parse_snapshot,  # type: ignore[assignment]
    ) -> None:
        self._session = session
        self._port = port
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limit = asyncio.Semaphore(concurrency)
        self._parse = parse

    def url(self, pod_ip: str) -> str:
        """Where a pod's metrics are."""
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return f"http://{host}:{self._port}{contract.METRICS_PATH}"

    async def scrape_one(self, pod_ip: str) -> T | None:
        """One pod's snapshot, or None when it cannot be read in time."""
        async with self._limit:
            try:
                async with self._session.get(self.url(pod_ip), timeout=self._timeout) as resp:
                    if resp.status != 200:
                        log.debug("scrape of %s answered %s", pod_ip, resp.status)
                        return None
                    text = await resp.text()
                    taken_at = time.monotonic()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("scrape of %s failed: %r", pod_ip, exc)
                return None
        try:
            return self._parse(text, taken_at)
        except ValueError as exc:
            log.warning("metrics of %s are not in the Prometheus text format: %s", pod_ip, exc)
            return None

    async def scrape(self, pods: Mapping[str, str]) -> dict[str, T]:
        """Snapshots of all pods (``{uid: ip}``) that answered, keyed by uid."""
        keys = list(pods)
        results = await asyncio.gather(*(self.scrape_one(pods[key]) for key in keys))
        return {key: snap for key, snap in zip(keys, results, strict=True) if snap is not None}


class LoadTracker:
    """The load of every ModelDeployment, from one scrape round to the next."""

    def __init__(self, scraper: Scraper[Snapshot]) -> None:
        self._scraper = scraper
        self._snapshots: dict[str, Snapshot] = {}
        self._loads: dict[tuple[str, str], tuple[Load, datetime]] = {}
        self._latest: dict[tuple[str, str], dict[str, Snapshot]] = {}
        self._tracks: dict[tuple[str, str, str], Load] = {}

    def track_load(self, key: tuple[str, str], track: str) -> Load | None:
        """The latest load of one track (stable or canary) of a ModelDeployment."""
        return self._tracks.get((*key, track))

    def load(self, key: tuple[str, str]) -> tuple[Load | None, datetime | None]:
        """The latest load of one ModelDeployment and when it was measured."""
        load, at = self._loads.get(key, (None, None))
        return load, at

    def replicas(self, key: tuple[str, str]) -> Mapping[str, Snapshot]:
        """This round's scrape of each answering pod of a ModelDeployment, by pod name
        (gauges such as GPU use are not carried over from earlier rounds)."""
        return self._latest.get(key, {})

    def forget(self, key: tuple[str, str]) -> None:
        """Drop a deleted ModelDeployment's load."""
        self._loads.pop(key, None)
        self._latest.pop(key, None)

    async def round(self, pods: PodsByModel, now: datetime) -> tuple[int, int]:
        """Scrape every ready pod once (pods by ModelDeployment); returns (answered, asked)."""
        targets, members = ready_targets(pods)
        names = {pod_uid(pod): name for by_name in pods.values() for name, pod in by_name.items()}
        snapshots = await self._scraper.scrape(targets) if targets else {}
        self._latest = {key: {names[uid]: snapshots[uid] for uid in uids if uid in snapshots}
                        for key, uids in members.items()}
        self._loads = {key: value for key, value in self._loads.items() if key in members}
        tracks: dict[tuple[str, str, str], list[str]] = {}
        for key, by_name in pods.items():
            for pod in by_name.values():
                track = (pod.get("metadata", {}).get("labels") or {}).get(TRACK_LABEL, "stable")
                tracks.setdefault((*key, str(track)), []).append(pod_uid(pod))
        self._tracks = {}
        for track_key, uids in tracks.items():
            current = {uid: snapshots[uid] for uid in uids if uid in snapshots}
            found = aggregate(self._snapshots, current)
            if found is not None:
                self._tracks[track_key] = found
        for key, uids in members.items():
            current = {uid: snapshots[uid] for uid in uids if uid in snapshots}
            load = aggregate(self._snapshots, current)
            if load is None:
                self._loads.pop(key, None)
            else:
                self._loads[key] = (load, now)
        # Keep the last snapshot of pods that did not answer this time: their next answer
        # still gives a correct rate, over a longer window.
        self._snapshots = {uid: snapshots.get(uid) or self._snapshots[uid]
                           for uid in targets if uid in snapshots or uid in self._snapshots}
        return len(snapshots), len(targets)


class TrafficTracker:
    """Every ModelDeployment's traffic through its balancers, from one round to the next,
    and when each last saw a request (what the idle timer of scale to zero counts)."""

    def __init__(self, scraper: Scraper[BalancerSnapshot]) -> None:
        self._scraper = scraper
        self._snapshots: dict[str, BalancerSnapshot] = {}
        self._traffic: dict[tuple[str, str], Traffic] = {}
        self.last_request: dict[tuple[str, str], datetime] = {}
        """When the balancers last counted a request, or held or forwarded one."""

    def traffic(self, key: tuple[str, str]) -> Traffic | None:
        """The latest traffic of one ModelDeployment."""
        return self._traffic.get(key)

    def forget(self, key: tuple[str, str]) -> None:
        """Drop a deleted ModelDeployment."""
        self._traffic.pop(key, None)
        self.last_request.pop(key, None)

    async def round(self, pods: PodsByModel, now: datetime) -> tuple[int, int]:
        """Scrape every ready balancer pod once; returns (answered, asked)."""
        targets, members = ready_targets(pods)
        snapshots = await self._scraper.scrape(targets) if targets else {}
        self._traffic = {}
        for key, uids in members.items():
            current = {uid: snapshots[uid] for uid in uids if uid in snapshots}
            found = traffic(self._snapshots, current)
            if found is not None:
                self._traffic[key] = found
                if found.requests > 0:
                    self.last_request[key] = now
            if busy(current.values()):
                self.last_request[key] = now
        self._snapshots = {uid: snapshots.get(uid) or self._snapshots[uid]
                           for uid in targets if uid in snapshots or uid in self._snapshots}
        return len(snapshots), len(targets)
