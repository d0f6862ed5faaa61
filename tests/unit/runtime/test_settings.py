"""RuntimeSettings: the served name, the version-policy and label forms, and error messages
that name what the user typed (the flag, or the variable when it came from the environment).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from modelplane_runtime.settings import (
    RuntimeSettings,
    SettingsError,
    check_labels,
    check_version_policy,
    load_settings,
)


@pytest.fixture(autouse=True)
def _no_modelplane_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables it means; the developer's own never leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("MODELPLANE_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("path", "name"),
    [("models/mymodel", "mymodel"), ("models/mymodel/1", "mymodel"),
     ("models/mymodel/12/", "mymodel"), ("models/model.keras", "model"),
     ("models/1/model.h5", "model"), ("models/v1", "v1"), ("models/mymodel/²", "²")],
)
def test_the_served_name_comes_from_the_path(path: str, name: str) -> None:
    assert RuntimeSettings(model_path=Path(path)).served_name == name


def test_a_relative_version_folder_is_named_after_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mymodel" / "3").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "mymodel")
    assert RuntimeSettings(model_path=Path("3")).served_name == "mymodel"


@pytest.mark.parametrize(
    ("uri", "name"),
    [("s3://bucket/models/mymodel", "mymodel"), ("s3://bucket/models/mymodel/", "mymodel"),
     ("gs://bucket/mymodel/3", "mymodel"), ("s3://bucket", "bucket"),
     ("https://acct.blob.core.windows.net/c/mymodel/1?sv=x&sig=y", "mymodel")],
)
def test_a_remote_repository_is_named_the_same_way(uri: str, name: str) -> None:
    settings = RuntimeSettings(model_uri=uri, model_path=Path("/cache/abc123"))
    assert settings.served_name == name


def test_a_given_name_wins() -> None:
    assert RuntimeSettings(model_path=Path("m/1"), model_name="mine").served_name == "mine"


@pytest.mark.parametrize("policy", ["", "latest", " LATEST ", "all", "latest:2", "1", "1, 3"])
def test_version_policies_that_parse(policy: str) -> None:
    assert check_version_policy(policy) == policy


@pytest.mark.parametrize(
    ("policy", "message"),
    [("banana", "expected latest, latest:N, all"), ("latest:0", "positive integer N"),
     ("latest:x", "positive integer N"), ("latest:²", "positive integer N"),
     ("1,²", "expected latest"), ("1,,3", "expected latest"), ("-1", "expected latest")],
)
def test_version_policies_that_do_not(policy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_version_policy(policy)


@pytest.mark.parametrize("labels", ["", "stable=1", "stable=1, canary=2,", "a.b-c_d=10"])
def test_labels_that_parse(labels: str) -> None:
    assert check_labels(labels) == labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [("stable", "is not label=version"), ("stable=one", "is not label=version"),
     ("-x=1", "is not label=version"), ("s=²", "is not label=version"),
     ("s=1,s=2", "label 's' given twice")],
)
def test_labels_that_do_not(labels: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_labels(labels)


def test_a_bad_flag_is_named_as_typed_with_its_value() -> None:
    flags = {"model_versions": "--versions", "max_batch_size": "--max-batch-size"}
    with pytest.raises(SettingsError) as caught:
        load_settings(flags=flags, model_versions="banana", max_batch_size=0)
    message = str(caught.value)
    assert "--versions 'banana': expected latest, latest:N, all, or version numbers" in message
    assert "--max-batch-size 0: Input should be greater than or equal to 1" in message
    assert "MODELPLANE_" not in message


def test_a_bad_variable_is_named_with_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_MODEL_VERSIONS", "banana")
    monkeypatch.setenv("MODELPLANE_MODEL_LABELS", "stable")
    with pytest.raises(SettingsError) as caught:
        load_settings(flags={"model_versions": "--versions"})
    message = str(caught.value)
    assert "MODELPLANE_MODEL_VERSIONS='banana': expected latest" in message
    assert "MODELPLANE_MODEL_LABELS='stable': 'stable' is not label=version" in message
    assert "--" not in message


def test_a_flag_wins_over_its_variable_and_is_its_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELPLANE_MODEL_VERSIONS", "banana")
    monkeypatch.setenv("MODELPLANE_MAX_BATCH_SIZE", "8")
    settings = load_settings(flags={"model_versions": "--versions"}, model_versions="all")
    assert (settings.model_versions, settings.max_batch_size) == ("all", 8)
    assert settings.origin("model_versions") == "--versions"
    assert settings.origin("max_batch_size") == "MODELPLANE_MAX_BATCH_SIZE"
    # A copy (the demo makes one) keeps where its settings came from.
    assert settings.model_copy(update={"port": 0}).origin("model_versions") == "--versions"


def test_a_long_value_is_cut_short_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_PORT", "9" * 500)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(str(caught.value)) < 200
    assert str(caught.value).startswith("MODELPLANE_PORT='999")


def test_a_negative_model_version_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"--model-version -1: Input should be greater"):
        load_settings(flags={"model_version": "--model-version"}, model_version=-1)
