"""Every kind of bad request gets a 4xx JSON error (503 for a timeout), never a 5xx or a
crash, and the server stays healthy; /metrics counts all of it."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, metric_value

BODY_LIMIT = 4096
ROW_LIMIT = 20
TIMEOUT_S = 3.0
ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = [
        "--name",
        "demo",
        "--max-body-bytes",
        str(BODY_LIMIT),
        "--request-timeout-s",
        str(TIMEOUT_S),
        "--log-level",
        "debug",
    ]
    env = {"MODELPLANE_MAX_ROWS_PER_REQUEST": str(ROW_LIMIT)}
    with launch_runtime(demo_model_dir, runtime_log_dir, args, env=env) as running:
        yield running


def _v2(tensor: dict[str, object], **extra: object) -> bytes:
    base = {"name": "inputs", "shape": [1, 8], "datatype": "FP32", "data": ROW}
    return json.dumps({"inputs": [{**base, **tensor}], **extra}).encode()


V1 = "/v1/models/demo:predict"
V2 = "/v2/models/demo/infer"
CASES = [
    # (id, method, path, body, headers, status, words in the error)
    ("malformed-json", "POST", V1, b'{"instances": [1, 2', {}, 400, "malformed JSON"),
    ("empty-body", "POST", V1, b"", {}, 400, "empty"),
    ("not-an-object", "POST", V1, b"[1, 2]", {}, 400, "object"),
    ("no-tensors", "POST", V1, b'{"rows": []}', {}, 400, "instances"),
    ("wrong-shape", "POST", V1, b'{"instances": [[1, 2, 3]]}', {}, 400, "shape"),
    (
        "wrong-dtype",
        "POST",
        V1,
        json.dumps({"instances": [["a"] * 8]}).encode(),
        {},
        400,
        "float32",
    ),
    (
        "unknown-input",
        "POST",
        V1,
        json.dumps({"inputs": {"nope": [ROW]}}).encode(),
        {},
        400,
        "nope",
    ),
    (
        "unknown-signature",
        "POST",
        V1,
        json.dumps({"signature_name": "x", "instances": [ROW]}).encode(),
        {},
        400,
        "signature",
    ),
    (
        "too-many-rows",
        "POST",
        V1,
        json.dumps({"instances": [ROW] * (ROW_LIMIT + 1)}).encode(),
        {},
        400,
        "rows",
    ),
    ("unknown-model", "POST", "/v1/models/nope:predict", b'{"instances": [[1]]}', {}, 404, "nope"),
    ("unknown-version", "POST", "/v1/models/demo/versions/9:predict", b"{}", {}, 404, "9"),
    ("bad-version", "GET", "/v1/models/demo/versions/one", None, {}, 400, "version"),
    ("unknown-label", "GET", "/v1/models/demo/labels/canary/metadata", None, {}, 404, "canary"),
    ("unknown-route", "GET", "/v1/modelz", None, {}, 404, "route"),
    ("wrong-method", "GET", V1, None, {}, 405, "not allowed"),
    ("wrong-method-v2", "GET", V2, None, {}, 405, "not allowed"),
    ("v2-malformed-json", "POST", V2, b"{nope", {}, 400, "malformed JSON"),
    ("v2-unknown-datatype", "POST", V2, _v2({"datatype": "FLOAT"}), {}, 400, "datatype"),
    ("v2-data-count", "POST", V2, _v2({"shape": [2, 8]}), {}, 400, "16 elements"),
    ("v2-wrong-datatype", "POST", V2, _v2({"datatype": "FP64"}), {}, 400, "FP64"),
    ("v2-wrong-shape", "POST", V2, _v2({"shape": [2, 4]}), {}, 400, "shape"),
    ("v2-unknown-input", "POST", V2, _v2({"name": "x"}), {}, 400, "'x'"),
    ("v2-unknown-output", "POST", V2, _v2({}, outputs=[{"name": "nah"}]), {}, 400, "nah"),
    (
        "v2-bad-header-length",
        "POST",
        V2,
        _v2({}),
        {"Inference-Header-Content-Length": "x"},
        400,
        "Inference-Header",
    ),
    (
        "v2-header-past-body",
        "POST",
        V2,
        _v2({}),
        {"Inference-Header-Content-Length": "99999"},
        400,
        "outside the body",
    ),
    (
        "v2-binary-missing",
        "POST",
        V2,
        _v2({"parameters": {"binary_data_size": 32}, "data": None}),
        {},
        400,
        "binary",
    ),
    ("v2-unknown-model", "POST", "/v2/models/nope/infer", _v2({}), {}, 404, "nope"),
    ("v2-bad-version", "POST", "/v2/models/demo/versions/-1/infer", _v2({}), {}, 400, "version"),
    ("body-over-limit", "POST", V1, b" " * (BODY_LIMIT + 1), {}, 413, "limit"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_gets_a_json_4xx(
    server: RuntimeServer,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    with server.client() as client:
        response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("encoding", "body", "status", "words"),
    [
        ("gzip", b"not gzip at all", 400, "gzip"),
        ("br", b"{}", 415, "br"),
        # 1 MB of spaces compresses to ~1 kB: the limit applies after decompression.
        ("gzip", gzip.compress(b'{"instances": [' + b" " * 1_000_000 + b"]}"), 413, "decompressed"),
    ],
)
def test_content_encoding(
    server: RuntimeServer, encoding: str, body: bytes, status: int, words: str
) -> None:
    assert len(body) < BODY_LIMIT
    with server.client() as client:
        response = client.post(V1, content=body, headers={"Content-Encoding": encoding})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_gzip_body_within_the_limit_is_served(server: RuntimeServer) -> None:
    body = gzip.compress(json.dumps({"instances": [ROW]}).encode())
    with server.client() as client:
        response = client.post(V1, content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json()["predictions"], demo_predict(np.array([ROW])), rtol=1e-6
    )


def test_chunked_body_over_the_limit_is_413(server: RuntimeServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(BODY_LIMIT // 40 + 1):
            yield json.dumps(ROW).encode() + b","
        yield b"[1]]}"

    with server.client() as client:
        response = client.post(V1, content=chunks())
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_request_not_answered_in_time_is_503(server: RuntimeServer) -> None:
    # The body never completes, so the request cannot finish: the timeout must answer.
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S + 20) as sock:
        sock.sendall(
            b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"
        )
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), raw
    assert b"application/json" in head
    assert str(TIMEOUT_S) in json.loads(body)["error"]


def test_still_healthy_and_counted(server: RuntimeServer) -> None:
    with server.client() as client:
        before = client.get("/metrics").text
        for _ in range(3):
            ok = client.post(V1, json={"instances": [ROW, ROW]})
            assert ok.status_code == 200
        client.post(V1, content=b"{broken")
        client.post("/v1/models/nope:predict", json={"instances": [ROW]})
        assert client.get("/v2/health/ready").status_code == 200
        after = client.get("/metrics").text
    np.testing.assert_allclose(
        ok.json()["predictions"], demo_predict(np.array([ROW, ROW])), rtol=1e-6
    )

    def grew(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert grew("modelplane_requests_total", model="demo", protocol="v1", code="200") == 3
    assert grew("modelplane_requests_total", model="demo", protocol="v1", code="400") == 1
    assert grew("modelplane_request_duration_seconds_count", model="demo", protocol="v1") == 4
    assert grew("modelplane_batch_size_count", model="demo") == 3
    assert grew("modelplane_batch_size_sum", model="demo") == 6
    assert grew("modelplane_inference_duration_seconds_count", model="demo") == 3
    assert metric_value(after, "modelplane_requests_in_flight", model="demo") == 0
    assert metric_value(after, "modelplane_model_load_seconds", model="demo", version="1") > 0
    # Nothing a client sent made the server fail: the only 5xx is the timeout's 503.
    server_errors = [
        code
        for code in ("500", "502", "504")
        if metric_value(after, "modelplane_requests_total", code=code)
    ]
    assert server_errors == []
    # Unknown model names share one label value, so clients cannot blow up the series.
    assert metric_value(after, "modelplane_requests_total", model="nope") == 0
    assert grew("modelplane_requests_total", model="_unknown", protocol="v1", code="404") == 1


def test_error_logs_carry_the_request_id(server: RuntimeServer) -> None:
    with server.client() as client:
        client.post(V1, content=b"{broken", headers={"X-Request-Id": "find-me-123"})
    # The request line is logged once the response has gone out, so it may trail the reply.
    def tagged() -> list[dict[str, object]]:
        found = [e for e in server.log_events() if e.get("request_id") == "find-me-123"]
        return found if {e["level"] for e in found} >= {"info", "debug"} else []

    lines = eventually(tagged, timeout=10, interval=0.05, what="the 400 and its request line")
    events = server.log_events()
    assert {e["level"] for e in lines} == {"info", "debug"}  # the 400, then the request line
    assert any(e.get("status") == 400 and e["level"] == "debug" for e in lines)
    assert all(e["level"] in {"error", "warning", "info", "debug"} for e in events)


def test_connection_to_a_healthy_server_after_everything(server: RuntimeServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
