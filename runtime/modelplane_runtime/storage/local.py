"""``file://`` and ``pvc://``: copy a local folder or file (unpacking a local archive).

The source is trusted more than an archive (it is the user's own volume), but the copy
still never leaves it: a symlink that resolves outside the source folder is refused, and
so are devices, fifos and sockets (reading a fifo would hang the init container).
Symlinks that stay inside are recreated as relative symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from modelplane_runtime.storage.archive import extract
from modelplane_runtime.storage.content import Kind, classify
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.settings import ENV_PREFIX, StorageSettings
from modelplane_runtime.storage.uri import FileURI, PvcURI


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _copy_tree(source: str, target: Path, real_root: str) -> None:
    """Copy folder ``source`` (a real path inside ``real_root``) into ``target``."""
    with os.scandir(source) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            destination = target / entry.name
            if stat.S_ISLNK(info.st_mode):
                resolved = os.path.realpath(entry.path)
                if not _inside(real_root, resolved):
                    raise StorageError(
                        f"{entry.path} is a symlink to {resolved}, outside the model folder"
                    )
                os.symlink(os.path.relpath(resolved, source), destination)
            elif stat.S_ISDIR(info.st_mode):
                os.mkdir(destination)
                os.chmod(destination, 0o755)
                _copy_tree(entry.path, destination, real_root)
            elif stat.S_ISREG(info.st_mode):
                shutil.copyfile(entry.path, destination, follow_symlinks=False)
                os.chmod(destination, 0o755 if info.st_mode & 0o100 else 0o644)
            else:
                raise StorageError(f"{entry.path} is a device, fifo or socket, not a model file")


def copy_local(source: Path, work: Path, settings: StorageSettings, *, boundary: Path) -> Path:
    """Bring ``source`` into ``work``; returns the model folder to install.

    ``boundary`` is the folder the source must resolve inside (the claim's mount for
    ``pvc://``, ``/`` for ``file://``).
    """
    try:
        real = os.path.realpath(source, strict=True)
    except OSError:
        raise StorageError(f"{source} does not exist") from None
    real_boundary = os.path.realpath(boundary)
    if not _inside(real_boundary, real):
        raise StorageError(f"{source} resolves to {real}, outside {boundary}")
    if _inside(real, os.path.realpath(work)):
        raise StorageError(f"the destination is inside the source folder {source}")
    model = work / "model"
    if os.path.isdir(real):
        model.mkdir()
        _copy_tree(real, model, real)
        return model
    if not os.path.isfile(real):
        raise StorageError(f"{source} is not a regular file or folder")
    content = classify(Path(real), source.name)
    if content.kind in (Kind.TAR, Kind.ZIP):
        model.mkdir()
        return extract(Path(real), model, settings, zip_format=content.kind is Kind.ZIP)
    model.mkdir()
    shutil.copyfile(real, model / content.filename)
    return model


def fetch_file(uri: FileURI, work: Path, settings: StorageSettings) -> Path:
    """``file:///path``."""
    return copy_local(Path(uri.path), work, settings, boundary=Path("/"))


def fetch_pvc(uri: PvcURI, work: Path, settings: StorageSettings) -> Path:
    """``pvc://<claim>/<path>``, read from the claim's mount under ``settings.pvc_root``."""
    mount = settings.pvc_root / uri.claim
    if not mount.is_dir():
        raise StorageError(
            f"PersistentVolumeClaim {uri.claim!r} is not mounted at {mount} "
            f"(the operator mounts it there; {ENV_PREFIX}PVC_ROOT changes the root)"
        )
    source = mount / uri.path
    if not os.path.lexists(source):
        raise StorageError(f"pvc://{uri.claim}/{uri.path} does not exist (looked in {source})")
    return copy_local(source, work, settings, boundary=mount)
