"""The stable/canary split: exactly ``percent`` of every 100 requests go to the canary.

A fixed pattern (every tenth request for 10 %) would be exact too, but a client whose
requests alternate in a pattern of its own could then send one kind of request to one
track only; a shuffled block of 100 keeps the count exact per hundred and the order random.
"""

from __future__ import annotations

import random

BLOCK = 100


class CanarySplit:
    """Decides per request whether it goes to the canary track."""

    def __init__(self, percent: int, rng: random.Random) -> None:
        self._rng = rng
        self._block: list[bool] = []
        self._position = 0
        self.percent = -1
        self.set_percent(percent)

    def set_percent(self, percent: int) -> None:
        """A new share (0-100); starts a new block so the new share is exact from here."""
        if not 0 <= percent <= 100:
            raise ValueError(f"canary percent {percent} is not between 0 and 100")
        if percent == self.percent:
            return
        self.percent = percent
        self._refill()

    def _refill(self) -> None:
        block = [True] * self.percent + [False] * (BLOCK - self.percent)
        self._rng.shuffle(block)
        self._block = block
        self._position = 0

    def canary(self) -> bool:
        """True when the next request goes to the canary."""
        position = self._position
        if position >= BLOCK:
            self._refill()
            position = 0
        self._position = position + 1
        return self._block[position]
