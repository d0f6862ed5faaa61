"""Live load from two scrapes of the runtime's /metrics: pure maths, no I/O.

A ``Snapshot`` is one pod's counters at one instant. Two snapshots of the same pod give
a window; windows of all ready pods add up to the ModelDeployment's ``status.load``:

- ``requestsPerSecond``: increase of ``modelplane_requests_total`` over the window divided
  by its length, summed over pods. A counter that went down means the process restarted;
  as in PromQL's ``rate()``, the new value is then the whole increase.
- ``inFlight``: the ``modelplane_requests_in_flight`` gauges summed (latest scrape).
- ``latencyP50Ms`` / ``latencyP99Ms``: quantiles of the request-latency histogram's bucket
  *increases* within the window (so they describe recent traffic, not the process's
  lifetime), merged over pods and interpolated linearly inside the bucket exactly like
  PromQL's ``histogram_quantile``.
- ``errorRate``: share of requests in the window answered with a 5xx (or, over gRPC, a
  server-side code: contract.GRPC_SERVER_ERROR_CODES). 4xx answers are the
  client's mistake (bad input is expected and answered correctly), so they do not count:
  the number says whether the model server is failing, which is what an operator acts on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelplane_runtime import contract
from prometheus_client.parser import text_string_to_metric_families

_GPU_FIELDS = {contract.METRIC_GPU_UTILIZATION: 0, contract.METRIC_GPU_MEMORY_USED: 1,
               contract.METRIC_GPU_MEMORY_TOTAL: 2}
"""Per-GPU gauges (labels gpu, uuid) and their place in a ``Gpu``."""

AVAILABLE = "AVAILABLE"
"""The version state of a version that takes requests (TF Serving's name)."""

Buckets = tuple[tuple[float, float], ...]
"""Cumulative histogram buckets: ``(upper bound in seconds, count)``, sorted, ``+Inf`` last."""


@dataclass(frozen=True)
class Gpu:
    """One GPU as a replica's runtime reads it from NVML (None: not reported)."""

    utilization: float | None
    """0..1."""
    memory_used: float | None
    """Bytes in use on the device, by every process."""
    memory_total: float | None
    """Bytes on the device."""


@dataclass(frozen=True)
class Snapshot:
    """One pod's counters at one instant (``taken_at`` in monotonic seconds)."""

    taken_at: float
    requests: float
    server_errors: float
    in_flight: float
    buckets: Buckets
    gpus: tuple[Gpu, ...] = ()
    """The GPUs the pod's runtime sees (none without a GPU or NVML)."""
    versions: frozenset[str] = frozenset()
    """Model versions the pod serves: ``AVAILABLE`` in ``modelplane_model_version_state``,
    or, from a runtime too old to report states, those it ever loaded
    (``modelplane_model_load_seconds``, which keeps versions since unloaded)."""


@dataclass(frozen=True)
class Window:
    """What one pod did between two snapshots."""

    seconds: float
    requests: float
    server_errors: float
    buckets: Buckets


@dataclass(frozen=True)
class Load:
    """Aggregated load of a ModelDeployment; ``None`` where there is nothing to measure yet."""

    requests_per_second: float | None
    in_flight: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    error_rate: float | None
    pods: int
    versions: tuple[str, ...] = ()
    """Model versions loaded by the scraped pods, in numeric order."""

    @property
    def model_version(self) -> str | None:
        """``status.modelVersion``: the versions served, comma-separated (None if unknown)."""
        return ",".join(self.versions) or None

    def as_status(self) -> dict[str, float | int]:
        """The ``status.load`` fields (camelCase, rounded so noise does not cause writes)."""
        fields: dict[str, float | int | None] = {
            "requestsPerSecond": _round(self.requests_per_second, 2),
            "inFlight": _round(self.in_flight, 0),
            "latencyP50Ms": _round(self.latency_p50_ms, 1),
            "latencyP99Ms": _round(self.latency_p99_ms, 1),
            "errorRate": _round(self.error_rate, 4),
        }
        return {key: value for key, value in fields.items() if value is not None}


def _round(value: float | None, digits: int) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits == 0 else round(value, digits)


def parse_snapshot(text: str, taken_at: float) -> Snapshot:
    """Read the runtime's metrics from the Prometheus text format, summed over all labels."""
    requests = server_errors = in_flight = 0.0
    cumulative: dict[float, float] = {}
    loaded: set[str] = set()
    available: set[str] | None = None  # None: the runtime reports no version states
    # Per device (its uuid, else its index): with several worker processes each may
    # report the same GPU; one device counts once.
    gpus: dict[str, list[float | None]] = {}
    bucket_name = contract.METRIC_REQUEST_LATENCY + "_bucket"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == contract.METRIC_REQUESTS:
                requests += sample.value
                code = sample.labels.get("code", "")
                if code.startswith("5") or code in contract.GRPC_SERVER_ERROR_CODES:
                    server_errors += sample.value
            elif sample.name == contract.METRIC_IN_FLIGHT:
                in_flight += sample.value
            elif sample.name == contract.METRIC_MODEL_VERSION_STATE:
                available = set() if available is None else available
                if sample.labels.get("state") == AVAILABLE and sample.value >= 1:
                    available.add(sample.labels.get("version", ""))
            elif sample.name == contract.METRIC_MODEL_LOAD and "version" in sample.labels:
                loaded.add(sample.labels["version"])
            elif sample.name in _GPU_FIELDS:
                device = sample.labels.get("uuid") or sample.labels.get("gpu", "")
                readings = gpus.setdefault(device, [None, None, None])
                readings[_GPU_FIELDS[sample.name]] = sample.value
            elif sample.name == bucket_name:
                bound = float(sample.labels["le"])
                cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
    return Snapshot(
        taken_at=taken_at,
        requests=requests,
        server_errors=server_errors,
        in_flight=in_flight,
        buckets=tuple(sorted(cumulative.items())),
        gpus=tuple(Gpu(*gpus[device]) for device in sorted(gpus)),
        versions=frozenset(loaded if available is None else available - {""}),
    )


def window(previous: Snapshot, current: Snapshot) -> Window | None:
    """The increase between two snapshots of one pod, or None if time did not advance."""
    seconds = current.taken_at - previous.taken_at
    if seconds <= 0:
        return None
    reset = (
        current.requests < previous.requests
        or current.server_errors < previous.server_errors
        or [bound for bound, _ in current.buckets] != [bound for bound, _ in previous.buckets]
        or any(now < before for (_, now), (_, before) in zip(
            current.buckets, previous.buckets, strict=True))
    )
    if reset:
        # The process restarted between the scrapes: it counted everything since then.
        return Window(seconds, current.requests, current.server_errors, current.buckets)
    return Window(
        seconds=seconds,
        requests=current.requests - previous.requests,
        server_errors=current.server_errors - previous.server_errors,
        buckets=tuple(
            (bound, now - before)
            for (bound, now), (_, before) in zip(current.buckets, previous.buckets, strict=True)
        ),
    )


def merge_buckets(all_buckets: Iterable[Buckets]) -> Buckets:
    """Sum cumulative buckets of several pods (bounds that every pod has)."""
    totals: dict[float, float] = {}
    seen: list[set[float]] = []
    for buckets in all_buckets:
        seen.append({bound for bound, _ in buckets})
        for bound, count in buckets:
            totals[bound] = totals.get(bound, 0.0) + count
    if not seen:
        return ()
    common = set.intersection(*seen)
    return tuple(sorted((bound, count) for bound, count in totals.items() if bound in common))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative buckets, as PromQL's ``histogram_quantile`` computes it.

    None where PromQL gives NaN: no observations, fewer than two buckets, or no ``+Inf``.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Like PromQL's ensureMonotonic: float noise must not make counts go down.
    monotonic: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    observations = monotonic[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]  # in the +Inf bucket: the highest finite bound
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end, count = 0.0, monotonic[index][0], monotonic[index][1]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    if count <= 0:
        return start
    return start + (end - start) * (rank / count)


def aggregate(
    previous: Mapping[str, Snapshot], current: Mapping[str, Snapshot]
) -> Load | None:
    """The load of all pods scraped now (keyed by pod uid), against their previous scrapes."""
    if not current:
        return None
    windows = [
        w for key, snapshot in current.items()
        if key in previous and (w := window(previous[key], snapshot)) is not None
    ]
    in_flight = sum(snapshot.in_flight for snapshot in current.values())
    versions = tuple(sorted(set().union(*(s.versions for s in current.values())),
                            key=lambda v: (len(v), v)))  # numeric order for integer strings
    if not windows:
        return Load(None, in_flight, None, None, None, len(current), versions)
    requests = sum(w.requests for w in windows)
    merged = merge_buckets(w.buckets for w in windows)
    p50 = histogram_quantile(0.5, merged)
    p99 = histogram_quantile(0.99, merged)
    return Load(
        requests_per_second=sum(w.requests / w.seconds for w in windows),
        in_flight=in_flight,
        latency_p50_ms=None if p50 is None else p50 * 1000.0,
        latency_p99_ms=None if p99 is None else p99 * 1000.0,
        error_rate=(sum(w.server_errors for w in windows) / requests) if requests > 0 else 0.0,
        pods=len(current),
        versions=versions,
    )
