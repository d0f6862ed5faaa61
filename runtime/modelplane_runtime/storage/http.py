"""``http(s)://``: stream a download to a file, with a timeout, retries and a size limit.

Credentials come from the environment (see settings.py), never from the URI:
``MODELPLANE_STORAGE_BEARER_TOKEN`` sends ``Authorization: Bearer <token>``;
``MODELPLANE_STORAGE_USERNAME`` with ``MODELPLANE_STORAGE_PASSWORD`` sends basic auth. The
header follows redirects only within the same origin (scheme, host, port), as browsers and
``requests`` do, so a redirect to a CDN or presigned URL never receives it.

A JSON progress line goes out every ``MODELPLANE_STORAGE_PROGRESS_S`` seconds (progress.py).
Connection errors, timeouts, truncated bodies, 5xx and 429 are retried with exponential
backoff and jitter (honouring ``Retry-After``); other 4xx are not, since asking again
cannot help, and neither is an untrusted certificate (``SSL_CERT_FILE`` names the CA
bundle to trust, for a private CA). Proxies follow ``HTTPS_PROXY``/``NO_PROXY``. Standard
library only: the runtime image has no ``requests``.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import logging
import os
import random
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import IO, Final
from urllib.parse import unquote, urlsplit

from modelplane_runtime import __version__
from modelplane_runtime.storage.archive import extract
from modelplane_runtime.storage.content import Kind, classify
from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.progress import Progress
from modelplane_runtime.storage.settings import ENV_PREFIX, StorageSettings
from modelplane_runtime.storage.uri import HttpURI, redact_url

log = logging.getLogger("modelplane.storage")

_CHUNK: Final = 1024 * 1024
_USER_AGENT: Final = f"modelplane-fetch/{__version__}"


class _Transient(Exception):
    """A failure worth another attempt; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Download:
    """A finished download: where it is, the name it came under, and its size."""

    path: Path
    name: str
    size: int


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SameOriginAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, keeping ``Authorization`` only while the origin stays the same."""

    def __init__(self, authorization: str | None) -> None:
        super().__init__()
        self.authorization = authorization

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise StorageError(f"refusing a redirect to {redact_url(newurl)!r}")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.remove_header("Authorization")
            if self.authorization and _origin(newurl) == _origin(req.full_url):
                new.add_header("Authorization", self.authorization)
        return new


def authorization(settings: StorageSettings) -> str | None:
    """The ``Authorization`` header value the settings ask for, if any."""
    if settings.bearer_token is not None:
        return "Bearer " + settings.bearer_token.get_secret_value()
    if settings.username is not None and settings.password is not None:
        pair = f"{settings.username}:{settings.password.get_secret_value()}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return None


def _name_from(response: http.client.HTTPResponse, url: str, final_url: str) -> str:
    """The file name: Content-Disposition, else the last path segment of either URL."""
    disposition = response.headers.get_filename()
    candidates = [disposition] if disposition else []
    candidates += [unquote(urlsplit(u).path) for u in (url, final_url)]
    for candidate in candidates:
        name = PurePosixPath(candidate.replace("\\", "/")).name
        if name and name not in (".", ".."):
            return name
    return "download"


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable hint: fall back to our own backoff
    return max(0.0, when.timestamp() - time.time())


def _error_body(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read(300).decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        return ""
    text = " ".join(body.split())[:200]
    return f": {text}" if text else ""


def _attempt(
    opener: urllib.request.OpenerDirector,
    uri: HttpURI,
    target: Path,
    settings: StorageSettings,
    auth: str | None,
    progress: Progress,
) -> Download:
    request = urllib.request.Request(uri.url, headers={"User-Agent": _USER_AGENT})
    if auth:
        request.add_header("Authorization", auth)
    shown = uri.redacted
    try:
        response = opener.open(request, timeout=settings.timeout_s)
    except urllib.error.HTTPError as exc:
        status = f"GET {shown}: HTTP {exc.code} {exc.reason}{_error_body(exc)}"
        if exc.code == 429 or exc.code >= 500:
            raise _Transient(status, _retry_after(exc.headers)) from None
        raise StorageError(status) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise StorageError(
                f"GET {shown}: {exc.reason} (SSL_CERT_FILE names the CA bundle to trust)"
            ) from None
        raise _Transient(f"GET {shown}: {exc.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"GET {shown}: {exc or type(exc).__name__}") from None
    with response:
        if response.status != 200:
            raise StorageError(f"GET {shown}: HTTP {response.status} {response.reason} (want 200)")
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        limit = settings.max_download_bytes
        if expected is not None and expected > limit:
            raise StorageError(
                f"GET {shown}: {expected} bytes is over the limit of {limit} "
                f"({ENV_PREFIX}MAX_DOWNLOAD_BYTES)"
            )
        received = 0
        progress.total_bytes = expected or 0
        try:
            with target.open("wb") as sink:
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    progress.add(len(chunk))
                    if received > limit:
                        raise StorageError(
                            f"GET {shown}: download passed the limit of {limit} bytes "
                            f"({ENV_PREFIX}MAX_DOWNLOAD_BYTES)"
                        )
                    sink.write(chunk)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Transient(
                f"GET {shown}: connection lost after {received} bytes "
                f"({exc or type(exc).__name__})"
            ) from None
        if expected is not None and received != expected:
            raise _Transient(f"GET {shown}: got {received} of {expected} bytes")
        return Download(target, _name_from(response, uri.url, response.url), received)


def download(
    uri: HttpURI,
    target: Path,
    settings: StorageSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Download:
    """Download ``uri`` to the file ``target``, retrying transient failures."""
    progress = Progress(uri.redacted, 0, 1, interval_s=settings.progress_s)
    with progress:
        return _download(uri, target, settings, sleep, progress)


def _download(
    uri: HttpURI,
    target: Path,
    settings: StorageSettings,
    sleep: Callable[[float], None],
    progress: Progress,
) -> Download:
    auth = authorization(settings)
    opener = urllib.request.build_opener(_SameOriginAuthRedirect(auth))
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            started = time.monotonic()
            result = _attempt(opener, uri, target, settings, auth, progress)
        except _Transient as exc:
            progress.restart()  # the next attempt starts from zero
            if attempt == attempts:
                raise StorageError(f"{exc.message} (gave up after {attempts} attempts)") from None
            delay = min(settings.backoff_s * 2 ** (attempt - 1), settings.max_backoff_s)
            delay *= random.uniform(0.5, 1.0)  # jitter: replicas restarting together spread out
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, settings.max_backoff_s))
            log.warning("%s; attempt %d of %d, retrying in %.1fs", exc.message, attempt,
                        attempts, delay)
            if target.exists():
                os.unlink(target)
            sleep(delay)
            continue
        elapsed = max(time.monotonic() - started, 1e-9)
        progress.file_done()
        fields = progress.snapshot().fields(uri.redacted)
        fields.update(event="fetch_done", bytes_per_second=round(result.size / elapsed),
                      eta_seconds=0.0, elapsed_seconds=round(elapsed, 2))
        log.info("downloaded %s (%d bytes) in %.1fs", uri.redacted, result.size, elapsed,
                 extra=fields)
        return result
    raise AssertionError("unreachable")  # the loop returns or raises


def fetch_http(uri: HttpURI, work: Path, settings: StorageSettings) -> Path:
    """Download ``uri`` into ``work`` and unpack it; returns the model folder."""
    fetched = download(uri, work / ".download", settings)
    content = classify(fetched.path, fetched.name)
    model = work / "model"
    model.mkdir()
    if content.kind in (Kind.TAR, Kind.ZIP):
        root = extract(fetched.path, model, settings, zip_format=content.kind is Kind.ZIP)
        os.unlink(fetched.path)
        return root
    os.rename(fetched.path, model / content.filename)
    return model
