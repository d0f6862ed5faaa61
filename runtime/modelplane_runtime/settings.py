"""The runtime's one typed settings object, read from ``MODELPLANE_*`` variables and CLI flags.

The operator configures runtime pods only through these variables (names in contract.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelplane_runtime import contract

LogLevel = Literal["error", "warning", "info", "debug"]
ModelFormat = Literal["auto", "savedmodel", "keras"]


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A version label's name (TF Serving's are free text; ours also appear in URLs)."""


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable or flag."""


def _number(text: str) -> bool:
    # str.isdigit() alone accepts "²" and other non-ASCII digits that int() refuses.
    return text.isascii() and text.isdigit()


def check_version_policy(text: str) -> str:
    """``text`` if it is a version policy (`latest`, `latest:N`, `all`, `1,3`); else ValueError.

    Only the form: whether the versions exist is known once the repository is scanned.
    """
    policy = text.strip().lower()
    if policy in ("", "latest", "all"):
        return text
    if policy.startswith("latest:"):
        count = policy.removeprefix("latest:").strip()
        if not _number(count) or int(count) < 1:
            raise ValueError("latest:N needs a positive integer N")
        return text
    if not all(_number(part.strip()) for part in policy.split(",")):
        raise ValueError("expected latest, latest:N, all, or version numbers like 1,3")
    return text


def check_labels(text: str) -> str:
    """``text`` if it is ``label=version`` pairs (`stable=1,canary=2`); else ValueError."""
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not _LABEL.match(name) or not _number(value):
            raise ValueError(f"{part!r} is not label=version (e.g. stable=1)")
        if name in seen:
            raise ValueError(f"label {name!r} given twice")
        seen.add(name)
    return text


class RuntimeSettings(BaseSettings):
    """Everything the runtime process needs to know, loaded once at start-up."""

    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, extra="ignore")

    model_path: Path = Path(contract.MODEL_MOUNT_PATH)
    """Model repository: a folder of integer version folders, a bare SavedModel, or a Keras file."""
    model_name: str = ""
    """Name the model is served under; defaults to the path's name (see ``served_name``)."""
    model_format: ModelFormat = "auto"
    """`savedmodel`, `keras`, or `auto` (detect from the files)."""
    model_version: int | None = Field(default=None, ge=0)
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

    _flags: dict[str, str] = PrivateAttr(default_factory=dict)
    """Field -> the command-line flag it was given with (absent: from the environment)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("model_versions")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_version_policy(value)

    @field_validator("model_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        return check_labels(value)

    @property
    def served_name(self) -> str:
        """The model name used in URLs: ``model_name``, else the last part of ``model_uri``
        (a remote repository) or ``model_path``.

        A Keras file loses its extension (``model.keras`` -> ``model``); a bare version folder
        (``mymodel/1``) is named after its parent (``mymodel``), since a model named ``1``
        is never what was meant.
        """
        if self.model_name:
            return self.model_name
        if self.model_uri:  # the repository's last path segment, as for a local folder
            segments = self.model_uri.split("?", 1)[0].rstrip("/").split("/")
            stem = segments[-1]
            if _number(stem) and len(segments) > 3:  # s3://bucket/mymodel/1 -> mymodel
                stem = segments[-2]
        else:
            path = self.model_path
            if _number(path.name):
                path = path.absolute().parent
            stem = path.name
        for suffix in (".keras", ".h5"):
            stem = stem.removesuffix(suffix)
        return stem or "model"

    def origin(self, field: str) -> str:
        """Where a setting came from, for messages: its flag (``--versions``) or variable."""
        return self._flags.get(field) or variable(field)


def variable(field: str) -> str:
    """The environment variable of a settings field (``model_versions`` ->
    ``MODELPLANE_MODEL_VERSIONS``)."""
    return contract.ENV_PREFIX + field.upper()


def load_settings(flags: Mapping[str, str] | None = None, **overrides: Any) -> RuntimeSettings:
    """Read settings from the environment, with CLI overrides (None means "not given").

    ``flags`` maps a field to the flag that sets it (``model_versions`` -> ``--versions``), so
    a bad value is reported under the name the user typed: the flag when it came from the
    command line, the environment variable otherwise.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    flag_of = {f: (flags or {}).get(f) or f"--{f.replace('_', '-')}" for f in given}
    try:
        settings = RuntimeSettings(**given)
    except ValidationError as exc:
        raise SettingsError("; ".join(_problem(e, flag_of) for e in exc.errors())) from None
    settings._flags = flag_of
    return settings


def _problem(error: Any, flag_of: Mapping[str, str]) -> str:
    """One validation error as ``--flag 'value': why`` or ``VARIABLE='value': why``."""
    field = str(error["loc"][0]) if error["loc"] else "?"
    value = _shown(error.get("input"))
    where = f"{flag_of[field]} {value}" if field in flag_of else f"{variable(field)}={value}"
    cause = error.get("ctx", {}).get("error")
    why = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
    return f"{where}: {why}"


def _shown(value: Any) -> str:
    """A value as a message quotes it: repr, cut short (a JSON setting can be long)."""
    text = repr(str(value)) if not isinstance(value, int | float) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
