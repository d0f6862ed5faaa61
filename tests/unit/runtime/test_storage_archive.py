"""Safe extraction: well-formed archives unpack; every known attack is refused.

Each malicious archive is crafted here with tarfile/zipfile, and each test also checks
that nothing landed outside the extraction folder.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.archive import extract, member_path
from modelplane_runtime.storage.settings import StorageSettings

Member = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, link: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def folder(name: str) -> Member:
    return special(name, tarfile.DIRTYPE)


def symlink(name: str, target: str) -> Member:
    return special(name, tarfile.SYMTYPE, target)


def hardlink(name: str, target: str) -> Member:
    return special(name, tarfile.LNKTYPE, target)


def make_tar(path: Path, members: Iterable[Member], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def make_zip(path: Path, members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(archives folder, empty extraction root, a sibling 'outside' path that must stay absent)."""
    archives = tmp_path / "archives"
    archives.mkdir()
    root = tmp_path / "sandbox" / "root"
    root.mkdir(parents=True)
    return archives, root, tmp_path / "sandbox" / "outside"


SETTINGS = StorageSettings()


def refuse(archive: Path, root: Path, outside: Path, message: str, **limits: Any) -> None:
    settings = StorageSettings(**limits) if limits else SETTINGS
    with pytest.raises(StorageError) as caught:
        extract(archive, root, settings, zip_format=zipfile.is_zipfile(archive))
    assert message in str(caught.value)
    assert not os.path.lexists(outside), "something was written outside the extraction root"
    assert not (root.parent / "pwned").exists()


# --- well-formed archives -------------------------------------------------------------


def test_tar_gz_unpacks_files_folders_modes_and_internal_links(
    layout: tuple[Path, Path, Path],
) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tar.gz", [
        folder("1"),
        reg("1/saved_model.pb", b"pb"),
        reg("1/variables/variables.index", b"idx"),
        reg("1/run.sh", b"#!/bin/sh", mode=0o4777),
        symlink("1/latest.pb", "saved_model.pb"),
        symlink("current", "1"),
        hardlink("1/copy.pb", "1/saved_model.pb"),
    ])
    model = extract(archive, root, SETTINGS, zip_format=False)
    assert model == root
    assert (root / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert (root / "1" / "variables" / "variables.index").read_bytes() == b"idx"
    assert (root / "1" / "latest.pb").read_bytes() == b"pb"
    assert os.readlink(root / "current") == "1"
    copy = root / "1" / "copy.pb"
    assert copy.read_bytes() == b"pb"
    assert not copy.is_symlink()
    assert copy.stat().st_ino != (root / "1" / "saved_model.pb").stat().st_ino
    # setuid and world-write are dropped; the owner's execute bit is kept.
    assert stat.S_IMODE((root / "1" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "1" / "saved_model.pb").stat().st_mode) == 0o644


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_every_tar_compression_unpacks(layout: tuple[Path, Path, Path], mode: str) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tar", [reg("1/saved_model.pb", b"x" * 1000)], mode)
    extract(archive, root, SETTINGS, zip_format=False)
    assert (root / "1" / "saved_model.pb").read_bytes() == b"x" * 1000


def test_zip_unpacks_with_folders_and_internal_symlink(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_zip(archives / "m.zip", [
        ("1/", b""),
        ("1/saved_model.pb", b"pb"),
        (zip_info("1/alias.pb", stat.S_IFLNK | 0o777), b"saved_model.pb"),
        (zip_info("1/tool", stat.S_IFREG | 0o755), b"#!"),
    ])
    extract(archive, root, SETTINGS, zip_format=True)
    assert (root / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert os.readlink(root / "1" / "alias.pb") == "saved_model.pb"
    assert stat.S_IMODE((root / "1" / "tool").stat().st_mode) == 0o755


def test_a_single_top_folder_is_the_model(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tgz", [
        reg("seed_mlp/1/saved_model.pb"), reg("seed_mlp/2/saved_model.pb"),
    ])
    assert extract(archive, root, SETTINGS, zip_format=False) == root / "seed_mlp"


def test_a_single_version_folder_is_not_unwrapped(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tgz", [reg("./1/saved_model.pb")])
    assert extract(archive, root, SETTINGS, zip_format=False) == root


def test_macos_resource_forks_are_skipped(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_zip(archives / "m.zip", [
        ("model/saved_model.pb", b"pb"), ("__MACOSX/model/._saved_model.pb", b"junk"),
    ])
    assert extract(archive, root, SETTINGS, zip_format=True) == root / "model"
    assert not (root / "__MACOSX").exists()


def test_repeated_file_name_keeps_the_last(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tar", [reg("a", b"old"), reg("a", b"new")], "w")
    extract(archive, root, SETTINGS, zip_format=False)
    assert (root / "a").read_bytes() == b"new"


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/x", "absolute path"),
        ("../outside", "'..' component"),
        ("a/../../outside", "'..' component"),
        ("..\\..\\outside", "backslash"),
        ("a\x00b", "NUL byte"),
    ],
)
def test_member_path_refuses_unsafe_names(name: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        member_path(name)
    assert message in str(caught.value)


def test_member_path_normalises_harmless_noise() -> None:
    assert str(member_path("./a//b/./c")) == "a/b/c"
    assert member_path("./") is None


def test_tar_absolute_path_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg("ok"), reg(str(outside))])
    refuse(archive, root, outside, "has an absolute path")


def test_tar_traversal_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg("ok"), reg("../outside")])
    refuse(archive, root, outside, "'..' component (path traversal)")


