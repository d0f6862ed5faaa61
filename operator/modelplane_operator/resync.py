"""Finding the ModelDeployments kopf has lost track of: bookkeeping only, no I/O.

kopf retries a failed handler by writing its progress into the object's status and, once
the delay has passed, "touching" the object (one more status patch) so that the watch
event it causes wakes the object's worker again (kopf 1.45, ``_core/actions/
application.py``). Each of those is a single write: when one fails for good (a 409, or an
error that outlasts kopf's own 8 retries) kopf logs it, pauses the object (its error
throttler, which ignores the events arriving meanwhile) and handles the object again only
when another watch event arrives. A ModelDeployment whose reconcile never completed has no
status for the operator to write, so no such event comes: it stays half-applied and
status-less for good (seen at 10 % API faults: a 409 on kopf's touch after a child's
create had failed). Controllers built on client-go have no such hole: a failed reconcile
is requeued in memory by the workqueue's rate limiter, whatever happens to any write.

So the controller keeps its own record: per object, when kopf last showed that it is on
it (delivered an event, started or ended the handler, scheduled a retry) and since when
the object's current generation has waited for a reconcile. One whose generation is still
not reconciled ``lost_after`` seconds after both is lost: the controller reconciles it
itself. A converged object costs one comparison per round and never a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from modelplane_operator.cache import Key


class Resync:
    """Which ModelDeployments wait for a reconcile that kopf is no longer going to run."""

    def __init__(self, lost_after: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lost_after = lost_after
        self._monotonic = monotonic
        self._active: dict[Key, float] = {}
        """Per object: when kopf last acted on it, or when its scheduled retry is due."""
        self._behind: dict[Key, tuple[int, float]] = {}
        """Per object not reconciled at its current generation: that generation, and when
        it was first seen unreconciled."""

    def active(self, key: Key, retry_in: float = 0.0) -> None:
        """kopf is on this object now (``retry_in``: and has promised a retry that much
        later); also used after a failed resync, to wait ``lost_after`` again."""
        due = self._monotonic() + retry_in
        self._active[key] = max(self._active.get(key, due), due)

    def forget(self, key: Key) -> None:
        """The object was deleted."""
        self._active.pop(key, None)
        self._behind.pop(key, None)

    def lost(self, mds: Mapping[Key, Mapping[str, Any]], observed: Mapping[Key, int],
             busy: Callable[[Key], bool]) -> list[Key]:
        """The objects to reconcile now: their generation is not in ``observed`` (the
        generation each was last reconciled at), nobody is reconciling them (``busy``),
        and kopf has been silent about them for ``lost_after`` seconds."""
        now = self._monotonic()
        found = []
        for key, md in mds.items():
            meta = md.get("metadata", {})
            generation = int(meta.get("generation") or 0)
            if observed.get(key) == generation or meta.get("deletionTimestamp"):
                self._behind.pop(key, None)
                continue
            behind = self._behind.get(key)
            if behind is None or behind[0] != generation:
                self._behind[key] = (generation, now)
                behind = self._behind[key]
            quiet_since = max(behind[1], self._active.get(key, behind[1]))
            if now - quiet_since >= self.lost_after and not busy(key):
                found.append(key)
        return found
