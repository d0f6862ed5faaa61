"""The defects fuzzing and fault injection found (issue 15), each reproduced over the wire.

Every reproduction that applies to both request paths runs on both (the direct path and
``MODELPLANE_HTTP_DIRECT=false``); limits on the request head and parser errors are the
direct path's (uvicorn's plain protocol, the diagnostic mode, has none of its own).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime
from tests.fixtures.wire import INFER, PREDICT, V1, V2, Wire, check_predict, http_request

HUGE_VERSION = "9" * 4301
HEADERS_TIMEOUT_S = 1.5


@pytest.fixture(scope="module", params=["direct", "asgi"])
def server(
    request: pytest.FixtureRequest, demo_model_dir: Path, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    """The demo model on either request path, with a short header timeout."""
    env = {
        "MODELPLANE_HTTP_DIRECT": str(request.param == "direct").lower(),
        "MODELPLANE_HEADERS_TIMEOUT_S": str(HEADERS_TIMEOUT_S),
    }
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as running:
        yield running


@pytest.fixture
def direct(request: pytest.FixtureRequest) -> bool:
    """True on the direct path, False with MODELPLANE_HTTP_DIRECT=false."""
    return bool(request.node.callspec.params["server"] == "direct")


def _error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    assert isinstance(message, str)
    return message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v1/models/demo/versions/{HUGE_VERSION}:predict"),
        ("GET", f"/v1/models/demo/versions/{HUGE_VERSION}"),
        ("GET", f"/v1/models/demo/versions/{HUGE_VERSION}/metadata"),
        ("POST", f"/v2/models/demo/versions/{HUGE_VERSION}/infer"),
        ("GET", f"/v2/models/demo/versions/{HUGE_VERSION}"),
        ("POST", f"/v1/models/demo/versions/{2**63}:predict"),
    ],
)
def test_versions_beyond_int64_are_a_400(server: RuntimeServer, method: str, path: str) -> None:
    # 4,301 digits made int() raise and the server answer 500.
    body = PREDICT if "v1" in path else INFER
    with server.client() as client:
        reply = client.request(method, path, content=body if method == "POST" else None)
    assert "non-negative integer" in _error(reply, 400)


@pytest.mark.parametrize("length", ["\u00b2", "9" * 4301, "-5"])
def test_a_binary_header_length_that_is_no_number_is_a_400(
    server: RuntimeServer, length: str
) -> None:
    headers = {"Inference-Header-Content-Length": length.encode("latin-1")}
    with server.client() as client:
        reply = client.post(V2, content=INFER, headers=headers)
    assert "Inference-Header-Content-Length" in _error(reply, 400)


def _infer(shape: list[int], data: object = None, binary: bytes | None = None) -> tuple[
    bytes, dict[str, str]
]:
    tensor: dict[str, object] = {"name": "inputs", "shape": shape, "datatype": "FP32"}
    if binary is None:
        tensor["data"] = data if data is not None else []
        return json.dumps({"inputs": [tensor]}).encode(), {}
    tensor["parameters"] = {"binary_data_size": len(binary)}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + binary, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "shape", [[1] * 65, [0, 4611686018427387904], [0, 2**30, 2**30, 2**30]], ids=str
)
def test_shapes_numpy_cannot_take_are_a_400(
    server: RuntimeServer, shape: list[int], binary: bool
) -> None:
    body, headers = _infer(shape, binary=b"" if binary else None)
    with server.client() as client:
        reply = client.post(V2, content=body, headers=headers)
    assert "shape" in _error(reply, 400)


def test_a_request_id_that_is_not_unicode_is_a_400(server: RuntimeServer) -> None:
    # "\ud800" parses to a lone surrogate: the model ran, then the answer could not be encoded.
    body = INFER.replace(b'{"inputs"', b'{"id": "\\ud800", "inputs"')
    with server.client() as client:
        reply = client.post(V2, content=body)
    assert "'id'" in _error(reply, 400)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (V1, b'{"signature_name": "\\ud800", "instances": [[1,2,3,4,5,6,7,8]]}'),
        (V2, INFER.replace(
            b'{"inputs"', b'{"parameters": {"signature_name": "\\ud800"}, "inputs"'
        )),
        (V1, b'{"instances": [["\\ud800"]]}'),
    ],
)
def test_lone_surrogates_in_messages_get_a_json_answer_and_json_logs(
    server: RuntimeServer, path: str, body: bytes
) -> None:
    with server.client() as client:
        reply = client.post(path, content=body)
        _error(reply, 400)
        check_predict_after = client.post(V1, content=PREDICT)
    assert check_predict_after.status_code == 200
    assert "--- Logging error ---" not in server.logs()
    assert "Invalid HTTP request" not in server.logs()


def test_float32_overflow_is_a_400_but_nan_and_infinity_tokens_are_kept(
    server: RuntimeServer,
) -> None:
    with server.client() as client:
        reply = client.post(V1, content=b'{"instances": [[1e300, 0, 0, 0, 0, 0, 0, 0]]}')
        assert "out of range for float32" in _error(reply, 400)
        tokens = client.post(V1, content=b'{"instances": [[NaN, Infinity, 0, 0, 0, 0, 0, 0]]}')
    assert tokens.status_code == 200


def test_booleans_in_number_data_are_a_400(server: RuntimeServer) -> None:
    body, _ = _infer([1, 8], [1.0, True, 0, 0, 0, 0, 0, 0])
    with server.client() as client:
        reply = client.post(V2, content=body)
        assert "true or false" in _error(reply, 400)
        # A body with the tokens elsewhere (parameters) and plain numbers stays fine.
        fine = json.loads(INFER)
        fine["parameters"] = {"binary_data_output": False}
        assert client.post(V2, content=json.dumps(fine).encode()).status_code == 200


def test_an_empty_body_says_malformed_json_like_every_other(server: RuntimeServer) -> None:
    with server.client() as client:
        v1 = _error(client.post(V1, content=b""), 400)
        v2 = _error(client.post(V2, content=b" "), 400)
    assert v1.startswith("malformed JSON: the body is empty")
    assert "empty" in v2


@pytest.mark.parametrize(
    "path", ["/v1/models/demo:predict", "/v1/models/demo/versions/1:predict",
             "/v1/models/demo/labels/stable:predict"]
)
def test_get_on_predict_is_a_405(server: RuntimeServer, path: str) -> None:
    with server.client() as client:
        reply = client.get(path)
    assert "not allowed" in _error(reply, 405)
    assert reply.headers["allow"] == "POST"


def test_a_large_body_of_tiny_rows_is_refused_without_stalling_probes(
    server: RuntimeServer,
) -> None:
    # 2.5 million one-value rows (~15 MB): over the default 100,000-row limit. Decoding
    # used to run on the event loop, stalling every client and the kubelet's probes.
    body = b'{"instances": [' + b",".join([b"[0]"] * 2_500_000) + b"]}"
    answer: dict[str, httpx.Response] = {}

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            answer["big"] = client.post(V1, content=body)

    sender = threading.Thread(target=post)
    sender.start()
    probes = 0
    with httpx.Client(base_url=server.url, timeout=1.0) as probe:  # the kubelet's default
        while sender.is_alive():
            assert probe.get("/v2/health/live").status_code == 200
            probes += 1
    sender.join()
    assert "2500000 rows; at most 100000" in _error(answer["big"], 400)
    assert probes > 0


# The request head and parser errors: the direct path's rules.


def test_a_url_over_the_limit_is_a_414(server: RuntimeServer, direct: bool) -> None:
    if not direct:
        pytest.skip("uvicorn's plain protocol (diagnostic mode) has no URL limit")
    with Wire(server.port) as wire:
        wire.send(http_request("GET", "/v1/models/" + "x" * 9000))
        reply = wire.reply()
        assert reply.status == 414
        assert "over 8192 bytes" in reply.json()["error"]  # type: ignore[index]
        assert wire.closed()


def test_headers_over_the_limit_are_a_431(server: RuntimeServer, direct: bool) -> None:
    if not direct:
        pytest.skip("uvicorn's plain protocol (diagnostic mode) has no header limit")
    headers = [(f"X-Pad-{i}", "v" * 1000) for i in range(70)]
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, PREDICT, headers))
        reply = wire.reply()
        assert reply.status == 431
        assert wire.closed()


def test_many_distinct_long_urls_do_not_grow_the_server(server: RuntimeServer) -> None:
    # 60 distinct 8 MiB paths took RSS from 528 to 1,504 MiB and it stayed there.
    before = _rss_mb(server)
    for index in range(60):
        with Wire(server.port) as wire:
            wire.send(http_request("GET", f"/v2/models/{index}{'y' * 8000}"))
            assert wire.reply().status in (404, 414)
    assert _rss_mb(server) < before + 100


def _rss_mb(server: RuntimeServer) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_idle_and_trickling_connections_are_closed(
    server: RuntimeServer, direct: bool
) -> None:
    if not direct:
        pytest.skip("uvicorn's plain protocol (diagnostic mode) keeps idle sockets open")
    with socket.create_connection(("127.0.0.1", server.port)) as idle, \
            socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()

        def trickle() -> bool:
            try:
                slow.sendall(b"X-A: b\r\n")
            except OSError:
                return True
            return False

        eventually(trickle, timeout=30, interval=0.2, what="the trickling client cut off")
        # Closed after the header timeout, not after the 5 s keep-alive timeout or never.
        assert time.monotonic() - started >= HEADERS_TIMEOUT_S - 0.5
        idle.settimeout(30)
        assert idle.recv(1) == b""  # never sent a byte: closed after the keep-alive timeout


def test_parser_errors_answer_json(server: RuntimeServer, direct: bool) -> None:
    if not direct:
        pytest.skip("uvicorn's plain protocol answers text/plain (diagnostic mode)")
    for raw in (
        b"NOT A REQUEST\r\n\r\n",
        b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
        b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ):
        with Wire(server.port) as wire:
            wire.send(raw)
            reply = wire.reply()
            assert reply.status == 400
            assert reply.json() == {"error": "invalid HTTP request"}
            assert wire.closed()


def test_a_request_pipelined_before_garbage_is_answered_first(
    server: RuntimeServer, direct: bool
) -> None:
    if not direct:
        pytest.skip("uvicorn's plain protocol drops it (diagnostic mode)")
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, PREDICT) + b"GARBAGE\x00\r\n\r\n")
        check_predict(wire.reply())
        assert wire.reply().status == 400
        assert wire.closed()
