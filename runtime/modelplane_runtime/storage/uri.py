"""Model URIs parsed into typed objects, with errors that name what is wrong.

Dependency-free (no TensorFlow, no network, no cloud SDK) so the operator may use it to
validate ``model.uri`` before it renders anything, and to know which environment variables
each object store reads (`CREDENTIAL_VARIABLES`): the keys a ``model.credentialsSecret``
may hold, whether the operator passes them as variables (``envFrom``) or mounts the Secret
as files under `ENV_CREDENTIALS_DIR` (see credentials.py).

Object store URIs are taken literally after the bucket, as the AWS, gcloud and az command
lines take them: no percent-decoding, no query string (except a SAS on the Azure ``https``
form). A trailing ``/`` is dropped: ``s3://b/models/`` and ``s3://b/models`` are the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

from modelplane_runtime.storage.errors import StorageError

SUPPORTED_SCHEMES: Final = ("file", "pvc", "http", "https", "s3", "gs", "az", "demo")
OBJECT_STORE_SCHEMES: Final = ("s3", "gs", "az")
DEMO_MODELS: Final = ("seed-mlp",)
"""Names accepted after ``demo://``; an empty name means the first one."""

ENV_CREDENTIALS_DIR: Final = "MODELPLANE_STORAGE_CREDENTIALS_DIR"
"""A folder of files named after the variables below (a Secret mounted as a volume)."""
ENV_ANONYMOUS: Final = "MODELPLANE_STORAGE_ANONYMOUS"
"""``true``: send unsigned requests (public buckets) without looking for credentials."""

S3_VARIABLES: Final = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)
"""What ``s3://`` reads. Without keys, boto3's default chain: IRSA (``AWS_ROLE_ARN`` and
``AWS_WEB_IDENTITY_TOKEN_FILE``, injected by EKS), EKS Pod Identity, the instance role."""
GCS_VARIABLES: Final = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
)
"""What ``gs://`` reads. ``GOOGLE_APPLICATION_CREDENTIALS`` is a key file's path, or (from
``envFrom``) the JSON itself. Without it, Application Default Credentials (GKE Workload
Identity through the metadata server)."""
AZURE_VARIABLES: Final = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_SERVICE_ENDPOINT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
)
"""What Azure Blob reads: the ``az`` command line's names (``_ACCOUNT_NAME``/``_ACCOUNT_KEY``
are adlfs's spellings of the same). Without a key, SAS or connection string: a service
principal, AKS Workload Identity (``AZURE_FEDERATED_TOKEN_FILE``, injected) or a managed
identity, through azure-identity."""

CREDENTIAL_VARIABLES: Final = {"s3": S3_VARIABLES, "gs": GCS_VARIABLES, "az": AZURE_VARIABLES}
"""Per object store scheme, the variables a ``model.credentialsSecret`` may set."""
PATH_VARIABLES: Final = frozenset({
    "AWS_CA_BUNDLE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
})
"""Variables whose value names a file: from a credentials folder, the file's own path."""
SECRET_VARIABLES: Final = frozenset({
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
})
"""Variables whose values never appear in a log line, an error or a status."""

AZURE_BLOB_SUFFIXES: Final = (
    ".blob.core.windows.net",
    ".blob.core.chinacloudapi.cn",
    ".blob.core.usgovcloudapi.net",
)
"""Hosts of Azure Blob endpoints (public, China and US Government clouds)."""

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


