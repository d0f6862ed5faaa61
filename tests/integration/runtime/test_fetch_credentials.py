"""Credentials for ``modelplane fetch``: the clouds' variables, a mounted Secret's files, the
default chains, anonymous access, and what the errors say when credentials are wrong.

S3 runs against moto with signature checks on (IAM users made per test); GCS against the
emulator with a real service account key whose token endpoint is a local server playing
Google's OAuth endpoint (the emulator itself checks no tokens, so the proxy in front of it
shows the bearer token that was sent); Azure against Azurite, which checks SharedKey and
SAS signatures. Fetches run as the real CLI process where the test reads its output, so
"the secret never appears" is checked on everything the process printed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch

from tests.fixtures.object_stores import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    CuttingProxy,
    S3User,
    StoreServer,
    azurite_connection_string,
    azurite_sas,
    fetch_env,
    run_fetch,
)

FAST: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}
MODEL = {"1/saved_model.pb": b"graph", "1/variables/variables.index": b"index"}


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def put_model(store: StoreServer, bucket: str) -> None:
    for name, body in MODEL.items():
        store.upload(bucket, f"m/{name}", body)


def secret_mount(folder: Path, values: dict[str, str]) -> Path:
    """A folder laid out as the kubelet mounts a Secret: ``..data`` and links to it."""
    data = folder / "..2026_01_01_00_00_00.000000000"
    data.mkdir(parents=True)
    for name, value in values.items():
        (data / name).write_text(value + "\n")  # `kubectl create secret --from-file` keeps it
    (folder / "..data").symlink_to(data.name)
    for name in values:
        (folder / name).symlink_to(f"..data/{name}")
    return folder


def no_secret_in(run_output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in run_output


# --- S3 ------------------------------------------------------------------------------------


def s3_env(server: StoreServer, user: S3User | None, **extra: str) -> dict[str, str]:
    env = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1", **extra}
    if user is not None:
        env |= {"AWS_ACCESS_KEY_ID": user.access_key_id,
                "AWS_SECRET_ACCESS_KEY": user.secret_access_key}
    return env


@pytest.fixture
def s3_bucket(s3_server: StoreServer, clean_cloud_env: dict[str, str]) -> str:
    """A bucket holding the model at its root, made before signature checks are switched on.

    At the root because moto recomputes SigV4 wrongly for a query holding an encoded '/'
    (ListObjectsV2 with Prefix 'm/'), which AWS accepts; listing a whole bucket has no prefix.
    """
    bucket = s3_server.make_bucket()
    for name, body in MODEL.items():
        s3_server.upload(bucket, name, body)
    return bucket


@pytest.fixture
def users(s3_bucket: str, s3_auth: dict[str, S3User]) -> dict[str, S3User]:
    """The IAM users, once the bucket exists and signatures are checked."""
    return s3_auth


def test_s3_keys_from_the_environment(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path
) -> None:
    env = fetch_env(s3_env(s3_server, users["reader"]))
    run = run_fetch(f"s3://{s3_bucket}", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    key_tail = users["reader"].access_key_id[-4:]
    assert f"credentials: access key ...{key_tail} (AWS_ACCESS_KEY_ID from the environment)" \
        in run.stderr
    no_secret_in(run.stdout + run.stderr, users["reader"].secret_access_key)


def test_s3_keys_from_a_mounted_secret(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path
) -> None:
    mount = secret_mount(tmp_path / "secret", {
        "AWS_ACCESS_KEY_ID": users["reader"].access_key_id,
        "AWS_SECRET_ACCESS_KEY": users["reader"].secret_access_key,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    env = fetch_env({"MODELPLANE_STORAGE_CREDENTIALS_DIR": str(mount)})
    run = run_fetch(f"s3://{s3_bucket}", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert f"(AWS_ACCESS_KEY_ID from {mount}/AWS_ACCESS_KEY_ID)" in run.stderr
    no_secret_in(run.stdout + run.stderr, users["reader"].secret_access_key)


def test_s3_environment_wins_over_the_mounted_secret(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path
) -> None:
    mount = secret_mount(tmp_path / "secret", {
        "AWS_ACCESS_KEY_ID": users["nobody"].access_key_id,
        "AWS_SECRET_ACCESS_KEY": users["nobody"].secret_access_key,
    })
    env = fetch_env(s3_env(s3_server, users["reader"])
                    | {"MODELPLANE_STORAGE_CREDENTIALS_DIR": str(mount)})
    run = run_fetch(f"s3://{s3_bucket}", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr


def test_s3_wrong_secret_is_named_without_the_secret(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path
) -> None:
    wrong = S3User(users["reader"].access_key_id, "wR0ngS3cretKeyValue0000000000000000000000")
    env = fetch_env(s3_env(s3_server, wrong))
    run = run_fetch(f"s3://{s3_bucket}", tmp_path / "models", env, tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last == (
        f"modelplane: listing s3://{s3_bucket}/: credentials refused (SignatureDoesNotMatch): "
        "the secret access key does not match the access key ID; used access key "
        f"...{wrong.access_key_id[-4:]} (AWS_ACCESS_KEY_ID from the environment). "
        "Check the AWS_* keys of the credentials Secret"
    )
    no_secret_in(run.stdout + run.stderr, wrong.secret_access_key)
    assert not (tmp_path / "models").exists()


def test_s3_unknown_access_key(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path,
    clean_cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_env(s3_server, S3User("AKIAUNKNOWNKEY000000", "y" * 40)).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageError, match=r"credentials refused \(InvalidAccessKeyId\): the "
                       "access key ID is not known to the store"):
        fetch(f"s3://{s3_bucket}", tmp_path / "models", settings=StorageSettings(**FAST))


def test_s3_user_without_permission_is_told_what_to_grant(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path,
    clean_cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_env(s3_server, users["nobody"]).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageError) as caught:
        fetch(f"s3://{s3_bucket}", tmp_path / "models", settings=StorageSettings(**FAST))
    message = str(caught.value)
    assert "access denied (used access key ..." in message
    assert f"grant s3:ListBucket on arn:aws:s3:::{s3_bucket} and s3:GetObject" in message


def test_s3_half_a_key_pair_is_refused(
    s3_server: StoreServer, tmp_path: Path, clean_cloud_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAONLYTHEID0000000")
    with pytest.raises(StorageError) as caught:
        fetch("s3://models-x/m", tmp_path / "models", settings=StorageSettings(**FAST))
    assert str(caught.value) == (
        "AWS_ACCESS_KEY_ID from the environment is set but AWS_SECRET_ACCESS_KEY is not: set "
        "both (or neither, to use the pod's role)"
    )


def test_s3_default_chain_reads_a_shared_credentials_file(
    s3_server: StoreServer, s3_bucket: str, users: dict[str, S3User], tmp_path: Path
) -> None:
    profile = tmp_path / "credentials"
    profile.write_text(f"[default]\naws_access_key_id = {users['reader'].access_key_id}\n"
                       f"aws_secret_access_key = {users['reader'].secret_access_key}\n")
    env = fetch_env(s3_env(s3_server, None, AWS_SHARED_CREDENTIALS_FILE=str(profile)))
    run = run_fetch(f"s3://{s3_bucket}", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "credentials: the AWS default chain (the shared credentials file)" in run.stderr


def test_s3_public_bucket_without_credentials_sends_unsigned_requests(
    s3_server: StoreServer, tmp_path: Path, cutting_proxy: Any, clean_cloud_env: dict[str, str]
) -> None:
    client = s3_server.clients["s3"]
    bucket = s3_server.make_bucket()
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    for name, body in MODEL.items():
        client.put_object(Bucket=bucket, Key=f"m/{name}", Body=body, ACL="public-read")
    proxy: CuttingProxy = cutting_proxy(s3_server.port)
    env = fetch_env({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"})
    run = run_fetch(f"s3://{bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert "credentials: no credentials: none in the environment" in run.stderr
    sent = bytes(proxy.sent).lower()
    assert b"get /" in sent and b"authorization:" not in sent


def test_s3_irsa_web_identity_token(
    s3_server: StoreServer, tmp_path: Path, cutting_proxy: Any, clean_cloud_env: dict[str, str]
) -> None:
    # What EKS injects for IRSA: a role and a projected service account token. botocore
    # trades the token at STS (moto's, through the proxy) for temporary keys that sign the
    # S3 requests. Signature checks stay off here: moto's STS cannot take the unsigned
    # AssumeRoleWithWebIdentity call while they are on.
    bucket = s3_server.make_bucket()
    put_model(s3_server, bucket)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    proxy: CuttingProxy = cutting_proxy(s3_server.port)
    env = fetch_env({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/model-reader",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
    })
    run = run_fetch(f"s3://{bucket}/m", tmp_path / "models", env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert files(tmp_path / "models") == MODEL
    assert "credentials: the AWS default chain (a web identity token (IRSA))" in run.stderr
    sent = bytes(proxy.sent)
    assert b"Action=AssumeRoleWithWebIdentity" in sent
    assert b"Credential=ASIA" in sent  # S3 requests signed with STS's temporary keys


# --- GCS -----------------------------------------------------------------------------------


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


# --- Azure ---------------------------------------------------------------------------------


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
