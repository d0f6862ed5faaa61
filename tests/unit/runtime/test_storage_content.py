"""Classifying fetched files by content first, name second."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.content import Content, Kind, classify

HDF5 = b"\x89HDF\r\n\x1a\n" + bytes(100)


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"{}")
    return buffer.getvalue()


def _tar(mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        info = tarfile.TarInfo("saved_model.pb")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"pb"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("m.tar.gz", _tar("w:gz"), Content(Kind.TAR, "m.tar.gz")),
        ("download", _tar("w:gz"), Content(Kind.TAR, "download")),  # no name hint
        ("m.tar", _tar("w"), Content(Kind.TAR, "m.tar")),
        ("weird.bin", _tar("w:xz"), Content(Kind.TAR, "weird.bin")),
        ("m.zip", _zip("1/saved_model.pb"), Content(Kind.ZIP, "m.zip")),
        ("blob", _zip("1/saved_model.pb"), Content(Kind.ZIP, "blob")),
        # A .keras file is a zip: the name keeps it whole.
        ("clf.keras", _zip("config.json", "metadata.json"), Content(Kind.KERAS, "clf.keras")),
        # ...and so does its content when there is no name to go by.
        ("download", _zip("config.json", "metadata.json", "model.weights.h5"),
         Content(Kind.KERAS, "model.keras")),
        # ...but an explicit .zip is an archive to unpack.
        ("bundle.zip", _zip("config.json", "metadata.json"), Content(Kind.ZIP, "bundle.zip")),
        ("clf.h5", HDF5, Content(Kind.H5, "clf.h5")),
        ("download", HDF5, Content(Kind.H5, "model.h5")),
    ],
)
def test_classify(tmp_path: Path, name: str, data: bytes, expected: Content) -> None:
    path = tmp_path / "file"
    path.write_bytes(data)
    assert classify(path, name) == expected


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("m.tar.gz", b"<!DOCTYPE html><html>login", "'m.tar.gz' is not a tar or zip archive "
         "(content starts with b'<!DOCTYPE html><')"),
        ("m.keras", b"<html>", "'m.keras' is not a Keras model file"),
        ("m.h5", b"PK\x03\x04", "'m.h5' is not an HDF5 model file"),
        ("m.zip", b"", "the file is empty"),
        ("download", b"hello", "neither an archive (tar, tar.gz, zip) nor a Keras model file"),
    ],
)
def test_classify_errors(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    path = tmp_path / "file"
    path.write_bytes(data)
    with pytest.raises(StorageError) as caught:
        classify(path, name)
    assert message in str(caught.value)
