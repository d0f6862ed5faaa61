"""A remote model repository (s3://, gs://, Azure) mirrored into the local one, for polling.

With ``MODELPLANE_MODEL_URI`` set (``modelplane serve s3://bucket/model``, or the operator
with ``model.pollSeconds``), the data plane still serves the local repository at
``model_path``; before each look at it, ``Mirror.sync`` brings it up to date with the
remote: versions the policy wants that are complete there are copied in (each complete or
absent: storage/versions.py), and versions gone from the remote are removed, so the local
poll (dataplane/versions.py) loads and retires them as for a local folder.

Completeness is decided as for local folders: a remote version is copied once its listing
(keys, sizes, ETags or generations) is the same at two consecutive polls, and the copy
fails if it changed meanwhile. The first sync (at start-up) copies what is there at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelplane_runtime.dataplane.repository import wanted_versions
from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.versions import RemoteRepository, evict_version

log = logging.getLogger("modelplane.mirror")


class Mirror:
    """Keeps ``settings.model_path`` a copy of the versions wanted from ``settings.model_uri``."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.base = settings.model_path
        self.policy = settings.model_versions
        self.pinned = settings.model_version
        self.repository = RemoteRepository(settings.model_uri)
        self._seen: dict[int, str] = {}  # fingerprints at the last listing
        self._first = True

    def sync(self) -> None:
        """Copy in complete wanted versions and drop removed ones (run in a worker thread).

        At start-up a failure is a ModelLoadError (nothing to serve); later ones are logged
        and the local repository is left as it is, still served.
        """
        first, self._first = self._first, False
        try:
            self._sync(settle=not first)
        except StorageError as exc:
            if first:
                raise ModelLoadError(str(exc)) from None
            log.warning("could not follow %s: %s; still serving what is loaded",
                        self.repository.uri.display, exc)

    def _sync(self, *, settle: bool) -> None:
        listed = {version.number: version for version in self.repository.versions()}
        complete = [
            number for number, version in listed.items()
            if not settle or self._seen.get(number) == version.fingerprint
        ]
        self._seen = {number: version.fingerprint for number, version in listed.items()}
        self.base.mkdir(parents=True, exist_ok=True)
        local = {int(p.name) for p in self.base.iterdir() if p.is_dir() and p.name.isdigit()}
        for number in wanted_versions(sorted(complete), self.policy, self.pinned):
            if number not in local:
                log.info("copying version %d from %s", number, self.repository.uri.display)
                self.repository.fetch(number, self.base, expect=listed[number])
        for number in sorted(local - set(listed)):
            log.info("version %d is gone from %s: removing it", number,
                     self.repository.uri.display)
            evict_version(self.base, number)

    def close(self) -> None:
        """Release the storage client."""
        self.repository.close()


def cache_folder(uri: str) -> Path:
    """Where ``modelplane serve <remote URI>`` keeps its copy (stable across restarts)."""
    import hashlib
    import os

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "modelplane" / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
