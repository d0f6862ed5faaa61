"""What every object store backend (s3.py, gcs.py, azure.py) offers the downloader.

A backend lists objects, looks one up, and streams a byte range of one into a callback. It
turns its SDK's exceptions into a `StorageError` (permanent: asking again cannot help) or a
`TransientError` (a dropped connection, a timeout, a 5xx, throttling), whose retries, with
backoff and resumption where the last attempt stopped, belong to transfer.py. The SDKs' own
retries are switched off so that one policy, one count and one message hold everywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from modelplane_runtime.storage.credentials import Credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.settings import StorageSettings
from modelplane_runtime.storage.uri import ObjectURI

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth another attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RemoteObject:
    """One object as listed: enough to download it and check what arrived."""

    key: str
    size: int
    tag: str | None = None
    """The store's version of it (S3 ETag, GCS generation, Azure ETag): every range of one
    download asks for this version, so an object replaced mid-download is an error, not a
    file stitched from two uploads."""
    md5: bytes | None = None
    """The MD5 digest the store reports (S3 single-part ETag, GCS md5Hash, Content-MD5)."""
    crc32c: bytes | None = None
    """The CRC32C the store reports (GCS), big-endian."""
    modified: float | None = None
    """Last modification, seconds since the epoch."""


Write = Callable[[bytes], None]


class Store(Protocol):
    """An object store client bound to one bucket or container."""

    uri: ObjectURI
    endpoint: str
    """Where requests go, for messages (``s3 in eu-west-1``, ``http://127.0.0.1:9000``)."""
    credential_source: str
    """Which credential is used and where it came from, for messages (never the secret)."""

    def list(self, prefix: str) -> Iterator[RemoteObject]:
        """Every object whose key starts with ``prefix``, in any order."""
        ...

    def stat(self, key: str) -> RemoteObject | None:
        """The object ``key``, or None if there is none."""
        ...

    def read(self, obj: RemoteObject, start: int, end: int, write: Write) -> None:
        """Stream bytes ``[start, end)`` of ``obj`` into ``write``, in chunks."""
        ...

    def verifiable(self, obj: RemoteObject) -> RemoteObject:
        """``obj`` with only the checksums that describe its bytes as downloaded."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_store(uri: ObjectURI, settings: StorageSettings, credentials: Credentials) -> Store:
    """A client for ``uri``'s store (the SDK is imported only here, on first use)."""
    if uri.scheme == "s3":
        from modelplane_runtime.storage.s3 import S3Store

        return S3Store(uri, settings, credentials)
    if uri.scheme == "gs":
        from modelplane_runtime.storage.gcs import GcsStore

        return GcsStore(uri, settings, credentials)
    from modelplane_runtime.storage.azure import AzureStore

    return AzureStore(uri, settings, credentials)


def backoff(settings: StorageSettings, failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures: doubling, capped, jittered
    (replicas that restart together spread out instead of retrying in step)."""
    delay = min(settings.backoff_s * 2 ** (failures - 1), settings.max_backoff_s)
    return float(delay * random.uniform(0.5, 1.0))


def gave_up(attempts: int) -> str:
    """``gave up after N attempts``, in the one wording every message uses."""
    return f"gave up after {attempts} attempt{'' if attempts == 1 else 's'}"


def with_retries(
    call: Callable[[], T],
    settings: StorageSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str, int, float], None] | None = None,
) -> T:
    """``call()``, retried on `TransientError` up to ``settings.retries`` more times."""
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except TransientError as exc:
            if attempt == attempts:
                raise StorageError(f"{exc.message} ({gave_up(attempts)})") from None
            delay = backoff(settings, attempt)
            if on_retry is not None:
                on_retry(exc.message, attempt, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
