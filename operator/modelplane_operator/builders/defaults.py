"""Operator-wide choices the spec leaves open, passed into rendering by the caller."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modelplane/runtime:0.1.0"
"""The runtime image when neither the spec, the operator's settings nor ``render`` name one."""
DEFAULT_BALANCER_IMAGE = "ghcr.io/modelplane/balancer:0.1.0"
"""The balancer image (balancer/Dockerfile) when the operator's settings name none."""


@dataclass(frozen=True)
class BalancerDefaults:
    """What the operator's settings say about every ``<name>-balancer`` Deployment."""

    image: str = DEFAULT_BALANCER_IMAGE
    """Balancer image (no TensorFlow; the same USER as the runtime's)."""
    replicas: int = 2
    """Balancer pods per ModelDeployment: two, on different nodes where possible, so that
    a node drain or a balancer restart never leaves the Service without one."""
    cpu_request: str = "100m"
    """CPU request of a balancer pod (no CPU limit: a throttled proxy adds latency to every
    request; the request alone schedules it)."""
    memory_request: str = "96Mi"
    """Memory request of a balancer pod."""
    memory_limit: str = "256Mi"
    """Memory limit of a balancer pod (its held-request queue is bounded)."""
    cpu_limit: str | None = None
    """CPU limit, when a cluster policy demands one."""


@dataclass(frozen=True)
class RenderDefaults:
    """What the operator's settings contribute to every rendered child."""

    runtime_image: str
    """Runtime image used when ``spec.runtime.image`` is unset."""
    runtime_gpu_image: str | None = None
    """Image used instead when GPUs are requested and no image is set (CUDA base)."""
    cluster_domain: str = "cluster.local"
    """DNS suffix of Service URLs."""
    run_as_user: int = 65532
    """Non-root uid (and gid, fsGroup) of runtime pods: the USER of runtime/Dockerfile."""
    keda_load_url: str = "http://modelplane-operator.modelplane-system.svc:8081"
    """The operator's own HTTP endpoint, as KEDA reaches it (the ScaledObjects' load URL)."""
    balancer: BalancerDefaults = field(default_factory=BalancerDefaults)
    """The balancer Deployment of every ModelDeployment with ``routing.balancer: true``."""
