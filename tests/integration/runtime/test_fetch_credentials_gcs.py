"""Credentials for ``gs://``: a real service account key whose token endpoint is a local
server playing Google's OAuth endpoint (the emulator itself checks no tokens, so a proxy in
front of it shows the bearer token that was sent), the key as a file, as the JSON itself in
the variable (what ``envFrom`` makes of it) and from a mounted Secret; refused and unusable
keys are named without their secrets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch

from tests.fixtures.object_stores import (
    MODEL,
    StoreServer,
    fetch_env,
    files,
    no_secret_in,
    run_fetch,
    secret_mount,
)
from tests.fixtures.tcp_proxy import CuttingProxy

FAST: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}


def put_model(store: StoreServer, bucket: str) -> None:
    for name, body in MODEL.items():
        store.upload(bucket, f"m/{name}", body)



class TokenEndpoint:
    """Plays Google's OAuth token endpoint: grants or refuses every JWT assertion."""

    def __init__(self, grant: bool) -> None:
        self.grant = grant
        self.assertions: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                endpoint.assertions.append(self.rfile.read(length).decode())
                if endpoint.grant:
                    status, body = 200, {"access_token": "ya29.test-token", "expires_in": 3600,
                                         "token_type": "Bearer"}
                else:
                    status, body = 400, {"error": "invalid_grant",
                                         "error_description": "Invalid JWT Signature."}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint(request: pytest.FixtureRequest) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(grant=getattr(request, "param", True))
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account(private_key_pem: str, token_uri: str) -> dict[str, str]:
    return {
        "type": "service_account", "project_id": "models-project",
        "private_key_id": "0123456789abcdef", "private_key": private_key_pem,
        "client_email": "model-reader@models-project.iam.gserviceaccount.com",
        "client_id": "1234567890", "token_uri": token_uri,
    }


@pytest.fixture
def gcs_bucket(gcs_server: StoreServer, clean_cloud_env: dict[str, str]) -> str:
    bucket = gcs_server.make_bucket()
    put_model(gcs_server, bucket)
    return bucket


def test_gcs_service_account_key_file(
    gcs_server: StoreServer, gcs_bucket: str, tmp_path: Path, token_endpoint: TokenEndpoint,
    private_key_pem: str, cutting_proxy: Any,
) -> None:
    proxy: CuttingProxy = cutting_proxy(gcs_server.port)
    key = tmp_path / "key.json"
    key.write_text(json.dumps(service_account(private_key_pem, token_endpoint.url)))
    env = fetch_env({"GOOGLE_APPLICATION_CREDENTIALS": str(key),
                     "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{proxy.port}"})
    run = run_fetch(f"gs://{gcs_bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert "service account model-reader@models-project.iam.gserviceaccount.com " \
           "(GOOGLE_APPLICATION_CREDENTIALS from the environment)" in run.stderr
    assert token_endpoint.assertions and "grant_type=urn" in token_endpoint.assertions[0]
    assert b"authorization: bearer ya29.test-token" in bytes(proxy.sent).lower()
    no_secret_in(run.stdout + run.stderr, private_key_pem.splitlines()[1])


def test_gcs_key_json_itself_in_the_variable(
    gcs_server: StoreServer, gcs_bucket: str, tmp_path: Path, token_endpoint: TokenEndpoint,
    private_key_pem: str,
) -> None:
    # What `envFrom` makes of a Secret whose key is GOOGLE_APPLICATION_CREDENTIALS.
    text = json.dumps(service_account(private_key_pem, token_endpoint.url))
    env = fetch_env({"GOOGLE_APPLICATION_CREDENTIALS": text,
                     "STORAGE_EMULATOR_HOST": gcs_server.endpoint})
    run = run_fetch(f"gs://{gcs_bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert token_endpoint.assertions
    no_secret_in(run.stdout + run.stderr, private_key_pem.splitlines()[1])


def test_gcs_key_file_from_a_mounted_secret(
    gcs_server: StoreServer, gcs_bucket: str, tmp_path: Path, token_endpoint: TokenEndpoint,
    private_key_pem: str,
) -> None:
    mount = secret_mount(tmp_path / "secret", {
        "GOOGLE_APPLICATION_CREDENTIALS":
            json.dumps(service_account(private_key_pem, token_endpoint.url)),
        "STORAGE_EMULATOR_HOST": gcs_server.endpoint,
    })
    env = fetch_env({"MODELPLANE_STORAGE_CREDENTIALS_DIR": str(mount)})
    run = run_fetch(f"gs://{gcs_bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"(GOOGLE_APPLICATION_CREDENTIALS from {mount}/GOOGLE_APPLICATION_CREDENTIALS)" \
        in run.stderr
    assert token_endpoint.assertions


@pytest.mark.parametrize("token_endpoint", [False], indirect=True)
def test_gcs_refused_key_is_named_without_the_key(
    gcs_server: StoreServer, gcs_bucket: str, tmp_path: Path, token_endpoint: TokenEndpoint,
    private_key_pem: str,
) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(service_account(private_key_pem, token_endpoint.url)))
    env = fetch_env({"GOOGLE_APPLICATION_CREDENTIALS": str(key),
                     "STORAGE_EMULATOR_HOST": gcs_server.endpoint})
    run = run_fetch(f"gs://{gcs_bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"modelplane: listing gs://{gcs_bucket}/m/: credentials refused by "
                           "the token endpoint (used service account model-reader@")
    assert "invalid_grant: Invalid JWT Signature." in last
    no_secret_in(run.stdout + run.stderr, private_key_pem.splitlines()[1])
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(("value", "message"), [
    ("/nonexistent/key.json", "GOOGLE_APPLICATION_CREDENTIALS from the environment names "
                              "/nonexistent/key.json, which does not exist"),
    ('{"type": "service_account", ', "GOOGLE_APPLICATION_CREDENTIALS from the environment "
                                     "holds text that is not valid JSON"),
    ('{"type": "martian"}', "GOOGLE_APPLICATION_CREDENTIALS from the environment is not a "
                            "usable credentials file"),
])
def test_gcs_unusable_key_is_a_clear_error(
    gcs_server: StoreServer, tmp_path: Path, clean_cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, value: str, message: str,
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", value)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    with pytest.raises(StorageError) as caught:
        fetch("gs://models-x/m", tmp_path / "models", settings=StorageSettings(**FAST))
    assert message in str(caught.value)
