"""The strategies, the canary split and the budgets, on plain Replica objects."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from modelplane_balancer.budget import RetryBudget, ejection_seconds, may_eject
from modelplane_balancer.replica import WARM_SAMPLES, Replica
from modelplane_balancer.settings import Address
from modelplane_balancer.split import CanarySplit
from modelplane_balancer.strategies import make_strategy


def _replicas(n: int, weights: list[int] | None = None) -> list[Replica]:
    weights = weights or [1] * n
    return [Replica(Address(f"10.0.0.{i}", 8080), "stable", weights[i], 0.005, 0.0)
            for i in range(n)]


def _picks(name: str, replicas: list[Replica], n: int, seed: int = 1) -> Counter[str]:
    strategy = make_strategy(name, random.Random(seed), 10.0)
    strategy.reset(replicas)
    return Counter(strategy.pick(replicas, 0.0).key for _ in range(n))


def test_round_robin_is_exactly_even() -> None:
    replicas = _replicas(3)
    assert set(_picks("round-robin", replicas, 300).values()) == {100}


def test_weighted_is_smooth_and_proportional() -> None:
    replicas = _replicas(3, [5, 1, 1])
    strategy = make_strategy("weighted", random.Random(3), 10.0)
    strategy.reset(replicas)
    sequence = "".join("abc"[replicas.index(strategy.pick(replicas, 0.0))] for _ in range(7))
    assert sorted(sequence) == sorted("aaaaabc")
    assert "aaaaa" not in sequence * 2  # interleaved, as nginx's smooth round-robin
    assert _picks("weighted", replicas, 700) == Counter(
        {"10.0.0.0:8080": 500, "10.0.0.1:8080": 100, "10.0.0.2:8080": 100})


def test_weighted_on_a_filtered_list_still_follows_weights() -> None:
    replicas = _replicas(3, [3, 1, 1])
    strategy = make_strategy("weighted", random.Random(1), 10.0)
    strategy.reset(replicas)
    subset = replicas[:2]  # a retry excluding the third
    counts = Counter(strategy.pick(subset, 0.0).key for _ in range(400))
    assert counts == Counter({"10.0.0.0:8080": 300, "10.0.0.1:8080": 100})


def test_random_is_uniform() -> None:
    counts = _picks("random", _replicas(4), 8000)
    assert all(1800 < c < 2200 for c in counts.values()), counts


def test_least_request_takes_the_fewest_and_breaks_ties_at_random() -> None:
    replicas = _replicas(4)
    for replica, load in zip(replicas, (3, 1, 1, 5), strict=True):
        replica.in_flight = load
    counts = _picks("least-request", replicas, 1000)
    assert set(counts) == {"10.0.0.1:8080", "10.0.0.2:8080"}
    assert all(400 < c < 600 for c in counts.values())


def test_power_of_two_never_picks_the_busiest() -> None:
    replicas = _replicas(4)
    for replica, load in zip(replicas, (0, 1, 2, 9), strict=True):
        replica.in_flight = load
    counts = _picks("power-of-two", replicas, 2000)
    assert "10.0.0.3:8080" not in counts
    assert counts["10.0.0.0:8080"] > counts["10.0.0.1:8080"] > counts["10.0.0.2:8080"]


def test_latency_aware_prefers_the_fast_and_tries_the_slow_again_later() -> None:
    replicas = _replicas(2)
    fast, slow = replicas
    for replica in replicas:
        replica.samples = WARM_SAMPLES
    fast.ewma, slow.ewma = 0.005, 0.080
    strategy = make_strategy("latency-aware", random.Random(1), 10.0)
    assert {strategy.pick(replicas, 0.0).key for _ in range(50)} == {fast.key}
    fast.in_flight = 20  # 0.005 x 21 > 0.080 x 1: the idle slow one is now cheaper
    assert strategy.pick(replicas, 0.0) is slow
    fast.in_flight = 0
    fast.stamp = 60.0  # fast was observed recently; slow not for a minute: its cost decayed
    assert strategy.pick(replicas, 60.0) is slow


def test_peak_ewma_takes_peaks_at_once_and_decays_gently() -> None:
    replica = _replicas(1)[0]
    replica.observe(0.100, 1.0, 10.0)
    assert replica.ewma == pytest.approx(0.100)
    replica.observe(0.005, 1.1, 10.0)
    assert 0.098 < replica.ewma < 0.100
    replica.observe(0.005, 60.0, 10.0)
    assert replica.ewma < 0.01


def test_a_warming_replica_is_not_flooded() -> None:
    replicas = _replicas(2)
    old, new = replicas
    old.samples, old.ewma, old.in_flight = 100, 0.005, 50
    new.samples, new.ewma, new.in_flight = 0, 0.005, 1
    strategy = make_strategy("latency-aware", random.Random(1), 10.0)
    # new is far cheaper by cost but already holds its one warm-up request
    assert strategy.pick(replicas, 0.0) is old
    new.in_flight = 0
    assert strategy.pick(replicas, 0.0) is new


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="fastest"):
        make_strategy("fastest", random.Random(1), 10.0)


@pytest.mark.parametrize("percent", [0, 1, 5, 37, 50, 99, 100])
def test_canary_split_is_exact_per_hundred(percent: int) -> None:
    split = CanarySplit(percent, random.Random(7))
    decisions = [split.canary() for _ in range(2000)]
    assert sum(decisions) == percent * 20
    assert sum(decisions[:100]) == percent


def test_canary_split_is_not_a_fixed_pattern() -> None:
    split = CanarySplit(50, random.Random(7))
    first = [split.canary() for _ in range(100)]
    assert first != [i % 2 == 0 for i in range(100)]
    assert first != [i % 2 == 1 for i in range(100)]
    with pytest.raises(ValueError, match="between 0 and 100"):
        split.set_percent(101)


def test_retry_budget_allows_a_share_plus_a_floor() -> None:
    budget = RetryBudget(0.2, 10.0, now=0.0)
    spent = sum(budget.withdraw(0.0) for _ in range(100))
    assert spent == 10  # the floor only
    for _ in range(100):
        budget.deposit()
    assert sum(budget.withdraw(0.0) for _ in range(100)) == 20  # 20 % of 100 requests
    assert budget.withdraw(0.5)  # half a second refills five of the floor's tokens


def test_ejection_back_off_and_limit() -> None:
    assert [ejection_seconds(n, 1.0, 30.0) for n in (1, 2, 3, 6, 9)] == [1, 2, 4, 30, 30]
    assert may_eject(0, 2, 10)  # always one
    assert not may_eject(1, 2, 50)
    assert may_eject(1, 4, 50) and not may_eject(2, 4, 50)
