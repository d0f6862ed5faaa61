"""Credentials from the environment and a mounted Secret's files: precedence, file-valued
variables, origins for messages, and scrubbing every secret out of a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.credentials import Credentials, load_credentials


def mount(folder: Path, values: dict[str, str]) -> Path:
    """The kubelet's layout for a Secret volume: a timestamped folder, ``..data``, links."""
    data = folder / "..2026_01_01_00_00_00.1"
    data.mkdir(parents=True)
    for name, value in values.items():
        (data / name).write_text(value)
    (folder / "..data").symlink_to(data.name)
    for name in values:
        (folder / name).symlink_to(f"..data/{name}")
    return folder


def test_files_become_variables_with_their_origin(tmp_path: Path) -> None:
    folder = mount(tmp_path / "s", {"AWS_ACCESS_KEY_ID": "AKIA1234\n",
                                    "AWS_SECRET_ACCESS_KEY": "sekret/with+chars\r\n",
                                    "README": "not a variable"})
    found = load_credentials(folder, environ={})
    assert found.values == {"AWS_ACCESS_KEY_ID": "AKIA1234",
                            "AWS_SECRET_ACCESS_KEY": "sekret/with+chars"}
    assert found.origin("AWS_ACCESS_KEY_ID") == f"AWS_ACCESS_KEY_ID from {folder}/AWS_ACCESS_KEY_ID"


def test_file_valued_variables_take_the_mounted_path(tmp_path: Path) -> None:
    folder = mount(tmp_path / "s", {"GOOGLE_APPLICATION_CREDENTIALS": '{"type": "x"}',
                                    "AWS_CA_BUNDLE": "-----BEGIN CERTIFICATE-----"})
    found = load_credentials(folder, environ={})
    assert found.get("GOOGLE_APPLICATION_CREDENTIALS") == \
        str(folder / "GOOGLE_APPLICATION_CREDENTIALS")
    assert found.get("AWS_CA_BUNDLE") == str(folder / "AWS_CA_BUNDLE")


def test_the_environment_wins_over_the_folder(tmp_path: Path) -> None:
    folder = mount(tmp_path / "s", {"AWS_DEFAULT_REGION": "eu-west-1",
                                    "AWS_ENDPOINT_URL": "http://minio:9000"})
    found = load_credentials(folder, environ={"AWS_DEFAULT_REGION": "us-east-2", "HOME": "/x"})
    assert found.get("AWS_DEFAULT_REGION") == "us-east-2"
    assert found.origin("AWS_DEFAULT_REGION") == "AWS_DEFAULT_REGION from the environment"
    assert found.get("AWS_ENDPOINT_URL") == "http://minio:9000"
    assert "HOME" not in found.values  # only the clouds' variables are taken


def test_empty_values_count_as_unset() -> None:
    found = load_credentials(None, environ={"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-north-1"})
    assert found.get("AWS_REGION", "AWS_DEFAULT_REGION") == "eu-north-1"
    assert found.first("AWS_REGION", "AWS_DEFAULT_REGION") == "AWS_DEFAULT_REGION"


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        load_credentials(tmp_path / "nowhere", environ={})
    assert str(caught.value) == (
        f"MODELPLANE_STORAGE_CREDENTIALS_DIR={tmp_path / 'nowhere'} is not a folder (is the "
        "credentials Secret mounted there?)"
    )


def test_binary_and_oversized_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "AWS_SESSION_TOKEN").write_bytes(b"\xff\xfe")
    with pytest.raises(StorageError, match="is not UTF-8 text"):
        load_credentials(folder, environ={})
    (folder / "AWS_SESSION_TOKEN").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(StorageError, match="is larger than 1048576 bytes"):
        load_credentials(folder, environ={})


def test_scrub_removes_secrets_and_their_parts() -> None:
    connection = ("DefaultEndpointsProtocol=https;AccountName=acct;"
                  "AccountKey=a2V5a2V5a2V5;EndpointSuffix=core.windows.net")
    key_json = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc"}'
    found = Credentials({
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AZURE_STORAGE_CONNECTION_STRING": connection,
        "GOOGLE_APPLICATION_CREDENTIALS": key_json,
    }).with_secret("sv=2024&sig=abcdef")
    text = (f"failed with wJalrXUtnFEMI and a2V5a2V5a2V5 in {connection} and "
            "-----BEGIN PRIVATE KEY-----abc and sv=2024&sig=abcdef; key AKIAEXAMPLE")
    scrubbed = found.scrub(text)
    for secret in ("wJalrXUtnFEMI", "a2V5a2V5a2V5", "PRIVATE KEY", "sig=abcdef"):
        assert secret not in scrubbed
    assert "AKIAEXAMPLE" in scrubbed  # an access key ID is an identifier, not a secret
    assert "wJalr" not in repr(found)


def test_a_key_file_path_is_not_a_secret() -> None:
    found = Credentials({"GOOGLE_APPLICATION_CREDENTIALS": "/var/run/secrets/key.json"})
    assert found.scrub("reading /var/run/secrets/key.json") == "reading /var/run/secrets/key.json"
