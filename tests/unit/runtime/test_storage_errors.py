"""What the object store errors say, for answers the local servers cannot give.

moto, the GCS emulator and Azurite cover the common answers (tests/integration/runtime/
test_fetch_credentials.py). AWS's own region redirects and throttling are played here by
building the exact error responses botocore parses from S3's XML (no server involved).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from modelplane_runtime.storage import StorageError
from modelplane_runtime.storage.remote import TransientError
from modelplane_runtime.storage.s3 import explain
from modelplane_runtime.storage.uri import ObjectURI

URI = ObjectURI("s3", "models", "resnet")


def client_error(code: str, status: int, **extra: str) -> ClientError:
    headers = {"x-amz-bucket-region": extra.pop("header_region")} if "header_region" in extra \
        else {}
    return ClientError({"Error": {"Code": code, "Message": "msg", **extra},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers}},
                       "ListObjectsV2")


def s3_explain(exc: BaseException) -> StorageError | TransientError:
    return explain(exc, "listing s3://models/resnet/", URI, "AWS S3 (us-east-1)", None,
                   "the AWS default chain (a web identity token (IRSA))")


@pytest.mark.parametrize("error", [
    client_error("AuthorizationHeaderMalformed", 400, Region="eu-west-1"),
    client_error("PermanentRedirect", 301, header_region="eu-west-1"),
])
def test_wrong_region_says_which_to_set(error: ClientError) -> None:
    result = s3_explain(error)
    assert isinstance(result, StorageError)
    assert result.message.endswith("set AWS_DEFAULT_REGION=eu-west-1")
    assert "bucket 'models' is in another region than the client's" in result.message


@pytest.mark.parametrize("code", ["SlowDown", "InternalError", "503", "RequestTimeout"])
def test_throttling_and_server_errors_are_retried(code: str) -> None:
    assert isinstance(s3_explain(client_error(code, 503)), TransientError)


def test_access_denied_names_the_credential_source() -> None:
    result = s3_explain(client_error("AccessDenied", 403))
    assert isinstance(result, StorageError)
    assert "access denied (used the AWS default chain (a web identity token (IRSA)))" in \
        result.message


def test_unreachable_endpoint_is_transient_and_named() -> None:
    result = s3_explain(EndpointConnectionError(endpoint_url="https://s3.example:9000"))
    assert isinstance(result, TransientError)
    assert result.message.startswith("listing s3://models/resnet/: cannot reach AWS S3")