def test_zip_slip_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_zip(archives / "m.zip", [("ok", b"x"), ("1/../../outside", b"pwned")])
    refuse(archive, root, outside, "'..' component (path traversal)")


def test_zip_absolute_path_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    info = zipfile.ZipInfo("x")
    info.filename = str(outside)  # ZipInfo() strips a leading '/', a crafted file need not
    archive = make_zip(archives / "m.zip", [(info, b"pwned")])
    refuse(archive, root, outside, "has an absolute path")


# --- links ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/etc", "../outside", "a/../../outside", "../root/../outside"])
def test_tar_symlink_out_is_refused(layout: tuple[Path, Path, Path], target: str) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg("ok"), symlink("link", target)])
    refuse(archive, root, outside, "archive symlink 'link' points")
    assert not os.path.lexists(root / "link")


def test_zip_symlink_out_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_zip(archives / "m.zip", [
        ("ok", b"x"), (zip_info("link", stat.S_IFLNK | 0o777), b"../outside"),
    ])
    refuse(archive, root, outside, "points outside the model")


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "missing", "dir"])
def test_tar_hardlink_out_or_dangling_is_refused(
    layout: tuple[Path, Path, Path], target: str
) -> None:
    archives, root, outside = layout
    outside.write_text("secret")  # a real file a hardlink could try to expose or clobber
    archive = make_tar(archives / "m.tar.gz", [folder("dir"), hardlink("hl", target)])
    with pytest.raises(StorageError) as caught:
        extract(archive, root, SETTINGS, zip_format=False)
    assert "archive hardlink 'hl'" in str(caught.value)
    assert outside.read_text() == "secret"
    assert not os.path.lexists(root / "hl")


def test_symlink_out_then_write_through_it_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    outside.mkdir()
    archive = make_tar(archives / "m.tar.gz", [
        symlink("escape", "../outside"), reg("escape/pwned", b"owned"),
    ])
    with pytest.raises(StorageError):
        extract(archive, root, SETTINGS, zip_format=False)
    assert list(outside.iterdir()) == []


def test_write_through_an_internal_symlink_is_refused(layout: tuple[Path, Path, Path]) -> None:
    archives, root, _ = layout
    archive = make_tar(archives / "m.tar.gz", [
        folder("real"), symlink("alias", "real"), reg("alias/file", b"x"),
    ])
    with pytest.raises(StorageError) as caught:
        extract(archive, root, SETTINGS, zip_format=False)
    assert "would be written through the symlink 'alias'" in str(caught.value)
    assert list((root / "real").iterdir()) == []


def test_symlink_written_before_its_folder_cannot_redirect_files(
    layout: tuple[Path, Path, Path],
) -> None:
    # The file comes first (so the writer sees no symlink), the symlink with the same
    # name as the file's folder later: it must not replace the folder.
    archives, root, _ = layout
    archive = make_tar(archives / "m.tar.gz", [reg("d/f", b"x"), symlink("d", "elsewhere")])
    with pytest.raises(StorageError) as caught:
        extract(archive, root, SETTINGS, zip_format=False)
    assert "conflicts with another member" in str(caught.value)


