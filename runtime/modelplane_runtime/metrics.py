"""Prometheus metrics of one runtime app (names in contract.py), on its own registry.

``Metrics`` is also the data plane's ``InferenceObserver``: the batcher reports each model
call (rows, seconds) and each model load.

The three per-request metrics (count, latency, in flight) are kept by ``RequestBooks``:
plain ints and floats updated on the event loop (~0.5 us a request, against ~2.3 us for
prometheus_client's locked values: five lock round trips), turned into metric families
when scraped, in the same exposition format.

With ``--workers N`` every worker process writes its values to files in a private
temporary folder (prometheus_client's multiprocess mode, chosen by
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported; see server/workers.py), and
whichever worker answers a scrape renders the sum over all of them.

Resource series are read when scraped, in both modes: every runtime process's CPU, memory
and file descriptors (processes.py: per process, labelled ``worker``, never summed) and
the visible GPUs (gpus.py).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from functools import partial
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelplane_runtime import contract
from modelplane_runtime.gpus import GpuCollector
from modelplane_runtime.processes import ProcessCollector, own_process, read_process_map

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode; set only by server/workers.py, to a temp dir."""

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


_REQUESTS_HELP: Final = "Requests answered, by model, protocol (v1|v2) and HTTP status code."
_LATENCY_HELP: Final = "Whole-request latency in seconds, by model and protocol."
_IN_FLIGHT_HELP: Final = "Requests being served, by model."


class RequestBooks(Collector):
    """Per-request metrics in plain numbers, exposed as metric families when scraped.

    Updated only on the event loop (both request paths run there) and read by ``collect``
    on a scrape, also on the loop; a histogram observation is a bisect and two additions.
    """

    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self._bounds = buckets
        self._les = [*(floatToGoString(b) for b in buckets), "+Inf"]  # type: ignore[no-untyped-call]
        self._in_flight: dict[str, int] = {}
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}
        """Per (model, protocol): a count per bucket (not cumulative), then the sum."""

    def started(self, model: str) -> None:
        """A request for ``model`` was accepted."""
        self._in_flight[model] = self._in_flight.get(model, 0) + 1

    def finished(self, model: str, protocol: str, code: int, seconds: float) -> None:
        """A request was answered with ``code`` after ``seconds``."""
        self._in_flight[model] -= 1
        key = (model, protocol, code)
        self._requests[key] = self._requests.get(key, 0) + 1
        counts = self._latency.get((model, protocol))
        if counts is None:
            counts = self._latency[(model, protocol)] = [0.0] * (len(self._bounds) + 2)
        counts[bisect_left(self._bounds, seconds)] += 1  # le: a value on a bound counts in it
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        """The three families, as prometheus_client's own metrics would expose them."""
        requests = CounterMetricFamily(
            contract.METRIC_REQUESTS, _REQUESTS_HELP, labels=("model", "protocol", "code")
        )
        for (model, protocol, code), answered in self._requests.items():
            requests.add_metric((model, protocol, str(code)), answered)
        latency = HistogramMetricFamily(
            contract.METRIC_REQUEST_LATENCY, _LATENCY_HELP, labels=("model", "protocol")
        )
        for labels, counts in self._latency.items():
            cumulative, buckets = 0.0, []
            for le, in_bucket in zip(self._les, counts, strict=False):
                cumulative += in_bucket
                buckets.append((le, cumulative))
            latency.add_metric(labels, buckets, counts[-1])
        in_flight = GaugeMetricFamily(contract.METRIC_IN_FLIGHT, _IN_FLIGHT_HELP, labels=("model",))
        for model, serving in self._in_flight.items():
            in_flight.add_metric((model,), serving)
        yield from (requests, latency, in_flight)


