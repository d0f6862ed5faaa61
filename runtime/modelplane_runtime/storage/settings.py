"""Settings of the storage initializer, read from ``MODELPLANE_STORAGE_*`` variables.

The operator fills the credential variables from ``model.credentialsSecret``; everything
else has a default that suits an init container. Object store credentials are the clouds'
own variables (credentials.py, `uri.CREDENTIAL_VARIABLES`), not settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelplane_runtime import contract
from modelplane_runtime.storage.errors import StorageError

ENV_PREFIX: Final = contract.ENV_PREFIX + "STORAGE_"
ENV_BEARER_TOKEN: Final = ENV_PREFIX + "BEARER_TOKEN"
ENV_USERNAME: Final = ENV_PREFIX + "USERNAME"
ENV_PASSWORD: Final = ENV_PREFIX + "PASSWORD"

MiB: Final = 1024**2
GiB: Final = 1024**3


class StorageSettings(BaseSettings):
    """How ``fetch`` downloads and unpacks; loaded once per fetch."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    bearer_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer <token>`` on http(s) requests."""
    username: str | None = None
    """With ``password``: HTTP basic authentication on http(s) requests."""
    password: SecretStr | None = None
    """Password for ``username``."""

    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Socket timeout for connecting and for each read (not for the whole download)."""
    retries: int = Field(default=4, ge=0, le=20)
    """Extra attempts after a transient failure (connection error, timeout, 5xx, 429)."""
    backoff_s: float = Field(default=1.0, ge=0, le=60)
    """Wait before the first retry; doubles on each further retry (with jitter)."""
    max_backoff_s: float = Field(default=30.0, ge=0, le=600)
    """Longest single wait, also the cap on a server's ``Retry-After``."""

    max_download_bytes: int = Field(default=20 * GiB, ge=1)
    """Largest download accepted (archive or file)."""
    max_extract_bytes: int = Field(default=40 * GiB, ge=1)
    """Largest total size an archive may unpack to."""
    max_ratio: float = Field(default=200.0, ge=1)
    """Largest unpacked/packed size ratio of an archive (zip bombs); only checked above
    ``ratio_floor_bytes`` so small, very compressible archives are fine."""
    ratio_floor_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Unpacked size below which the ratio is not checked."""
    max_members: int = Field(default=100_000, ge=1)
    """Most entries an archive may have."""

    concurrency: int = Field(default=8, ge=1, le=64)
    """Parallel requests to an object store: files, and parts of large files, at once."""
    part_size_bytes: int = Field(default=16 * MiB, ge=64 * 1024, le=GiB)
    """Large objects are fetched in ranges of this size, in parallel and resumable."""
    progress_s: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between progress lines while downloading from an object store."""
    verify_checksums: bool = True
    """Check each object's MD5/CRC32C against the store's; off for stores whose ETags are
    not content checksums."""
    credentials_dir: Path | None = None
    """A folder of files named after the credential variables (a mounted Secret)."""
    anonymous: bool = False
    """Send unsigned requests without looking for credentials (public buckets)."""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """``auto``: path-style when ``AWS_ENDPOINT_URL`` is set (MinIO, Ceph), else virtual."""

    pvc_root: Path = Path(contract.PVC_MOUNT_ROOT)
    """Where ``pvc://<claim>/...`` claims are mounted (``<pvc_root>/<claim>``)."""

    @model_validator(mode="after")
    def _one_credential(self) -> StorageSettings:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError(f"set either {ENV_BEARER_TOKEN} or {ENV_USERNAME}, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"{ENV_USERNAME} and {ENV_PASSWORD} must be set together")
        return self


def load_storage_settings(**overrides: Any) -> StorageSettings:
    """Read the settings from the environment; raises `StorageError` naming the variable."""
    try:
        return StorageSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = f"{ENV_PREFIX}{field.upper()}: " if field else ""
            problems.append(where + error["msg"])
        raise StorageError("invalid storage settings: " + "; ".join(problems)) from None
