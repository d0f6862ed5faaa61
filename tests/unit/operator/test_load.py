"""Load maths: PromQL-style quantiles from bucket deltas, counter rates, resets, aggregation.

Snapshots are parsed from text produced by a real prometheus_client registry with the
runtime's metric names, so the parser is tested against the format the runtime exposes.
"""

from __future__ import annotations

import math

import pytest
from modelplane_operator.load import (
    Snapshot,
    aggregate,
    histogram_quantile,
    merge_buckets,
    parse_snapshot,
    window,
)
from modelplane_runtime import contract
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class FakeRuntimeMetrics:
    """The runtime's request metrics, recorded through prometheus_client itself."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(contract.METRIC_REQUESTS.removesuffix("_total"), "requests",
                                ["model", "protocol", "code"], registry=self.registry)
        self.latency = Histogram(contract.METRIC_REQUEST_LATENCY, "latency",
                                 ["model", "protocol"], buckets=BUCKETS, registry=self.registry)
        self.in_flight = Gauge(contract.METRIC_IN_FLIGHT, "in flight", ["model"],
                               registry=self.registry)

    def serve(
        self, seconds: float, code: int | str = 200, protocol: str = "v2", n: int = 1
    ) -> None:
        for _ in range(n):
            self.requests.labels("m", protocol, str(code)).inc()
            self.latency.labels("m", protocol).observe(seconds)

    def snapshot(self, at: float) -> Snapshot:
        return parse_snapshot(generate_latest(self.registry).decode(), at)


# ---- histogram_quantile, checked against values PromQL gives for the same buckets ---------

CUMULATIVE = ((0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0))


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.1), (0.25, 0.05), (0.9, 0.5), (0.95, 0.75), (0.7, 0.3), (1.0, 1.0)],
)
def test_quantile_interpolates_linearly_within_the_bucket(q: float, expected: float) -> None:
    assert histogram_quantile(q, CUMULATIVE) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = ((0.1, 50.0), (1.0, 100.0), (math.inf, 110.0))
    assert histogram_quantile(0.99, buckets) == pytest.approx(1.0)


def test_quantile_is_none_where_promql_gives_nan() -> None:
    assert histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None  # no observations
    assert histogram_quantile(0.5, ((0.1, 3.0), (1.0, 5.0))) is None  # no +Inf bucket
    assert histogram_quantile(0.5, ((math.inf, 5.0),)) is None  # one bucket


def test_quantile_repairs_non_monotonic_counts() -> None:
    # Float noise in summed buckets must not make a later bucket smaller (ensureMonotonic).
    buckets = ((0.1, 10.0), (0.2, 9.999), (0.4, 20.0), (math.inf, 20.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)


def test_quantile_rejects_out_of_range_q() -> None:
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, CUMULATIVE)


# ---- parsing and windows ------------------------------------------------------------------


def test_parse_sums_every_label_and_separates_server_errors() -> None:
    runtime = FakeRuntimeMetrics()
    runtime.serve(0.02, n=5)
    runtime.serve(0.02, protocol="v1", n=3)
    runtime.serve(0.3, code=503, n=2)
    runtime.serve(0.001, code=400, n=4)
    runtime.in_flight.labels("m").set(3)
    snap = runtime.snapshot(10.0)
    assert snap.requests == 14
    assert snap.server_errors == 2
    assert snap.in_flight == 3
    assert snap.buckets[-1] == (math.inf, 14.0)
    assert dict(snap.buckets)[0.025] == 12.0  # 5 + 3 at 20 ms, 4 at 1 ms


def test_grpc_server_side_codes_are_server_errors_and_client_ones_are_not() -> None:
    runtime = FakeRuntimeMetrics()
    runtime.serve(0.02, code="OK", protocol="grpc", n=5)
    runtime.serve(0.02, code="UNAVAILABLE", protocol="grpc", n=2)
    runtime.serve(0.02, code="DEADLINE_EXCEEDED", protocol="grpc", n=1)
    runtime.serve(0.02, code="INVALID_ARGUMENT", protocol="grpc", n=4)
    snap = runtime.snapshot(10.0)
    assert (snap.requests, snap.server_errors) == (12, 3)


def test_rate_and_quantiles_come_from_the_window_not_the_lifetime() -> None:
    runtime = FakeRuntimeMetrics()
    runtime.serve(0.9, n=100)  # slow history before the window
    before = runtime.snapshot(100.0)
    runtime.serve(0.007, n=40)  # the window: 40 fast requests in 4 s
    after = runtime.snapshot(104.0)

    load = aggregate({"pod": before}, {"pod": after})
    assert load is not None
    assert load.requests_per_second == pytest.approx(10.0)
    # All 40 in (0.005, 0.01]: p50 at rank 20 of 40 -> halfway through the bucket.
    assert load.latency_p50_ms == pytest.approx(7.5)
    assert load.latency_p99_ms == pytest.approx(5 + 5 * 39.6 / 40)
    assert load.error_rate == 0.0


def test_counter_reset_counts_the_new_value_as_the_increase() -> None:
    old = FakeRuntimeMetrics()
    old.serve(0.02, n=500)
    before = old.snapshot(0.0)
    restarted = FakeRuntimeMetrics()  # the process restarted: counters start from zero
    restarted.serve(0.02, n=30)
    after = restarted.snapshot(10.0)

    result = window(before, after)
    assert result is not None
    assert result.requests == 30
    assert dict(result.buckets)[math.inf] == 30


def test_window_needs_time_to_pass() -> None:
    snap = FakeRuntimeMetrics().snapshot(5.0)
    assert window(snap, snap) is None


def test_error_rate_is_the_share_of_5xx_in_the_window() -> None:
    runtime = FakeRuntimeMetrics()
    before = runtime.snapshot(0.0)
    runtime.serve(0.01, n=90)
    runtime.serve(0.01, code=500, n=6)
    runtime.serve(0.01, code=404, n=4)  # the client's mistake: not an error of the model
    load = aggregate({"a": before}, {"a": runtime.snapshot(2.0)})
    assert load is not None
    assert load.error_rate == pytest.approx(0.06)
    assert load.requests_per_second == pytest.approx(50.0)


def test_aggregate_sums_replicas_and_merges_their_histograms() -> None:
    fast, slow = FakeRuntimeMetrics(), FakeRuntimeMetrics()
    first = {"fast": fast.snapshot(0.0), "slow": slow.snapshot(0.0)}
    fast.serve(0.003, n=98)
    slow.serve(0.7, n=2)
    slow.in_flight.labels("m").set(2)
    fast.in_flight.labels("m").set(1)
    load = aggregate(first, {"fast": fast.snapshot(2.0), "slow": slow.snapshot(1.0)})
    assert load is not None
    assert load.requests_per_second == pytest.approx(98 / 2 + 2 / 1)
    assert load.in_flight == 3
    assert load.latency_p50_ms == pytest.approx(5 * 50 / 98)
    # rank 99 of 100 falls in (0.5, 1.0], which holds the 2 slow requests.
    assert load.latency_p99_ms == pytest.approx(500 + 500 * 1 / 2)
    assert load.pods == 2


def test_first_scrape_has_no_rate_yet_but_reports_in_flight() -> None:
    runtime = FakeRuntimeMetrics()
    runtime.in_flight.labels("m").set(4)
    load = aggregate({}, {"new": runtime.snapshot(1.0)})
    assert load is not None
    assert load.requests_per_second is None
    assert load.latency_p99_ms is None
    assert load.in_flight == 4
    assert load.as_status() == {"inFlight": 4}


def test_idle_window_has_zero_rate_and_no_latency() -> None:
    runtime = FakeRuntimeMetrics()
    load = aggregate({"a": runtime.snapshot(0.0)}, {"a": runtime.snapshot(10.0)})
    assert load is not None
    assert load.as_status() == {"requestsPerSecond": 0.0, "inFlight": 0, "errorRate": 0.0}


def test_no_pods_means_no_load() -> None:
    assert aggregate({}, {}) is None


def test_merge_keeps_only_bounds_every_pod_has() -> None:
    merged = merge_buckets([((0.1, 1.0), (math.inf, 2.0)), ((0.1, 3.0), (0.2, 4.0),
                                                             (math.inf, 5.0))])
    assert merged == ((0.1, 4.0), (math.inf, 7.0))


def test_status_fields_are_rounded_camel_case() -> None:
    runtime = FakeRuntimeMetrics()
    before = runtime.snapshot(0.0)
    runtime.serve(0.0123, n=7)
    load = aggregate({"a": before}, {"a": runtime.snapshot(3.0)})
    assert load is not None
    fields = load.as_status()
    assert set(fields) == {"requestsPerSecond", "inFlight", "latencyP50Ms", "latencyP99Ms",
                           "errorRate"}
    assert fields["requestsPerSecond"] == 2.33


def test_model_versions_come_from_the_load_gauge() -> None:
    one, two = FakeRuntimeMetrics(), FakeRuntimeMetrics()
    for runtime, versions in ((one, ("2", "10")), (two, ("2",))):
        gauge = Gauge(contract.METRIC_MODEL_LOAD, "load", ["model", "version"],
                      registry=runtime.registry)
        for version in versions:
            gauge.labels("m", version).set(1.5)
    load = aggregate({}, {"a": one.snapshot(1.0), "b": two.snapshot(1.0)})
    assert load is not None
    assert load.versions == ("2", "10")
    assert load.model_version == "2,10"