class Metrics:
    """The runtime's metrics on a private registry (several apps in one process never clash)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, gpus: GpuCollector | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self.gpus = gpus or GpuCollector()
        self.processes = ProcessCollector(
            own_process if self._multiprocess_dir is None
            else partial(read_process_map, self._multiprocess_dir)
        )
        self._live: tuple[Collector, ...] = (self.processes, self.gpus)
        """Read when scraped, by whichever process answers (never through the files)."""
        self._books: RequestBooks | None = None
        if self._multiprocess_dir is None:
            self._books = RequestBooks()
            self.registry.register(self._books)
            for collector in self._live:
                self.registry.register(collector)
        else:
            # Workers share values through prometheus_client's files: its own metrics.
            self._requests = Counter(
                contract.METRIC_REQUESTS, _REQUESTS_HELP, ("model", "protocol", "code"),
                registry=self.registry,
            )
            self._request_latency = Histogram(
                contract.METRIC_REQUEST_LATENCY, _LATENCY_HELP, ("model", "protocol"),
                buckets=_LATENCY_BUCKETS, registry=self.registry,
            )
            self._in_flight = Gauge(
                contract.METRIC_IN_FLIGHT, _IN_FLIGHT_HELP, ("model",),
                registry=self.registry,
                multiprocess_mode="livesum",  # only live workers' requests are in flight
            )
        self._inference_latency = Histogram(
            contract.METRIC_INFERENCE_LATENCY,
            "Model-call latency in seconds (one observation per batch), by model.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
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
        self._version_state = Gauge(
            contract.METRIC_MODEL_VERSION_STATE,
            "1 for each listed model version's state (LOADING, AVAILABLE, UNLOADING, END).",
            ("model", "version", "state"),
            registry=self.registry,
            multiprocess_mode="livemax",  # every live worker serves the same versions
        )
        self._version_labels: set[tuple[str, str, str]] = set()
        self._polls = Counter(
            contract.METRIC_REPOSITORY_POLLS,
            "Looks at the model repository for new and removed versions.",
            ("model",),
            registry=self.registry,
        )
        self._load_failures = Counter(
            contract.METRIC_MODEL_LOAD_FAILURES,
            "Model versions that failed to load.",
            ("model",),
            registry=self.registry,
        )
        self._model_size = Gauge(
            contract.METRIC_MODEL_SIZE,
            "Size on disk in bytes of each loaded model version.",
            ("model", "version"),
            registry=self.registry,
            multiprocess_mode="max",  # every worker loads the same files
        )
        self._children: dict[tuple[str, str, int], tuple[Gauge, Counter, Histogram]] = {}
        self._in_flight_children: dict[str, Gauge] = {}

    def request_started(self, model: str) -> None:
        """A request for ``model`` was accepted."""
        if self._books is not None:
            self._books.started(model)
            return
        gauge = self._in_flight_children.get(model)
        if gauge is None:
            gauge = self._in_flight_children[model] = self._in_flight.labels(model)
        gauge.inc()

    def request_finished(self, model: str, protocol: str, code: int, seconds: float) -> None:
        """A request for ``model`` was answered with ``code`` after ``seconds``."""
        if self._books is not None:
            self._books.finished(model, protocol, code, seconds)
            return
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

    def observe_versions(self, model: str, states: dict[int, str]) -> None:
        """The state of every listed version, after a change (InferenceObserver).

        States a version no longer has drop to 0 rather than vanish: prometheus_client's
        multiprocess files (``--workers``) cannot forget a label set.
        """
        current = {(model, str(version), state) for version, state in states.items()}
        for labels in self._version_labels - current:
            self._version_state.labels(*labels).set(0)
        for labels in current:
            self._version_state.labels(*labels).set(1)
        self._version_labels |= current

    def observe_load_failure(self, model: str, version: int) -> None:
        """A version failed to load (InferenceObserver)."""
        self._load_failures.labels(model).inc()

    def observe_poll(self, model: str) -> None:
        """The repository was looked at for new versions (InferenceObserver)."""
        self._polls.labels(model).inc()

    def observe_model_size(self, model: str, version: int, size_bytes: int) -> None:
        """``model`` version ``version`` takes ``size_bytes`` on disk (InferenceObserver)."""
        self._model_size.labels(model, str(version)).set(size_bytes)

    def start_collectors(self) -> None:
        """Load NVML now rather than on the first scrape (it can take a second: call it
        off the event loop)."""
        self.gpus.start()

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format (summed over workers)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in self._live:
            merged.register(collector)
        return generate_latest(merged)
