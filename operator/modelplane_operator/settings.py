"""The operator's one typed settings object, read once at start-up from ``MODELPLANE_OPERATOR_*``.

The prefix keeps these apart from the runtime's ``MODELPLANE_*`` variables (contract.py),
so one shell or Pod can set both without either reading the other's values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelplane_balancer import contract as balancer
from modelplane_runtime import contract
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelplane_operator.builders.defaults import (
    DEFAULT_BALANCER_IMAGE,
    DEFAULT_RUNTIME_IMAGE,
    BalancerDefaults,
)
from modelplane_operator.quantity import canonical_quantity

ENV_PREFIX = "MODELPLANE_OPERATOR_"
LogLevel = Literal["error", "warning", "info", "debug"]


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable or flag."""


class OperatorSettings(BaseSettings):
    """Everything the operator process needs to know, loaded once at start-up."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    runtime_image: str = Field(default=DEFAULT_RUNTIME_IMAGE, min_length=1)
    """Runtime image for ModelDeployments that name none (``spec.runtime.image``)."""
    runtime_gpu_image: str | None = None
    """Runtime image for ModelDeployments that request GPUs and name no image (a CUDA build);
    unset: ``runtime_image`` for those too."""
    cluster_domain: str = Field(default="cluster.local", min_length=1)
    """DNS suffix of the cluster, used in ``status.url``."""
    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated namespaces to watch; empty means cluster-wide."""
    scrape_interval_s: float = Field(default=10.0, gt=0, le=3600)
    """How often ready pods' /metrics are scraped and every status is refreshed."""
    scrape_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """Per-pod timeout of one /metrics scrape; a slow pod is skipped, not waited for."""
    scrape_port: int = Field(default=contract.HTTP_PORT, ge=1, le=65535)
    """Port of the runtime's /metrics on each pod IP (tests point it at a local runtime)."""
    scrape_concurrency: int = Field(default=64, ge=1, le=4096)
    """Most scrapes in flight at once across all ModelDeployments."""
    log_level: LogLevel = "info"
    """`error`, `warning`, `info` or `debug`."""
    http_host: str = "0.0.0.0"
    """Address of the operator's own HTTP endpoint (/healthz and /metrics)."""
    http_port: int = Field(default=8081, ge=0, le=65535)
    """Port of /healthz (liveness) and /metrics (the operator's own metrics); 0 picks one."""
    standalone: bool = False
    """Run without kopf peering (no coordination between operator replicas)."""
    refused_retry_s: float = Field(default=60.0, gt=0, le=3600)
    """How often children the API server refused (``ChildRejected``) are tried again while
    the spec stays the same (a quota or policy may have changed); a spec change retries
    at once."""
    lost_after_s: float = Field(default=30.0, gt=0, le=3600)
    """How long a ModelDeployment whose generation has not been reconciled yet may wait for
    kopf, counted from kopf's last event for it or the retry it scheduled; then the
    operator reconciles it itself (kopf lost its wake-up: a failed patch, see
    Controller.resync_lost)."""
    unhealthy_after_s: float = Field(default=60.0, gt=0, le=3600)
    """``/healthz`` fails once a watch has been failing this long (the liveness probe then
    restarts an operator that can no longer see its children or pods)."""

    keda_load_url: str = Field(default="http://modelplane-operator.modelplane-system.svc:8081",
                               min_length=1)
    """This operator's HTTP endpoint as KEDA reaches it: ScaledObjects (autoscaling.engine
    keda) read each track's load from ``<url>/load/<namespace>/<name>/<track>``."""

    # ---- the balancer of every ModelDeployment with routing.balancer: true ----
    balancer_image: str = Field(default=DEFAULT_BALANCER_IMAGE, min_length=1)
    """Image of the ``<name>-balancer`` Deployments (balancer/Dockerfile)."""
    balancer_replicas: int = Field(default=2, ge=1, le=20)
    """Balancer pods per ModelDeployment."""
    balancer_cpu_request: str = "100m"
    """CPU request of a balancer pod."""
    balancer_memory_request: str = "96Mi"
    """Memory request of a balancer pod."""
    balancer_memory_limit: str = "256Mi"
    """Memory limit of a balancer pod."""
    balancer_cpu_limit: str = ""
    """CPU limit of a balancer pod; empty: none (a throttled proxy delays every request)."""
    balancer_scrape_port: int = Field(default=balancer.HTTP_PORT, ge=1, le=65535)
    """Port of the balancers' /metrics on each balancer pod IP (tests point it elsewhere)."""

    @field_validator("balancer_cpu_request", "balancer_memory_request",
                     "balancer_memory_limit", "balancer_cpu_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        return canonical_quantity(value) if value else value

    def balancer_defaults(self) -> BalancerDefaults:
        """What these settings say about every balancer Deployment."""
        return BalancerDefaults(
            image=self.balancer_image, replicas=self.balancer_replicas,
            cpu_request=self.balancer_cpu_request,
            memory_request=self.balancer_memory_request,
            memory_limit=self.balancer_memory_limit,
            cpu_limit=self.balancer_cpu_limit or None,
        )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def load_settings(**overrides: Any) -> OperatorSettings:
    """Read settings from the environment, with CLI overrides (None means "not given")."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            flag = f"--{field.replace('_', '-')}"
            source = flag if field in given else ENV_PREFIX + field.upper()
            problems.append(f"{source}: {error['msg']}")
        raise SettingsError("invalid operator settings: " + "; ".join(problems)) from None
