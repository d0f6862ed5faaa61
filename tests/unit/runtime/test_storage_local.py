"""``fetch`` of file:// and pvc:// sources, and how dest is replaced (atomic, idempotent)."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch
from modelplane_runtime.storage.settings import load_storage_settings


def make_model(base: Path) -> Path:
    """A small versioned repository with a nested folder, an executable and a symlink."""
    (base / "1" / "variables").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"pb-v1")
    (base / "1" / "variables" / "variables.index").write_bytes(b"index")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"pb-v2")
    (base / "latest").symlink_to("2")
    return base


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: file contents, 'dir', or '-> target' for links."""
    result: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            result[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            result[name] = "dir"
        else:
            result[name] = path.read_bytes().decode()
    return result


def siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_file_uri_folder_is_copied_as_the_model(tmp_path: Path) -> None:
    source = make_model(tmp_path / "src")
    dest = tmp_path / "out" / "models"
    fetch(f"file://{source}", dest)
    assert tree(dest) == tree(source)
    assert siblings(dest) == ["models"]  # no staging folder left behind


def test_file_uri_single_keras_file_is_copied(tmp_path: Path) -> None:
    import zipfile

    source = tmp_path / "clf.keras"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    dest = tmp_path / "models"
    fetch(f"file://{source}", dest)
    assert [p.name for p in dest.iterdir()] == ["clf.keras"]
    assert (dest / "clf.keras").read_bytes() == source.read_bytes()


def test_file_uri_local_archive_is_unpacked(tmp_path: Path) -> None:
    model = make_model(tmp_path / "seed_mlp")
    archive = tmp_path / "seed_mlp.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname="seed_mlp")
    dest = tmp_path / "models"
    fetch(f"file://{archive}", dest)
    assert tree(dest) == tree(model)


def test_refetch_replaces_the_old_model_completely(tmp_path: Path) -> None:
    first = make_model(tmp_path / "first")
    second = tmp_path / "second"
    (second / "7").mkdir(parents=True)
    (second / "7" / "saved_model.pb").write_bytes(b"pb-v7")
    dest = tmp_path / "models"
    fetch(f"file://{first}", dest)
    fetch(f"file://{second}", dest)
    assert tree(dest) == {"7": "dir", "7/saved_model.pb": "pb-v7"}
    fetch(f"file://{second}", dest)  # the same again: same result
    assert tree(dest) == {"7": "dir", "7/saved_model.pb": "pb-v7"}


def test_existing_folder_is_filled_in_place(tmp_path: Path) -> None:
    # /mnt/models is an emptyDir mount point: it can be filled but never renamed.
    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an earlier run")
    (dest / ".modelplane-fetch-crashed").mkdir()  # leftover of a killed fetch
    inode = dest.stat().st_ino
    source = make_model(tmp_path / "src")
    fetch(f"file://{source}", dest)
    assert dest.stat().st_ino == inode
    assert tree(dest) == tree(source)


def test_failure_leaves_an_existing_dest_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    fetch(f"file://{make_model(tmp_path / 'good')}", dest)
    before = tree(dest)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.pb").write_bytes(b"x")
    (bad / "escape").symlink_to("/etc/hostname")
    with pytest.raises(StorageError) as caught:
        fetch(f"file://{bad}", dest)
    assert "is a symlink to /etc/hostname, outside the model folder" in str(caught.value)
    assert tree(dest) == before
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_failure_leaves_a_missing_dest_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.pb").write_bytes(b"x")
    os.mkfifo(bad / "pipe")  # reading it would hang an init container forever
    dest = tmp_path / "out" / "models"
    with pytest.raises(StorageError) as caught:
        fetch(f"file://{bad}", dest)
    assert "pipe is a device, fifo or socket" in str(caught.value)
    assert not (tmp_path / "out").exists()  # not even the parent this fetch created


def test_unsafe_archive_leaves_dest_untouched(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(make_model(tmp_path / "m"), arcname="m")
        info = tarfile.TarInfo("m/../../pwned")
        tar.addfile(info)
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "keep").write_text("old model")
    with pytest.raises(StorageError, match="path traversal"):
        fetch(f"file://{archive}", dest)
    assert tree(dest) == {"keep": "old model"}
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    yield
    os.umask(previous)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.usefixtures("strict_umask")
def test_modes_are_readable_whatever_the_umask(tmp_path: Path, packed: bool) -> None:
    # The runtime container may run as another user than the init container.
    source = make_model(tmp_path / "src")
    if packed:
        archive = tmp_path / "m.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(source, arcname=".")
        source = archive
    dest = tmp_path / "models"
    fetch(f"file://{source}", dest)
    modes = {
        str(p.relative_to(dest)): stat.S_IMODE(p.stat().st_mode)
        for p in [dest, *dest.rglob("*")] if not p.is_symlink()
    }
    assert modes == {
        ".": 0o755, "1": 0o755, "1/saved_model.pb": 0o644, "1/variables": 0o755,
        "1/variables/variables.index": 0o644, "2": 0o755, "2/saved_model.pb": 0o644,
    }


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:///definitely/not/here", "/definitely/not/here does not exist"),
        ("s3://Bucket_/model", "'Bucket_' is not a valid bucket name"),
    ],
)
def test_bad_sources_are_clear_errors(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        fetch(uri, tmp_path / "models")
    assert message in str(caught.value)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("inside", ["models", "deeper/models"])
def test_dest_inside_the_source_is_refused(tmp_path: Path, inside: str) -> None:
    source = make_model(tmp_path / "src")
    before = tree(source)
    with pytest.raises(StorageError, match="the destination is inside the source folder"):
        fetch(f"file://{source}", source / inside)
    assert tree(source) == before


def test_source_that_is_the_existing_dest_is_refused(tmp_path: Path) -> None:
    dest = make_model(tmp_path / "models")
    before = tree(dest)
    with pytest.raises(StorageError, match="the destination is inside the source folder"):
        fetch(f"file://{dest}", dest)
    assert tree(dest) == before


def test_empty_source_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="the fetched model is empty"):
        fetch(f"file://{tmp_path / 'empty'}", tmp_path / "models")


