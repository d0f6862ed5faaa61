"""Writing ``status``: level-triggered, never recorded as written before the API says so.

Two writers touch a ModelDeployment's status: kopf, which sends the status a reconcile
returns together with its own bookkeeping (``status.kopf``) in one PATCH, and this module,
which writes what changes between reconciles (a rollout, pod health, load). Either write
can be delayed, refused or lost, so nothing here trusts a write it has not seen land:

- the status compared against is the live one, from the ModelDeployment's watch events and
  from the answers to our own writes; a status handed to kopf only counts as pending for
  ``HANDED_GRACE_S`` (so that the same fields are not written twice while kopf's PATCH is
  in flight), and is forgotten as soon as the live object shows it;
- our writes carry the ``resourceVersion`` they were computed from, so the API server
  refuses (409) a write based on a stale status; then the object is read again and the
  patch recomputed;
- every watch event of a ModelDeployment is compared with the status last computed, so a
  late write of kopf's that put back an older status is corrected at once; failed writes
  are retried with backoff (honouring ``Retry-After``); and the operator's periodic round
  recomputes every status (a resync), so any remaining difference is found within one
  ``scrape_interval_s``.

Events announce condition transitions once: what was announced is remembered, so a status
written again after a failure posts nothing new. And a write that keeps coming back
different (another writer fighting us, a server that stores a field otherwise than it was
written) is repeated with backoff, never in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from modelplane_operator.cache import Cache, Key
from modelplane_operator.events import EventPoster, transitions
from modelplane_operator.kube import ApiError, KubeClient
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.retry import Backoff
from modelplane_operator.spec import API_VERSION, KIND
from modelplane_operator.status import status_patch

log = logging.getLogger(__name__)

Wanted = Callable[[Key, Mapping[str, Any], Mapping[str, Any]], dict[str, Any] | None]
"""``(key, model deployment, current status) -> the status it should have`` (None: unknown
yet, leave it to the reconcile)."""

REFRESH_DELAY_S = 0.05
"""Events for one object arriving within this window share one status refresh."""
HANDED_GRACE_S = 10.0
"""How long a status handed to kopf counts as pending. kopf's PATCH normally lands within
milliseconds (seconds at a few hundred objects); after this, the live status is the truth
and a difference is written by this module."""
CONFLICT_RETRIES = 3
"""Immediate re-read-and-retry rounds after a 409 before falling back to backoff."""
BACKOFF = Backoff(first_s=1.0, max_s=10.0)


class StatusReporter:
    """Compares, writes and announces the status of every ModelDeployment."""

    def __init__(self, client: KubeClient, cache: Cache, events: EventPoster,
                 metrics: OperatorMetrics, wanted: Wanted, clock: Callable[[], datetime],
                 spawn: Callable[[Coroutine[Any, Any, None]], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._cache = cache
        self._events = events
        self._metrics = metrics
        self._wanted_of = wanted
        self._clock = clock
        self._spawn = spawn
        self._monotonic = monotonic
        self._handed: dict[Key, tuple[dict[str, Any], float]] = {}
        self._wanted: dict[Key, dict[str, Any]] = {}
        self._announced: dict[Key, dict[str, Any]] = {}
        self._failures: dict[Key, int] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._repeats: dict[Key, tuple[dict[str, Any], int, float]] = {}
        """Per object: the last patch written, how many times in a row, and when."""

    def close(self) -> None:
        """Cancel every scheduled refresh (at shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def lock(self, key: Key) -> asyncio.Lock:
        """The per-object lock held while a status is computed and written."""
        return self._locks.setdefault(key, asyncio.Lock())

    def forget(self, key: Key) -> None:
        """Drop everything known about a deleted ModelDeployment."""
        for store in (self._handed, self._wanted, self._announced, self._failures,
                      self._locks, self._repeats):
            store.pop(key, None)  # type: ignore[attr-defined]
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    # ---- what the status is and should be --------------------------------------------------

    def current(self, key: Key, md: Mapping[str, Any]) -> dict[str, Any]:
        """The live status, with a status handed to kopf laid over it while it is pending."""
        live = dict(md.get("status") or {})
        handed = self._handed.get(key)
        if handed is not None and self._monotonic() - handed[1] < HANDED_GRACE_S:
            return {**live, **handed[0]}
        return live

    def _announce(self, key: Key, md: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
        before = self._announced.get(key) or dict(md.get("status") or {})
        for kind, reason, message in transitions(before, wanted):
            self._events.post(md, kind, reason, message, self._clock())
        self._announced[key] = {"conditions": wanted.get("conditions")}

    def hand(self, key: Key, md: Mapping[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        """The status patch for kopf to write with its own (empty if nothing changes).

        The patch is against the live status, not against what an earlier, still pending
        hand-over would leave, so it is complete even if that one never lands.
        """
        self._wanted[key] = wanted
        if not status_patch(self.current(key, md), wanted):
            return {}
        patch = status_patch(dict(md.get("status") or {}), wanted)
        self._announce(key, md, wanted)
        handed_at = self._monotonic()
        self._handed[key] = (wanted, handed_at)
        # If kopf's write never shows up, look again once the grace period is over.
        asyncio.get_running_loop().call_later(HANDED_GRACE_S, self._expired, key, handed_at)
        return patch

    def _expired(self, key: Key, handed_at: float) -> None:
        handed = self._handed.get(key)
        if handed is not None and handed[1] == handed_at:
            del self._handed[key]
            log.info("the status handed to kopf for %s/%s has not arrived; writing it", *key)
            self.schedule(key, 0.0)

    # ---- watch events ----------------------------------------------------------------------

    def seen(self, key: Key) -> None:
        """A watch event of this ModelDeployment arrived (the cache holds its newest state):
        forget a hand-over that has landed; refresh when the live status differs from the
        last computed one (a stale write of kopf's, someone editing the status)."""
        md = self._cache.mds.get(key)
        if md is None:
            return
        live = md.get("status") or {}
        handed = self._handed.get(key)
        if handed is not None and not status_patch(live, handed[0]):
            del self._handed[key]
        wanted = self._wanted.get(key)
        if wanted is not None and status_patch(self.current(key, md), wanted):
            self.schedule(key)

    def schedule(self, key: Key, delay: float = REFRESH_DELAY_S) -> None:
        """Refresh a status within ``delay``; a burst of events for one object gives one
        refresh, and an earlier request moves a later one forward."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._spawn(self._refresh_quietly(key))

    async def _refresh_quietly(self, key: Key) -> None:
        await self.refresh(key)

    # ---- writing ---------------------------------------------------------------------------

    async def refresh(self, key: Key) -> bool:
        """Recompute one status and write the difference to the live one. True if written."""
        async with self.lock(key):
            for _ in range(CONFLICT_RETRIES):
                md = self._cache.mds.get(key)
                if md is None or md.get("metadata", {}).get("deletionTimestamp"):
                    return False
                wanted = self._wanted_of(key, md, self.current(key, md))
                if wanted is None:
                    return False  # never reconciled: the reconcile hands over the first one
                self._wanted[key] = wanted
                if not status_patch(self.current(key, md), wanted):
                    self._failures.pop(key, None)
                    return False
                patch = status_patch(dict(md.get("status") or {}), wanted)
                wait = self._repeat_wait(key, patch)
                if wait > 0:
                    self.schedule(key, wait)
                    return False
                version = md.get("metadata", {}).get("resourceVersion")
                body: dict[str, Any] = {"status": patch}
                if version:
                    body["metadata"] = {"resourceVersion": version}
                try:
                    written = await self._client.merge_patch(
                        API_VERSION, KIND, key[0], key[1], body, subresource="status")
                except ApiError as exc:
                    if exc.status == 404:
                        return False  # deleted; the watch will say so
                    if exc.status == 409 and await self._reread(key):
                        continue  # written meanwhile: compare with the new state
                    self._retry_later(key, exc)
                    return False
                self._cache.put_md(written)
                self._wrote(key, patch)
                self._handed.pop(key, None)
                self._failures.pop(key, None)
                self._announce(key, md, wanted)
                self._metrics.status_writes.inc()
                return True
            self._retry_later(key, None)
            return False

    def _repeat_wait(self, key: Key, patch: dict[str, Any]) -> float:
        last = self._repeats.get(key)
        if last is None or last[0] != patch or last[1] < 2:
            return 0.0
        return max(0.0, BACKOFF.delay(last[1] - 2) - (self._monotonic() - last[2]))

    def _wrote(self, key: Key, patch: dict[str, Any]) -> None:
        last = self._repeats.get(key)
        count = last[1] + 1 if last is not None and last[0] == patch else 1
        if count == 3:
            log.warning("the status of %s/%s keeps changing back after our writes; writing "
                        "it again with backoff: %s", *key, sorted(patch))
        self._repeats[key] = (patch, count, self._monotonic())

    async def _reread(self, key: Key) -> bool:
        try:
            fresh = await self._client.get(API_VERSION, KIND, key[0], key[1])
        except ApiError as exc:
            log.info("could not read %s/%s after a conflict: %s", *key, exc)
            return False
        self._cache.put_md(fresh)
        return True

    def _retry_later(self, key: Key, exc: ApiError | None) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = BACKOFF.delay(failures, exc.retry_after if exc is not None else None)
        self._metrics.errors.labels("api").inc()
        log.warning("could not write the status of %s/%s (%s); again in %.1fs", *key,
                    exc if exc is not None else "conflicting writes", delay)
        self.schedule(key, delay)
