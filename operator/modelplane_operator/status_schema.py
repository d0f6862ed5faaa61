"""The ModelDeployment's status schema: the shape the operator writes into ``status``.

These models generate the CRD's status schema (crd.py); the operator builds the status
itself as plain mappings (status.py) and does not parse it back through them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from modelplane_operator.resource import ResourceModel


class Condition(ResourceModel):
    """A status condition (the shape of metav1.Condition)."""

    type: str
    """Ready, Progressing or Degraded."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason, e.g. InvalidSpec, ModelLoadFailed, Unschedulable."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: str | None = None
    """RFC 3339 time the status last changed."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed from."""


class Load(ResourceModel):
    """Live load aggregated from the ready replicas' /metrics."""

    requests_per_second: float = 0.0
    """Requests per second across replicas (rate between two scrapes)."""
    in_flight: float = 0.0
    """Requests being served right now across replicas."""
    latency_p50_ms: float | None = None
    """Median request latency over the last scrape interval."""
    latency_p99_ms: float | None = None
    """99th percentile request latency over the last scrape interval."""
    error_rate: float = 0.0
    """Share of requests answered with 5xx over the last scrape interval."""
    updated_at: str | None = None
    """RFC 3339 time of the scrape."""


class PodStatus(ResourceModel):
    """One replica, for `kubectl describe`."""

    name: str
    """Pod name."""
    ready: bool = False
    """Pod Ready condition."""
    restarts: int = 0
    """Restarts of the runtime container."""
    phase: str | None = None
    """Pod phase."""
    track: Literal["stable", "canary"] = "stable"
    """Which model the pod serves."""
    node: str | None = None
    """Node the pod runs on."""
    message: str | None = None
    """Why the pod is not ready, when known."""
    model_version: str | None = None
    """Model versions this replica serves, as last scraped (comma-separated)."""
    # ---- resource use (usage.py) ----
    cpu: str | None = None
    """CPU in use, in millicores (metrics.k8s.io; absent without metrics-server)."""
    memory: str | None = None
    """Memory in use (working set), in MiB (metrics.k8s.io)."""
    gpu_utilization: int | None = None
    """Percent of the time a kernel ran, mean over the replica's GPUs (the runtime's NVML)."""
    gpu_memory_used: str | None = None
    """GPU memory in use on the replica's GPUs, all processes, in MiB."""
    gpu_memory_total: str | None = None
    """GPU memory of the replica's GPUs, in MiB."""
    # ---- traffic through the balancers (shares.py) ----
    share: float | None = None
    """Its share of the requests through the balancers over the last scrape interval (0-1)."""
    requests_per_second: float | None = None
    """Requests per second the balancers sent it over the last scrape interval."""
    latency_p99_ms: float | None = None
    """99th percentile latency as the balancers measured it (picking it to the end of its
    answer) over the last scrape interval."""


class ResourceUsage(ResourceModel):
    """What the replicas use together, as ``kubectl top`` shows it. A figure is rewritten
    when it moves by more than a tenth (CPU, at least 10m), a twentieth (memory, at least
    32Mi; GPU memory, at least 64Mi) or 5 points (GPU utilisation)."""

    cpu: str | None = None
    """CPU in use by every replica, in millicores (metrics.k8s.io, e.g. metrics-server)."""
    memory: str | None = None
    """Memory in use (working set) by every replica, in MiB (metrics.k8s.io)."""
    gpus: int | None = None
    """GPUs the scraped replicas' runtimes see."""
    gpu_utilization: int | None = None
    """Percent of the time a kernel ran, mean over those GPUs."""
    gpu_memory_used: str | None = None
    """GPU memory in use on those GPUs, all processes, in MiB."""
    gpu_memory_total: str | None = None
    """GPU memory of those GPUs, in MiB."""


class BalancerStatus(ResourceModel):
    """The request-level balancer in front of the replicas (``routing.balancer``)."""

    ready: str = ""
    """Ready balancer pods over desired, e.g. 2/2."""
    ready_replicas: int = 0
    """Ready balancer pods."""
    serving: bool = False
    """The Service selects the balancer pods (false while the first one starts: the
    Service then still selects the runtime pods)."""


class ScalingStatus(ResourceModel):
    """Scale to zero and suspension (autoscaling.minReplicas 0, spec.suspend)."""

    scaled_to_zero_at: str | None = None
    """When the model was scaled to zero for want of requests (absent while awake)."""
    waking_since: str | None = None
    """While waking: when the first request held for it arrived."""
    replicas_before_suspend: dict[str, int] | None = None
    """While suspended: each autoscaled Deployment's replicas, restored on resume."""


class ModelDeploymentStatus(ResourceModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded."""
    replicas: int = 0
    """Pods that exist (read by the scale subresource)."""
    ready_replicas: int = 0
    """Pods that are ready."""
    updated_replicas: int = 0
    """Pods running the current pod template."""
    ready: str = ""
    """Ready over desired, e.g. 2/3 (the READY column)."""
    selector: str = ""
    """Label selector of the pods (read by the scale subresource)."""
    url: str = ""
    """In-cluster URL of the Service."""
    observed_generation: int | None = None
    """metadata.generation the status reflects."""
    model_version: str | None = None
    """Model versions being served (AVAILABLE in the runtimes' version states), comma-separated
    in numeric order; kept while no replica can be asked."""
    load: Load | None = None
    """Live load."""
    pods: list[PodStatus] = Field(default_factory=list)
    """Per-replica health, load, versions and resource use (first few replicas)."""
    resources: ResourceUsage | None = None
    """Resource use of all replicas (absent where nothing measures it)."""
    balancer: BalancerStatus | None = None
    """The balancer, with ``routing.balancer``."""
    scaling: ScalingStatus | None = None
    """Scale to zero and suspension."""
    last_cold_start_seconds: float | None = None
    """Seconds from the first request held for the model at zero to a ready replica, at
    its latest wake-up."""
