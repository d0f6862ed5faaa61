"""``fetch`` from real S3 (moto), GCS (gcp-storage-emulator) and Azure Blob (Azurite) servers.

Every test runs once per store (the ``store`` fixture). Objects are uploaded with the
vendor's SDK and fetched with the project; folders and archives must arrive byte for byte.
Connections are cut and bytes corrupted by a real TCP proxy between the fetch and the store.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch

from tests.fixtures.object_stores import StoreServer
from tests.fixtures.ports import free_port
from tests.fixtures.tcp_proxy import CuttingProxy

FAST: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0,
                        "part_size_bytes": 64 * 1024}


def settings(**values: Any) -> StorageSettings:
    return StorageSettings(**{**FAST, **values})


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A TF Serving repository: two versions, one variables file spanning several parts."""
    root = tmp_path / "src" / "seed_mlp"
    (root / "1" / "variables").mkdir(parents=True)
    (root / "1" / "saved_model.pb").write_bytes(os.urandom(3000))
    (root / "1" / "variables" / "variables.data-00000-of-00001").write_bytes(
        os.urandom(300_000))
    (root / "1" / "variables" / "variables.index").write_bytes(b"index")
    (root / "2").mkdir()
    (root / "2" / "saved_model.pb").write_bytes(b"v2")
    (root / "2" / "empty.txt").write_bytes(b"")
    return root


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return buffer.getvalue()


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()


# --- what arrives ------------------------------------------------------------------------


