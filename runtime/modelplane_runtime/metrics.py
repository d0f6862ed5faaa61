"""Prometheus metrics of one runtime app (names in contract.py), on its own registry.

``Metrics`` is also the data plane's ``InferenceObserver``: the batcher reports each model
call (rows, seconds) and each model load. Labelled children are cached so the per-request
cost is a dict lookup and a few locked float additions.

With ``--workers N`` every worker process writes its values to files in a private
temporary folder (prometheus_client's multiprocess mode, chosen by
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported; see workers.py), and
whichever worker answers a scrape renders the sum over all of them.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from modelplane_runtime import contract

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode; set only by workers.py, to a temp dir."""

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class Metrics:
    """The runtime's metrics on a private registry (several apps in one process never clash)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self._requests = Counter(
            contract.METRIC_REQUESTS,
            "Requests answered, by model, protocol (v1|v2) and HTTP status code.",
            ("model", "protocol", "code"),
            registry=self.registry,
        )
        self._request_latency = Histogram(
            contract.METRIC_REQUEST_LATENCY,
            "Whole-request latency in seconds, by model and protocol.",
            ("model", "protocol"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._inference_latency = Histogram(
            contract.METRIC_INFERENCE_LATENCY,
            "Model-call latency in seconds (one observation per batch), by model.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            contract.METRIC_IN_FLIGHT,
            "Requests being served, by model.",
            ("model",),
            registry=self.registry,
            multiprocess_mode="livesum",  # only live workers' requests are in flight
        )
        self._batch_size = Histogram(
            contract.METRIC_BATCH_SIZE,
            "Rows per model call, by model.",
            ("model",),
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._model_load = Gauge(
            contract.METRIC_MODEL_LOAD,
            "Seconds the last load of each model version took.",
            ("model", "version"),
            registry=self.registry,
            multiprocess_mode="max",  # the slowest worker's load
        )
        self._children: dict[tuple[str, str, int], tuple[Gauge, Counter, Histogram]] = {}
        self._in_flight_children: dict[str, Gauge] = {}

    def request_started(self, model: str) -> None:
        """A request for ``model`` was accepted."""
        gauge = self._in_flight_children.get(model)
        if gauge is None:
            gauge = self._in_flight_children[model] = self._in_flight.labels(model)
        gauge.inc()

    def request_finished(self, model: str, protocol: str, code: int, seconds: float) -> None:
        """A request for ``model`` was answered with ``code`` after ``seconds``."""
        # One dict lookup for the pre-bound children of this (model, protocol, code).
        children = self._children.get((model, protocol, code))
        if children is None:
            children = self._children[(model, protocol, code)] = (
                self._in_flight.labels(model),
                self._requests.labels(model, protocol, str(code)),
                self._request_latency.labels(model, protocol),
            )
        in_flight, counter, latency = children
        in_flight.dec()
        counter.inc()
        latency.observe(seconds)

    def observe_batch(self, model: str, rows: int, seconds: float) -> None:
        """One model call of ``rows`` rows took ``seconds`` (InferenceObserver)."""
        self._batch_size.labels(model).observe(rows)
        self._inference_latency.labels(model).observe(seconds)

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        """Loading ``model`` version ``version`` took ``seconds`` (InferenceObserver)."""
        self._model_load.labels(model, str(version)).set(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format (summed over workers)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
