"""Repository discovery, version policies and labels (files on disk, no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelplane_runtime.dataplane.repository import (
    VersionSource,
    open_repository,
    parse_labels,
    scan,
    select_versions,
)
from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.settings import RuntimeSettings


def savedmodel(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    return folder


def keras_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK")
    return path


def settings(path: Path, **values: object) -> RuntimeSettings:
    return RuntimeSettings(model_path=path, **values)  # type: ignore[arg-type]


def test_versioned_layout_ignores_hidden_and_non_integer_names(tmp_path: Path) -> None:
    for version in (1, 2, 10):
        savedmodel(tmp_path / str(version))
    savedmodel(tmp_path / ".building-11")  # being written
    savedmodel(tmp_path / "tmp")
    savedmodel(tmp_path / "3a")
    (tmp_path / "README").write_text("not a version")

    found = scan(tmp_path)

    assert sorted(found) == [1, 2, 10]
    assert found[10] == VersionSource(10, tmp_path / "10", "savedmodel")


def test_version_folder_with_one_keras_file(tmp_path: Path) -> None:
    keras_file(tmp_path / "1" / "model.keras")
    keras_file(tmp_path / "2" / "model.h5")

    found = scan(tmp_path)

    assert found[1] == VersionSource(1, tmp_path / "1" / "model.keras", "keras")
    assert found[2] == VersionSource(2, tmp_path / "2" / "model.h5", "keras")


def test_bare_savedmodel_and_single_keras_file_are_version_1(tmp_path: Path) -> None:
    bare = savedmodel(tmp_path / "bare")
    single = keras_file(tmp_path / "single" / "clf.keras")

    assert scan(bare) == {1: VersionSource(1, bare, "savedmodel")}
    assert scan(single) == {1: VersionSource(1, single, "keras")}
    assert scan(single.parent) == {1: VersionSource(1, single, "keras")}


def test_broken_version_is_reported_not_raised(tmp_path: Path) -> None:
    savedmodel(tmp_path / "1")
    (tmp_path / "2").mkdir()

    found = scan(tmp_path)

    assert isinstance(found[1], VersionSource)
    assert isinstance(found[2], str)
    assert "no model found" in found[2]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is empty"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "no model found"),
        (
            lambda p: (keras_file(p / "a.keras"), keras_file(p / "b.h5")),
            "more than one Keras file",
        ),
    ],
)
def test_unusable_paths_fail_with_a_clear_message(
    tmp_path: Path, setup: object, message: str
) -> None:
    path = tmp_path / "model"
    setup(path)  # type: ignore[operator]
    with pytest.raises(ModelLoadError, match=message):
        open_repository(settings(path))


def test_format_setting_must_match_the_files(tmp_path: Path) -> None:
    savedmodel(tmp_path / "1")
    with pytest.raises(ModelLoadError, match="FORMAT is 'keras' but the model is a savedmodel"):
        open_repository(settings(tmp_path, model_format="keras"))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("latest", [7]),
        ("", [7]),
        ("LATEST", [7]),
        ("latest:2", [7, 3]),
        ("latest:10", [7, 3, 1]),
        ("all", [7, 3, 1]),
        ("1,3", [3, 1]),
        (" 3 , 1 ", [3, 1]),
    ],
)
def test_version_policies(policy: str, expected: list[int]) -> None:
    assert select_versions([1, 3, 7], policy) == expected


def test_pinned_version_overrides_the_policy() -> None:
    assert select_versions([1, 3, 7], "all", pinned=3) == [3]


@pytest.mark.parametrize(
    ("policy", "pinned", "message"),
    [
        ("latest:0", None, "positive integer"),
        ("latest:x", None, "positive integer"),
        ("newest", None, "expected latest, latest:N, all"),
        ("1,5", None, r"version\(s\) 5 not in the repository"),
        ("latest", 9, "MODELPLANE_MODEL_VERSION=9 is not in the repository"),
    ],
)
def test_bad_policies(policy: str, pinned: int | None, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        select_versions([1, 3, 7], policy, pinned)


def test_labels_must_name_served_versions() -> None:
    assert parse_labels("stable=1, canary=2", [1, 2]) == {"stable": 1, "canary": 2}
    assert parse_labels("", [1]) == {}
    with pytest.raises(ModelLoadError, match="'canary' points at version 3, which is not served"):
        parse_labels("canary=3", [1, 2])
    with pytest.raises(ModelLoadError, match="not label=version"):
        parse_labels("stable:1", [1])
    with pytest.raises(ModelLoadError, match="given twice"):
        parse_labels("a=1,a=1", [1])


def test_open_repository_applies_policy_labels_and_config(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        savedmodel(tmp_path / str(version))
    (tmp_path / "modelplane.yaml").write_text("inputs: {}\n")
    (tmp_path / "2" / "modelplane.yaml").write_text("inputs: {}\n")

    repo = open_repository(settings(tmp_path, model_versions="latest:2", model_labels="canary=3"))

    assert [s.version for s in repo.versions] == [3, 2]
    assert repo.labels == {"canary": 3}
    assert repo.labels_of(3) == ("canary",)
    assert repo.versions[0].config == tmp_path / "modelplane.yaml"
    assert repo.versions[1].config == tmp_path / "2" / "modelplane.yaml"


def test_latest_skips_a_broken_newest_folder_but_a_named_one_fails(tmp_path: Path) -> None:
    savedmodel(tmp_path / "1")
    (tmp_path / "2").mkdir()

    assert [s.version for s in open_repository(settings(tmp_path)).versions] == [1]
    with pytest.raises(ModelLoadError, match="no model found"):
        open_repository(settings(tmp_path, model_version=2))
    with pytest.raises(ModelLoadError, match="no model found"):
        open_repository(settings(tmp_path, model_versions="1,2"))


def test_label_on_an_unserved_version_fails_at_start_up(tmp_path: Path) -> None:
    for version in (1, 2):
        savedmodel(tmp_path / str(version))
    with pytest.raises(ModelLoadError, match="MODELPLANE_MODEL_LABELS"):
        open_repository(settings(tmp_path, model_labels="stable=1"))  # latest serves only 2


def test_format_setting_picks_between_savedmodel_and_keras_in_one_folder(tmp_path: Path) -> None:
    savedmodel(tmp_path / "1")
    keras_file(tmp_path / "1" / "model.keras")

    assert scan(tmp_path)[1] == VersionSource(1, tmp_path / "1", "savedmodel")
    assert scan(tmp_path, "keras")[1] == VersionSource(1, tmp_path / "1" / "model.keras", "keras")
