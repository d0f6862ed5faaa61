"""Model URIs parsed into typed objects, with errors that name what is wrong.

Dependency-free (no TensorFlow, no network) so the operator may use it to validate
``model.uri`` before it renders anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

from modelplane_runtime.storage.errors import StorageError

SUPPORTED_SCHEMES: Final = ("file", "pvc", "http", "https", "demo")
PLANNED_SCHEMES: Final = ("s3", "gs")
DEMO_MODELS: Final = ("seed-mlp",)
"""Names accepted after ``demo://``; an empty name means the first one."""

# A PersistentVolumeClaim name is a DNS-1123 subdomain (Kubernetes object name rules).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class FileURI:
    """``file:///abs/path``: a folder or a single file on the local filesystem."""

    path: PurePosixPath


@dataclass(frozen=True)
class PvcURI:
    """``pvc://<claim>/<path>``: a path inside a PersistentVolumeClaim mounted by the operator."""

    claim: str
    path: PurePosixPath
    """Relative to the claim's root; ``.`` for the whole claim."""


@dataclass(frozen=True)
class HttpURI:
    """``http(s)://...``: an archive (tar, tar.gz, zip) or a single ``.keras``/``.h5`` file."""

    url: str

    @property
    def redacted(self) -> str:
        """The URL without its query string, safe to show in errors and logs."""
        return redact_url(self.url)


@dataclass(frozen=True)
class DemoURI:
    """``demo://[name]``: the bundled demo model, built locally (no storage needed)."""

    name: str


ModelURI = FileURI | PvcURI | HttpURI | DemoURI


def redact_url(url: str) -> str:
    """``scheme://host/path`` of ``url``: no user info, no query string, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    suffix = "?..." if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{suffix}"


def _clean_relative(raw: str, uri: str) -> PurePosixPath:
    """A relative POSIX path with no ``..``, no empty or ``.`` noise."""
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"model URI {uri!r}: the path must not contain '..'")
    if any("\x00" in part for part in parts):
        raise StorageError(f"model URI {uri!r}: the path contains a NUL byte")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def parse_uri(uri: str) -> ModelURI:
    """Parse and validate a model URI; raises `StorageError` naming the problem."""
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError("model URI is empty")
    if uri != uri.strip():
        raise StorageError(f"model URI {uri!r} has leading or trailing whitespace")
    if "://" not in uri:
        hint = f" (did you mean 'file://{uri}'?)" if uri.startswith("/") else ""
        raise StorageError(
            f"model URI {uri!r} has no scheme{hint}; supported: "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise StorageError(f"model URI {redact_url(uri)!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in PLANNED_SCHEMES:
        raise StorageError(
            f"model URI scheme '{scheme}://' is not supported yet; use file://, pvc:// or "
            "http(s):// (for example a presigned URL to an archive)"
        )
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"model URI scheme '{parts.scheme}://' is unknown; supported: "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if scheme in ("http", "https"):
        return _parse_http(uri, parts.netloc)
    if parts.query or parts.fragment:
        raise StorageError(f"model URI {uri!r}: a {scheme}:// URI takes no '?' or '#' part")
    if scheme == "file":
        return _parse_file(uri, parts.netloc, parts.path)
    if scheme == "pvc":
        return _parse_pvc(uri, parts.netloc, parts.path)
    return _parse_demo(uri, parts.netloc, parts.path)


def _parse_file(uri: str, host: str, path: str) -> FileURI:
    if host not in ("", "localhost"):
        raise StorageError(
            f"model URI {uri!r}: file:// takes an absolute path (file:///models/x), "
            f"not a host ({host!r})"
        )
    decoded = unquote(path)
    if not decoded.startswith("/") or decoded == "/":
        raise StorageError(f"model URI {uri!r}: file:// needs an absolute path below '/'")
    return FileURI(PurePosixPath("/") / _clean_relative(decoded, uri))


def _parse_pvc(uri: str, claim: str, path: str) -> PvcURI:
    if not claim:
        raise StorageError(f"model URI {uri!r}: pvc:// needs a claim name (pvc://<claim>/<path>)")
    if len(claim) > 253 or not _DNS_SUBDOMAIN.match(claim):
        raise StorageError(
            f"model URI {uri!r}: {claim!r} is not a valid PersistentVolumeClaim name "
            "(lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    return PvcURI(claim, _clean_relative(unquote(path), uri))


def _parse_http(uri: str, netloc: str) -> HttpURI:
    parts = urlsplit(uri)
    if "@" in netloc:
        raise StorageError(
            f"model URI {redact_url(uri)!r}: credentials in the URL are not allowed (they would "
            "be visible in the resource); put them in the credentials Secret instead"
        )
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise StorageError(f"model URI {redact_url(uri)!r}: {exc}") from None
    if not host:
        raise StorageError(f"model URI {uri!r}: http(s):// needs a host")
    if any(ch.isspace() for ch in uri):
        raise StorageError(f"model URI {redact_url(uri)!r} contains whitespace; percent-encode it")
    return HttpURI(uri)


def _parse_demo(uri: str, host: str, path: str) -> DemoURI:
    name = (host + path).strip("/") or DEMO_MODELS[0]
    if name not in DEMO_MODELS:
        raise StorageError(
            f"model URI {uri!r}: unknown demo model {name!r}; available: "
            + ", ".join(f"demo://{n}" for n in DEMO_MODELS)
        )
    return DemoURI(name)
