"""Facts about the balancer that other components rely on: ports, paths, names, metrics.

Dependency-free on purpose: the operator renders the balancer's Deployment, Services and
RBAC from these names, and the dashboard queries these metrics; changing a value here
changes what the operator must render.
"""

from typing import Final

HTTP_PORT: Final = 8080
"""Container port of the balancer (the model's APIs, proxied, plus the paths below)."""

ENV_PREFIX: Final = "MODELPLANE_BALANCER_"
"""Every setting (settings.BalancerSettings) is also read from ``ENV_PREFIX + FIELD``."""

# The balancer's own endpoints, answered by the balancer itself (never proxied).
HEALTHZ_PATH: Final = "/healthz"
"""Liveness: 200 while the event loop runs."""
READYZ_PATH: Final = "/readyz"
"""Readiness: 200 once a replica is known (or while holding for scale-from-zero); 503 when
draining or with nothing to route to."""
METRICS_PATH: Final = "/metrics"
"""Prometheus text exposition of the METRIC_* names below."""

TRACK_HEADER: Final = "X-Modelplane-Track"
"""Request header pinning a request to one track: ``stable`` or ``canary``."""
DEADLINE_HEADER: Final = "X-Modelplane-Deadline-Ms"
"""Request header: how many milliseconds the client waits for its answer. A request held
for a replica (a model waking from zero) is answered 503 once that has passed, instead of
after the balancer's own hold limit; passed on to the replica unchanged."""
REQUEST_ID_HEADER: Final = "X-Request-Id"
"""Kept when the client sends it, added otherwise; the runtime logs and echoes it."""

# ---- discovery contract (what the operator renders and the balancer watches) ----------

STABLE: Final = "stable"
CANARY: Final = "canary"
TRACKS: Final = (STABLE, CANARY)


def replicas_service(model: str) -> str:
    """Headless Service selecting the stable track's runtime pods of ModelDeployment ``model``."""
    return f"{model}-replicas"


def canary_replicas_service(model: str) -> str:
    """Headless Service selecting the canary track's runtime pods of ``model``."""
    return f"{model}-canary-replicas"


SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
"""The label the EndpointSlice controller puts on every slice: its Service's name."""
REPLICA_PORT_NAME: Final = "http"
"""Name of the runtime's HTTP port in the headless Services (and so in their slices); a
slice with a single port is used whatever its name."""

def wake_lease(model: str) -> str:
    """The Lease (coordination.k8s.io) the balancer of ``model`` renews while it holds
    requests for a model scaled to zero: the operator watches it and scales up. The operator
    creates it; the balancer may only read and patch that one object."""
    return f"{model}-wake"


MD_GROUP: Final = "modelplane.io"
MD_VERSION: Final = "v1alpha1"
MD_PLURAL: Final = "modeldeployments"

# RBAC the balancer needs in its namespace (the operator renders exactly rbac_rules()).
RBAC_RULES: Final = (
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [MD_GROUP], "resources": [MD_PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"]},
)


def rbac_rules(model: str) -> list[dict[str, list[str]]]:
    """The Role of the balancer of ``model``: RBAC_RULES, with the ModelDeployment rule
    narrowed to that one object. RBAC authorizes a list or watch by ``resourceNames`` when
    the request selects ``metadata.name`` with a field selector, as discovery's does; the
    wake Lease is read and patched by name; an EndpointSlice's name is generated, so that
    rule stays namespace-wide."""
    rules = [{key: list(value) for key, value in rule.items()} for rule in RBAC_RULES]
    for rule in rules:
        if rule["resources"] == [MD_PLURAL]:
            rule["resourceNames"] = [model]
        elif rule["resources"] == ["leases"]:
            rule["resourceNames"] = [wake_lease(model)]
    return rules


def env(setting: str) -> str:
    """The environment variable of a setting (``settings.BalancerSettings`` field name)."""
    return ENV_PREFIX + setting.upper()

STRATEGIES: Final = (
    "round-robin", "random", "weighted", "least-request", "power-of-two", "latency-aware",
)
DEFAULT_STRATEGY: Final = "latency-aware"

# ---- metrics ---------------------------------------------------------------------------

METRIC_REQUESTS: Final = "modelplane_balancer_requests_total"
"""Counter of answered requests; labels: replica (host:port, "" when the balancer answered
itself), track, code."""
METRIC_LATENCY: Final = "modelplane_balancer_request_duration_seconds"
"""Histogram of time from picking a replica to the end of its answer; labels: replica, track."""
METRIC_IN_FLIGHT: Final = "modelplane_balancer_requests_in_flight"
"""Gauge of requests on each replica now; labels: replica, track."""
METRIC_WAITING: Final = "modelplane_balancer_requests_waiting"
"""Gauge of requests held because no replica can take them (the scale-from-zero signal)."""
METRIC_WAKE: Final = "modelplane_balancer_wake_seconds"
"""Summary (``_count``, ``_sum``) of the time from the first request held for a model with
no replica to the moment a replica took requests: the wake-up time clients saw."""
METRIC_RETRIES: Final = "modelplane_balancer_retries_total"
"""Counter of requests sent again to another replica; labels: reason (connect, refused)."""
METRIC_RETRIES_DENIED: Final = "modelplane_balancer_retries_denied_total"
"""Counter of retries the retry budget refused."""
METRIC_EJECTIONS: Final = "modelplane_balancer_ejections_total"
"""Counter of outlier ejections; labels: replica, track."""
METRIC_REPLICA_UP: Final = "modelplane_balancer_replica_up"
"""Gauge per known replica: 1 when it takes new requests; labels: replica, track, state."""
METRIC_LATENCY_EWMA: Final = "modelplane_balancer_replica_latency_ewma_seconds"
"""Gauge: the peak-EWMA latency the latency-aware strategy sees; labels: replica, track."""
METRIC_TRACK_REQUESTS: Final = "modelplane_balancer_track_requests_total"
"""Counter of requests routed to each track; labels: track."""
METRIC_CANARY_PERCENT: Final = "modelplane_balancer_canary_percent"
"""Gauge: the configured canary share of traffic, in percent."""
METRIC_UPSTREAM_CONNECTIONS: Final = "modelplane_balancer_upstream_connections"
"""Gauge of open connections to each replica; labels: replica, track, state (idle, busy)."""
METRIC_STRATEGY: Final = "modelplane_balancer_strategy_info"
"""Gauge, 1, labelled with the strategy in force."""
METRIC_RSS: Final = "modelplane_balancer_process_resident_memory_bytes"
METRIC_CPU: Final = "modelplane_balancer_process_cpu_seconds_total"
