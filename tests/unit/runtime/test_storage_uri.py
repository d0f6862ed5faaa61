"""Model URIs: every scheme parsed into its typed form, every mistake named in the error."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.uri import (
    DemoURI,
    FileURI,
    HttpURI,
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
        ("s3://bucket/model", "'s3://' is not supported yet"),
        ("gs://bucket/model", "'gs://' is not supported yet"),
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
