"""Model URIs: every scheme parsed into its typed form, every mistake named in the error."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.uri import (
    CREDENTIAL_VARIABLES,
    ENV_ANONYMOUS,
    ENV_CREDENTIALS_DIR,
    PATH_VARIABLES,
    SECRET_VARIABLES,
    DemoURI,
    FileURI,
    HttpURI,
    ObjectURI,
    PvcURI,
    parse_uri,
    redact_url,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///models/seed_mlp", FileURI(PurePosixPath("/models/seed_mlp"))),
        ("file://localhost/models/a.keras", FileURI(PurePosixPath("/models/a.keras"))),
        ("file:///models//x/./y/", FileURI(PurePosixPath("/models/x/y"))),
        ("file:///models/with%20space", FileURI(PurePosixPath("/models/with space"))),
        ("pvc://models-pvc/seed/v1", PvcURI("models-pvc", PurePosixPath("seed/v1"))),
        ("pvc://models", PvcURI("models", PurePosixPath("."))),
        ("pvc://models/", PvcURI("models", PurePosixPath("."))),
        ("pvc://my.claim-1/a.keras", PvcURI("my.claim-1", PurePosixPath("a.keras"))),
        ("https://example.com/m.tar.gz", HttpURI("https://example.com/m.tar.gz")),
        ("http://10.0.0.1:8000/dl?id=7&sig=x", HttpURI("http://10.0.0.1:8000/dl?id=7&sig=x")),
        ("HTTPS://Example.com/m.zip", HttpURI("HTTPS://Example.com/m.zip")),
        ("demo://", DemoURI("seed-mlp")),
        ("s3://models/resnet/", ObjectURI("s3", "models", "resnet")),
        ("s3://models", ObjectURI("s3", "models", "")),
        ("s3://my.bucket-1/a b/c%20d", ObjectURI("s3", "my.bucket-1", "a b/c%20d")),
        ("gs://models_eu/r/1/saved_model.pb", ObjectURI("gs", "models_eu", "r/1/saved_model.pb")),
        ("az://models/resnet", ObjectURI("az", "models", "resnet")),
        ("https://acct1.blob.core.windows.net/models/m.tar.gz",
         ObjectURI("az", "models", "m.tar.gz", "https://acct1.blob.core.windows.net")),
        ("https://acct1.blob.core.usgovcloudapi.net/models/r",
         ObjectURI("az", "models", "r", "https://acct1.blob.core.usgovcloudapi.net")),
        ("https://example.com/blob.core.windows.net/m.zip",
         HttpURI("https://example.com/blob.core.windows.net/m.zip")),
        ("demo://seed-mlp", DemoURI("seed-mlp")),
    ],
)
def test_valid_uris_parse_to_typed_objects(uri: str, expected: object) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" file:///m", "whitespace"),
        ("/models/x", "no scheme (did you mean 'file:///models/x'?)"),
        ("models/x", "no scheme; supported: file://, pvc://"),
        ("s3://", "s3:// needs a bucket (s3://<bucket>/<path>)"),
        ("s3://Bad_Bucket/m", "'Bad_Bucket' is not a valid bucket name"),
        ("gs://x/m", "'x' is not a valid bucket name"),
        ("az://Models/m", "'Models' is not a valid container name"),
        ("az://a--b/m", "'a--b' is not a valid container name"),
        ("s3://bucket/a/../b", "must not contain '..'"),
        ("https://Bad_Acct.blob.core.windows.net/c/m", "not a valid storage account name"),
        ("https://acct.blob.core.windows.net/c/m?x=1", "the only query an Azure Blob URI takes "
                                                       "is a SAS token"),
        ("ftp://host/model.tar", "'ftp://' is unknown; supported: file://, pvc://, http://"),
        ("file://models/x", "not a host ('models')"),
        ("file://", "absolute path"),
        ("file:///", "absolute path"),
        ("file:///models/../etc", "must not contain '..'"),
        ("file:///m?x=1", "takes no '?' or '#'"),
        ("pvc:///path", "needs a claim name"),
        ("pvc://Bad_Claim/x", "not a valid PersistentVolumeClaim name"),
        ("pvc://claim/../other", "must not contain '..'"),
        ("pvc://claim/a/%2e%2e/b", "must not contain '..'"),
        ("http:///path", "needs a host"),
        ("http://host:99999/x", "Port out of range"),
        ("https://user:secret@host/m.tar.gz", "credentials in the URL are not allowed"),
        ("https://host/a b.tar.gz", "contains whitespace"),
        ("demo://resnet", "unknown demo model 'resnet'; available: demo://seed-mlp"),
    ],
)
def test_invalid_uris_raise_errors_naming_the_problem(uri: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        parse_uri(uri)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_errors_never_echo_credentials_or_query_strings() -> None:
    with pytest.raises(StorageError) as caught:
        parse_uri("https://user:hunter2@host/m.tar.gz?X-Amz-Signature=abc")
    assert "hunter2" not in str(caught.value)
    assert "abc" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/m.tar.gz?X-Amz-Signature=s3cr3t", "https://h/m.tar.gz?..."),
        ("http://u:p@h:8080/a#frag", "http://h:8080/a"),
        ("https://h/plain", "https://h/plain"),
    ],
)
def test_redact_url_drops_user_info_and_query(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_azure_sas_in_the_uri_is_kept_but_never_shown() -> None:
    parsed = parse_uri("https://acct1.blob.core.windows.net/models/r?sv=2024&sig=s3cr3t%3D")
    assert isinstance(parsed, ObjectURI)
    assert parsed.sas == "sv=2024&sig=s3cr3t%3D"
    assert parsed.account == "acct1"
    assert parsed.display == "https://acct1.blob.core.windows.net/models/r?..."
    assert "s3cr3t" not in repr(parsed)
    assert parsed.child("3").display == "https://acct1.blob.core.windows.net/models/r/3?..."
    assert parsed.child("3").sas == parsed.sas


def test_object_uri_display_and_child() -> None:
    root = parse_uri("gs://models")
    assert isinstance(root, ObjectURI)
    assert root.display == "gs://models"
    assert root.child("7").display == "gs://models/7"
    assert root.child("7").key == "7"


def test_credential_variables_contract() -> None:
    """What the operator renders: each scheme's variables, their kinds, and the folder."""
    assert set(CREDENTIAL_VARIABLES) == {"s3", "gs", "az"}
    every = {name for names in CREDENTIAL_VARIABLES.values() for name in names}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} <= set(
        CREDENTIAL_VARIABLES["s3"])
    assert {"GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"} <= set(
        CREDENTIAL_VARIABLES["gs"])
    assert {"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY",
            "AZURE_STORAGE_SAS_TOKEN"} <= set(CREDENTIAL_VARIABLES["az"])
    assert every >= PATH_VARIABLES
    assert every >= SECRET_VARIABLES
    assert ENV_CREDENTIALS_DIR == "MODELPLANE_STORAGE_CREDENTIALS_DIR"
    assert ENV_ANONYMOUS == "MODELPLANE_STORAGE_ANONYMOUS"


def test_uri_module_stays_dependency_free() -> None:
    """The operator imports uri.py: it must not pull in a cloud SDK or TensorFlow."""
    import ast
    from pathlib import Path

    import modelplane_runtime.storage.uri as uri

    tree = ast.parse(Path(uri.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "dataclasses", "pathlib", "typing",
                        "urllib.parse", "modelplane_runtime.storage.errors"}
