"""shares.py: the balancers' /metrics into each replica's share, rate and latency."""

from __future__ import annotations

import pytest
from modelplane_operator.shares import busy, host_of, parse_balancer, traffic

BOUNDS = (0.005, 0.01, 0.025, float("inf"))


def _text(replicas: dict[str, tuple[int, tuple[int, ...]]], own: int = 0,
          waiting: int = 0, in_flight: int = 0) -> str:
    """Metrics in the balancer's format (metrics.py): requests by replica and code, the
    latency histogram by replica, the balancer's own answers under replica=""."""
    lines = ["# HELP modelplane_balancer_requests_total Answered requests.",
             "# TYPE modelplane_balancer_requests_total counter"]
    for replica, (count, _) in replicas.items():
        lines.append(f'modelplane_balancer_requests_total{{model="m",replica="{replica}",'
                     f'track="stable",code="200"}} {count}')
    if own:
        lines.append('modelplane_balancer_requests_total{model="m",replica="",track="",'
                     f'code="503"}} {own}')
    lines += ["# HELP modelplane_balancer_request_duration_seconds Seconds.",
              "# TYPE modelplane_balancer_request_duration_seconds histogram"]
    for replica, (count, buckets) in replicas.items():
        base = f'model="m",replica="{replica}",track="stable"'
        for bound, cumulative in zip(BOUNDS, buckets, strict=True):
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'modelplane_balancer_request_duration_seconds_bucket{{{base},'
                         f'le="{le}"}} {cumulative}')
        lines.append(f"modelplane_balancer_request_duration_seconds_sum{{{base}}} 1.0")
        lines.append(f"modelplane_balancer_request_duration_seconds_count{{{base}}} {count}")
    lines += ["# HELP modelplane_balancer_requests_in_flight In flight.",
              "# TYPE modelplane_balancer_requests_in_flight gauge",
              f'modelplane_balancer_requests_in_flight{{model="m",replica="10.0.0.1:8080",'
              f'track="stable"}} {in_flight}',
              "# HELP modelplane_balancer_requests_waiting Waiting.",
              "# TYPE modelplane_balancer_requests_waiting gauge",
              f'modelplane_balancer_requests_waiting{{model="m"}} {waiting}']
    return "\n".join(lines) + "\n"


def test_parse_reads_replicas_own_answers_and_gauges() -> None:
    snap = parse_balancer(_text({"10.0.0.1:8080": (10, (5, 8, 10, 10))}, own=3, waiting=2,
                                in_flight=1), taken_at=5.0)
    assert snap.replicas["10.0.0.1:8080"].requests == 10
    assert snap.replicas["10.0.0.1:8080"].buckets == tuple(zip(BOUNDS, (5, 8, 10, 10),
                                                               strict=True))
    assert (snap.own_answers, snap.waiting, snap.in_flight, snap.requests) == (3, 2, 1, 13)
    assert busy([snap])
    with pytest.raises(ValueError, match="could not convert"):
        parse_balancer("not { metrics", 0.0)


def test_shares_rates_and_latency_over_two_balancers() -> None:
    a, b = "10.0.0.1:8080", "10.0.0.2:8080"
    previous = {
        "lb-1": parse_balancer(_text({a: (100, (100, 100, 100, 100)),
                                      b: (100, (100, 100, 100, 100))}), 0.0),
        "lb-2": parse_balancer(_text({a: (0, (0, 0, 0, 0))}), 0.0),
    }
    # In 10 s: a got 60 + 30 requests (all under 5 ms), b got 30, some of them slow.
    current = {
        "lb-1": parse_balancer(_text({a: (160, (160, 160, 160, 160)),
                                      b: (130, (100, 110, 130, 130))}, own=4), 10.0),
        "lb-2": parse_balancer(_text({a: (30, (30, 30, 30, 30))}), 10.0),
    }
    seen = traffic(previous, current)
    assert seen is not None
    assert seen.requests == 60 + 30 + 30 + 4
    assert seen.replicas["10.0.0.1"].requests_per_second == pytest.approx(9.0)
    assert seen.replicas["10.0.0.2"].requests_per_second == pytest.approx(3.0)
    assert seen.replicas["10.0.0.1"].share == pytest.approx(0.75)
    assert seen.replicas["10.0.0.2"].share == pytest.approx(0.25)
    p99_fast = seen.replicas["10.0.0.1"].latency_p99_ms
    p99_slow = seen.replicas["10.0.0.2"].latency_p99_ms
    assert p99_fast is not None and p99_slow is not None
    assert p99_fast <= 5.0 < 10.0 < p99_slow <= 25.0


def test_a_restarted_balancer_counts_from_zero_and_one_scrape_is_no_window() -> None:
    a = "10.0.0.1:8080"
    before = {"lb": parse_balancer(_text({a: (500, (500, 500, 500, 500))}), 0.0)}
    after = {"lb": parse_balancer(_text({a: (20, (20, 20, 20, 20))}), 5.0)}
    seen = traffic(before, after)
    assert seen is not None and seen.replicas["10.0.0.1"].requests_per_second == 4.0
    assert traffic({}, after) is None
    idle = traffic(after, {"lb": parse_balancer(_text({a: (20, (20, 20, 20, 20))}), 9.0)})
    assert idle is not None and idle.requests == 0
    assert idle.replicas["10.0.0.1"].share == 0.0
    assert not busy(after.values())


def test_host_of_replica_keys() -> None:
    assert host_of("10.1.2.3:8080") == "10.1.2.3"
    assert host_of("[fd00::1]:8080") == "fd00::1"