def test_symlink_chain_escaping_through_another_link_is_refused(
    layout: tuple[Path, Path, Path],
) -> None:
    # Each target looks inside when read on its own ('a/b/c/s/../..' is 'a/b'), but 's'
    # really points to 'd1' at the top, so 't' resolves to the parent of the root.
    # Only the check after all links exist (realpath) can see that.
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [
        reg("top"), reg("a/b/c/file"),
        symlink("a/b/c/s", "../../../d1"), symlink("a/b/c/t", "s/../.."),
    ])
    refuse(archive, root, outside, "archive symlink 'a/b/c/t' resolves outside the model")


def test_link_to_the_root_of_an_unwrapped_folder_is_refused(
    layout: tuple[Path, Path, Path],
) -> None:
    archives, root, outside = layout
    archive = make_tar(
        archives / "m.tar.gz", [reg("model/saved_model.pb"), symlink("model/up", "..")]
    )
    refuse(archive, root, outside, "resolves outside the model")


# --- special files ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_are_refused(layout: tuple[Path, Path, Path], kind: bytes) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg("ok"), special("dev", kind)])
    refuse(archive, root, outside, "is a device, fifo or other special file")
    assert not os.path.lexists(root / "dev")


@pytest.mark.parametrize("mode", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFSOCK])
def test_zip_special_files_are_refused(layout: tuple[Path, Path, Path], mode: int) -> None:
    archives, root, outside = layout
    archive = make_zip(archives / "m.zip", [(zip_info("dev", mode | 0o644), b"")])
    refuse(archive, root, outside, "is a device, fifo or other special file")


def test_file_and_folder_with_the_same_name_conflict(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar", [reg("a"), reg("a/b")], "w")
    refuse(archive, root, outside, "needs 'a' to be a folder")


# --- size -------------------------------------------------------------------------------


def _zeros_zip(path: Path, size: int) -> Path:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros", "w") as out,
    ):
        chunk = bytes(1024 * 1024)
        for _ in range(size // len(chunk)):
            out.write(chunk)
    return path


def test_zip_bomb_ratio_is_refused_before_inflating(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = _zeros_zip(archives / "bomb.zip", 32 * 1024 * 1024)
    assert archive.stat().st_size < 100_000  # ~1000:1
    refuse(archive, root, outside, "expands more than 200 times its size",
           ratio_floor_bytes=1024 * 1024)
    assert not (root / "zeros").exists()


def test_compressible_archive_under_the_ratio_floor_is_fine(
    layout: tuple[Path, Path, Path],
) -> None:
    archives, root, _ = layout
    archive = _zeros_zip(archives / "small.zip", 4 * 1024 * 1024)
    extract(archive, root, SETTINGS, zip_format=True)
    assert (root / "zeros").stat().st_size == 4 * 1024 * 1024


def test_total_unpacked_size_is_capped(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg(f"f{i}", bytes(600)) for i in range(3)])
    refuse(archive, root, outside, "unpacks to more than 1000 bytes (at member 'f1')",
           max_extract_bytes=1000)
    assert not (root / "f1").exists()


def test_hardlink_copies_count_towards_the_cap(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz",
                       [reg("big", bytes(600)), *(hardlink(f"h{i}", "big") for i in range(3))])
    refuse(archive, root, outside, "unpacks to more than 1500 bytes", max_extract_bytes=1500)


def test_member_count_is_capped(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar", [reg(f"f{i}") for i in range(11)], "w")
    refuse(archive, root, outside, "more than 10 members", max_members=10)


# --- broken input -----------------------------------------------------------------------


def test_truncated_tar_gz_is_a_clear_error(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar.gz", [reg("f", os.urandom(50_000))])
    archive.write_bytes(archive.read_bytes()[:20_000])
    refuse(archive, root, outside, "archive is not a valid tar file")


def test_archive_without_files_is_an_error(layout: tuple[Path, Path, Path]) -> None:
    archives, root, outside = layout
    archive = make_tar(archives / "m.tar", [folder("empty")], "w")
    refuse(archive, root, outside, "archive contains no files")
