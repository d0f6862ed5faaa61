"""Wire behaviour while a model call is held (the gated model): clients that leave, the
keep-alive timer, and SIGTERM with requests in flight, on both request paths.

The gated model holds each call until the test creates a file, so "in flight" is a state
the test observes through the in-flight gauge rather than a race it hopes to win.
"""

from __future__ import annotations

import json
import select
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, metric_value
from tests.fixtures.wire import Wire, http_request

PREDICT = "/v1/models/gated:predict"
KEEP_ALIVE_S = 5.0  # uvicorn's default timeout_keep_alive, which the runtime keeps
IN_FLIGHT = 8


def _body(gate: Path) -> bytes:
    return json.dumps({"instances": [str(gate)]}).encode()


def _metric(server: RuntimeServer, name: str, **labels: str) -> float:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return metric_value(client.get("/metrics").text, name, model="gated", **labels)


def _in_flight(server: RuntimeServer) -> float:
    return _metric(server, "modelplane_requests_in_flight")


def _gone(server: RuntimeServer) -> float:
    return _metric(server, "modelplane_requests_total", protocol="v1", code="499")


def _served(server: RuntimeServer) -> float:
    return _metric(server, "modelplane_requests_total", protocol="v1", code="200")


def _mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.node.callspec.params["server"]
    return mode


@pytest.fixture(scope="module", params=["direct", "asgi"])
def server(
    request: pytest.FixtureRequest, gated_model_dir: Path, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    """The gated model on either request path (a short drain, should a call stay held)."""
    env = {"MODELPLANE_HTTP_DIRECT": str(request.param == "direct").lower()}
    args = ["--name", "gated", "--drain-timeout-s", "3"]
    with launch_runtime(gated_model_dir, runtime_log_dir, args, env=env) as running:
        yield running


def _served_after(server: RuntimeServer, gate: Path) -> None:
    """The server still answers a predict (its gate open) and has nothing left in flight."""
    gate.touch()
    with Wire(server.port) as wire:
        wire.send(http_request("POST", PREDICT, _body(gate)))
        reply = wire.reply()
    assert reply.status == 200, reply
    assert reply.json() == {"predictions": [0.0]}
    eventually(lambda: _in_flight(server) == 0, timeout=10, what="nothing in flight")


def test_client_gone_mid_body_is_counted_499(server: RuntimeServer, tmp_path: Path) -> None:
    before = _gone(server)
    with Wire(server.port) as wire:
        wire.send(http_request("POST", PREDICT, None, [("Content-Length", "100")]) + b'{"inst')
        eventually(lambda: _in_flight(server) == 1, timeout=10, what="the request in flight")
    eventually(lambda: _gone(server) == before + 1, timeout=10, what="a 499 counted")
    _served_after(server, tmp_path / "gate")


def test_client_gone_while_the_model_call_is_held(
    server: RuntimeServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    gate = tmp_path / "gate"
    gone, served = _gone(server), _served(server)
    try:
        with Wire(server.port) as wire:
            wire.send(request_for(gate))
            eventually(lambda: _in_flight(server) == 1, timeout=10, what="the call held")
        # Both paths withdraw the request at once, while the call is still held.
        eventually(lambda: _in_flight(server) == 0, timeout=5, what="the request released")
    finally:
        gate.touch()
    eventually(lambda: _in_flight(server) == 0, timeout=10, what="the call to return")
    assert (_gone(server) - gone, _served(server) - served) == (1, 0)
    _served_after(server, gate)


def request_for(gate: Path) -> bytes:
    """A v1 predict whose model call is held until ``gate`` exists."""
    return http_request("POST", PREDICT, _body(gate))


def test_keep_alive_timer_does_not_close_a_request_in_progress(
    server: RuntimeServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    gate = tmp_path / "gate"
    try:
        with Wire(server.port) as wire:
            # One write: the probe is answered at once, the predict is held behind the gate.
            wire.send(http_request("GET", "/v2/health/ready") + request_for(gate))
            assert wire.reply().json() == {"ready": True}
            eventually(lambda: _in_flight(server) == 1, timeout=10, what="the call held")
            # Past the keep-alive timeout the request is still in progress: the connection
            # must stay open (no answer, no close) until the model answers.
            ready, _, _ = select.select([wire.sock], [], [], KEEP_ALIVE_S + 1.5)
            assert not ready, "closed" if wire.closed() else "answered while the call was held"
            gate.touch()
            reply = wire.reply()
            assert reply.status == 200, reply
            assert reply.json() == {"predictions": [0.0]}
    finally:
        gate.touch()


@pytest.mark.parametrize("mode", ["direct", "asgi"])
def test_sigterm_answers_requests_in_flight_then_exits_0(
    mode: str, gated_model_dir: Path, runtime_log_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    env = {"MODELPLANE_HTTP_DIRECT": str(mode == "direct").lower()}
    with launch_runtime(gated_model_dir, runtime_log_dir, ["--name", "gated"], env=env) as server:
        wires = [Wire(server.port, timeout=60) for _ in range(IN_FLIGHT)]
        try:
            for wire in wires:
                wire.send(request_for(gate))
            eventually(lambda: _in_flight(server) == IN_FLIGHT, timeout=30, what="all held")
            server.process.send_signal(signal.SIGTERM)

            def refusing() -> bool:
                # Connections are refused once uvicorn has closed its listener, which it
                # does just before asking every open connection to close after its answer.
                try:
                    with Wire(server.port, timeout=5) as fresh:
                        fresh.send(http_request("GET", "/v2/health/ready"))
                        assert fresh.reply().status == 503  # draining, not yet closed
                        return False
                except ConnectionRefusedError:
                    return True

            eventually(refusing, timeout=10, what="the listener closed")
            ready, _, _ = select.select([w.sock for w in wires], [], [], 0)
            assert not ready, "an in-flight request was answered or dropped before its call ended"
            gate.touch()
            replies = [wire.reply() for wire in wires]
            assert [r.status for r in replies] == [200] * IN_FLIGHT, replies
            assert all(r.json() == {"predictions": [0.0]} for r in replies)
            assert all(r.one("connection") == "close" for r in replies)
            assert all(eventually(wire.closed, timeout=10) for wire in wires)
        finally:
            gate.touch()
            for wire in wires:
                wire.sock.close()
        assert server.process.wait(timeout=60) == 0, server.logs()
        events = [e.get("event") for e in server.log_events()]
        assert events.index("draining") < events.index("stopped")
