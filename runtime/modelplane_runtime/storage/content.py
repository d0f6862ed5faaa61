"""What a fetched file is: an archive to unpack, a Keras model file to keep, or an error.

Content (magic bytes) decides, with the file name as a hint: a ``.keras`` file is itself a
zip, so the name wins for Keras files; an archive served under an odd name (or none, as
with ``/download?id=7``) is still recognised; an HTML error page served with status 200
under ``model.tar.gz`` is caught here instead of failing deep inside tarfile.
"""

from __future__ import annotations

import enum
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelplane_runtime.storage.errors import StorageError

_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_COMPRESSED_TAR_MAGIC: Final = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_HDF5_MAGIC: Final = b"\x89HDF\r\n\x1a\n"
_ARCHIVE_SUFFIXES: Final = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
# Top-level members of a Keras v3 `.keras` file (itself a zip archive).
_KERAS_MEMBERS: Final = frozenset({"config.json", "metadata.json"})


class Kind(enum.Enum):
    """How a fetched file becomes a model."""

    TAR = "tar"
    ZIP = "zip"
    KERAS = "keras"
    H5 = "h5"


@dataclass(frozen=True)
class Content:
    """A classified file: its kind and, for a kept model file, the name to keep it under."""

    kind: Kind
    filename: str


def _head(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(512)


def _describe(head: bytes) -> str:
    snippet = head[:16]
    if not snippet:
        return "the file is empty"
    return f"content starts with {snippet!r}"


def _looks_like_keras(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist()) >= _KERAS_MEMBERS
    except (zipfile.BadZipFile, OSError):
        return False


def classify(path: Path, name: str) -> Content:
    """Classify ``path`` whose original name (URL or file name) was ``name``."""
    head = _head(path)
    lower = name.lower()
    is_zip = head.startswith(_ZIP_MAGIC)
    if lower.endswith(".keras"):
        if not is_zip:
            raise StorageError(f"{name!r} is not a Keras model file ({_describe(head)})")
        return Content(Kind.KERAS, name)
    if lower.endswith((".h5", ".hdf5")):
        if not head.startswith(_HDF5_MAGIC):
            raise StorageError(f"{name!r} is not an HDF5 model file ({_describe(head)})")
        return Content(Kind.H5, name)
    if is_zip:
        if not lower.endswith(".zip") and _looks_like_keras(path):
            return Content(Kind.KERAS, "model.keras")
        return Content(Kind.ZIP, name)
    if head.startswith(_COMPRESSED_TAR_MAGIC) or head[257:262] == b"ustar":
        return Content(Kind.TAR, name)
    if head.startswith(_HDF5_MAGIC):
        return Content(Kind.H5, "model.h5")
    if lower.endswith(_ARCHIVE_SUFFIXES):
        raise StorageError(f"{name!r} is not a tar or zip archive ({_describe(head)})")
    # Old (pre-POSIX) tar files have no magic; tarfile recognises them by header checksum.
    if len(head) >= 512 and tarfile.is_tarfile(path):
        return Content(Kind.TAR, name)
    raise StorageError(
        f"{name!r} is neither an archive (tar, tar.gz, zip) nor a Keras model file "
        f"(.keras, .h5): {_describe(head)}"
    )