def test_dest_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("x")
    with pytest.raises(StorageError, match="exists and is not a folder"):
        fetch(f"file://{make_model(tmp_path / 'src')}", tmp_path / "models")


def test_unwritable_dest_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError) as caught:
        fetch(f"file://{make_model(tmp_path / 'src')}", tmp_path / "file" / "sub" / "models")
    assert "cannot create" in str(caught.value)
    assert "\n" not in str(caught.value)


# --- pvc:// -------------------------------------------------------------------------------


@pytest.fixture
def pvc_root(tmp_path: Path) -> Path:
    root = tmp_path / "pvc"
    make_model(root / "models-pvc" / "seed")
    (root / "models-pvc" / "current").symlink_to("seed")
    (root / "other-claim").mkdir(parents=True)
    (root / "other-claim" / "secret.pb").write_text("not yours")
    (root / "models-pvc" / "sneaky").symlink_to("../other-claim")
    return root


def test_pvc_uri_copies_from_the_claim_mount(tmp_path: Path, pvc_root: Path) -> None:
    dest = tmp_path / "models"
    fetch("pvc://models-pvc/seed", dest, settings=StorageSettings(pvc_root=pvc_root))
    assert tree(dest) == tree(pvc_root / "models-pvc" / "seed")


def test_pvc_symlink_inside_the_claim_is_followed(tmp_path: Path, pvc_root: Path) -> None:
    dest = tmp_path / "models"
    fetch("pvc://models-pvc/current", dest, settings=StorageSettings(pvc_root=pvc_root))
    assert (dest / "1" / "saved_model.pb").read_bytes() == b"pb-v1"


def test_pvc_root_comes_from_the_environment(
    tmp_path: Path, pvc_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPLANE_STORAGE_PVC_ROOT", str(pvc_root))
    fetch("pvc://models-pvc/seed/2", tmp_path / "models")
    assert tree(tmp_path / "models") == {"saved_model.pb": "pb-v2"}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc://missing-claim/x", "PersistentVolumeClaim 'missing-claim' is not mounted at"),
        ("pvc://models-pvc/nope", "pvc://models-pvc/nope does not exist"),
        ("pvc://models-pvc/sneaky", "outside"),
    ],
)
def test_pvc_errors(tmp_path: Path, pvc_root: Path, uri: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        fetch(uri, tmp_path / "models", settings=StorageSettings(pvc_root=pvc_root))
    assert message in str(caught.value)
    assert not (tmp_path / "models").exists()


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELPLANE_STORAGE_TIMEOUT_S": "soon"}, "MODELPLANE_STORAGE_TIMEOUT_S: Input should be"),
        ({"MODELPLANE_STORAGE_RETRIES": "-1"}, "MODELPLANE_STORAGE_RETRIES: Input should be"),
        ({"MODELPLANE_STORAGE_USERNAME": "u"},
         "MODELPLANE_STORAGE_USERNAME and MODELPLANE_STORAGE_PASSWORD must be set together"),
        ({"MODELPLANE_STORAGE_BEARER_TOKEN": "t", "MODELPLANE_STORAGE_USERNAME": "u",
          "MODELPLANE_STORAGE_PASSWORD": "p"}, "either MODELPLANE_STORAGE_BEARER_TOKEN or"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StorageError) as caught:
        load_storage_settings()
    assert message in str(caught.value)


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_STORAGE_BEARER_TOKEN", "hunter2")
    settings = load_storage_settings()
    assert "hunter2" not in repr(settings)
    assert settings.bearer_token is not None
    assert settings.bearer_token.get_secret_value() == "hunter2"
