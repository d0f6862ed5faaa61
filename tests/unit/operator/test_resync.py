"""resync.Resync: which ModelDeployments kopf has lost (pure bookkeeping, a fake clock)."""

from __future__ import annotations

from typing import Any

from modelplane_operator.cache import Key
from modelplane_operator.resync import Resync

KEY: Key = ("ns", "md")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def md(generation: int, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "md", "namespace": "ns", "generation": generation, **meta}}


def idle(_: Key) -> bool:
    return False


def test_a_reconciled_generation_is_never_lost() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    for _ in range(3):
        assert resync.lost({KEY: md(2)}, {KEY: 2}, idle) == []
        clock.now += 1000


def test_an_unreconciled_generation_is_lost_once_kopf_is_silent_long_enough() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    resync.active(KEY)  # kopf delivered the event
    assert resync.lost({KEY: md(1)}, {}, idle) == []
    clock.now += 29.9
    assert resync.lost({KEY: md(1)}, {}, idle) == []
    clock.now += 0.1
    assert resync.lost({KEY: md(1)}, {}, idle) == [KEY]
    # Reconciled meanwhile: no longer lost.
    assert resync.lost({KEY: md(1)}, {KEY: 1}, idle) == []


def test_kopf_activity_and_scheduled_retries_postpone_it() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    resync.lost({KEY: md(1)}, {}, idle)
    clock.now += 20
    resync.active(KEY, retry_in=60)  # the handler failed; kopf retries in 60 s
    clock.now += 5
    resync.active(KEY)  # kopf's own patch came back as an event: the retry still stands
    clock.now += 55 + 29  # the retry was due 55 s after that event
    assert resync.lost({KEY: md(1)}, {}, idle) == []
    clock.now += 1
    assert resync.lost({KEY: md(1)}, {}, idle) == [KEY]


def test_a_new_generation_waits_afresh() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    assert resync.lost({KEY: md(1)}, {}, idle) == []  # first seen unreconciled now
    clock.now += 40
    # A spec change just arrived (say through our own status write's answer), kopf has
    # not delivered it yet: that is not lost, however long generation 1 waited.
    assert resync.lost({KEY: md(2)}, {KEY: 1}, idle) == []
    clock.now += 30
    assert resync.lost({KEY: md(2)}, {KEY: 1}, idle) == [KEY]


def test_busy_and_deleting_objects_are_left_alone() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    deleting = md(1, deletionTimestamp="2026-01-01T00:00:00Z")
    resync.lost({KEY: md(1)}, {}, idle)
    clock.now += 31
    assert resync.lost({KEY: md(1)}, {}, lambda key: key == KEY) == []
    assert resync.lost({KEY: deleting}, {}, idle) == []


def test_forget_drops_a_deleted_object() -> None:
    clock = Clock()
    resync = Resync(30.0, clock)
    resync.active(KEY, retry_in=600)
    resync.lost({KEY: md(1)}, {}, idle)
    resync.forget(KEY)
    clock.now += 31
    assert resync.lost({KEY: md(1)}, {}, idle) == []  # seen afresh: waits from now
    clock.now += 30
    assert resync.lost({KEY: md(1)}, {}, idle) == [KEY]
