"""Azure Blob (``az://container/prefix``, ``https://<account>.blob.core.windows.net/...``)
through azure-storage-blob and azure-identity.

The account comes from the ``https`` form, else ``AZURE_STORAGE_SERVICE_ENDPOINT`` (the blob
endpoint, as the ``az`` command line names it: Azurite, sovereign clouds, private
endpoints), else ``AZURE_STORAGE_ACCOUNT``. Credentials, first found wins:
``AZURE_STORAGE_CONNECTION_STRING``; an account key (``AZURE_STORAGE_KEY``); a SAS (the
``https`` form's query string, else ``AZURE_STORAGE_SAS_TOKEN``);
``MODELPLANE_STORAGE_ANONYMOUS=true``; a service principal (``AZURE_CLIENT_ID``,
``AZURE_TENANT_ID``, ``AZURE_CLIENT_SECRET``); else azure-identity's chain for a pod (AKS
Workload Identity, a managed identity), and when it has no identity, unsigned requests, for
public containers. Developer-machine credentials (the ``az`` CLI, VS Code) are left out:
an init container has none, and probing them only slows the start.

Integrity: the listed size, and the blob's Content-MD5 when it has one (the SDKs set it on
single-request uploads); each range asks for the listed ETag, so a replaced blob fails
instead of mixing two uploads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobServiceClient

from modelplane_runtime.storage.credentials import Credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.remote import RemoteObject, TransientError, Write
from modelplane_runtime.storage.settings import StorageSettings
from modelplane_runtime.storage.uri import AZURE_BLOB_SUFFIXES, ENV_ANONYMOUS, ObjectURI

log = logging.getLogger("modelplane.storage")

_SCOPE: Final = "https://storage.azure.com/.default"
_CHUNK: Final = 256 * 1024
"""Bytes per request: the SDK holds a whole one in memory, and a cut loses it."""
_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})


def _parse_connection_string(text: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {key.strip().lower(): value.strip() for key, value in pairs}


class AzureStore:
    """One Azure Blob container."""

    def __init__(self, uri: ObjectURI, settings: StorageSettings, credentials: Credentials):
        # azure-core logs every request and response at INFO: far too much for a fetch.
        logging.getLogger("azure").setLevel(logging.WARNING)
        self.uri = uri
        options: dict[str, Any] = {
            "retry_total": 0,  # transfer.py retries
            "connection_timeout": settings.timeout_s,
            "read_timeout": settings.timeout_s,
            "max_single_get_size": _CHUNK,
            "max_chunk_get_size": _CHUNK,
        }
        self._credentials = credentials.with_secret(uri.sas)
        client, self.endpoint, self.credential_source = _client(
            uri, settings, self._credentials, options
        )
        self._client: Any = client
        self._container: Any = client.get_container_client(uri.bucket)

    def list(self, prefix: str) -> Iterator[RemoteObject]:
        """Every blob under ``prefix``."""
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                yield _object(blob)
        except Exception as exc:
            raise self._explain(exc, f"listing {self._where(prefix)}") from None

    def stat(self, key: str) -> RemoteObject | None:
        """The blob's properties; None when it does not exist."""
        try:
            properties = self._container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) in ("BlobNotFound", None):
                return None
            raise self._explain(exc, f"reading {self._where(key)}") from None
        except Exception as exc:
            raise self._explain(exc, f"reading {self._where(key)}") from None
        return _object(properties)

    def read(self, obj: RemoteObject, start: int, end: int, write: Write) -> None:
        """Download ``[start, end)`` of this ETag of the blob, in 256 KiB requests."""
        blob = self._container.get_blob_client(obj.key)
        condition = {"etag": obj.tag, "match_condition": MatchConditions.IfNotModified}
        try:
            stream = blob.download_blob(
                offset=start, length=end - start, max_concurrency=1,
                **(condition if obj.tag else {}),
            )
            for chunk in stream.chunks():
                write(chunk)
        except (StorageError, TransientError):
            raise
        except Exception as exc:
            raise self._explain(exc, f"reading {self._where(obj.key)}") from None

    def verifiable(self, obj: RemoteObject) -> RemoteObject:
        """Content-MD5 always describes the whole blob as stored."""
        return obj

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()

    def _where(self, key: str) -> str:
        return self.uri.child(key.removeprefix(self.uri.key).strip("/")).display if (
            key.startswith(self.uri.key)) else f"az://{self.uri.bucket}/{key}"

    def _explain(self, exc: BaseException, action: str) -> StorageError | TransientError:
        return explain(exc, action, self.uri, self.endpoint, self.credential_source)