def test_folder_arrives_byte_for_byte(
    store: StoreServer, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = store.make_bucket()
    store.upload_folder(bucket, "models/seed_mlp", repository)
    use(monkeypatch, store.env())
    dest = tmp_path / "mnt" / "models"
    with caplog.at_level(logging.INFO, logger="modelplane.storage"):
        fetch(store.uri(bucket, "models/seed_mlp/"), dest, settings=settings())
    assert files(dest) == files(repository)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["models"]  # no leftovers
    assert oct(os.stat(dest / "1" / "saved_model.pb").st_mode & 0o777) == "0o644"
    done = [r for r in caplog.records if getattr(r, "event", None) == "fetch_done"]
    assert len(done) == 1
    assert done[0].bytes == sum(len(b) for b in files(repository).values())
    assert done[0].files == done[0].total_files == 5


def test_prefix_is_a_folder_not_a_string_prefix(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "models/a/1/saved_model.pb", b"a")
    store.upload(bucket, "models/ab/1/saved_model.pb", b"not this one")
    store.upload(bucket, "models/a.tar.gz", b"nor this")
    store.upload(bucket, "models/a/", b"")  # a console-made folder placeholder
    use(monkeypatch, store.env())
    fetch(store.uri(bucket, "models/a"), tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == {"1/saved_model.pb": b"a"}


def test_whole_bucket(store: StoreServer, repository: Path, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = store.make_bucket()
    store.upload_folder(bucket, "", repository)
    use(monkeypatch, store.env())
    fetch(store.uri(bucket), tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == files(repository)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_is_unpacked(
    store: StoreServer, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    bucket = store.make_bucket()
    body = tar_gz(repository) if kind == "tar.gz" else zipped(repository)
    store.upload(bucket, f"releases/seed_mlp.{kind}", body)
    use(monkeypatch, store.env())
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "stale").write_text("from the last run")  # the emptyDir of a restarted pod
    fetch(store.uri(bucket, f"releases/seed_mlp.{kind}"), dest, settings=settings())
    assert files(dest) == files(repository)


def test_keras_file_is_kept(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    keras_model_file: Path,
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "classifier.keras", keras_model_file.read_bytes())
    use(monkeypatch, store.env())
    fetch(store.uri(bucket, "classifier.keras"), tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == {"classifier.keras": keras_model_file.read_bytes()}


# --- what is refused ---------------------------------------------------------------------


def test_missing_key_names_the_uri_and_leaves_nothing(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "models/other/1/saved_model.pb", b"x")
    use(monkeypatch, store.env())
    with pytest.raises(StorageError) as caught:
        fetch(store.uri(bucket, "models/seed_mlp"), tmp_path / "out" / "models",
              settings=settings())
    message = str(caught.value)
    assert message.startswith(f"{store.uri(bucket, 'models/seed_mlp')}: nothing there: no "
                              "object 'models/seed_mlp' and no objects under it")
    assert "check the path in model.uri" in message
    assert not (tmp_path / "out").exists()


def test_missing_bucket_is_named(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, store.env())
    with pytest.raises(StorageError) as caught:
        fetch(store.uri("no-such-bucket", "m"), tmp_path / "models", settings=settings())
    noun = "container" if store.scheme == "az" else "bucket"
    assert f"{noun} 'no-such-bucket' does not exist at" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_size_limit_is_checked_before_downloading(
    store: StoreServer, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    cutting_proxy: Any,
) -> None:
    bucket = store.make_bucket()
    store.upload_folder(bucket, "m", repository)
    proxy: CuttingProxy = cutting_proxy(store.port)
    use(monkeypatch, store.env(proxy.port))
    with pytest.raises(StorageError) as caught:
        fetch(store.uri(bucket, "m"), tmp_path / "models",
              settings=settings(max_download_bytes=100_000))
    assert "303007 bytes in 5 objects is over the limit of 100000 " \
           "(MODELPLANE_STORAGE_MAX_DOWNLOAD_BYTES)" in str(caught.value)
    assert proxy.request_lines()  # the listing went through the proxy
    assert not [line for line in proxy.request_lines() if "saved_model.pb" in line]
    assert not (tmp_path / "models").exists()


def test_object_keys_outside_the_folder_are_refused(
    s3_server: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    clean_cloud_env: dict[str, str],
) -> None:
    # S3 keys are literal; Azure normalises '..' away and GCS (and its emulator) refuse it.
    store = s3_server
    bucket = store.make_bucket()
    store.upload(bucket, "m/1/saved_model.pb", b"x")
    store.upload(bucket, "m/../../escape", b"evil")
    use(monkeypatch, store.env())
    with pytest.raises(StorageError, match="would be written outside the model folder"):
        fetch(store.uri(bucket, "m"), tmp_path / "models", settings=settings())
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "escape").exists()


# --- the network misbehaving ---------------------------------------------------------------


def test_cut_connections_are_resumed(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = store.make_bucket()
    blob = os.urandom(3 * 1024 * 1024)
    store.upload(bucket, "m/1/variables/variables.data-00000-of-00001", blob)
    proxy: CuttingProxy = cutting_proxy(store.port)
    proxy.cut(after=600_000, times=3)
    use(monkeypatch, store.env(proxy.port))
    with caplog.at_level(logging.INFO, logger="modelplane.storage"):
        fetch(store.uri(bucket, "m"), tmp_path / "models",
              settings=settings(part_size_bytes=1024 * 1024, concurrency=2, retries=2))
    assert files(tmp_path / "models") == {"1/variables/variables.data-00000-of-00001": blob}
    assert proxy.cuts == 3
    retries = [r for r in caplog.records if getattr(r, "event", None) == "fetch_retry"]
    if store.scheme == "az":
        return  # azure-storage-blob re-requests a cut chunk itself (by its own range request)
    assert len(retries) == 3
    assert any(r.resume_at % (1024 * 1024) != 0 for r in retries)  # resumed mid-part


def test_a_cut_without_retries_fails_cleanly(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "m/1/saved_model.pb", os.urandom(2 * 1024 * 1024))
    store.upload(bucket, "m/1/small", b"small")
    proxy: CuttingProxy = cutting_proxy(store.port)
    proxy.cut(after=100_000, times=1000)
    use(monkeypatch, store.env(proxy.port))
    dest = tmp_path / "mnt" / "models"
    with pytest.raises(StorageError) as caught:
        fetch(store.uri(bucket, "m"), dest, settings=settings(part_size_bytes=4 * 1024 * 1024,
                                                              retries=0))
    message = str(caught.value)
    assert message.startswith(f"reading {store.scheme}://{bucket}/m/1/saved_model.pb: ")
    assert message.endswith("(gave up after 1 attempt)")
    assert "\n" not in message
    assert proxy.cuts >= 1
    assert not (tmp_path / "mnt").exists()  # nothing left behind, not even the parent


def test_a_link_that_drops_every_few_hundred_kilobytes_still_finishes(
    s3_server: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
    clean_cloud_env: dict[str, str],
) -> None:
    bucket = s3_server.make_bucket()
    blob = os.urandom(1024 * 1024)
    s3_server.upload(bucket, "m/1/saved_model.pb", blob)
    proxy: CuttingProxy = cutting_proxy(s3_server.port)
    proxy.cut(after=200_000, times=1000)
    use(monkeypatch, s3_server.env(proxy.port))
    fetch(s3_server.uri(bucket, "m"), tmp_path / "models",
          settings=settings(part_size_bytes=4 * 1024 * 1024, retries=1))
    assert files(tmp_path / "models") == {"1/saved_model.pb": blob}
    assert proxy.cuts >= 5  # each attempt brought new bytes, so one retry was enough each time


def test_corrupted_bytes_fail_the_checksum(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
) -> None:
    bucket = store.make_bucket()
    blob = os.urandom(500_000)
    store.upload(bucket, "m/1/saved_model.pb", blob)
    proxy: CuttingProxy = cutting_proxy(store.port)
    proxy.corrupt(at=300_000)
    use(monkeypatch, store.env(proxy.port))
    with pytest.raises(StorageError) as caught:
        fetch(store.uri(bucket, "m"), tmp_path / "models",
              settings=settings(part_size_bytes=1024 * 1024))
    algorithm = {"s3": "MD5", "gs": "CRC32C", "az": "MD5"}[store.scheme]
    assert f"m/1/saved_model.pb: {algorithm} of the downloaded bytes is" in str(caught.value)
    assert proxy.corrupted == 1
    assert not (tmp_path / "models").exists()


def test_unreachable_endpoint_is_named(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there
    use(monkeypatch, store.env(port))
    with pytest.raises(StorageError) as caught:
        fetch(store.uri("models-x", "m"), tmp_path / "models", settings=settings(retries=1))
    message = str(caught.value)
    assert f"cannot reach http://127.0.0.1:{port}" in message
    assert "(gave up after 2 attempts)" in message


# --- progress --------------------------------------------------------------------------------


def test_progress_lines_while_downloading(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
) -> None:
    from tests.fixtures.object_stores import fetch_env, run_fetch

    bucket = store.make_bucket()
    blob = os.urandom(4 * 1024 * 1024)
    store.upload(bucket, "m/1/variables.data", blob)
    proxy: CuttingProxy = cutting_proxy(store.port)
    proxy.throttle(bytes_per_second=2 * 1024 * 1024)  # two seconds of download at least
    env = fetch_env(store.env(proxy.port) | {"MODELPLANE_STORAGE_PROGRESS_S": "0.3"})
    run = run_fetch(store.uri(bucket, "m"), tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line.get("event") == "fetch_progress"]
    assert len(progress) >= 3, run.stderr
    assert all(line["total_bytes"] == len(blob) for line in progress)
    assert [line["bytes"] for line in progress] == sorted(line["bytes"] for line in progress)
    moving = [line for line in progress if 0 < line["bytes"] < len(blob)]
    assert moving and all(line["bytes_per_second"] > 0 and line["eta_seconds"] is not None
                          for line in moving)
    done = [line for line in lines if line.get("event") == "fetch_done"]
    assert len(done) == 1 and done[0]["bytes"] == len(blob) and done[0]["files"] == 1
    assert files(tmp_path / "models") == {"1/variables.data": blob}


# --- a volume too small -----------------------------------------------------------------------


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, like a small emptyDir (needs root and mount rights, else skipped)."""
    mount_point = tmp_path / "mnt" / "models"
    mount_point.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and the mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)


def test_a_volume_too_small_fails_at_once_and_keeps_the_old_model(
    s3_server: StoreServer, tiny_volume: Path, monkeypatch: pytest.MonkeyPatch,
    clean_cloud_env: dict[str, str], cutting_proxy: Any,
) -> None:
    bucket = s3_server.make_bucket()
    s3_server.upload(bucket, "m/1/variables.data", os.urandom(3 * 1024 * 1024))
    (tiny_volume / "1").mkdir()
    (tiny_volume / "1" / "saved_model.pb").write_bytes(b"old model")
    proxy: CuttingProxy = cutting_proxy(s3_server.port)
    use(monkeypatch, s3_server.env(proxy.port))
    with pytest.raises(StorageError) as caught:
        fetch(s3_server.uri(bucket, "m"), tiny_volume, settings=settings())
    assert "failed: no space left on that volume" in str(caught.value)
    assert files(tiny_volume) == {"1/saved_model.pb": b"old model"}
    assert sorted(p.name for p in tiny_volume.iterdir()) == ["1"]
    # The space is reserved before the download: no part of the object was requested.
    assert not [line for line in proxy.request_lines() if "variables.data" in line]
