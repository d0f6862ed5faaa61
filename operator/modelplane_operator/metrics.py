"""The operator's own Prometheus metrics and its HTTP endpoint (``/healthz``, ``/metrics``).

Metrics live in a registry of their own (not prometheus_client's global one), so several
operators in one test process never share counters.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest


class OperatorMetrics:
    """Counters and gauges of one operator process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "modelplane_operator_reconciles_total",
            "Reconciles of ModelDeployments by trigger and result.",
            ["trigger", "result"], registry=self.registry)
        self.errors = Counter(
            "modelplane_operator_errors_total",
            "Errors by kind (invalid_spec, api, unexpected).",
            ["kind"], registry=self.registry)
        self.duration = Histogram(
            "modelplane_operator_reconcile_duration_seconds",
            "Time to validate, render and apply one ModelDeployment.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.managed = Gauge(
            "modelplane_operator_managed_objects",
            "ModelDeployments the operator currently knows.", registry=self.registry)
        self.child_writes = Counter(
            "modelplane_operator_child_writes_total",
            "Writes of children by kind and action (created, patched, deleted).",
            ["kind", "action"], registry=self.registry)
        self.status_writes = Counter(
            "modelplane_operator_status_writes_total",
            "Status patches of ModelDeployments.", registry=self.registry)
        self.api_requests = Counter(
            "modelplane_operator_api_requests_total",
            "Requests the operator's own client sent to the API server (kopf's excluded).",
            ["verb"], registry=self.registry)
        self.api_retries = Counter(
            "modelplane_operator_api_retries_total",
            "Requests the operator's own client sent again after a transient failure, by "
            "the failure's HTTP status (0: no answer).",
            ["code"], registry=self.registry)
        self.rounds = Counter(
            "modelplane_operator_status_rounds_total",
            "Rounds of the status timer (scrape every ready pod, refresh every status).",
            registry=self.registry)
        self.scrapes = Counter(
            "modelplane_operator_scrapes_total",
            "Scrapes of runtime and balancer pods' /metrics by result (ok, failed).",
            ["result"], registry=self.registry)
        self.sleeps = Counter(
            "modelplane_operator_scaled_to_zero_total",
            "ModelDeployments scaled to zero for want of requests.", registry=self.registry)
        self.wakes = Counter(
            "modelplane_operator_wake_ups_total",
            "ModelDeployments woken from zero by a held request.", registry=self.registry)
        self.cold_start = Histogram(
            "modelplane_operator_cold_start_seconds",
            "From the first request held for a model at zero to its first ready replica.",
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=self.registry)


LoadOf = Callable[[str, str, str], dict[str, float] | None]
"""``(namespace, name, track) -> {"inFlight": ..., "requestsPerSecond": ...}``, None if the
ModelDeployment is unknown."""


def health_app(metrics: OperatorMetrics, problems: Callable[[], list[str]],
               load: LoadOf | None = None) -> web.Application:
    """``/healthz`` is 200 while ``problems()`` finds none, else 503 naming them.

    The liveness probe restarts an operator that stays unhealthy: one whose status loop
    stalled, or whose watches have been failing for longer than the configured limit.

    ``/load/{namespace}/{name}/{track}`` serves one track's load as the operator aggregated
    it from the replicas' /metrics: what KEDA's metrics-api scaler reads for
    ``autoscaling.engine: keda`` (builders/keda.py).
    """

    async def healthz(_: web.Request) -> web.Response:
        found = problems()
        if found:
            return web.json_response({"status": "unhealthy", "problems": found}, status=503)
        return web.json_response({"status": "ok"})

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def track_load(request: web.Request) -> web.Response:
        info = request.match_info
        found = load(info["namespace"], info["name"], info["track"]) if load else None
        if found is None:
            return web.json_response({"error": "no such ModelDeployment track"}, status=404)
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/load/{namespace}/{name}/{track:stable|canary}", track_load)
    return app
