"""``modelplane fetch`` against a real HTTP server, real archives, real models and the real CLI.

The server is ``http.server`` on 127.0.0.1:0 in a thread; each route answers with a
scripted sequence of responses (the last one repeats) and records every request, so tests
can count retries and read the headers that were sent.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelplane_runtime.storage import StorageError, StorageSettings, fetch
from modelplane_runtime.storage.http import download
from modelplane_runtime.storage.uri import HttpURI

FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}


@dataclass
class Reply:
    """One scripted response. ``truncate`` sends only that many body bytes, then hangs up."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate: int | None = None
    stall: threading.Event | None = None
    length: bool = True


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class ModelServer:
    """A real HTTP server whose routes are scripted by the test."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.base + path

    def hits(self, path: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.path.split("?")[0] == path]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self.lock:
            self.requests.append(Seen(handler.path, dict(handler.headers.items())))
            queue = self.routes.get(path, [Reply(404, b"no such file")])
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply.stall is not None:
            reply.stall.wait(30)
        handler.send_response(reply.status)
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        if reply.length:
            handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        body = reply.body if reply.truncate is None else reply.body[: reply.truncate]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)
        handler.close_connection = True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[ModelServer]:
    running = ModelServer()
    yield running
    running.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small versioned repository (real files, tiny contents)."""
    base = tmp_path / "src" / "seed_mlp"
    (base / "1" / "variables").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(os.urandom(3000))
    (base / "1" / "variables" / "variables.index").write_bytes(b"index")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"v2")
    return base


def tar_gz(folder: Path, arcname: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=arcname if arcname is not None else folder.name)
    return buffer.getvalue()


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def settings(**values: Any) -> StorageSettings:
    return StorageSettings(**{**FAST, **values})


# --- archives and files -------------------------------------------------------------------


