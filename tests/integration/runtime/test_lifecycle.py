"""The server process's life: request timeout, SIGTERM drain, start-up failures, ``demo``.

The gated model holds each call until the test creates a file, so "in flight" is a state the
test controls and observes (through the in-flight gauge), not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually_async
from tests.fixtures.runtime_server import (
    RuntimeServer,
    launch_runtime,
    metric_value,
    serve_command,
)

IN_FLIGHT = 50


async def _until(check: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    await eventually_async(check, timeout=deadline_s, interval=0.05, what=what)


async def _in_flight(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        text = (await probe.get("/metrics")).text
    return metric_value(text, "modelplane_requests_in_flight", model="gated")


# --- request timeout, and a model call still stuck at shutdown ------------------------------


@pytest.fixture(scope="module")
def timeout_server(gated_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = ["--name", "gated", "--request-timeout-s", "2", "--drain-timeout-s", "3"]
    with launch_runtime(gated_model_dir, runtime_log_dir, args) as server:
        yield server


def test_slow_model_call_times_out_with_503(timeout_server: RuntimeServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with timeout_server.client() as client:
        started = time.monotonic()
        response = client.post("/v1/models/gated:predict", json={"instances": [str(gate)]})
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert "2.0 s" in response.json()["error"]
        assert 1.5 < waited < 15
        gate.touch()  # let the stuck call finish; the server must serve again
        ok = client.post("/v1/models/gated:predict", json={"instances": [str(gate), ""]})
        assert ok.status_code == 200
        assert ok.json() == {"predictions": [0.0, 0.0]}
        assert client.get("/v2/health/ready").status_code == 200


def test_call_stuck_past_the_drain_does_not_keep_the_process(
    timeout_server: RuntimeServer, tmp_path: Path
) -> None:
    with timeout_server.client() as client:
        response = client.post(
            "/v1/models/gated:predict", json={"instances": [str(tmp_path / "x")]}
        )
    assert response.status_code == 503  # timed out; the model call itself is still running
    started = time.monotonic()
    assert timeout_server.stop(deadline_s=30) == 0
    assert time.monotonic() - started < 20
    messages = [str(e.get("message")) for e in timeout_server.log_events()]
    assert "stopped" in messages
    assert any("threads still busy" in m for m in messages)


# --- SIGTERM with 50 requests in flight --------------------------------------------------


async def test_sigterm_drains_in_flight_requests(
    gated_model_dir: Path, runtime_log_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    body = {"instances": [str(gate)]}
    with launch_runtime(gated_model_dir, runtime_log_dir, ["--name", "gated"]) as server:
        limits = httpx.Limits(max_connections=IN_FLIGHT + 5)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
            tasks = [
                asyncio.create_task(client.post("/v1/models/gated:predict", json=body))
                for _ in range(IN_FLIGHT)
            ]

            async def all_in_flight() -> bool:
                return await _in_flight(server.url) == IN_FLIGHT

            await _until(all_in_flight, 60, f"{IN_FLIGHT} requests in flight")
            server.process.send_signal(signal.SIGTERM)

            # New requests are refused (connection refused, or 503 in the instant before
            # the listening socket closes) and readiness is false; none is accepted.
            async def refused(path: str, method: str = "GET") -> bool:
                try:
                    async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
                        response = await fresh.request(method, path, json=body)
                except httpx.TransportError:
                    return True
                assert response.status_code == 503, response.text
                return True

            for _ in range(5):
                assert await refused("/v2/health/ready")
                assert await refused("/v1/models/gated:predict", "POST")
            assert not any(task.done() for task in tasks), "an in-flight request ended early"

            gate.touch()
            responses = await asyncio.gather(*tasks)
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        assert all(r.json() == {"predictions": [0.0]} for r in responses)
        code = await asyncio.to_thread(server.process.wait, 60)
        assert code == 0, server.logs()
        events = [e.get("event") for e in server.log_events()]
        assert events.index("draining") < events.index("stopped")


# --- start-up failures ------------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelplane_runtime.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_workers_share_the_port_and_their_metrics(
    demo_model_dir: Path, runtime_log_dir: Path, tmp_path: Path
) -> None:
    rows = np.arange(1, 9, dtype=np.float32).reshape(1, 8)
    want = demo_predict(rows)
    env = {"TMPDIR": str(tmp_path)}  # where the workers' metric files go (a temp folder)
    args = ["--name", "demo", "--workers", "2"]
    with launch_runtime(demo_model_dir, runtime_log_dir, args, env=env) as server:
        workers = {e["pid"] for e in server.log_events() if e.get("logger") == "modelplane.workers"}
        assert len(workers) == 2, server.logs()
        assert next(e for e in server.log_events() if e.get("event") == "ready")["workers"] == 2
        with server.client() as client:
            body = {"instances": rows.tolist()}
            for _ in range(30):  # a new connection each: either worker may accept it
                with server.client() as fresh:
                    answer = fresh.post("/v1/models/demo:predict", json=body)
                assert answer.status_code == 200
                np.testing.assert_allclose(answer.json()["predictions"], want, rtol=1e-6)
            assert client.post("/v1/models/demo:predict", json={}).status_code == 400
            # Whichever worker answers the scrape reports every worker's requests.
            for _ in range(4):
                text = client.get("/metrics").text
                assert metric_value(text, "modelplane_requests_total", code="200") == 30
                assert metric_value(text, "modelplane_requests_total", code="400") == 1
                assert metric_value(text, "modelplane_request_duration_seconds_count") == 31
                assert metric_value(text, "modelplane_requests_in_flight", model="demo") == 0
        assert list(tmp_path.iterdir()), "the workers should keep their metrics in TMPDIR"
    assert list(tmp_path.iterdir()) == [], "the metrics folder should be removed at exit"


def test_missing_model_fails_start_up_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(tmp_path / "absent"), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    errors = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and '"level":"error"' in line
    ]
    assert any("absent" in e["message"] for e in errors), result.stderr


def test_port_in_use_is_a_clear_error(demo_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_cli("serve", str(demo_model_dir), "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr


# --- modelplane demo ----------------------------------------------------------------------


def _curl_lines(server: RuntimeServer) -> list[str]:
    return [line.strip() for line in server.logs().splitlines() if line.strip().startswith("curl ")]


def _check_curl_lines(server: RuntimeServer) -> None:
    lines = _curl_lines(server)
    assert len(lines) == 2, server.logs()
    want = demo_predict(np.arange(1, 9, dtype=np.float32).reshape(1, 8))
    v1, v2 = (
        json.loads(
            subprocess.run(
                shlex.split(line), capture_output=True, text=True, timeout=30, check=True
            ).stdout
        )
        for line in lines
    )
    np.testing.assert_allclose(v1["predictions"], want, rtol=1e-6)
    np.testing.assert_allclose(np.array(v2["outputs"][0]["data"]).reshape(1, 1), want, rtol=1e-6)


def test_demo_prints_curl_lines_that_work(runtime_log_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "modelplane_runtime.cli",
        "demo",
        "--cache-dir",
        str(cache),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    with launch_runtime(cache, runtime_log_dir, command=command) as server:
        assert (cache / "1" / "saved_model.pb").is_file()
        # The name the samples and the README use.
        assert f"{server.url}/v1/models/seed-mlp:predict" in _curl_lines(server)[0]
        assert f"{server.url}/v2/models/seed-mlp/infer" in _curl_lines(server)[1]
        _check_curl_lines(server)


@pytest.mark.slow
def test_demo_defaults_to_8080_or_a_free_port(demo_model_dir: Path, runtime_log_dir: Path) -> None:
    # Hold 8080 (if nobody else does) so the demo must pick another port, as it would
    # on a laptop where something already listens there.
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8080))
        holder.listen()
    except OSError:
        pass  # already taken by someone else: the same situation
    try:
        command = [
            sys.executable,
            "-m",
            "modelplane_runtime.cli",
            "demo",
            "--cache-dir",
            str(demo_model_dir),
            "--host",
            "127.0.0.1",
            "--name",
            "my-model",
        ]
        with launch_runtime(demo_model_dir, runtime_log_dir, command=command) as server:
            assert server.port != 8080
            assert "/v1/models/my-model:predict" in _curl_lines(server)[0]
            _check_curl_lines(server)
    finally:
        holder.close()