def _account_url(uri: ObjectURI, credentials: Credentials) -> str:
    if uri.endpoint is not None:
        return uri.endpoint
    endpoint = credentials.get("AZURE_STORAGE_SERVICE_ENDPOINT")
    if endpoint:
        return endpoint.rstrip("/")
    account = credentials.get("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise StorageError(
            f"{uri.display}: which storage account? Set AZURE_STORAGE_ACCOUNT (or a "
            "connection string), or write the URI as "
            f"https://<account>{AZURE_BLOB_SUFFIXES[0]}/{uri.bucket}/{uri.key}"
        )
    return f"https://{account}{AZURE_BLOB_SUFFIXES[0]}"


def _client(
    uri: ObjectURI, settings: StorageSettings, credentials: Credentials, options: dict[str, Any]
) -> tuple[Any, str, str]:
    """The service client, its endpoint, and where its credential came from."""
    connection = credentials.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection and not uri.sas:
        origin = credentials.origin("AZURE_STORAGE_CONNECTION_STRING")
        fields = _parse_connection_string(connection)
        named = fields.get("accountname")
        if uri.account and named and named != uri.account:
            raise StorageError(
                f"{uri.display} names account {uri.account!r} but {origin} is for {named!r}"
            )
        try:
            client = BlobServiceClient.from_connection_string(connection, **options)
        except ValueError as exc:
            raise StorageError(f"{origin} is not a valid connection string: "
                               f"{credentials.scrub(str(exc))}") from None
        return client, client.url.rstrip("/"), f"the connection string ({origin})"
    url = _account_url(uri, credentials)
    account = uri.account or credentials.get("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME")
    key = credentials.get("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY")
    credential: Any
    if uri.sas:
        credential, source = uri.sas, "the SAS token in model.uri"
    elif key:
        name = credentials.first("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY") or ""
        if not account:
            account = url.rstrip("/").rsplit("/", 1)[-1]  # Azurite: http://host:port/<account>
        credential = {"account_name": account, "account_key": key}
        source = f"the account key of {account!r} ({credentials.origin(name)})"
    elif credentials.get("AZURE_STORAGE_SAS_TOKEN"):
        credential = credentials.get("AZURE_STORAGE_SAS_TOKEN")
        source = f"a SAS token ({credentials.origin('AZURE_STORAGE_SAS_TOKEN')})"
    elif settings.anonymous:
        credential, source = None, f"no credentials ({ENV_ANONYMOUS}=true)"
    else:
        credential, source = _identity(credentials)
    return BlobServiceClient(url, credential=credential, **options), url, source


