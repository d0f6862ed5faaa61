"""Scraping the runtime pods' ``/metrics`` concurrently, each with a short timeout.

A pod that does not answer in time is left out of this round (its previous snapshot is
kept, so the next successful scrape still gives a correct rate over a longer window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
from modelplane_runtime import contract

from modelplane_operator.load import Load, Snapshot, aggregate, parse_snapshot
from modelplane_operator.status import pod_ready

log = logging.getLogger(__name__)


class Scraper:
    """Scrapes pod IPs on one port with a shared session and a global concurrency limit."""

    def __init__(
        self, session: aiohttp.ClientSession, *, port: int, timeout_s: float, concurrency: int
    ) -> None:
        self._session = session
        self._port = port
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limit = asyncio.Semaphore(concurrency)

    def url(self, pod_ip: str) -> str:
        """Where a pod's metrics are."""
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return f"http://{host}:{self._port}{contract.METRICS_PATH}"

    async def scrape_one(self, pod_ip: str) -> Snapshot | None:
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
            return parse_snapshot(text, taken_at)
        except ValueError as exc:
            log.warning("metrics of %s are not in the Prometheus text format: %s", pod_ip, exc)
            return None

    async def scrape(self, pods: Mapping[str, str]) -> dict[str, Snapshot]:
        """Snapshots of all pods (``{uid: ip}``) that answered, keyed by uid."""
        keys = list(pods)
        results = await asyncio.gather(*(self.scrape_one(pods[key]) for key in keys))
        return {key: snap for key, snap in zip(keys, results, strict=True) if snap is not None}


class LoadTracker:
    """The load of every ModelDeployment, from one scrape round to the next."""

    def __init__(self, scraper: Scraper) -> None:
        self._scraper = scraper
        self._snapshots: dict[str, Snapshot] = {}
        self._loads: dict[tuple[str, str], tuple[Load, datetime]] = {}
        self._latest: dict[tuple[str, str], dict[str, Snapshot]] = {}

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

    async def round(self, pods: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
                    now: datetime) -> tuple[int, int]:
        """Scrape every ready pod once (pods by ModelDeployment); returns (answered, asked)."""
        targets: dict[str, str] = {}
        members: dict[tuple[str, str], list[str]] = {}
        names: dict[str, str] = {}
        for key, by_name in pods.items():
            for name, pod in by_name.items():
                ip = pod.get("status", {}).get("podIP")
                meta = pod.get("metadata", {})
                uid = str(meta.get("uid") or meta.get("name"))
                if ip and pod_ready(pod):
                    targets[uid] = str(ip)
                    members.setdefault(key, []).append(uid)
                    names[uid] = name
        snapshots = await self._scraper.scrape(targets) if targets else {}
        self._latest = {key: {names[uid]: snapshots[uid] for uid in uids if uid in snapshots}
                        for key, uids in members.items()}
        self._loads = {key: value for key, value in self._loads.items() if key in members}
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
