"""``s3://bucket/prefix`` through boto3 (AWS S3, MinIO, Ceph and other S3-compatible stores).

Credentials, first found wins: ``AWS_ACCESS_KEY_ID`` with ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``) from the environment or the credentials folder; ``MODELPLANE_STORAGE_
ANONYMOUS=true`` for unsigned requests; else boto3's default chain (a profile in
``AWS_SHARED_CREDENTIALS_FILE``/``AWS_CONFIG_FILE``, IRSA's web identity token, EKS Pod
Identity, the instance role); and when that finds nothing, unsigned requests, so a public
bucket needs no configuration at all (as ``aws s3 --no-sign-request``).

``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` points at another store; path-style
addressing is then the default, as MinIO and Ceph expect (``MODELPLANE_STORAGE_S3_
ADDRESSING_STYLE`` overrides it). ``AWS_REGION``/``AWS_DEFAULT_REGION`` name the region;
against AWS itself, botocore follows a bucket to its own region.

Integrity: the listed size always; the ETag as an MD5 when it is one, that is for an object
uploaded in one part and not encrypted with KMS or a customer key (the GET response says).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any, Final

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from modelplane_runtime import __version__
from modelplane_runtime.storage.credentials import Credentials
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.remote import RemoteObject, TransientError, Write
from modelplane_runtime.storage.settings import StorageSettings
from modelplane_runtime.storage.uri import ENV_ANONYMOUS, ObjectURI

log = logging.getLogger("modelplane.storage")

_CHUNK: Final = 64 * 1024
"""Read size: a cut connection loses at most this much (urllib3 waits to fill a read)."""
_MD5_ETAG: Final = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_CHAIN_METHODS: Final = {
    "env": "AWS_ACCESS_KEY_ID in the environment",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "assume-role-with-web-identity": "a web identity token (IRSA)",
    "container-role": "the container credentials endpoint (EKS Pod Identity)",
    "iam-role": "the instance role (IMDS)",
    "sso": "AWS SSO",
    "assume-role": "an assumed role",
    "custom-process": "a credential process",
}
_TRANSIENT_CODES: Final = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestTimeTooSkewed", "500", "502", "503", "504", "429",
})
_DENIED_CODES: Final = frozenset({"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"})
_REFUSED_CODES: Final = {
    "InvalidAccessKeyId": "the access key ID is not known to the store",
    "SignatureDoesNotMatch": "the secret access key does not match the access key ID",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "TokenRefreshRequired": "the session token has expired",
}
_REGION_CODES: Final = frozenset({
    "AuthorizationHeaderMalformed", "PermanentRedirect", "301",
    "IllegalLocationConstraintException",
})


class S3Store:
    """One bucket of an S3 (compatible) store."""

    def __init__(self, uri: ObjectURI, settings: StorageSettings, credentials: Credentials):
        self.uri = uri
        self._credentials = credentials
        self._encrypted: set[str] = set()
        endpoint = credentials.get("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        self._endpoint_name = credentials.first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        region = credentials.get("AWS_REGION", "AWS_DEFAULT_REGION")
        core = botocore.session.Session()
        for variable, option in (("AWS_SHARED_CREDENTIALS_FILE", "credentials_file"),
                                 ("AWS_CONFIG_FILE", "config_file"), ("AWS_PROFILE", "profile")):
            if credentials.get(variable):
                core.set_config_variable(option, credentials.get(variable))
        session, unsigned, self.credential_source = _session(core, region, settings, credentials)
        style = settings.s3_addressing_style
        if style == "auto":
            style = "path" if endpoint else "virtual"
        config = Config(
            signature_version=UNSIGNED if unsigned else None,
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
            retries={"mode": "standard", "total_max_attempts": 1},  # transfer.py retries
            max_pool_connections=settings.concurrency + 2,
            s3={"addressing_style": style},
            user_agent_extra=f"modelplane-fetch/{__version__}",
        )
        try:
            self._client: Any = session.client(
                "s3", endpoint_url=endpoint, config=config,
                verify=credentials.get("AWS_CA_BUNDLE"),
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"{uri.display}: cannot set up the S3 client: {exc}") from None
        self.endpoint = endpoint or f"AWS S3 ({self._client.meta.region_name})"

    def list(self, prefix: str) -> Iterator[RemoteObject]:
        """Every object under ``prefix`` (paged by 1,000 as S3 answers)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.uri.bucket, Prefix=prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield _object(item["Key"], item["Size"], item.get("ETag"),
                                  item.get("LastModified"))
        except Exception as exc:
            raise self._explain(exc, f"listing {self._where(prefix)}") from None

    def stat(self, key: str) -> RemoteObject | None:
        """HEAD the object; None when it does not exist."""
        try:
            head = self._client.head_object(Bucket=self.uri.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                return None
            raise self._explain(exc, f"reading {self._where(key)}") from None
        except Exception as exc:
            raise self._explain(exc, f"reading {self._where(key)}") from None
        if head.get("ServerSideEncryption", "").startswith("aws:kms") or head.get(
            "SSECustomerAlgorithm"
        ):
            self._encrypted.add(key)
        return _object(key, head["ContentLength"], head.get("ETag"), head.get("LastModified"))

    def read(self, obj: RemoteObject, start: int, end: int, write: Write) -> None:
        """GET ``bytes=start-(end-1)`` of this version of the object (``If-Match``)."""
        where = f"reading {self._where(obj.key)}"
        extra = {"IfMatch": obj.tag} if obj.tag else {}
        try:
            response = self._client.get_object(
                Bucket=self.uri.bucket, Key=obj.key, Range=f"bytes={start}-{end - 1}", **extra
            )
            if response.get("ServerSideEncryption", "").startswith("aws:kms") or response.get(
                "SSECustomerAlgorithm"
            ):
                self._encrypted.add(obj.key)
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(_CHUNK):
                    write(chunk)
            except BaseException:
                body.close()  # a half-read connection cannot go back to the pool
                raise
        except (StorageError, TransientError):
            raise
        except Exception as exc:
            raise self._explain(exc, where) from None

    def verifiable(self, obj: RemoteObject) -> RemoteObject:
        """Without the MD5 when the ETag of an encrypted object is not one."""
        if obj.key in self._encrypted:
            return RemoteObject(obj.key, obj.size, obj.tag, None, None, obj.modified)
        return obj

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _where(self, key: str) -> str:
        return f"s3://{self.uri.bucket}/{key}"

    def _explain(self, exc: BaseException, action: str) -> StorageError | TransientError:
        return explain(exc, action, self.uri, self.endpoint, self._endpoint_name,
                       self.credential_source)


def _session(
    core: botocore.session.Session, region: str | None, settings: StorageSettings,
    credentials: Credentials,
) -> tuple[boto3.session.Session, bool, str]:
    """The boto3 session, whether requests go unsigned, and the credential source."""
    key_id = credentials.get("AWS_ACCESS_KEY_ID")
    secret = credentials.get("AWS_SECRET_ACCESS_KEY")
    if bool(key_id) != bool(secret):
        have, missing = (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if key_id
                         else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))
        raise StorageError(
            f"{credentials.origin(have)} is set but {missing} is not: set both "
            "(or neither, to use the pod's role)"
        )
    if key_id and secret:
        session = boto3.session.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret,
            aws_session_token=credentials.get("AWS_SESSION_TOKEN"), region_name=region,
            botocore_session=core,
        )
        return session, False, (
            f"access key ...{key_id[-4:]} ({credentials.origin('AWS_ACCESS_KEY_ID')})"
        )
    session = boto3.session.Session(region_name=region, botocore_session=core)
    if settings.anonymous:
        return session, True, f"no credentials ({ENV_ANONYMOUS}=true)"
    try:
        found = session.get_credentials()
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"the AWS credential chain failed: {exc}") from None
    if found is None:
        log.info("no AWS credentials found; sending unsigned requests (public buckets)")
        return session, True, (
            "no credentials: none in the environment or the credentials folder, no profile, "
            "no web identity token (IRSA), no container or instance role"
        )
    method = _CHAIN_METHODS.get(found.method, found.method)
    return session, False, f"the AWS default chain ({method})"


