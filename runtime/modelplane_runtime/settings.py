"""The runtime's one typed settings object, read from ``MODELPLANE_*`` variables and CLI flags.

The operator configures runtime pods only through these variables (names in contract.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelplane_runtime import contract

LogLevel = Literal["error", "warning", "info", "debug"]
ModelFormat = Literal["auto", "savedmodel", "keras"]


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable or flag."""


class RuntimeSettings(BaseSettings):
    """Everything the runtime process needs to know, loaded once at start-up."""

    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, extra="ignore")

    model_path: Path = Path(contract.MODEL_MOUNT_PATH)
    """Model repository: a folder of integer version folders, a bare SavedModel, or a Keras file."""
    model_name: str = ""
    """Name the model is served under; defaults to the repository folder's name."""
    model_format: ModelFormat = "auto"
    """`savedmodel`, `keras`, or `auto` (detect from the files)."""
    model_version: int | None = None
    """Serve only this version (overrides ``model_versions``)."""
    model_versions: str = "latest"
    """Version policy as TF Serving names it: `latest`, `latest:N`, `all`, or a list `1,3`."""
    model_labels: str = ""
    """Version labels, e.g. `stable=1,canary=2`; each must name a served version."""
    model_uri: str = ""
    """A remote repository (s3://, gs://, az:// or Azure https://) that ``model_path``
    follows: with ``poll_seconds``, new versions there are copied in and served."""
    poll_seconds: float = Field(default=0.0, ge=0)
    """Look for new and removed version folders this often, and serve them without a
    restart (0: read the repository at start only)."""
    signature_name: str = "serving_default"
    """Signature used when a request names none."""

    host: str = "0.0.0.0"
    """Address to bind."""
    port: int = Field(default=contract.HTTP_PORT, ge=0, le=65535)
    """TCP port for HTTP (v1, v2 and /metrics); 0 picks a free one."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the port (for multi-core pods)."""

    max_batch_size: int = Field(default=32, ge=1, le=65536)
    """Most rows merged into one model call; 1 turns dynamic batching off."""
    max_latency_ms: float = Field(default=2.0, ge=0, le=10_000)
    """Longest a queued request waits for others to join its batch."""

    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger gets 413."""
    max_rows_per_request: int = Field(default=100_000, ge=1)
    """Most rows (batch dimension) in one request; more gets 400."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """A request not answered by then gets 503 with a JSON error."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take before the process exits anyway."""
    headers_timeout_s: float = Field(default=10.0, gt=0)
    """How long a request's line and headers may take to arrive from its first byte; a
    client trickling them (slowloris) is disconnected (direct HTTP path)."""
    http_direct: bool = True
    """Answer predict, infer and the health probes straight from the HTTP protocol, in one
    write (http/direct/); false sends every request through ASGI (to compare or diagnose)."""

    processing: str = ""
    """Pre/post-processing config as JSON (modelplane.yaml's schema); wins over the file."""
    auth_tokens_dir: Path | None = None
    """Folder of accepted bearer tokens, one per file (a mounted Secret); unset = no auth."""
    tls_cert_file: Path | None = None
    """PEM certificate to serve HTTPS with (needs ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """PEM private key for ``tls_cert_file``."""

    gpu_memory_growth: bool = True
    """TensorFlow takes GPU memory as the model needs it, instead of nearly all of every
    visible GPU at start (so other processes can share the GPU)."""
    gpu_memory_limit_mb: int | None = Field(default=None, ge=1)
    """Most GPU memory this process may use, per GPU, in MiB; unset: no cap. With a cap,
    memory growth does not apply (TensorFlow allows one or the other)."""

    log_level: LogLevel = "info"
    """`error`, `warning`, `info` or `debug`; logs are JSON lines on stderr."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def served_name(self) -> str:
        """The model name used in URLs."""
        if self.model_name:
            return self.model_name
        if self.model_uri:  # the repository's last path segment, as for a local folder
            return self.model_uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "model"
        stem = self.model_path.name
        for suffix in (".keras", ".h5"):
            stem = stem.removesuffix(suffix)
        return stem or "model"


def load_settings(**overrides: Any) -> RuntimeSettings:
    """Read settings from the environment, with CLI overrides (None means "not given")."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return RuntimeSettings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            source = f"--{field.replace('_', '-')}" if field in given else (
                contract.ENV_PREFIX + field.upper()
            )
            problems.append(f"{source}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
