"""Checking a downloaded file against the size and checksum the store reports."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.integrity import verify
from modelplane_runtime.storage.remote import RemoteObject

# CRC32C of b"123456789" is the standard check value 0xE3069283 (RFC 3720, appendix B.4).
CHECK_CRC32C = bytes.fromhex("e3069283")


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "f"
    path.write_bytes(b"123456789")
    return path


def test_crc32c_is_preferred_and_checked(payload: Path) -> None:
    obj = RemoteObject("k", 9, md5=b"\0" * 16, crc32c=CHECK_CRC32C)
    assert verify(payload, obj, "gs://b/k") == "crc32c"  # the wrong MD5 is never looked at


def test_md5_when_there_is_no_crc32c(payload: Path) -> None:
    obj = RemoteObject("k", 9, md5=hashlib.md5(b"123456789").digest())
    assert verify(payload, obj, "s3://b/k") == "md5"


def test_a_mismatch_names_both_values(payload: Path) -> None:
    wrong = base64.b64decode("AAAAAA==")
    with pytest.raises(StorageError) as caught:
        verify(payload, RemoteObject("k", 9, crc32c=wrong), "gs://b/k")
    assert str(caught.value).startswith(
        "gs://b/k: CRC32C of the downloaded bytes is e3069283, the store says 00000000")


def test_size_is_always_checked(payload: Path) -> None:
    with pytest.raises(StorageError, match="got 9 bytes, the store lists 10"):
        verify(payload, RemoteObject("k", 10), "s3://b/k", checksums=False)


def test_no_checksum_means_size_only(payload: Path) -> None:
    assert verify(payload, RemoteObject("k", 9), "az://c/k") is None
    assert verify(payload, RemoteObject("k", 9, md5=b"\0" * 16), "s3://b/k",
                  checksums=False) is None
