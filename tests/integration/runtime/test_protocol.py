"""The runtime's HTTP/1.1 wire behaviour over raw sockets, on the direct path (http/direct/)
and, for the same checks, with ``MODELPLANE_HTTP_DIRECT=false`` (every request via ASGI).

Keep-alive, pipelining, HTTP/1.0, chunked bodies, ``Expect: 100-continue``, the timeout,
error answers and a client that never reads. The gated-model cases (disconnects, SIGTERM,
the keep-alive timer) are in test_protocol_gated.py, bearer tokens in
test_protocol_auth.py; all use the raw-socket helpers in tests/fixtures/wire.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, metric_value
from tests.fixtures.wire import (
    INFER,
    PREDICT,
    ROWS,
    V1,
    V2,
    Wire,
    check_error,
    check_infer,
    check_predict,
    chunked,
    http_request,
)

BODY_LIMIT = 4096
TIMEOUT_S = 2.0


@pytest.fixture(scope="module", params=["direct", "asgi"])
def server(
    request: pytest.FixtureRequest, demo_model_dir: Path, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    """The demo model with a small body limit and timeout, on either request path."""
    args = ["--name", "demo", "--max-body-bytes", str(BODY_LIMIT)]
    args += ["--request-timeout-s", str(TIMEOUT_S)]
    env = {"MODELPLANE_HTTP_DIRECT": str(request.param == "direct").lower()}
    with launch_runtime(demo_model_dir, runtime_log_dir, args, env=env) as running:
        yield running


def test_keep_alive_serves_many_requests_on_one_socket(server: RuntimeServer) -> None:
    with Wire(server.port) as wire:
        ids = set()
        for number in range(40):
            rows = ROWS + number
            wire.send(http_request("POST", V1, json.dumps({"instances": rows.tolist()}).encode()))
            reply = wire.reply()
            check_predict(reply, rows)
            ids.add(reply.one("x-request-id"))
            assert reply.one("date") and reply.one("content-type")  # once each
            assert not reply.all("connection"), reply.headers
        assert len(ids) == 40  # each request its own id
        wire.send(http_request("POST", V1, PREDICT, [("X-Request-Id", "client-id-42")]))
        echoed = wire.reply()
        check_predict(echoed)
        assert echoed.one("x-request-id") == "client-id-42"
        long_id = "x" * 200
        wire.send(http_request("POST", V1, PREDICT, [("X-Request-Id", long_id)]))
        assert wire.reply().one("x-request-id") == long_id[:128]
        # Control characters never reach the app: the HTTP parser refuses the request
        # (so the runtime's own check cannot be reached over the wire), and no id is echoed.
        wire.send(http_request("POST", V1, PREDICT, [("X-Request-Id", "bad\x1bid")]))
        refused = wire.reply()
        assert refused.status == 400
        assert "bad" not in refused.all("x-request-id")
        assert eventually(wire.closed, timeout=10, what="the server to drop the bad request")


def test_pipelined_requests_are_answered_in_order(server: RuntimeServer) -> None:
    batch = [
        http_request("POST", V1, PREDICT),
        http_request("GET", "/v2/health/ready"),
        http_request("GET", "/v1/models/demo"),  # metadata: the ASGI app answers it
        http_request("POST", V1 + "?debug=1", PREDICT),  # a query string: ASGI too
        http_request("POST", "/v1/models/de%6Do:predict", PREDICT),  # an escape: ASGI
        http_request("POST", V2, INFER),
        http_request("GET", "/v2/health/live"),
        http_request("POST", V1, PREDICT, [("X-Request-Id", "last")]),
    ]
    with Wire(server.port) as wire:
        wire.send(b"".join(batch))
        check_predict(wire.reply())
        assert wire.reply().json() == {"ready": True}
        status = wire.reply()
        assert status.status == 200
        assert status.json() == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        check_predict(wire.reply())
        check_predict(wire.reply())
        check_infer(wire.reply())
        assert wire.reply().json() == {"live": True}
        last = wire.reply()
        check_predict(last)
        assert last.one("x-request-id") == "last"
        # And the connection is still good for more.
        wire.send(http_request("POST", V1, PREDICT))
        check_predict(wire.reply())


@pytest.mark.parametrize(
    ("version", "headers"),
    [
        pytest.param("HTTP/1.0", [], id="http-1.0"),
        pytest.param("HTTP/1.0", [("Connection", "keep-alive")], id="http-1.0-keep-alive"),
        pytest.param("HTTP/1.1", [("Connection", "close")], id="connection-close"),
    ],
)
def test_answered_then_closed_without_keep_alive(
    server: RuntimeServer, version: str, headers: list[tuple[str, str]]
) -> None:
    # uvicorn (hence both paths) keeps no HTTP/1.0 connection alive, asked or not.
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, PREDICT, headers, version=version))
        reply = wire.reply()
        check_predict(reply)
        assert reply.one("connection") == "close"
        assert eventually(wire.closed, timeout=10, what="the server to close the socket")


def test_upgrade_request_gets_a_json_answer(server: RuntimeServer) -> None:
    # No protocol upgrade is supported: uvicorn stops parsing at the headers of an upgrade
    # request, so its body never arrives (a 400 for the empty body) on either path.
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "h2c")]
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, PREDICT, upgrade))
        check_error(wire.reply(), 400, "empty")
    with Wire(server.port) as wire:
        wire.send(http_request("GET", "/v2/health/live"))
        assert wire.reply().json() == {"live": True}


def test_chunked_body_sent_in_pieces_is_served(server: RuntimeServer) -> None:
    body = chunked(*(PREDICT[i : i + 7] for i in range(0, len(PREDICT), 7)))
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, None, [("Transfer-Encoding", "chunked")]))
        for start in range(0, len(body), len(body) // 5):
            wire.send(body[start : start + len(body) // 5])
            time.sleep(0.05)  # pacing, not waiting: each piece reaches the server on its own
        check_predict(wire.reply())
        wire.send(
            http_request(
                "POST", V2, chunked(INFER[:50], INFER[50:]), [("Transfer-Encoding", "chunked")]
            )
        )
        check_infer(wire.reply())


def test_chunked_body_over_the_limit_is_413_before_it_ends(server: RuntimeServer) -> None:
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, None, [("Transfer-Encoding", "chunked")]))
        piece = b" " * 1000
        wire.send(b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(5)))
        started = time.monotonic()
        reply = wire.reply()  # the body is unfinished: only the limit can answer this
        check_error(reply, 413, "limit")
        assert time.monotonic() - started < TIMEOUT_S, "answered by the timeout, not the limit"
        # The rest of the refused body is skipped; the connection then serves as usual.
        wire.send(chunked(piece) + http_request("POST", V1, PREDICT))
        check_predict(wire.reply())


def test_pipelined_chunked_body_over_the_limit_is_answered_in_order(
    server: RuntimeServer,
) -> None:
    big = chunked(*([b" " * 1000] * 5))
    batch = [
        http_request("POST", V1, PREDICT, [("X-Request-Id", "first")]),
        http_request(
            "POST", V1, big, [("Transfer-Encoding", "chunked"), ("X-Request-Id", "second")]
        ),
        http_request("GET", "/v2/health/ready", None, [("X-Request-Id", "third")]),
    ]
    with Wire(server.port) as wire:
        wire.send(b"".join(batch))
        replies = [wire.reply() for _ in batch]
    assert [r.one("x-request-id") for r in replies] == ["first", "second", "third"]
    check_predict(replies[0])
    check_error(replies[1], 413, "limit")
    assert replies[2].json() == {"ready": True}


def test_body_that_never_completes_gets_503_after_the_timeout(server: RuntimeServer) -> None:
    with Wire(server.port, timeout=TIMEOUT_S + 15) as wire:
        started = time.monotonic()
        wire.send(http_request("POST", V1, None, [("Content-Length", "100")]) + b'{"inst')
        reply = wire.reply()
        waited = time.monotonic() - started
    check_error(reply, 503, f"{TIMEOUT_S} s")
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 5


def test_expect_100_continue(server: RuntimeServer) -> None:
    with Wire(server.port) as wire:
        wire.send(
            http_request(
                "POST",
                V1,
                None,
                [("Content-Length", str(len(PREDICT))), ("Expect", "100-continue")],
            )
        )
        interim = wire.reply()
        assert interim.status == 100
        wire.send(PREDICT)
        check_predict(wire.reply())
        wire.send(http_request("POST", V1, PREDICT))  # the connection goes on as usual
        check_predict(wire.reply())


ERRORS = [
    # (id, path, body, headers, status, words in the error)
    ("unknown-model", "/v1/models/nope:predict", PREDICT, (), 404, "nope"),
    ("unknown-model-v2", "/v2/models/nope/infer", INFER, (), 404, "nope"),
    ("malformed-json", V1, b'{"instances": [1, 2', (), 400, "malformed JSON"),
    ("wrong-shape", V1, b'{"instances": [[1, 2, 3]]}', (), 400, "shape"),
    ("v2-wrong-shape", V2, INFER.replace(b"[2, 8]", b"[4, 4]"), (), 400, "shape"),
    ("bad-gzip", V1, b"garbage, not gzip", [("Content-Encoding", "gzip")], 400, "gzip"),
    ("unsupported-encoding", V1, PREDICT, [("Content-Encoding", "br")], 415, "br"),
    (
        "declared-length-over-limit",
        V1,
        None,
        [("Content-Length", str(BODY_LIMIT + 1))],
        413,
        "limit",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_errors_are_json_with_their_status(
    server: RuntimeServer,
    path: str,
    body: bytes | None,
    headers: list[tuple[str, str]],
    status: int,
    words: str,
) -> None:
    with Wire(server.port) as wire:
        wire.send(http_request("POST", path, body, headers))
        reply = wire.reply()
        check_error(reply, status, words)
        assert reply.one("x-request-id")
        if body is not None:  # (a refused declared body is still owed: the connection is spent)
            wire.send(http_request("POST", V1, PREDICT))  # an error leaves the connection usable
            check_predict(wire.reply())


def _stuck_client(port: int, count: int) -> tuple[Wire, threading.Thread]:
    """A client that writes ``count`` pipelined predicts (never reading) from a thread."""
    wire = Wire(port, timeout=60, rcvbuf=4096)
    rows = json.dumps({"instances": [[0] * 8] * 200}, separators=(",", ":")).encode()
    assert len(rows) < BODY_LIMIT
    batch = http_request("POST", V1, rows) * count

    def write() -> None:
        # The test shuts the socket down while this write is blocked: an OSError then.
        with contextlib.suppress(OSError):
            wire.sock.sendall(batch)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return wire, thread


def test_client_that_never_reads_does_not_stall_the_server(server: RuntimeServer) -> None:
    count = 3000
    with server.client() as client:

        def metric(name: str) -> float:
            return metric_value(client.get("/metrics").text, name, model="demo")

        before = metric("modelplane_requests_total")
        in_flight = metric("modelplane_requests_in_flight")  # what earlier tests left
        wire, writer = _stuck_client(server.port, count)
        try:

            def answered() -> float:
                return metric("modelplane_requests_total") - before

            # The server answers until the client's socket buffers fill, then stops reading.
            samples: list[float] = []

            def settled() -> bool:
                samples.append(answered())
                return len(samples) > 1 and samples[-1] == samples[-2] > 0

            eventually(settled, timeout=30, interval=0.5, what="the stuck client to stall")
            assert answered() < count, "the server kept serving a client that does not read"
            with Wire(server.port) as other:  # meanwhile, other clients are served promptly
                for _ in range(5):
                    started = time.monotonic()
                    other.send(http_request("POST", V1, PREDICT))
                    check_predict(other.reply())
                    assert time.monotonic() - started < 2.0
        finally:
            wire.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked sendall
            wire.sock.close()
            writer.join(timeout=10)
        assert not writer.is_alive()
        assert client.get("/v2/health/ready").status_code == 200
        after = client.post(V1, content=PREDICT)
        assert after.status_code == 200
        np.testing.assert_allclose(after.json()["predictions"], demo_predict(ROWS), rtol=1e-6)
        eventually(
            lambda: metric("modelplane_requests_in_flight") == in_flight,
            timeout=TIMEOUT_S + 10,
            what="no request of the stuck client left in flight",
        )


KEEP_ALIVE_S = 5.0  # uvicorn's default timeout_keep_alive, which the runtime keeps
SWEEP_S = 1.0  # the direct path closes idle connections on a one-second sweep (http/direct/wire.py)


def test_idle_keep_alive_connection_is_closed_after_the_timeout(server: RuntimeServer) -> None:
    with Wire(server.port, timeout=KEEP_ALIVE_S + SWEEP_S + 10) as wire:
        wire.send(http_request("POST", V1, PREDICT))
        check_predict(wire.reply())
        answered = time.monotonic()
        # recv blocks until the server closes its end; nothing else is in flight.
        assert wire.closed()
        idle = time.monotonic() - answered
    # Never early; late by at most a sweep plus scheduling slack on a busy machine.
    assert KEEP_ALIVE_S - 0.2 <= idle <= KEEP_ALIVE_S + SWEEP_S + 8, idle
