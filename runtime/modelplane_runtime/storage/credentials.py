"""Where object store credentials come from: the environment, and a mounted Secret's files.

Kubernetes gives a container a Secret in one of two ways, and ``modelplane fetch`` reads both:

- as environment variables (``envFrom``): each key of the Secret becomes a variable;
- as a volume: each key becomes a file. ``MODELPLANE_STORAGE_CREDENTIALS_DIR`` names the
  folder; a file named after a variable (``AWS_ACCESS_KEY_ID``) holds its value. A trailing
  newline (``echo``, an editor) is dropped. A variable that names a file
  (``GOOGLE_APPLICATION_CREDENTIALS``, ``AWS_CA_BUNDLE``, ``AWS_SHARED_CREDENTIALS_FILE``,
  ``AWS_CONFIG_FILE``) takes the mounted file's path instead, so a key file stays a file.

Only the names in `uri.CREDENTIAL_VARIABLES` are read from the folder; anything else there
(the kubelet's ``..data`` links, a README) is ignored. When a variable is set both ways, the
environment wins: a container's own ``env`` is the more specific setting. Each value keeps
its origin, so an "access denied" error can say which credential was used and where it came
from, and `Credentials.scrub` removes every secret value from a message before it is shown.
A mounted Secret is updated in place when it rotates; `load_credentials` reads it afresh.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.uri import (
    CREDENTIAL_VARIABLES,
    ENV_CREDENTIALS_DIR,
    PATH_VARIABLES,
    SECRET_VARIABLES,
)

_KNOWN: Final = frozenset(name for names in CREDENTIAL_VARIABLES.values() for name in names)
_MAX_FILE: Final = 1024 * 1024
# Secret parts of values that are not secret as a whole (a connection string names the
# account and endpoint too; a service account file names its e-mail).
_SECRET_PARTS: Final = re.compile(
    r'(?:AccountKey|SharedAccessSignature)=([^;]+)|"private_key(?:_id)?"\s*:\s*"([^"]+)"'
)
_MIN_SECRET: Final = 4


@dataclass(frozen=True)
class Credentials:
    """Credential variables and where each came from."""

    values: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)
    """``the environment`` or the file's path, per variable."""
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)
    """More values to scrub from messages (a SAS from the URI)."""

    def __repr__(self) -> str:
        return f"Credentials(names={sorted(self.values)!r})"

    def get(self, *names: str) -> str | None:
        """The value of the first of ``names`` that is set and not empty."""
        for name in names:
            value = self.values.get(name)
            if value:
                return value
        return None

    def first(self, *names: str) -> str | None:
        """The first of ``names`` that is set and not empty."""
        return next((name for name in names if self.values.get(name)), None)

    def origin(self, name: str) -> str:
        """``NAME from the environment`` or ``NAME from /path/NAME``: for error messages."""
        where = self.origins.get(name, "the environment")
        return f"{name} from {where}"

    def with_secret(self, value: str | None) -> Credentials:
        """A copy that also scrubs ``value`` from messages."""
        if not value:
            return self
        return Credentials(self.values, self.origins, (*self.extra_secrets, value))

    def secrets(self) -> list[str]:
        """Every secret value (whole, and the secret parts of composite ones)."""
        found: list[str] = list(self.extra_secrets)
        for name, value in self.values.items():
            if name in SECRET_VARIABLES and not (
                name in PATH_VARIABLES and not value.lstrip().startswith("{")
            ):
                found.append(value)
            for match in _SECRET_PARTS.finditer(value):
                found.extend(part for part in match.groups() if part)
        return [secret for secret in found if len(secret) >= _MIN_SECRET]

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _read_folder(folder: Path) -> dict[str, tuple[str, str]]:
    if not folder.is_dir():
        raise StorageError(
            f"{ENV_CREDENTIALS_DIR}={folder} is not a folder (is the credentials Secret "
            "mounted there?)"
        )
    found: dict[str, tuple[str, str]] = {}
    for name in sorted(_KNOWN):
        path = folder / name
        if not path.is_file():  # follows the kubelet's ..data symlinks
            continue
        if name in PATH_VARIABLES:
            found[name] = (str(path), str(path))
            continue
        try:
            with path.open("rb") as stream:
                raw = stream.read(_MAX_FILE + 1)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        if len(raw) > _MAX_FILE:
            raise StorageError(f"{path} is larger than {_MAX_FILE} bytes; not a credential")
        try:
            value = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise StorageError(f"{path} is not UTF-8 text") from None
        found[name] = (value, str(path))
    return found


def load_credentials(
    folder: Path | None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The credential variables from ``environ`` (default ``os.environ``) and ``folder``."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    if folder is not None:
        for name, (value, origin) in _read_folder(folder).items():
            values[name], origins[name] = value, origin
    for name in _KNOWN:
        from_env = environ.get(name)
        if from_env:
            values[name], origins[name] = from_env, "the environment"
    return Credentials(values, origins)
