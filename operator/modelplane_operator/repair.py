"""Restoring children that someone changed or deleted: retried until they are back.

The watch of the children (watch.py) sees a hand edit or a deletion; the controller asks
for a repair; here the child is re-applied in a background task, one per child, with
backoff (honouring ``Retry-After``) until it matches the spec again, the owner no longer
wants it, or the API server refuses it for good (then an Event says so). A repair asked
for while one runs makes the running one check again before it ends, so no event is lost
and no two tasks write the same child.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modelplane_operator.apply import Applier
from modelplane_operator.cache import ChildKey, Key
from modelplane_operator.events import EventPoster
from modelplane_operator.kube import ApiError
from modelplane_operator.metrics import OperatorMetrics
from modelplane_operator.retry import Backoff

log = logging.getLogger(__name__)

BACKOFF = Backoff(first_s=0.5, max_s=30.0)
"""Between attempts to restore a child."""

Desired = Callable[[Key, ChildKey], tuple[Mapping[str, Any], dict[str, Any]] | None]
"""``(owner key, child key) -> (owner, the child as rendered)``, or None if not wanted."""


class Repairer:
    """Background restores of children, one task per child."""

    def __init__(self, applier: Applier, events: EventPoster, metrics: OperatorMetrics,
                 desired: Desired, clock: Callable[[], datetime]) -> None:
        self._applier = applier
        self._events = events
        self._metrics = metrics
        self._desired = desired
        self._clock = clock
        self._running: dict[ChildKey, asyncio.Task[None]] = {}
        self._again: set[ChildKey] = set()

    def request(self, md_key: Key, ck: ChildKey, how: str) -> None:
        """Restore one child of ``md_key`` that was ``how`` ("changed", "deleted")."""
        if ck in self._running:
            self._again.add(ck)
            return
        task = asyncio.create_task(self._restore(md_key, ck, how))
        self._running[ck] = task
        task.add_done_callback(lambda _: self._running.pop(ck, None))

    async def _restore(self, md_key: Key, ck: ChildKey, how: str) -> None:
        attempt = 0
        while True:
            self._again.discard(ck)
            found = self._desired(md_key, ck)
            if found is None:
                return  # the owner went away or no longer wants this child
            md, desired = found
            try:
                outcome = await self._applier.apply(desired)
            except ApiError as exc:
                self._metrics.errors.labels("api").inc()
                if exc.status in (403, 404) and not exc.repeatable:
                    # The namespace is being deleted: nothing to restore.
                    log.info("not restoring %s %s/%s: %s", *ck, exc)
                    return
                if exc.refused:
                    log.warning("cannot restore %s %s/%s: %s", *ck, exc)
                    self._events.post(md, "Warning", "ChildRejected",
                                      f"restoring {ck[0]} {ck[2]}: {exc}", self._clock())
                    return
                delay = BACKOFF.delay(attempt, exc.retry_after)
                attempt += 1
                log.warning("could not restore %s %s/%s (%s); again in %.1fs", *ck, exc, delay)
                await asyncio.sleep(delay)
                continue
            if outcome != "unchanged":
                self._metrics.child_writes.labels(ck[0], outcome).inc()
                log.info("%s %s/%s was %s; restored", ck[0], ck[1], ck[2], how)
                self._events.post(md, "Normal", "Restored",
                                  f"{ck[0]} {ck[2]} was {how} outside the operator; restored",
                                  self._clock())
            if ck not in self._again:
                return

    async def close(self) -> None:
        """Cancel running repairs (at shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