def _identity(credentials: Credentials) -> tuple[Any, str]:
    """A token credential from Microsoft Entra ID, or None (anonymous) when there is none."""
    from azure.identity import (
        ClientSecretCredential,
        CredentialUnavailableError,
        DefaultAzureCredential,
    )

    client_id = credentials.get("AZURE_CLIENT_ID")
    tenant = credentials.get("AZURE_TENANT_ID")
    secret = credentials.get("AZURE_CLIENT_SECRET")
    authority = credentials.get("AZURE_AUTHORITY_HOST")
    extra = {"authority": authority} if authority else {}
    if client_id and tenant and secret:
        return ClientSecretCredential(tenant, client_id, secret, **extra), (
            f"service principal {client_id} ({credentials.origin('AZURE_CLIENT_SECRET')})"
        )
    chain = DefaultAzureCredential(
        managed_identity_client_id=client_id, workload_identity_client_id=client_id,
        exclude_cli_credential=True, exclude_powershell_credential=True,
        exclude_developer_cli_credential=True, exclude_visual_studio_code_credential=True,
        exclude_shared_token_cache_credential=True, exclude_interactive_browser_credential=True,
        **extra,
    )
    try:
        chain.get_token(_SCOPE)
    except CredentialUnavailableError:
        log.info("no Azure identity found; sending unsigned requests (public containers)")
        return None, "no credentials: no key, SAS, connection string, workload or managed identity"
    except ClientAuthenticationError as exc:
        raise StorageError(
            f"Microsoft Entra ID refused the pod's identity: {credentials.scrub(str(exc))[:300]}"
        ) from None
    return chain, "azure-identity (workload identity, managed identity or environment)"


def _object(blob: Any) -> RemoteObject:
    settings = getattr(blob, "content_settings", None)
    md5 = getattr(settings, "content_md5", None)
    modified = blob.last_modified.timestamp() if blob.last_modified is not None else None
    return RemoteObject(blob.name, int(blob.size), blob.etag, bytes(md5) if md5 else None,
                        None, modified)


def explain(
    exc: BaseException, action: str, uri: ObjectURI, endpoint: str, source: str
) -> StorageError | TransientError:
    """A one-line error for ``exc`` that says what to do; never the credentials."""
    prefix = f"{action}: "
    code = str(getattr(getattr(exc, "error_code", None), "value", None)
               or getattr(exc, "error_code", None) or "")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceModifiedError) or code == "ConditionNotMet":
        return StorageError(f"{prefix}the blob changed while it was being downloaded")
    if isinstance(exc, ResourceNotFoundError):
        if code == "ContainerNotFound":
            return StorageError(
                f"{prefix}container {uri.bucket!r} does not exist at {endpoint}: check the "
                "container in model.uri and the account"
            )
        if code == "BlobNotFound":
            return StorageError(f"{prefix}no such blob")
        return StorageError(
            f"{prefix}not found ({code or 'HTTP 404'}) at {endpoint}; used {source} (a private "
            "container answers 404 to requests without credentials)"
        )
    if isinstance(exc, ClientAuthenticationError) or code in (
        "AuthenticationFailed", "NoAuthenticationInformation", "InvalidAuthenticationInfo",
    ):
        return StorageError(
            f"{prefix}credentials refused ({code or status}): used {source}; check the key, "
            "SAS or connection string of the credentials Secret (and the SAS's expiry)"
        )
    if isinstance(exc, HttpResponseError) and status == 403:
        return StorageError(
            f"{prefix}access denied ({code or 'HTTP 403'}; used {source}): check the key, SAS "
            "or connection string of the credentials Secret, or grant the 'Storage Blob Data "
            "Reader' role on the container (a SAS needs read and list)"
        )
    if isinstance(exc, HttpResponseError) and (status in _TRANSIENT_STATUS or status is None):
        return TransientError(f"{prefix}{code or f'HTTP {status}'} from {endpoint}")
    if isinstance(exc, HttpResponseError):
        return StorageError(f"{prefix}{code or 'HTTP'} {status} from {endpoint}")
    if isinstance(exc, ServiceRequestError):
        return TransientError(
            f"{prefix}cannot reach {endpoint}: {_reason(exc)}; check the endpoint and that "
            "the pod may connect to it"
        )
    if isinstance(exc, (AzureError, OSError)):
        return TransientError(f"{prefix}{type(exc).__name__}: {_reason(exc)}")
    return StorageError(f"{prefix}{type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return " ".join(text.split())[:300]
