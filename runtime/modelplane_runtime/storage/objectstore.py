"""``s3://``, ``gs://`` and Azure Blob URIs: a folder of objects, or one archive or model file.

What the URI names is decided the way ``aws s3 cp --recursive`` users expect, without its
classic trap (prefix ``models/a`` also matching ``models/ab/``): the objects under
``<key>/`` are a folder and are copied with their layout (a TF Serving repository with its
version folders, one SavedModel, a Keras file); when there are none, the object ``<key>``
itself is one file: a tar or zip archive is unpacked, a ``.keras``/``.h5`` file kept (as
for ``http(s)://``; content.py tells them apart). Folder placeholder objects (keys ending
in ``/``) are skipped. A key that would land outside the model folder (``..``) is refused.

The listed total is checked against ``MODELPLANE_STORAGE_MAX_DOWNLOAD_BYTES`` before any
download starts, and the number of objects against ``MODELPLANE_STORAGE_MAX_MEMBERS``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelplane_runtime.storage.archive import extract
from modelplane_runtime.storage.content import Kind, classify
from modelplane_runtime.storage.credentials import Credentials, load_credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.progress import Progress
from modelplane_runtime.storage.remote import RemoteObject, Store, open_store, with_retries
from modelplane_runtime.storage.settings import ENV_PREFIX, StorageSettings
from modelplane_runtime.storage.transfer import Downloader, Job, prepare_parent
from modelplane_runtime.storage.uri import ObjectURI

log = logging.getLogger("modelplane.storage")


@dataclass(frozen=True)
class Listing:
    """What a URI names: the objects of a folder (``single`` False) or one object."""

    objects: list[RemoteObject]
    prefix: str
    """Stripped from each key to make its path in the model folder."""
    single: bool


def _retry_log(message: str, attempt: int, delay: float) -> None:
    log.warning("%s; attempt %d, retrying in %.1fs", message, attempt, delay,
                extra={"event": "fetch_retry", "attempt": attempt})


def list_folder(store: Store, prefix: str, settings: StorageSettings) -> list[RemoteObject]:
    """The objects under ``prefix`` (placeholders dropped), retried as a whole."""

    def listing() -> list[RemoteObject]:
        found = []
        for obj in store.list(prefix):
            if obj.key.endswith("/"):
                continue
            found.append(obj)
            if len(found) > settings.max_members:
                raise StorageError(
                    f"{store.uri.display}: more than {settings.max_members} objects under "
                    f"{prefix!r}; point model.uri at the model's own folder, or raise "
                    f"{ENV_PREFIX}MAX_MEMBERS"
                )
        return found

    return with_retries(listing, settings, on_retry=_retry_log)


def resolve(store: Store, uri: ObjectURI, settings: StorageSettings) -> Listing:
    """Find what ``uri`` names; raises a clear error when it names nothing."""
    prefix = f"{uri.key}/" if uri.key else ""
    denied: StorageError | None = None
    try:
        objects = list_folder(store, prefix, settings)
    except StorageError as exc:
        if not uri.key or "access denied" not in exc.message:
            raise
        denied, objects = exc, []  # the role may read objects but not list: try the key
    if objects:
        return Listing(objects, prefix, single=False)
    if uri.key:
        try:
            found = with_retries(lambda: store.stat(uri.key), settings, on_retry=_retry_log)
        except StorageError:
            if denied is not None:
                raise denied from None  # the listing's error says more (what to grant)
            raise
        if found is not None:
            return Listing([found], uri.key[: uri.key.rfind("/") + 1], single=True)
    if denied is not None:
        raise denied
    where = f"bucket {uri.bucket!r}" if uri.scheme != "az" else f"container {uri.bucket!r}"
    raise StorageError(
        f"{uri.display}: nothing there: no object {uri.key or '(bucket root)'!r} and no "
        f"objects under it in {where} at {store.endpoint} (used {store.credential_source}); "
        "check the path in model.uri"
    )


def local_path(key: str, prefix: str) -> PurePosixPath:
    """The path of object ``key`` inside the model folder; refuses escapes."""
    relative = key[len(prefix):]
    if "\x00" in relative or "\\" in relative:
        raise StorageError(f"object key {key!r} has a NUL byte or backslash in its name")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise StorageError(f"object key {key!r} would be written outside the model folder")
    return PurePosixPath(*parts)


def plan(listing: Listing, root: Path, uri: ObjectURI) -> list[Job]:
    """One job per object, with its file's path under ``root``; refuses clashing keys."""
    files: dict[PurePosixPath, str] = {}
    folders: set[PurePosixPath] = set()
    jobs = []
    for obj in sorted(listing.objects, key=lambda o: o.key):
        path = local_path(obj.key, listing.prefix)
        clash = files.get(path) or (obj.key if path in folders else None)
        if clash is None:
            clash = next((files[p] for p in path.parents if p in files), None)
        if clash is not None:
            raise StorageError(
                f"{uri.display}: objects {clash!r} and {obj.key!r} map to the same file or "
                "folder; rename one"
            )
        files[path] = obj.key
        folders.update(path.parents)
        shown = f"{uri.scheme}://{uri.bucket}/{obj.key}"
        jobs.append(Job(obj, root / path, shown))
    return jobs


