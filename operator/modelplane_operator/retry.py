"""How long to wait before trying a failed API call again: pure, no I/O.

The API server asks clients to come back later in two ways: 429 Too Many Requests (API
Priority and Fairness rejecting a request, or an eviction blocked by a PDB) and 503 with a
``Retry-After`` header, in seconds (RFC 9110 §10.2.3 also allows an HTTP date). client-go
honours the header and otherwise backs off exponentially with jitter; so does this module,
with a cap, so that a server saying "in an hour" cannot park a retry loop for an hour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 120.0
"""Longest server-requested wait honoured (longer requests wait this long)."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``first_s``, doubling, capped at ``max_s``."""

    first_s: float = 0.2
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2
    """Each delay is spread by +-``jitter`` of itself, so many retries do not align."""

    def delay(self, attempt: int, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (0 for the first retry).

        A server's ``Retry-After`` wins when it asks for longer than the backoff.
        """
        base = min(self.max_s, self.first_s * self.factor ** min(attempt, 32))
        spread = 1.0 + self.jitter * (2.0 * (rng or random).random() - 1.0)
        wait = base * spread
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait
