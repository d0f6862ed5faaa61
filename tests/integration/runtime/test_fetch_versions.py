"""The hot-reload API (storage/versions.py) against the three real stores: list the integer
version folders of a remote repository, copy one into a cache complete or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings
from modelplane_runtime.storage.versions import RemoteRepository, evict_version

from tests.fixtures.object_stores import StoreServer
from tests.fixtures.tcp_proxy import CuttingProxy

FAST: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0,
                        "part_size_bytes": 64 * 1024}


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_versions_are_listed_and_fetched(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = store.make_bucket()
    v1 = {"saved_model.pb": b"one", "variables/variables.index": b"i1"}
    v2 = {"saved_model.pb": os.urandom(200_000), "variables/variables.index": b"i2"}
    for number, content in (("1", v1), ("2", v2)):
        for name, body in content.items():
            store.upload(bucket, f"repo/resnet/{number}/{name}", body)
    store.upload(bucket, "repo/resnet/README.md", b"ignored, as TF Serving ignores it")
    store.upload(bucket, "repo/resnet/tmp-3/saved_model.pb", b"not a version")
    store.upload(bucket, "repo/resnet-old/9/saved_model.pb", b"another repository")
    use(monkeypatch, store.env())
    cache = tmp_path / "cache"
    with RemoteRepository(store.uri(bucket, "repo/resnet"), StorageSettings(**FAST)) as repo:
        listed = repo.versions()
        assert [(v.number, v.files, v.bytes) for v in listed] == [
            (1, 2, 5), (2, 2, len(v2["saved_model.pb"]) + 2)]
        assert listed[0].fingerprint != listed[1].fingerprint
        assert all(v.modified is not None for v in listed)
        path = repo.fetch(2, cache, expect=listed[1])
        assert path == cache / "2"
        assert files(path) == v2
        assert repo.versions() == listed  # nothing changed: the same fingerprints
    assert sorted(os.listdir(cache)) == ["2"]


def test_a_changed_version_is_not_fetched(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "repo/3/saved_model.pb", b"half")
    use(monkeypatch, store.env())
    cache = tmp_path / "cache"
    repo = RemoteRepository(store.uri(bucket, "repo"), StorageSettings(**FAST))
    listed = repo.versions()
    store.upload(bucket, "repo/3/variables/variables.index", b"the rest arrives")
    with pytest.raises(StorageError, match="the version changed since it was listed"):
        repo.fetch(3, cache, expect=listed[0])
    assert os.listdir(cache) == []
    again = repo.versions()
    assert again[0].fingerprint != listed[0].fingerprint
    assert files(repo.fetch(3, cache, expect=again[0])) == {
        "saved_model.pb": b"half", "variables/variables.index": b"the rest arrives"}
    repo.close()


def test_refetch_replaces_and_evict_removes(
    s3_server: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    clean_cloud_env: dict[str, str],
) -> None:
    bucket = s3_server.make_bucket()
    s3_server.upload(bucket, "repo/1/saved_model.pb", b"first upload")
    use(monkeypatch, s3_server.env())
    cache = tmp_path / "cache"
    with RemoteRepository(s3_server.uri(bucket, "repo"), StorageSettings(**FAST)) as repo:
        repo.fetch(1, cache)
        s3_server.upload(bucket, "repo/1/saved_model.pb", b"second upload")
        s3_server.upload(bucket, "repo/1/assets/vocab.txt", b"words")
        repo.fetch(1, cache)
    assert files(cache / "1") == {"saved_model.pb": b"second upload",
                                  "assets/vocab.txt": b"words"}
    evict_version(cache, 1)
    evict_version(cache, 1)  # already gone: nothing to do
    assert os.listdir(cache) == []


def test_a_failed_copy_leaves_the_cache_as_it_was(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_proxy: Any,
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "repo/1/saved_model.pb", b"old")
    store.upload(bucket, "repo/2/saved_model.pb", os.urandom(2 * 1024 * 1024))
    proxy: CuttingProxy = cutting_proxy(store.port)
    use(monkeypatch, store.env(proxy.port))
    cache = tmp_path / "cache"
    with RemoteRepository(store.uri(bucket, "repo"), StorageSettings(**FAST, retries=0)) as repo:
        repo.fetch(1, cache)
        proxy.cut(after=30_000, times=1000)  # moto and the GCS emulator close after each
        with pytest.raises(StorageError, match="gave up after 1 attempt"):
            repo.fetch(2, cache)
        assert sorted(os.listdir(cache)) == ["1"]  # no half version, no leftovers
        assert files(cache / "1") == {"saved_model.pb": b"old"}
        proxy.cut(after=0, times=0)
        assert len(repo.fetch(2, cache).joinpath("saved_model.pb").read_bytes()) == 2 * 1024**2


def test_errors_name_the_version(
    store: StoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = store.make_bucket()
    store.upload(bucket, "repo/1/saved_model.pb", b"x")
    use(monkeypatch, store.env())
    repo = RemoteRepository(store.uri(bucket, "repo"), StorageSettings(**FAST))
    with pytest.raises(StorageError) as caught:
        repo.fetch(7, tmp_path / "cache")
    assert str(caught.value) == f"{store.uri(bucket, 'repo/7')}: no such version (no objects " \
                                "under it)"
    assert os.listdir(tmp_path / "cache") == []
    empty = RemoteRepository(store.uri(bucket, "nothing-here"), StorageSettings(**FAST))
    assert empty.versions() == []


def test_only_object_store_uris_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is not an object store URI"):
        RemoteRepository(f"file://{tmp_path}")
