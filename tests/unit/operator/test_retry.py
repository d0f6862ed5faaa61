"""Backoff and Retry-After: how long the operator waits before calling the API again."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from modelplane_operator.retry import MAX_RETRY_AFTER_S, Backoff, parse_retry_after

NOW = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0), ("0.5", 0.5), (" 2 ", 2.0), ("0", 0.0), ("-4", 0.0),
        ("Tue, 24 Nov 2026 03:00:10 GMT", 10.0),  # RFC 9110 also allows an HTTP date
        ("Tue, 24 Nov 2026 02:59:00 GMT", 0.0),  # in the past: now
        ("99999", MAX_RETRY_AFTER_S),  # capped: "in a day" must not park a retry loop
        (None, None), ("", None), ("soon", None), ("nan", None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_backoff_doubles_within_its_jitter_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.2, factor=2.0, max_s=5.0, jitter=0.2)
    rng = random.Random(1)
    for attempt, base in enumerate([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]):
        delay = backoff.delay(attempt, rng=rng)
        assert base * 0.8 <= delay <= base * 1.2, (attempt, delay)
    assert backoff.delay(10_000, rng=rng) <= 6.0  # no overflow for a long outage


def test_the_servers_retry_after_wins_when_longer() -> None:
    backoff = Backoff(first_s=0.2, jitter=0.0)
    assert backoff.delay(0, retry_after=2.0) == 2.0
    assert backoff.delay(5, retry_after=1.0) == 6.4
