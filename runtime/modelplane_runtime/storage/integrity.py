"""Checking a downloaded file against what the store says it holds.

The size is always checked. Then one checksum, the cheapest the store offers: CRC32C (GCS
keeps one for every object; ``google-crc32c`` computes it at memory speed in C), else MD5
(an S3 single-part ETag, GCS md5Hash, Azure Content-MD5). The file is read back once from
the page cache after all its ranges have arrived, which costs far less than the download
and works the same however many ranges were fetched in parallel. S3 multipart ETags are
not checksums of the content and are not checked (their size still is).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final

import google_crc32c

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.remote import RemoteObject

_CHUNK: Final = 4 * 1024 * 1024


_crc32c: Any = google_crc32c.Checksum  # untyped


def _digest(path: Path, algorithm: str) -> bytes:
    checksum: Any = _crc32c() if algorithm == "crc32c" else hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            checksum.update(chunk)
    return bytes(checksum.digest())


def verify(path: Path, obj: RemoteObject, shown: str, *, checksums: bool = True) -> str | None:
    """Raise unless ``path`` matches ``obj``; returns the checksum checked (or None)."""
    size = os.stat(path).st_size
    if size != obj.size:
        raise StorageError(f"{shown}: got {size} bytes, the store lists {obj.size}")
    if not checksums:
        return None
    for algorithm, expected in (("crc32c", obj.crc32c), ("md5", obj.md5)):
        if expected is None:
            continue
        actual = _digest(path, algorithm)
        if actual != expected:
            raise StorageError(
                f"{shown}: {algorithm.upper()} of the downloaded bytes is {actual.hex()}, the "
                f"store says {expected.hex()} (corrupted in transit or at rest); fetch again, "
                f"or set MODELPLANE_STORAGE_VERIFY_CHECKSUMS=false if this store's checksums "
                "are not content checksums"
            )
        return algorithm
    return None
