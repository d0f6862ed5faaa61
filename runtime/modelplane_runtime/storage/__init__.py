"""Storage initializer: ``fetch(uri, dest)`` brings a model into a local folder.

The operator runs it as an init container (``modelplane fetch <model.uri> /mnt/models``)
into an emptyDir, and the runtime then serves that folder. Schemes:

- ``file://``, ``pvc://<claim>/<path>`` (local.py); ``http(s)://`` (tar, tar.gz or zip
  archives, or a single ``.keras``/``.h5`` file; http.py); ``demo://`` (the bundled demo);
- ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix`` and
  ``https://<account>.blob.core.windows.net/<container>/<prefix>`` (objectstore.py): a
  folder (a TF Serving repository, one SavedModel, a Keras file) or one archive or model
  file, through boto3, google-cloud-storage and azure-storage-blob (s3.py, gcs.py, azure.py).
  Downloads are parallel, resumable, bounded in memory, checked against size and
  CRC32C/MD5, with a JSON progress line every ``MODELPLANE_STORAGE_PROGRESS_S`` seconds
  (transfer.py, integrity.py, progress.py).

Object store credentials are each cloud's own variables (``AWS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``; `uri.CREDENTIAL_VARIABLES` lists
them for the operator), from the environment or, for a Secret mounted as a volume, from
files named after them in ``MODELPLANE_STORAGE_CREDENTIALS_DIR`` (credentials.py). Without
any, the SDK's default chain (IRSA, EKS Pod Identity, GKE Workload Identity, AKS Workload
Identity, managed identities), and when that finds nothing, unsigned requests for public
buckets; ``MODELPLANE_STORAGE_ANONYMOUS=true`` skips the chain.

For hot reload, versions.py lists the integer version folders of a remote repository and
copies one into a local cache atomically (`RemoteRepository`, `evict_version`), with the
same credentials and downloader.

Every failure is a `StorageError` with a one-line message that names the URI and what to do
and never holds a credential; ``dest`` is then left as it was (see staging.py for how a
fetch replaces an existing folder).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.settings import StorageSettings, load_storage_settings
from modelplane_runtime.storage.staging import install
from modelplane_runtime.storage.uri import (
    DemoURI,
    FileURI,
    HttpURI,
    ModelURI,
    ObjectURI,
    PvcURI,
    parse_uri,
    redact_url,
)

__all__ = ["StorageError", "StorageSettings", "fetch", "parse_uri"]
# The hot-reload API lives in versions.py (imported on use: it is not needed by a fetch).

log = logging.getLogger("modelplane.storage")


def _build(uri: ModelURI, work: Path, settings: StorageSettings) -> Path:
    if isinstance(uri, FileURI):
        from modelplane_runtime.storage.local import fetch_file

        return fetch_file(uri, work, settings)
    if isinstance(uri, PvcURI):
        from modelplane_runtime.storage.local import fetch_pvc

        return fetch_pvc(uri, work, settings)
    if isinstance(uri, HttpURI):
        from modelplane_runtime.storage.http import fetch_http

        return fetch_http(uri, work, settings)
    if isinstance(uri, ObjectURI):
        from modelplane_runtime.storage.objectstore import fetch_object_store

        return fetch_object_store(uri, work, settings)
    from modelplane_runtime.storage.demo import build_demo

    assert isinstance(uri, DemoURI)
    return build_demo(uri, work)


def fetch(uri: str, dest: Path, *, settings: StorageSettings | None = None) -> None:
    """Fetch the model at ``uri`` into the folder ``dest``, replacing what is there.

    Raises `StorageError` with a one-line message on any failure; ``dest`` is then untouched.
    """
    parsed = parse_uri(uri)
    settings = settings if settings is not None else load_storage_settings()
    shown = (redact_url(uri) if isinstance(parsed, HttpURI)
             else parsed.display if isinstance(parsed, ObjectURI) else uri)
    started = time.monotonic()
    try:
        install(Path(dest), lambda work: _build(parsed, work, settings))
    except OSError as exc:
        # Local I/O (disk full, permission denied): name the file, keep it to one line.
        if exc.errno == errno.ENOSPC:
            raise StorageError(
                f"fetching {shown} into {dest} failed: no space left on that volume "
                "(the model needs a larger emptyDir or ephemeral-storage limit)"
            ) from None
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StorageError(f"fetching {shown} into {dest} failed: {reason}{where}") from None
    log.info("fetched %s into %s in %.1fs", shown, os.path.abspath(dest),
             time.monotonic() - started)
