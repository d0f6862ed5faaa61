"""Credentials for Azure Blob against Azurite, which checks SharedKey and SAS signatures: a
connection string from a mounted Secret, an account key, a SAS, a wrong key, anonymous access
to public and private containers, and the account the ``az://`` form needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch

from tests.fixtures.object_stores import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    MODEL,
    StoreServer,
    azurite_connection_string,
    azurite_sas,
    fetch_env,
    files,
    no_secret_in,
    run_fetch,
    secret_mount,
)

FAST: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}


def put_model(store: StoreServer, bucket: str) -> None:
    for name, body in MODEL.items():
        store.upload(bucket, f"m/{name}", body)



@pytest.fixture
def az_container(azure_server: StoreServer, clean_cloud_env: dict[str, str]) -> str:
    container = azure_server.make_bucket()
    put_model(azure_server, container)
    return container


def test_azure_connection_string_from_a_mounted_secret(
    azure_server: StoreServer, az_container: str, tmp_path: Path
) -> None:
    mount = secret_mount(tmp_path / "secret", {
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(azure_server.endpoint),
    })
    env = fetch_env({"MODELPLANE_STORAGE_CREDENTIALS_DIR": str(mount)})
    run = run_fetch(f"az://{az_container}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert f"the connection string (AZURE_STORAGE_CONNECTION_STRING from {mount}/" in run.stderr
    no_secret_in(run.stdout + run.stderr, AZURITE_KEY)


def test_azure_account_key(
    azure_server: StoreServer, az_container: str, tmp_path: Path
) -> None:
    env = fetch_env({
        "AZURE_STORAGE_ACCOUNT": AZURITE_ACCOUNT, "AZURE_STORAGE_KEY": AZURITE_KEY,
        "AZURE_STORAGE_SERVICE_ENDPOINT": f"{azure_server.endpoint}/{AZURITE_ACCOUNT}",
    })
    run = run_fetch(f"az://{az_container}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert "the account key of 'devstoreaccount1' (AZURE_STORAGE_KEY from the environment)" \
        in run.stderr
    no_secret_in(run.stdout + run.stderr, AZURITE_KEY)


def test_azure_sas_token(
    azure_server: StoreServer, az_container: str, tmp_path: Path
) -> None:
    sas = azurite_sas(azure_server, az_container)
    env = fetch_env({"AZURE_STORAGE_SAS_TOKEN": sas,
                     "AZURE_STORAGE_SERVICE_ENDPOINT": f"{azure_server.endpoint}/"
                                                       f"{AZURITE_ACCOUNT}"})
    run = run_fetch(f"az://{az_container}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    no_secret_in(run.stdout + run.stderr, sas, signature)


def test_azure_wrong_key_is_named_without_the_key(
    azure_server: StoreServer, az_container: str, tmp_path: Path
) -> None:
    wrong = "V3J" + AZURITE_KEY[3:]
    env = fetch_env({"AZURE_STORAGE_CONNECTION_STRING":
                     azurite_connection_string(azure_server.endpoint, key=wrong)})
    run = run_fetch(f"az://{az_container}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    # Azure answers a wrong key with 403 AuthenticationFailed, Azurite with 403
    # AuthorizationFailure: both name the credential that was used and the Secret to check.
    assert last.startswith(f"modelplane: listing az://{az_container}/m: ")
    assert "(AuthorizationFailure; used the connection string (AZURE_STORAGE_CONNECTION_STRING " \
           "from the environment)): check the key, SAS or connection string" in last
    no_secret_in(run.stdout + run.stderr, wrong)


def test_azure_public_container_anonymously(
    azure_server: StoreServer, tmp_path: Path, clean_cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    public = azure_server.make_bucket(public=True)
    put_model(azure_server, public)
    monkeypatch.setenv("AZURE_STORAGE_SERVICE_ENDPOINT",
                       f"{azure_server.endpoint}/{AZURITE_ACCOUNT}")
    monkeypatch.setenv("MODELPLANE_STORAGE_ANONYMOUS", "true")
    fetch(f"az://{public}/m", tmp_path / "models", settings=StorageSettings(**FAST))
    assert files(tmp_path / "models") == MODEL


def test_azure_private_container_anonymously_says_why(
    azure_server: StoreServer, az_container: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_SERVICE_ENDPOINT",
                       f"{azure_server.endpoint}/{AZURITE_ACCOUNT}")
    monkeypatch.setenv("MODELPLANE_STORAGE_ANONYMOUS", "true")
    with pytest.raises(StorageError) as caught:
        fetch(f"az://{az_container}/m", tmp_path / "models", settings=StorageSettings(**FAST))
    assert str(caught.value).startswith(
        f"listing az://{az_container}/m: access denied (AuthorizationFailure; used no "
        "credentials (MODELPLANE_STORAGE_ANONYMOUS=true)): ")


def test_azure_without_an_account_asks_for_one(
    tmp_path: Path, clean_cloud_env: dict[str, str]
) -> None:
    with pytest.raises(StorageError) as caught:
        fetch("az://models/m", tmp_path / "models", settings=StorageSettings(**FAST))
    assert str(caught.value) == (
        "az://models/m: which storage account? Set AZURE_STORAGE_ACCOUNT (or a connection "
        "string), or write the URI as https://<account>.blob.core.windows.net/models/m"
    )


def test_credentials_folder_that_is_not_mounted(
    tmp_path: Path, clean_cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPLANE_STORAGE_CREDENTIALS_DIR", str(tmp_path / "absent"))
    with pytest.raises(StorageError, match="is not a folder \\(is the credentials Secret "
                       "mounted there\\?\\)"):
        fetch("s3://models-x/m", tmp_path / "models")
    assert os.listdir(tmp_path) == []
