"""Limits that keep failures from multiplying: the retry budget and ejection back-off.

Both pure (the clock is passed in).
"""

from __future__ import annotations


class RetryBudget:
    """Retries may add at most ``ratio`` of the traffic, plus ``min_per_s`` (Finagle's
    ``RetryBudget``; Envoy's ``retry_budget``), so a failing fleet is not hit twice as hard.

    Each request deposits ``ratio`` of a token (up to ``cap``); a retry takes one token, or
    failing that one of the ``min_per_s`` tokens that refill with time.
    """

    def __init__(self, ratio: float, min_per_s: float, now: float, cap: float = 1000.0) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.cap = cap
        self._tokens = 0.0
        self._reserve = min_per_s
        self._stamp = now

    def deposit(self) -> None:
        """One request was sent."""
        tokens = self._tokens + self.ratio
        self._tokens = tokens if tokens < self.cap else self.cap

    def withdraw(self, now: float) -> bool:
        """True (and a token spent) when a retry may be made now."""
        if self._tokens >= 1.0 - 1e-9:  # 5 x 0.2 is 0.9999999999999999 in floats
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        elapsed = now - self._stamp
        self._stamp = now
        self._reserve = min(self.min_per_s, self._reserve + elapsed * self.min_per_s)
        if self._reserve >= 1.0:
            self._reserve -= 1.0
            return True
        return False


def ejection_seconds(ejections: int, base_s: float, max_s: float) -> float:
    """How long the ``ejections``-th ejection in a row lasts: base, 2x, 4x ... up to max."""
    return min(max_s, base_s * (2.0 ** max(0, ejections - 1)))


def may_eject(ejected: int, total: int, max_percent: int) -> bool:
    """Whether one more replica of ``total`` may be ejected when ``ejected`` already are:
    at most ``max_percent`` of them, but always at least one (Envoy's rule)."""
    if ejected == 0:
        return total > 0
    return (ejected + 1) * 100 <= total * max_percent
