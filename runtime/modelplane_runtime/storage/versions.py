"""Version folders of a model repository in an object store, for hot reload.

TF Serving's file system poller lists a repository's integer folders every
``file_system_poll_wait_seconds`` and loads the ones its version policy wants. This is that
listing and copying for ``s3://``, ``gs://`` and Azure repositories, with the same
credentials as ``modelplane fetch`` (credentials.py); when to poll, which versions to load
and when a listed version counts as complete are the data plane's decisions::

    with RemoteRepository("s3://models/resnet") as repository:
        listed = repository.versions()           # [RemoteVersion(number=1, ...), ...]
        newest = listed[-1]
        path = repository.fetch(newest.number, cache, expect=newest)   # cache/<number>
        ...
        evict_version(cache, 1)

- `RemoteRepository.versions` lists every object under the repository once and groups
  them by their first folder when its name is an integer (``1/``, ``0042/``, as TF Serving
  accepts); objects elsewhere are ignored. Each `RemoteVersion` carries its file count, total
  size, newest modification time and a `fingerprint` of its keys, sizes and ETags or
  generations. A version still being uploaded changes fingerprint from one listing to the
  next, so "the same fingerprint in two consecutive polls" is a simple completeness test;
  passing ``expect`` to `fetch` makes the copy fail (and leave nothing) if the version has
  changed since it was listed.
- `RemoteRepository.fetch` downloads ``<repository>/<number>/`` into ``<cache>/<number>``
  complete or not at all: it is built in a hidden folder beside it
  (``.modelplane-fetch-<number>-*``) with the downloader of ``modelplane fetch`` (parallel,
  resumable, checksummed, with progress lines) and renamed into place; an existing
  ``<cache>/<number>`` is replaced by a rename too, so at every moment that path is either
  absent or a complete copy. Leftovers of an interrupted copy of the same version are
  removed first. Different versions may be fetched at the same time; one version once
  at a time.
- `evict_version` removes ``<cache>/<number>`` the same way: renamed aside, then deleted.

A call that fails with `StorageError` drops the client, so the next call reads the
credentials afresh (a rotated Secret mounted as files is picked up without a restart).
The client is thread-safe for one call at a time per repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from modelplane_runtime.storage.credentials import Credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.objectstore import (
    Listing,
    credentials_for,
    fetch_listing,
    list_folder,
    scrubbed,
)
from modelplane_runtime.storage.remote import RemoteObject, Store, open_store
from modelplane_runtime.storage.settings import StorageSettings, load_storage_settings
from modelplane_runtime.storage.uri import ObjectURI, parse_uri

WORK_PREFIX: Final = ".modelplane-fetch-"
OLD_PREFIX: Final = ".modelplane-old-"
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteVersion:
    """One integer version folder of a remote repository, as listed."""

    number: int
    files: int
    bytes: int
    modified: float | None
    """Newest modification time of its objects (seconds since the epoch), if the store says."""
    fingerprint: str
    """SHA-256 over its objects' relative keys, sizes and ETags/generations."""


def _fingerprint(objects: list[RemoteObject], prefix: str) -> str:
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.key):
        digest.update(f"{obj.key[len(prefix):]}\0{obj.size}\0{obj.tag or ''}\n".encode())
    return digest.hexdigest()


def group_versions(objects: list[RemoteObject], prefix: str) -> list[RemoteVersion]:
    """Group listed objects into integer version folders (pure; sorted by number)."""
    groups: dict[int, tuple[str, list[RemoteObject]]] = {}
    for obj in objects:
        first, sep, _rest = obj.key[len(prefix):].partition("/")
        if not sep or not first.isdigit() or not first.isascii():
            continue
        number = int(first)
        name, members = groups.setdefault(number, (first, []))
        if name == first:  # "7/" and "007/" are both version 7 to TF Serving: keep the first
            members.append(obj)
    versions = []
    for number, (name, members) in sorted(groups.items()):
        stamps = [obj.modified for obj in members if obj.modified is not None]
        versions.append(RemoteVersion(
            number, len(members), sum(obj.size for obj in members),
            max(stamps) if stamps else None, _fingerprint(members, f"{prefix}{name}/"),
        ))
    return versions


class RemoteRepository:
    """A versioned model repository in an object store, listed and copied repeatedly."""

    def __init__(self, uri: str | ObjectURI, settings: StorageSettings | None = None) -> None:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
        if not isinstance(parsed, ObjectURI):
            raise StorageError(
                f"{uri!r} is not an object store URI (s3://, gs://, az:// or Azure https://); "
                "a local repository is watched in place"
            )
        self.uri = parsed
        self.settings = settings if settings is not None else load_storage_settings()
        self._store: Store | None = None
        self._credentials = Credentials()
        self._lock = threading.Lock()

    @property
    def _prefix(self) -> str:
        return f"{self.uri.key}/" if self.uri.key else ""

    def versions(self) -> list[RemoteVersion]:
        """The integer version folders there now, oldest first (an empty list if none)."""
        objects = self._call(lambda store: list_folder(store, self._prefix, self.settings))
        return group_versions(objects, self._prefix)

    def fetch(self, number: int, cache: Path, *, expect: RemoteVersion | None = None) -> Path:
        """Copy version ``number`` into ``cache/<number>`` atomically; returns that path."""
        if number < 0:
            raise StorageError(f"version {number} is negative")
        cache = Path(os.path.abspath(cache))
        cache.mkdir(parents=True, exist_ok=True)
        prefix = f"{self._prefix}{number}/"
        for entry in cache.iterdir():  # an earlier copy of this version, interrupted
            if entry.name.startswith(f"{WORK_PREFIX}{number}-"):
                shutil.rmtree(entry, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{number}-", dir=cache))
        try:
            model = self._call(lambda store: self._copy(store, number, prefix, work, expect))
            os.chmod(model, 0o755)
            _replace(cache / str(number), model, cache)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return cache / str(number)

    def _copy(self, store: Store, number: int, prefix: str, work: Path,
              expect: RemoteVersion | None) -> Path:
        objects = list_folder(store, prefix, self.settings)
        shown = self.uri.child(str(number)).display
        if not objects:
            raise StorageError(f"{shown}: no such version (no objects under it)")
        if expect is not None and _fingerprint(objects, prefix) != expect.fingerprint:
            raise StorageError(
                f"{shown}: the version changed since it was listed (still being uploaded?); "
                "it will be fetched once it stops changing"
            )
        listing = Listing(objects, prefix, single=False)
        return fetch_listing(store, self.uri.child(str(number)), listing, work, self.settings)

    def _call(self, action: Callable[[Store], T]) -> T:
        with self._lock:
            if self._store is None:
                self._credentials = credentials_for(self.uri, self.settings)
                self._store = open_store(self.uri, self.settings, self._credentials)
            store, credentials = self._store, self._credentials
        try:
            return action(store)
        except StorageError as exc:
            with self._lock:
                if self._store is store:
                    self._store = None
                    store.close()
            raise scrubbed(exc, credentials) from None

    def close(self) -> None:
        """Release the client's connections."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> RemoteRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replace(target: Path, new: Path, cache: Path) -> None:
    """Put ``new`` at ``target``; an existing ``target`` is renamed aside first, then removed."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=cache)) / target.name
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)


def evict_version(cache: Path, number: int) -> None:
    """Remove ``cache/<number>``, renaming it aside first so it is never seen half-deleted."""
    target = Path(cache) / str(number)
    if not target.exists():
        return
    aside = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=cache))
    os.rename(target, aside / target.name)
    shutil.rmtree(aside, ignore_errors=True)