def _object(key: str, size: int, etag: str | None, modified: Any) -> RemoteObject:
    match = _MD5_ETAG.match(etag or "")
    md5 = bytes.fromhex(match.group(1)) if match else None
    stamp = modified.timestamp() if modified is not None else None
    return RemoteObject(key, int(size), etag, md5, None, stamp)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def explain(
    exc: BaseException, action: str, uri: ObjectURI, endpoint: str, endpoint_name: str | None,
    source: str,
) -> StorageError | TransientError:
    """A one-line error for ``exc`` that says what to do; never the credentials."""
    prefix = f"{action}: "
    if isinstance(exc, ClientError):
        code = _code(exc)
        error = exc.response.get("Error", {})
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if code in _TRANSIENT_CODES:
            return TransientError(f"{prefix}{code} from {endpoint}")
        if code == "NoSuchBucket":
            return StorageError(
                f"{prefix}bucket {uri.bucket!r} does not exist at {endpoint}: check the bucket "
                "in model.uri" + (f" and {endpoint_name}" if endpoint_name else "")
            )
        if code in ("NoSuchKey", "404"):
            return StorageError(f"{prefix}no such object in bucket {uri.bucket!r}")
        if code in _REFUSED_CODES:
            return StorageError(
                f"{prefix}credentials refused ({code}): {_REFUSED_CODES[code]}; used {source}. "
                "Check the AWS_* keys of the credentials Secret"
            )
        if code in _REGION_CODES:
            region = error.get("Region") or headers.get("x-amz-bucket-region")
            hint = f"set AWS_DEFAULT_REGION={region}" if region else "set AWS_DEFAULT_REGION"
            return StorageError(
                f"{prefix}bucket {uri.bucket!r} is in another region than the client's "
                f"({code}): {hint}"
            )
        if code in _DENIED_CODES:
            return StorageError(
                f"{prefix}access denied (used {source}): grant s3:ListBucket on "
                f"arn:aws:s3:::{uri.bucket} and s3:GetObject on its objects, or set "
                "model.credentialsSecret / the ServiceAccount's role"
            )
        if code in ("PreconditionFailed", "412"):
            return StorageError(
                f"{prefix}the object changed while it was being downloaded; fetch again"
            )
        message = error.get("Message") or ""
        return StorageError(f"{prefix}{code or 'error'} from {endpoint}: {message}".rstrip(": "))
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(f"{prefix}incomplete AWS credentials ({type(exc).__name__})")
    if isinstance(exc, BotoConnectionError) or "EndpointConnectionError" in type(exc).__name__:
        named = f" ({endpoint_name})" if endpoint_name else ""
        return TransientError(
            f"{prefix}cannot reach {endpoint}{named}: {_reason(exc)}; check the endpoint "
            "and that the pod may connect to it"
        )
    if isinstance(exc, ReadTimeoutError):
        return TransientError(f"{prefix}{endpoint} sent nothing for too long (read timeout)")
    if isinstance(exc, ResponseStreamingError):
        inner = exc.kwargs.get("error")
        return TransientError(
            f"{prefix}connection to {endpoint} lost mid-download: {_reason(inner or exc)}"
        )
    if isinstance(exc, (BotoCoreError, OSError)) or "urllib3" in type(exc).__module__:
        return TransientError(f"{prefix}{_reason(exc)}")
    return StorageError(f"{prefix}{type(exc).__name__}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]