def download(
    store: Store, jobs: list[Job], settings: StorageSettings, shown: str
) -> None:
    """Check the limit, then download ``jobs`` with progress lines."""
    total = sum(job.obj.size for job in jobs)
    if total > settings.max_download_bytes:
        raise StorageError(
            f"{shown}: {total} bytes in {len(jobs)} objects is over the limit of "
            f"{settings.max_download_bytes} ({ENV_PREFIX}MAX_DOWNLOAD_BYTES)"
        )
    for job in jobs:
        prepare_parent(job.path)
    started = time.monotonic()
    log.info("fetching %s: %d bytes in %d objects from %s (credentials: %s)", shown, total,
             len(jobs), store.endpoint, store.credential_source,
             extra={"event": "fetch_start", "uri": shown, "total_bytes": total,
                    "total_files": len(jobs)})
    progress = Progress(shown, total, len(jobs), interval_s=settings.progress_s)
    with progress:
        Downloader(store, settings, progress).run(jobs)
    elapsed = max(time.monotonic() - started, 1e-9)
    fields = progress.snapshot().fields(shown)
    fields.update(event="fetch_done", bytes_per_second=round(total / elapsed), eta_seconds=0.0,
                  elapsed_seconds=round(elapsed, 2))
    log.info("downloaded %s: %d bytes in %.1fs", shown, total, elapsed, extra=fields)


def _unpack(download_path: Path, name: str, work: Path, settings: StorageSettings) -> Path:
    content = classify(download_path, name)
    model = work / "model"
    model.mkdir()
    if content.kind in (Kind.TAR, Kind.ZIP):
        root = extract(download_path, model, settings, zip_format=content.kind is Kind.ZIP)
        os.unlink(download_path)
        return root
    os.rename(download_path, model / content.filename)
    return model


def fetch_listing(
    store: Store, uri: ObjectURI, listing: Listing, work: Path, settings: StorageSettings
) -> Path:
    """Download what ``listing`` holds into ``work``; returns the model folder."""
    if listing.single:
        target = work / ".download"
        jobs = plan(listing, target, uri)
        download(store, jobs, settings, uri.display)
        return _unpack(jobs[0].path, jobs[0].path.name, work, settings)
    model = work / "model"
    model.mkdir()
    download(store, plan(listing, model, uri), settings, uri.display)
    return model


def credentials_for(uri: ObjectURI, settings: StorageSettings) -> Credentials:
    """The credentials for ``uri`` (environment and credentials folder, plus its SAS)."""
    return load_credentials(settings.credentials_dir).with_secret(uri.sas)


def scrubbed(error: StorageError, credentials: Credentials) -> StorageError:
    """``error`` with every secret value removed from its message."""
    return StorageError(credentials.scrub(error.message))


def fetch_object_store(uri: ObjectURI, work: Path, settings: StorageSettings) -> Path:
    """Fetch ``uri`` into ``work`` (see the module docstring); returns the model folder."""
    credentials = credentials_for(uri, settings)
    try:
        store = open_store(uri, settings, credentials)
        try:
            return fetch_listing(store, uri, resolve(store, uri, settings), work, settings)
        finally:
            store.close()
    except StorageError as exc:
        raise scrubbed(exc, credentials) from None