@dataclass(frozen=True)
class ObjectURI:
    """``s3://``, ``gs://``, ``az://`` or ``https://<account>.blob.core.windows.net/...``:
    a folder (every object under ``key/``) or one object (an archive or a model file)."""

    scheme: str
    """``s3``, ``gs`` or ``az`` (the ``https`` Azure form too)."""
    bucket: str
    """The bucket (S3, GCS) or container (Azure)."""
    key: str
    """The object key or folder prefix, without leading or trailing ``/``; '' for all."""
    endpoint: str | None = None
    """``https://<account>.blob.core...`` when the URI named it (Azure ``https`` form)."""
    sas: str | None = field(default=None, repr=False)
    """A shared access signature from the ``https`` form's query string (a secret)."""

    @property
    def account(self) -> str | None:
        """The Azure storage account the URI names, if it names one."""
        if self.endpoint is None:
            return None
        return self.endpoint.removeprefix("https://").split(".", 1)[0]

    @property
    def display(self) -> str:
        """The URI as written, without the SAS: safe in errors and logs."""
        if self.endpoint is not None:
            base = f"{self.endpoint}/{self.bucket}/{self.key}".rstrip("/")
            return base + ("?..." if self.sas else "")
        return f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")

    def child(self, name: str) -> ObjectURI:
        """The URI of ``name`` below this folder (a version folder, say)."""
        key = f"{self.key}/{name}" if self.key else name
        return ObjectURI(self.scheme, self.bucket, key, self.endpoint, self.sas)


ModelURI = FileURI | PvcURI | HttpURI | ObjectURI | DemoURI


def is_object_store_uri(text: str) -> bool:
    """True for an s3://, gs:// or az:// URI, or Azure Blob's https:// form."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return False
    if scheme.lower() in OBJECT_STORE_SCHEMES:
        return True
    host = rest.split("/", 1)[0].split("?", 1)[0].lower()
    return scheme.lower() == "https" and host.endswith(AZURE_BLOB_SUFFIXES)


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
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"model URI scheme '{parts.scheme}://' is unknown; supported: "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if scheme in OBJECT_STORE_SCHEMES:
        return _parse_object(uri, scheme)
    azure_host = (parts.hostname or "").endswith(AZURE_BLOB_SUFFIXES)
    if scheme == "https" and azure_host and "@" not in parts.netloc:
        return _parse_azure_https(uri, parts.hostname or "", parts.path, parts.query)
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


# S3 and GCS bucket names: 3-63 characters (GCS allows up to 222 with dots), lower-case
# letters, digits, '-', '.' and (GCS) '_', starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# Azure container names: 3-63 lower-case letters, digits and single hyphens; $root, $web.
_CONTAINER = re.compile(r"^([a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]|\$root|\$web)$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")


def _object_key(uri: str, raw: str) -> str:
    if "\x00" in raw:
        raise StorageError(f"model URI {uri!r}: the path contains a NUL byte")
    if any(part == ".." for part in raw.split("/")):
        raise StorageError(f"model URI {uri!r}: the path must not contain '..'")
    return raw.strip("/")


def _parse_object(uri: str, scheme: str) -> ObjectURI:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    noun = "container" if scheme == "az" else "bucket"
    if not bucket:
        raise StorageError(
            f"model URI {uri!r}: {scheme}:// needs a {noun} ({scheme}://<{noun}>/<path>)"
        )
    pattern = _CONTAINER if scheme == "az" else _BUCKET
    if not pattern.match(bucket):
        rule = (
            "3-63 lower-case letters, digits and hyphens" if scheme == "az"
            else "3-63 lower-case letters, digits, '-', '.' and '_'"
        )
        raise StorageError(f"model URI {uri!r}: {bucket!r} is not a valid {noun} name ({rule})")
    return ObjectURI(scheme, bucket, _object_key(uri, key))


def _parse_azure_https(uri: str, host: str, path: str, query: str) -> ObjectURI:
    shown = redact_url(uri)
    account = host.split(".", 1)[0]
    if not _ACCOUNT.match(account):
        raise StorageError(
            f"model URI {shown!r}: {account!r} is not a valid storage account name "
            "(3-24 lower-case letters and digits)"
        )
    if query and "sig=" not in query:
        raise StorageError(
            f"model URI {shown!r}: the only query an Azure Blob URI takes is a SAS token"
        )
    parsed = _parse_object("az://" + path.lstrip("/"), "az")
    return ObjectURI("az", parsed.bucket, parsed.key, f"https://{host}", query or None)