def test_tar_gz_archive_is_fetched_and_unpacked(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    url = server.route("/models/seed_mlp.tar.gz", Reply(body=tar_gz(model_dir)))
    dest = tmp_path / "mnt" / "models"
    fetch(url, dest, settings=settings())
    assert files(dest) == files(model_dir)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["models"]


def test_download_reports_its_size_and_rate(
    server: ModelServer, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = tar_gz(model_dir)
    url = server.route("/m.tar.gz", Reply(500), Reply(body=body))
    with caplog.at_level(logging.INFO, logger="modelplane.storage"):
        fetch(url, tmp_path / "models", settings=settings())
    (done,) = [r for r in caplog.records if getattr(r, "event", None) == "fetch_done"]
    assert (done.bytes, done.total_bytes, done.files) == (len(body), len(body), 1)
    assert done.bytes_per_second > 0


def test_zip_archive_is_fetched_and_unpacked(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    url = server.route("/models/seed_mlp.zip", Reply(body=zipped(model_dir)))
    fetch(url, tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == files(model_dir)


def test_archive_without_a_name_is_recognised_by_content(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    url = server.route("/download", Reply(body=zipped(model_dir)))
    fetch(url + "?id=42", tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == files(model_dir)


def test_content_disposition_names_the_file(server: ModelServer, tmp_path: Path) -> None:
    h5 = b"\x89HDF\r\n\x1a\n" + os.urandom(500)
    url = server.route("/blob", Reply(body=h5, headers={
        "Content-Disposition": 'attachment; filename="../../classifier.h5"',
    }))
    fetch(url, tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == {"classifier.h5": h5}


def test_keras_file_is_saved_as_is(
    server: ModelServer, tmp_path: Path, keras_model_file: Path
) -> None:
    url = server.route("/m/classifier.keras", Reply(body=keras_model_file.read_bytes()))
    fetch(url, tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == {"classifier.keras": keras_model_file.read_bytes()}


def test_html_error_page_with_status_200_is_refused(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/m.tar.gz", Reply(body=b"<html><body>Please log in</body></html>"))
    with pytest.raises(StorageError) as caught:
        fetch(url, tmp_path / "models", settings=settings())
    assert "'m.tar.gz' is not a tar or zip archive (content starts with b'<html>" in str(
        caught.value
    )
    assert not (tmp_path / "models").exists()


def test_malicious_archive_over_http_leaves_nothing(server: ModelServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        good = tarfile.TarInfo("model/saved_model.pb")
        good.size = 2
        archive.addfile(good, io.BytesIO(b"pb"))
        link = tarfile.TarInfo("model/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../../../etc"
        archive.addfile(link)
    url = server.route("/evil.tar.gz", Reply(body=buffer.getvalue()))
    dest = tmp_path / "out" / "models"
    with pytest.raises(StorageError, match="points outside the model"):
        fetch(url, dest, settings=settings())
    assert not (tmp_path / "out").exists()


# --- status codes, retries, limits ------------------------------------------------------------


def test_server_errors_are_retried_until_success(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    body = tar_gz(model_dir)
    url = server.route("/m.tar.gz", Reply(500, b"oops"), Reply(503, b"busy"), Reply(body=body))
    fetch(url, tmp_path / "models", settings=settings())
    assert len(server.hits("/m.tar.gz")) == 3
    assert files(tmp_path / "models") == files(model_dir)


def test_404_is_not_retried_and_is_a_clear_error(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/missing.tar.gz", Reply(404, b"<Error><Code>NoSuchKey</Code></Error>"))
    with pytest.raises(StorageError) as caught:
        fetch(url + "?X-Amz-Signature=s3cr3t", tmp_path / "models", settings=settings())
    message = str(caught.value)
    assert message == (
        f"GET {server.base}/missing.tar.gz?...: HTTP 404 Not Found: "
        "<Error><Code>NoSuchKey</Code></Error>"
    )
    assert len(server.hits("/missing.tar.gz")) == 1
    assert not (tmp_path / "models").exists()


def test_persistent_500_gives_up_after_the_retries(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/m.tar.gz", Reply(500, b"down"))
    with pytest.raises(StorageError) as caught:
        fetch(url, tmp_path / "models", settings=settings(retries=2))
    assert "HTTP 500 Internal Server Error: down (gave up after 3 attempts)" in str(caught.value)
    assert len(server.hits("/m.tar.gz")) == 3


def test_backoff_doubles_and_honours_retry_after(server: ModelServer, tmp_path: Path) -> None:
    waits: list[float] = []
    url = server.route(
        "/m.tar.gz",
        Reply(500), Reply(500), Reply(429, headers={"Retry-After": "2"}), Reply(body=b"done"),
    )
    result = download(HttpURI(url), tmp_path / "file", settings(backoff_s=0.1, max_backoff_s=10),
                      sleep=waits.append)
    assert result.size == 4
    assert len(waits) == 3
    assert 0.05 <= waits[0] <= 0.1  # 0.1, jittered
    assert 0.1 <= waits[1] <= 0.2  # doubled
    assert waits[2] == 2.0  # the server's Retry-After wins over the 0.4 backoff


@pytest.mark.parametrize("hint", ["soon, maybe", "Wed, 21 Oct 2015 07:28:00 GMT", "-5"])
def test_unusable_retry_after_falls_back_to_backoff(
    server: ModelServer, tmp_path: Path, hint: str
) -> None:
    waits: list[float] = []
    url = server.route("/m", Reply(503, headers={"Retry-After": hint}), Reply(body=b"ok"))
    download(HttpURI(url), tmp_path / "file", settings(backoff_s=0.1, max_backoff_s=10),
             sleep=waits.append)
    assert len(waits) == 1
    assert 0.05 <= waits[0] <= 0.1


def test_truncated_body_is_retried(server: ModelServer, model_dir: Path, tmp_path: Path) -> None:
    body = tar_gz(model_dir)
    url = server.route("/m.tar.gz", Reply(body=body, truncate=len(body) // 2), Reply(body=body))
    fetch(url, tmp_path / "models", settings=settings())
    assert len(server.hits("/m.tar.gz")) == 2
    assert files(tmp_path / "models") == files(model_dir)


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    dead = ModelServer()
    url = dead.base + "/m.tar.gz"
    dead.close()  # nothing listens on that port any more
    with pytest.raises(StorageError) as caught:
        fetch(url, tmp_path / "models", settings=settings(retries=1))
    assert "Connection refused (gave up after 2 attempts)" in str(caught.value)


def test_stalled_server_times_out(server: ModelServer, tmp_path: Path) -> None:
    release = threading.Event()
    url = server.route("/slow.tar.gz", Reply(body=b"x", stall=release))
    try:
        with pytest.raises(StorageError) as caught:
            fetch(url, tmp_path / "models", settings=settings(timeout_s=0.3, retries=0))
    finally:
        release.set()
    assert "timed out (gave up after 1 attempts)" in str(caught.value)


def test_declared_size_over_the_limit_is_refused_without_download(
    server: ModelServer, tmp_path: Path
) -> None:
    url = server.route("/big.tar.gz", Reply(body=bytes(5000)))
    with pytest.raises(StorageError) as caught:
        fetch(url, tmp_path / "models", settings=settings(max_download_bytes=1000))
    assert "5000 bytes is over the limit of 1000 (MODELPLANE_STORAGE_MAX_DOWNLOAD_BYTES)" in str(
        caught.value
    )
    assert len(server.hits("/big.tar.gz")) == 1


def test_undeclared_size_over_the_limit_is_cut_off(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/big.tar.gz", Reply(body=bytes(3 * 1024 * 1024), length=False))
    with pytest.raises(StorageError, match="download passed the limit of 1048576 bytes"):
        fetch(url, tmp_path / "models", settings=settings(max_download_bytes=1024 * 1024))


# --- redirects and credentials -------------------------------------------------------------


def test_redirect_is_followed(server: ModelServer, model_dir: Path, tmp_path: Path) -> None:
    server.route("/real/seed_mlp.tar.gz", Reply(body=tar_gz(model_dir)))
    url = server.route("/latest", Reply(302, headers={"Location": "/real/seed_mlp.tar.gz"}))
    fetch(url, tmp_path / "models", settings=settings())
    assert files(tmp_path / "models") == files(model_dir)


def test_bearer_token_from_the_environment_is_sent(
    server: ModelServer, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPLANE_STORAGE_BEARER_TOKEN", "t0ken")
    monkeypatch.setenv("MODELPLANE_STORAGE_BACKOFF_S", "0.01")
    url = server.route("/m.tar.gz", Reply(body=tar_gz(model_dir)))
    fetch(url, tmp_path / "models")
    assert server.hits("/m.tar.gz")[0].headers["Authorization"] == "Bearer t0ken"


def test_basic_credentials_are_sent_and_kept_on_same_origin_redirect(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    server.route("/real.tar.gz", Reply(body=tar_gz(model_dir)))
    url = server.route("/latest", Reply(301, headers={"Location": "/real.tar.gz"}))
    fetch(url, tmp_path / "models", settings=settings(username="ann", password="pa:ss"))
    expected = "Basic " + base64.b64encode(b"ann:pa:ss").decode()
    assert server.hits("/latest")[0].headers["Authorization"] == expected
    assert server.hits("/real.tar.gz")[0].headers["Authorization"] == expected


def test_credentials_are_not_sent_to_another_origin(
    server: ModelServer, model_dir: Path, tmp_path: Path
) -> None:
    cdn = ModelServer()
    try:
        target = cdn.route("/blob.tar.gz", Reply(body=tar_gz(model_dir)))
        url = server.route("/m.tar.gz", Reply(307, headers={"Location": target}))
        fetch(url, tmp_path / "models", settings=settings(bearer_token="t0ken"))
        assert server.hits("/m.tar.gz")[0].headers["Authorization"] == "Bearer t0ken"
        assert "Authorization" not in cdn.hits("/blob.tar.gz")[0].headers
        assert files(tmp_path / "models") == files(model_dir)
    finally:
        cdn.close()


def test_wrong_credentials_are_a_clear_error(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/m.tar.gz", Reply(401, b"bad token"))
    with pytest.raises(StorageError, match="HTTP 401 Unauthorized: bad token"):
        fetch(url, tmp_path / "models", settings=settings(bearer_token="wrong"))
    assert len(server.hits("/m.tar.gz")) == 1


def test_non_200_success_status_is_an_error(server: ModelServer, tmp_path: Path) -> None:
    url = server.route("/m.tar.gz", Reply(204))
    with pytest.raises(StorageError, match=r"HTTP 204 No Content \(want 200\)"):
        fetch(url, tmp_path / "models", settings=settings())


# --- https --------------------------------------------------------------------------------


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[ModelServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    running = ModelServer(tls=context)
    yield running
    running.close()


def test_https_with_a_trusted_certificate(
    tls_server: ModelServer, certificate: tuple[Path, Path], model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    url = tls_server.route("/m.tar.gz", Reply(body=tar_gz(model_dir)))
    fetch(url, tmp_path / "models", settings=settings(bearer_token="t0ken"))
    assert files(tmp_path / "models") == files(model_dir)
    assert tls_server.hits("/m.tar.gz")[0].headers["Authorization"] == "Bearer t0ken"


def test_https_with_an_untrusted_certificate_fails_without_retry(
    tls_server: ModelServer, tmp_path: Path
) -> None:
    url = tls_server.route("/m.tar.gz", Reply(body=b"never sent"))
    with pytest.raises(StorageError) as caught:
        fetch(url, tmp_path / "models", settings=settings(retries=3))
    assert "certificate verify failed" in str(caught.value)
    assert "gave up" not in str(caught.value)  # a bad certificate is not transient
    assert tls_server.hits("/m.tar.gz") == []


# --- a real mounted volume, like the pod's emptyDir -------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at a fresh folder (needs root and mount rights, else skipped)."""
    mount_point = tmp_path / "mnt" / "models"
    mount_point.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and the mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)


def test_fetch_fills_a_mount_point_it_cannot_rename(
    small_volume: Path, model_dir: Path, tmp_path: Path
) -> None:
    assert os.path.ismount(small_volume)
    (small_volume / "stale").write_text("from the last run")
    fetch(f"file://{model_dir}", small_volume)
    assert os.path.ismount(small_volume)
    assert files(small_volume) == files(model_dir)


def test_full_disk_is_a_clear_error_and_keeps_the_old_model(
    small_volume: Path, tmp_path: Path
) -> None:
    (small_volume / "1").mkdir()
    (small_volume / "1" / "saved_model.pb").write_bytes(b"old model")
    big = tmp_path / "big"
    (big / "1").mkdir(parents=True)
    (big / "1" / "variables.data").write_bytes(os.urandom(2 * 1024 * 1024))
    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(tar_gz(big, "big"))
    with pytest.raises(StorageError) as caught:
        fetch(f"file://{archive}", small_volume)
    assert "failed: no space left on that volume" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert files(small_volume) == {"1/saved_model.pb": b"old model"}
    assert sorted(p.name for p in small_volume.iterdir()) == ["1"]


# --- real TensorFlow models -------------------------------------------------------------------


def _predict(version_dir: Path, rows: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures["serving_default"](inputs=tf.constant(rows))
    return np.asarray(outputs["outputs"])


def test_real_savedmodel_archive_loads_after_fetch(
    server: ModelServer, demo_model_dir: Path, tmp_path: Path
) -> None:
    from modelplane_runtime.demo_model import demo_predict

    url = server.route("/seed_mlp.tar.gz", Reply(body=tar_gz(demo_model_dir, "seed_mlp")))
    dest = tmp_path / "models"
    fetch(url, dest, settings=settings())
    rows = np.arange(16, dtype=np.float32).reshape(2, 8) / 4
    np.testing.assert_allclose(_predict(dest / "1", rows), demo_predict(rows), rtol=1e-5)


def test_demo_uri_builds_the_demo_model(tmp_path: Path) -> None:
    from modelplane_runtime.demo_model import demo_predict

    dest = tmp_path / "models"
    dest.mkdir()  # like the emptyDir mount
    fetch("demo://", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["1"]
    rows = np.ones((3, 8), dtype=np.float32)
    np.testing.assert_allclose(_predict(dest / "1", rows), demo_predict(rows), rtol=1e-5)


# --- the real CLI ------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelplane_runtime.cli", "fetch", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "MODELPLANE_STORAGE_BACKOFF_S": "0.01", **(env or {})},
    )


def test_cli_fetch_succeeds(server: ModelServer, model_dir: Path, tmp_path: Path) -> None:
    url = server.route("/m.zip", Reply(body=zipped(model_dir)))
    done = run_cli(url, str(tmp_path / "models"))
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "models") == files(model_dir)


@pytest.mark.parametrize(
    ("route", "uri_suffix", "message"),
    [
        ("/missing.tar.gz", "/missing.tar.gz", "HTTP 404 Not Found"),
        (None, "s3://Bad_Bucket/m", "'Bad_Bucket' is not a valid bucket name"),
        (None, "ftp://host/m", "'ftp://' is unknown"),
    ],
)
def test_cli_fetch_failure_exits_non_zero_with_the_message(
    server: ModelServer, tmp_path: Path, route: str | None, uri_suffix: str, message: str
) -> None:
    uri = server.base + uri_suffix if route else uri_suffix
    done = run_cli(uri, str(tmp_path / "models"))
    assert done.returncode != 0
    assert message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "models").exists()


def test_cli_fetch_failure_is_one_line_on_stderr(tmp_path: Path) -> None:
    done = run_cli("gs://x/m", str(tmp_path / "models"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "modelplane: model URI 'gs://x/m': 'x' is not a valid bucket name (3-63 lower-case "
        "letters, digits, '-', '.' and '_')"
    ]
