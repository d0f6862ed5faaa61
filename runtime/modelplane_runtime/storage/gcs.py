"""``gs://bucket/prefix`` through google-cloud-storage.

Credentials, first found wins: ``GOOGLE_APPLICATION_CREDENTIALS`` (a key file's path, or the
JSON itself, which is what ``envFrom`` makes of a Secret holding the file: a common
confusion this accepts instead of failing on); ``MODELPLANE_STORAGE_ANONYMOUS=true``, or
``STORAGE_EMULATOR_HOST`` without a key (as the SDK does for emulators), for unsigned
requests; else Application Default Credentials (GKE Workload Identity or the node's service
account, through the metadata server); and when those find nothing, unsigned requests, so a
public bucket needs no configuration (as KServe's storage initializer does). The scope is
read-only.

Integrity: the listed size, and the CRC32C that GCS keeps for every object (composite
objects included); each range asks for the listed generation, so a replaced object fails
instead of mixing two uploads.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import google.auth
import google.auth.exceptions
import requests
import urllib3
from google.api_core import exceptions as api
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from modelplane_runtime.storage.credentials import Credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.remote import RemoteObject, TransientError, Write
from modelplane_runtime.storage.settings import StorageSettings
from modelplane_runtime.storage.uri import ENV_ANONYMOUS, ObjectURI

log = logging.getLogger("modelplane.storage")

READ_ONLY: Final = ("https://www.googleapis.com/auth/devstorage.read_only",)
_FIELDS: Final = "items(name,size,generation,md5Hash,crc32c,updated),nextPageToken"
_TRANSIENT: Final = (
    api.TooManyRequests, api.InternalServerError, api.BadGateway, api.ServiceUnavailable,
    api.GatewayTimeout,
)
_anonymous: Any = AnonymousCredentials  # untyped


class _Sink:
    """A write-only file object over the downloader's callback."""

    def __init__(self, write: Write) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        return len(data)


