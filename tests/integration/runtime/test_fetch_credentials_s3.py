"""Credentials for ``s3://`` against moto with IAM signature checks on: keys from the
environment and from a mounted Secret, the default chain (a shared credentials file, IRSA's
web identity token traded at moto's STS), unsigned requests for a public bucket, and what
each refusal says. Fetches run as the real CLI process so that "the secret never appears"
is checked on everything the process printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch

from tests.fixtures.object_stores import (
    MODEL,
    S3User,
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
