"""Metrics registries are per app; JSON log lines carry the request id and extras."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from modelplane_runtime.contract import METRIC_IN_FLIGHT, METRIC_REQUEST_LATENCY, METRIC_REQUESTS
from modelplane_runtime.logs import REQUEST_ID, JsonFormatter, configure_logging
from modelplane_runtime.metrics import Metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # configure_logging rewires the root logger; give pytest's back afterwards.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.request_started("m")
    first.request_finished("m", "v1", 200, 0.01)
    first.observe_batch("m", 5, 0.002)
    first.observe_load("m", 3, 1.5)
    second.request_started("m")
    one = _samples(first)
    two = _samples(second)
    key = ("modelplane_requests_total", (("code", "200"), ("model", "m"), ("protocol", "v1")))
    assert one[key] == 1
    assert key not in two
    assert one[("modelplane_requests_in_flight", (("model", "m"),))] == 0
    assert two[("modelplane_requests_in_flight", (("model", "m"),))] == 1
    assert one[("modelplane_batch_size_sum", (("model", "m"),))] == 5
    assert one[("modelplane_model_load_seconds", (("model", "m"), ("version", "3")))] == 1.5


def test_json_lines_carry_request_id_and_extras() -> None:
    stream = io.StringIO()
    configure_logging("debug", stream)
    log = logging.getLogger("modelplane.test")
    token = REQUEST_ID.set("abc-123")
    try:
        log.debug("hello %s", "world", extra={"status": 404})
    finally:
        REQUEST_ID.reset(token)
    log.info("outside a request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world"
    assert first["level"] == "debug"
    assert first["request_id"] == "abc-123"
    assert first["status"] == 404
    assert "request_id" not in second


def test_level_filters_and_exceptions_are_one_line() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream)
    log = logging.getLogger("modelplane.test")
    log.info("dropped")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def _scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_request_books_expose_what_prometheus_client_metrics_would() -> None:
    # The same requests through RequestBooks and through prometheus_client's own metric
    # types (what multi-worker mode uses) must scrape to the same samples.
    ours = Metrics()
    registry = CollectorRegistry()
    requests = Counter(METRIC_REQUESTS, "x", ("model", "protocol", "code"), registry=registry)
    latency = Histogram(
        METRIC_REQUEST_LATENCY, "x", ("model", "protocol"), registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                 5.0, 10.0, 30.0),
    )
    in_flight = Gauge(METRIC_IN_FLIGHT, "x", ("model",), registry=registry)
    answered = [
        ("seed", "v1", 200, 0.0003), ("seed", "v1", 200, 0.001), ("seed", "v2", 200, 0.0049),
        ("seed", "v1", 400, 0.025), ("seed", "v1", 200, 31.0), ("_unknown", "v2", 404, 0.0),
        ("seed", "v1", 499, 2.5),
    ]
    for model, protocol, code, seconds in answered:
        ours.request_started(model)
        in_flight.labels(model).inc()
        ours.request_finished(model, protocol, code, seconds)
        in_flight.labels(model).dec()
        requests.labels(model, protocol, str(code)).inc()
        latency.labels(model, protocol).observe(seconds)
    ours.request_started("seed")  # one still in flight
    in_flight.labels("seed").inc()
    expected = _scraped(generate_latest(registry).decode())
    got = {
        key: value
        for key, value in _scraped(ours.render().decode()).items()
        if key[0].startswith((METRIC_REQUESTS, METRIC_REQUEST_LATENCY, METRIC_IN_FLIGHT))
    }
    assert got == expected
    assert got[(METRIC_IN_FLIGHT, (("model", "seed"),))] == 1