class GcsStore:
    """One Google Cloud Storage bucket."""

    def __init__(self, uri: ObjectURI, settings: StorageSettings, credentials: Credentials):
        self.uri = uri
        self._timeout = (settings.timeout_s, settings.timeout_s)
        emulator = credentials.get("STORAGE_EMULATOR_HOST")
        if emulator and "://" not in emulator:
            emulator = "http://" + emulator
        found, project, self.credential_source = _credentials(credentials, settings, emulator)
        options = {"api_endpoint": emulator} if emulator else None
        project = project or credentials.get("GOOGLE_CLOUD_PROJECT")
        try:
            self._client = storage.Client(
                project=project, credentials=found, client_options=options
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise StorageError(f"{uri.display}: cannot set up the GCS client: {exc}") from None
        self._bucket = self._client.bucket(uri.bucket)
        self.endpoint = emulator or "storage.googleapis.com"

    def list(self, prefix: str) -> Iterator[RemoteObject]:
        """Every object under ``prefix``."""
        try:
            blobs = self._client.list_blobs(
                self.uri.bucket, prefix=prefix, fields=_FIELDS, retry=None,
                timeout=self._timeout,
            )
            for blob in blobs:
                yield _object(blob)
        except Exception as exc:
            raise self._explain(exc, f"listing gs://{self.uri.bucket}/{prefix}", True) from None

    def stat(self, key: str) -> RemoteObject | None:
        """The object's metadata; None when it does not exist."""
        try:
            blob = self._bucket.get_blob(key, retry=None, timeout=self._timeout)
        except Exception as exc:
            raise self._explain(exc, f"reading gs://{self.uri.bucket}/{key}", False) from None
        return None if blob is None else _object(blob)

    def read(self, obj: RemoteObject, start: int, end: int, write: Write) -> None:
        """Download ``[start, end)`` of the listed generation, streamed in small chunks."""
        generation = int(obj.tag) if obj.tag else None
        blob = self._bucket.blob(obj.key, generation=generation)
        try:
            blob.download_to_file(
                _Sink(write), start=start, end=end - 1, raw_download=True, checksum=None,
                retry=None, timeout=self._timeout,
            )
        except (StorageError, TransientError):
            raise
        except Exception as exc:
            raise self._explain(exc, f"reading gs://{self.uri.bucket}/{obj.key}", False) from None

    def verifiable(self, obj: RemoteObject) -> RemoteObject:
        """GCS checksums always describe the stored bytes (``raw_download``)."""
        return obj

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()

    def _explain(
        self, exc: BaseException, action: str, listing: bool
    ) -> StorageError | TransientError:
        return explain(exc, action, self.uri, self.endpoint, self.credential_source, listing)


def _from_info(info: Any) -> tuple[Any, str | None]:
    """Credentials from a key file's JSON, by its declared type.

    google-auth's generic loaders are deprecated because they accept any configuration;
    naming the accepted types here is the validation its documentation asks for.
    """
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        from google.oauth2 import service_account

        from_info: Any = service_account.Credentials.from_service_account_info
        return from_info(info, scopes=READ_ONLY), info.get("project_id")
    if kind == "authorized_user":
        from google.oauth2 import credentials as user

        from_user: Any = user.Credentials.from_authorized_user_info
        return from_user(info, scopes=READ_ONLY), None
    if kind == "external_account":
        source = info.get("credential_source", {})
        if "environment_id" in source:
            from google.auth import aws as external
        elif "executable" in source:
            from google.auth import pluggable as external  # type: ignore[no-redef]
        else:
            from google.auth import identity_pool as external  # type: ignore[no-redef]
        loader: Any = external.Credentials.from_info
        return loader(info, scopes=READ_ONLY), None
    raise ValueError(
        f"its type is {kind!r}; use a service account key (service_account), a workload "
        "identity federation configuration (external_account) or authorized_user"
    )


def _credentials(
    credentials: Credentials, settings: StorageSettings, emulator: str | None
) -> tuple[Any, str | None, str]:
    """Credentials, their project, and a description of where they came from."""
    key = credentials.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key:
        origin = credentials.origin("GOOGLE_APPLICATION_CREDENTIALS")
        text = key
        if not key.lstrip().startswith("{"):
            try:
                text = Path(key).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise StorageError(
                    f"{origin} names {key}, which does not exist (mount the key file there, "
                    "or put the JSON itself in the variable)"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise StorageError(f"{origin}: cannot read {key}: {exc}") from None
        try:
            info = json.loads(text)
        except ValueError:
            raise StorageError(f"{origin} holds text that is not valid JSON") from None
        try:
            found, project = _from_info(info)
        except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
            message = credentials.scrub(str(exc))
            raise StorageError(f"{origin} is not a usable credentials file: {message}") from None
        return found, project, f"{_describe(found)} ({origin})"
    if settings.anonymous:
        return _anonymous(), None, f"no credentials ({ENV_ANONYMOUS}=true)"
    if emulator:
        return _anonymous(), None, "no credentials (STORAGE_EMULATOR_HOST is set)"
    try:
        found, project = google.auth.default(scopes=READ_ONLY)
    except google.auth.exceptions.DefaultCredentialsError:
        log.info("no Google credentials found; sending unsigned requests (public buckets)")
        return _anonymous(), None, (
            "no credentials: no GOOGLE_APPLICATION_CREDENTIALS, no gcloud login, no metadata "
            "server (GKE Workload Identity)"
        )
    return found, project, f"Application Default Credentials ({_describe(found)})"


def _describe(found: Any) -> str:
    email = getattr(found, "service_account_email", None)
    module = type(found).__module__
    if "compute_engine" in module:
        return "the metadata server (GKE Workload Identity or the node's service account)"
    if "external_account" in module or "identity_pool" in module:
        return "workload identity federation"
    if email:
        return f"service account {email}"
    return type(found).__name__


def _object(blob: Any) -> RemoteObject:
    md5 = base64.b64decode(blob.md5_hash) if blob.md5_hash else None
    crc = base64.b64decode(blob.crc32c) if blob.crc32c else None
    updated = blob.updated.timestamp() if blob.updated is not None else None
    tag = str(blob.generation) if blob.generation else None
    return RemoteObject(blob.name, int(blob.size or 0), tag, md5, crc, updated)


def explain(
    exc: BaseException, action: str, uri: ObjectURI, endpoint: str, source: str, listing: bool
) -> StorageError | TransientError:
    """A one-line error for ``exc`` that says what to do; never the credentials."""
    prefix = f"{action}: "
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"{prefix}HTTP {exc.code} from {endpoint}")
    if isinstance(exc, api.NotFound):
        if listing or "bucket" in str(exc.message).lower():
            return StorageError(
                f"{prefix}bucket {uri.bucket!r} does not exist at {endpoint}: check the bucket "
                "in model.uri"
            )
        return StorageError(f"{prefix}no such object (deleted or replaced during the download?)")
    if isinstance(exc, api.Unauthorized):
        return StorageError(
            f"{prefix}credentials refused (used {source}): check GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, api.Forbidden):
        return StorageError(
            f"{prefix}access denied (used {source}): grant roles/storage.objectViewer on "
            f"gs://{uri.bucket}, or set model.credentialsSecret / the ServiceAccount"
        )
    if isinstance(exc, api.PreconditionFailed):
        return StorageError(f"{prefix}the object changed while it was being downloaded")
    if isinstance(exc, api.GoogleAPICallError):
        return StorageError(f"{prefix}HTTP {exc.code} from {endpoint}: {exc.message}")
    if isinstance(exc, google.auth.exceptions.RefreshError):
        reason = str(exc.args[0]) if exc.args else type(exc).__name__
        if getattr(exc, "retryable", False):
            return TransientError(f"{prefix}getting a token failed: {reason}")
        return StorageError(
            f"{prefix}credentials refused by the token endpoint (used {source}): {reason}"
        )
    if isinstance(exc, google.auth.exceptions.TransportError):
        return TransientError(f"{prefix}cannot reach the token endpoint: {_reason(exc)}")
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.ReadTimeout
    ):
        return TransientError(
            f"{prefix}cannot reach {endpoint}: {_reason(exc)}; check the endpoint and that "
            "the pod may connect to it"
        )
    if isinstance(exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                        OSError)):
        return TransientError(f"{prefix}connection to {endpoint} lost: {_reason(exc)}")
    return StorageError(f"{prefix}{type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())[:300]
