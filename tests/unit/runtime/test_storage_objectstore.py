"""Object keys to local paths, and listed objects to version folders (pure functions)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.objectstore import Listing, local_path, plan
from modelplane_runtime.storage.remote import RemoteObject
from modelplane_runtime.storage.uri import ObjectURI
from modelplane_runtime.storage.versions import group_versions

URI = ObjectURI("s3", "models", "repo")


@pytest.mark.parametrize(("key", "path"), [
    ("repo/1/saved_model.pb", "1/saved_model.pb"),
    ("repo/1//variables/./x", "1/variables/x"),
    ("repo/model.keras", "model.keras"),
])
def test_keys_map_below_the_folder(key: str, path: str) -> None:
    assert local_path(key, "repo/") == PurePosixPath(path)


@pytest.mark.parametrize("key", ["repo/../etc/passwd", "repo/1/../../x", "repo/a\\b",
                                 "repo/a\x00b", "repo/"])
def test_escaping_keys_are_refused(key: str) -> None:
    with pytest.raises(StorageError):
        local_path(key, "repo/")


def test_clashing_keys_are_refused(tmp_path: Path) -> None:
    listing = Listing([RemoteObject("repo/1", 1), RemoteObject("repo/1/saved_model.pb", 1)],
                      "repo/", single=False)
    with pytest.raises(StorageError, match=re.escape(
            "objects 'repo/1' and 'repo/1/saved_model.pb' map to the same file or folder")):
        plan(listing, tmp_path, URI)
    doubled = Listing([RemoteObject("repo/1/a", 1), RemoteObject("repo/1//a", 1)], "repo/",
                      single=False)
    with pytest.raises(StorageError, match="map to the same file"):
        plan(doubled, tmp_path, URI)


def test_plan_names_each_object(tmp_path: Path) -> None:
    listing = Listing([RemoteObject("repo/2/saved_model.pb", 5)], "repo/", single=False)
    (job,) = plan(listing, tmp_path, URI)
    assert job.path == tmp_path / "2" / "saved_model.pb"
    assert job.shown == "s3://models/repo/2/saved_model.pb"


def test_versions_are_integer_folders() -> None:
    objects = [
        RemoteObject("r/1/saved_model.pb", 10, "e1", modified=5.0),
        RemoteObject("r/1/variables/v.index", 2, "e2", modified=7.0),
        RemoteObject("r/10/saved_model.pb", 3, "e3"),
        RemoteObject("r/2/saved_model.pb", 4, "e4", modified=1.0),
        RemoteObject("r/002/saved_model.pb", 4, "e5"),  # also version 2: the first one wins
        RemoteObject("r/README", 1),
        RemoteObject("r/v3/saved_model.pb", 1),
        RemoteObject("r/-4/saved_model.pb", 1),
        RemoteObject("r/٣/saved_model.pb", 1),  # an Arabic-Indic digit is not a version
    ]
    versions = group_versions(objects, "r/")
    assert [(v.number, v.files, v.bytes, v.modified) for v in versions] == [
        (1, 2, 12, 7.0), (2, 1, 4, 1.0), (10, 1, 3, None)]


def test_a_fingerprint_changes_with_any_object() -> None:
    base = [RemoteObject("r/1/a", 1, "e1"), RemoteObject("r/1/b", 2, "e2")]
    same = list(reversed(base))
    grown = [*base, RemoteObject("r/1/c", 3, "e3")]
    replaced = [RemoteObject("r/1/a", 1, "e9"), RemoteObject("r/1/b", 2, "e2")]
    (first,) = group_versions(base, "r/")
    assert group_versions(same, "r/")[0].fingerprint == first.fingerprint
    assert group_versions(grown, "r/")[0].fingerprint != first.fingerprint
    assert group_versions(replaced, "r/")[0].fingerprint != first.fingerprint
