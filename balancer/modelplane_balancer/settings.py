"""The balancer's one typed settings object, read from ``MODELPLANE_BALANCER_*`` and flags.

Loaded once at start-up; an invalid value fails with a message naming the flag or the
variable (exit 2), never later on a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelplane_balancer import contract

Strategy = Literal[
    "round-robin", "random", "weighted", "least-request", "power-of-two", "latency-aware"
]
LogLevel = Literal["error", "warning", "info", "debug"]

_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>\d{1,5})$"
)


class SettingsError(ValueError):
    """A setting is invalid; the message names the flag or environment variable."""


@dataclass(frozen=True)
class Address:
    """One replica's address."""

    host: str
    port: int

    @property
    def key(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6): the replica's name in metrics and logs."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> Address; ValueError naming what is wrong."""
    match = _HOST_PORT.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not HOST:PORT")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return Address(match["v6"] or match["host"], port)


class BalancerSettings(BaseSettings):
    """Everything the balancer process needs to know, loaded once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=contract.ENV_PREFIX, extra="ignore", use_attribute_docstrings=True
    )

    host: str = "0.0.0.0"
    """Address to bind."""
    port: int = Field(default=contract.HTTP_PORT, ge=0, le=65535)
    """Port to serve on; 0 picks a free one (logged on the ready line)."""
    model: str = ""
    """The ModelDeployment's name: what discovery watches; a label on logs otherwise."""
    namespace: str = ""
    """Namespace to watch; default: the pod's own (service account), else the kubeconfig's."""

    backends: str = ""
    """Static replicas ``HOST:PORT,...`` (stable track); set, discovery is off."""
    weights: str = ""
    """Weights of ``backends``, in order (``weighted`` strategy); default 1 each."""
    canary_backends: str = ""
    """Static canary replicas ``HOST:PORT,...``."""
    canary_weights: str = ""
    """Weights of ``canary_backends``, in order."""
    canary_percent: int = Field(default=0, ge=0, le=100)
    """Share of requests for the canary track (static mode; in a cluster the ModelDeployment's
    ``spec.canary.trafficPercent`` wins)."""
    strategy: Strategy = "latency-aware"
    """How a replica is chosen within a track; in a cluster ``spec.routing.strategy`` wins."""

    tls_cert_file: Path | None = None
    """PEM certificate: clients reach the balancer over HTTPS (needs ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""
    upstream_tls: bool = False
    """Reach the replicas over HTTPS."""
    upstream_ca_file: Path | None = None
    """CA bundle to verify the replicas' certificates with (default: the system's)."""
    upstream_server_name: str = ""
    """Name the replicas' certificates must carry (default: the replica's address)."""
    upstream_verify: bool = True
    """Verify the replicas' certificates; false only for testing."""
    upstream_check_hostname: bool = True
    """Check that a replica's certificate names it. false with ``upstream_ca_file`` set to the
    replicas' own certificate: pods are reached by IP, which a Service's certificate does not
    name, and that exact certificate is then the only one trusted (a pin)."""

    connect_timeout_s: float = Field(default=2.0, gt=0)
    """A connection to a replica not open by then counts as a failed connect (retried)."""
    request_timeout_s: float = Field(default=90.0, gt=0)
    """An answer not complete by then gets 504 (longer than the runtime's own 60 s deadline,
    so the runtime's clearer 503 normally comes first)."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Most replicas one request is offered to (retries happen only when it provably never
    ran: connect failures and explicit 503 refusals)."""
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    """Retries may add at most this share of requests on top (Finagle's RetryBudget)."""
    retry_budget_min_per_s: float = Field(default=10.0, ge=0)
    """Retries always allowed per second whatever the traffic (so a quiet service retries)."""
    replay_max_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    """Bodies up to this size are kept until the answer starts, so a 503 refusal can be sent
    to another replica; larger bodies stream without a copy and are never replayed."""

    eject_after_failures: int = Field(default=3, ge=1)
    """Consecutive failures (connect errors, resets, 5xx other than 503) that eject a replica."""
    eject_base_s: float = Field(default=1.0, gt=0)
    """First ejection time; each further ejection doubles it, up to ``eject_max_s``."""
    eject_max_s: float = Field(default=30.0, gt=0)
    """Longest ejection; an ejected replica is probed (``probe_path``) before it rejoins."""
    max_ejection_percent: int = Field(default=50, ge=0, le=100)
    """At most this share of a track is ejected at once (at least one replica may be)."""
    probe_path: str = "/v2/health/ready"
    """Readiness path probed on a replica before it rejoins after an ejection or a 503."""

    no_replica_wait_s: float = Field(default=3.0, ge=0)
    """With no replica to take it, a request waits this long for one, then gets 503."""
    cold_start_wait_s: float = Field(default=120.0, ge=0)
    """The wait instead while the model is scaled to zero (minReplicas 0): time to wake.
    A client's ``X-Modelplane-Deadline-Ms`` shortens it for its own request."""
    max_waiting: int = Field(default=1024, ge=0)
    """Requests held for a replica at most; more get 503 with ``Retry-After`` at once."""
    pod_name: str = ""
    """This balancer's name in the wake Lease (default: the host name; in a pod, its name)."""

    max_connections_per_replica: int = Field(default=1024, ge=1)
    """Open connections to one replica at most; past it the request goes elsewhere."""
    max_idle_per_replica: int = Field(default=128, ge=0)
    """Idle keep-alive connections kept per replica."""
    upstream_idle_timeout_s: float = Field(default=4.0, gt=0)
    """Idle upstream connections are closed after this (below the runtime's 5 s keep-alive,
    so the balancer, not the replica, closes them: no request races a closing socket)."""
    client_idle_timeout_s: float = Field(default=75.0, gt=0)
    """Idle client keep-alive connections (and unfinished request heads) are closed after
    this (nginx's keepalive_timeout)."""

    ewma_decay_s: float = Field(default=10.0, gt=0)
    """Decay time of the peak-EWMA latency (Finagle's and Linkerd's default: 10 s)."""
    default_rtt_ms: float = Field(default=5.0, gt=0)
    """Latency assumed for a replica before any is measured, when no peer has one either."""

    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take before the process exits anyway."""
    log_level: LogLevel = "info"
    """`error`, `warning`, `info` or `debug`; logs are JSON lines on stderr."""

    @field_validator("log_level", "strategy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("probe_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("backends", "canary_backends")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for item in _items(value):
            parse_address(item)
        return value

    @field_validator("weights", "canary_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        for item in _items(value):
            if not item.isdigit() or not 0 < int(item) <= 1_000_000:
                raise ValueError(f"{item!r} is not a whole number from 1 to 1000000")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BalancerSettings:
        for backends, weights in (("backends", "weights"), ("canary_backends", "canary_weights")):
            given = _items(getattr(self, weights))
            if given and len(given) != len(_items(getattr(self, backends))):
                raise ValueError(f"{weights}: one weight per entry of {backends}")
        if self.canary_backends and not self.backends:
            raise ValueError("canary_backends: needs backends too")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_key_file: HTTPS needs both tls_cert_file and tls_key_file")
        if not self.backends and not self.model:
            raise ValueError("model: name the ModelDeployment to watch, or give backends")
        return self

    @property
    def static(self) -> bool:
        """True with ``--backends``: no Kubernetes discovery."""
        return bool(self.backends)

    def static_replicas(self, track: str) -> list[tuple[Address, int]]:
        """(address, weight) of the static replicas of ``track``."""
        backends, weights = (
            (self.backends, self.weights) if track == contract.STABLE
            else (self.canary_backends, self.canary_weights)
        )
        addresses = [parse_address(item) for item in _items(backends)]
        given = [int(item) for item in _items(weights)] or [1] * len(addresses)
        return list(zip(addresses, given, strict=True))


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def load_settings(**overrides: Any) -> BalancerSettings:
    """Read settings from the environment, with CLI overrides (None means "not given")."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return BalancerSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            field = str(loc[0]) if loc else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            if not field and ":" in message:  # a model-level check names its field first
                field, _, message = message.partition(": ")
            source = f"--{field.replace('_', '-')}" if field in given else (
                contract.ENV_PREFIX + field.upper()
            )
            problems.append(f"{source}: {message}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
