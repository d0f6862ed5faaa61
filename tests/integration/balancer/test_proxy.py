"""The balancer as a proxy, in front of simulated replicas (replicas.py): what it forwards,
what it answers itself, bad input, the canary split, and the load-aware strategies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.ports import free_port
from tests.integration.balancer.conftest import (
    BalancerProcess,
    SimReplicas,
    launch_balancer,
    launch_replicas,
)


@pytest.fixture(scope="module")
def sims(balancer_log_dir: Path) -> Iterator[SimReplicas]:
    """Three instant stable replicas and one canary."""
    with launch_replicas(balancer_log_dir,
                         ["0:0:64:a", "0:0:64:b", "0:0:64:c", "0:0:64:canary"]) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def balancer(sims: SimReplicas, balancer_log_dir: Path) -> Iterator[BalancerProcess]:
    """Round-robin over the three stable replicas; the canary gets 10 %."""
    stable, canary = sims.backends[:3], sims.backends[3]
    with launch_balancer(balancer_log_dir, [
        "--model", "sim", "--backends", ",".join(stable), "--canary-backends", canary,
        "--canary-percent", "10", "--strategy", "round-robin", "--no-replica-wait-s", "0.5",
    ]) as process:
        yield process


def _echo(client: httpx.Client, path: str = "/echo", **kwargs: object) -> dict[str, object]:
    answer = client.request(str(kwargs.pop("method", "POST")), path, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def _fields(echo: dict[str, object]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in echo["fields"]:  # type: ignore[attr-defined]
        found.setdefault(name.lower(), []).append(value)
    return found


def test_forwards_method_target_fields_and_body_unchanged(balancer: BalancerProcess) -> None:
    body = bytes(range(256)) * 40  # binary, not valid UTF-8 or JSON: must pass byte for byte
    with balancer.client(headers={"X-Modelplane-Track": "stable"}) as client:
        echo = _echo(client, "/echo/v2/models/m/infer?x=1&y=%20", content=body, headers={
            "Authorization": "Bearer secret-token", "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": "12", "X-Custom": "kept as is",
        })
    assert echo["method"] == "POST"
    assert echo["target"] == "/echo/v2/models/m/infer?x=1&y=%20"
    assert base64.b64decode(str(echo["body"])) == body
    fields = _fields(echo)
    assert fields["authorization"] == ["Bearer secret-token"]
    assert fields["inference-header-content-length"] == ["12"]
    assert fields["x-custom"] == ["kept as is"]
    assert fields["content-length"] == [str(len(body))]
    assert fields["x-forwarded-for"] == ["127.0.0.1"]
    assert fields["x-forwarded-proto"] == ["http"]
    assert "x-modelplane-track" not in fields


def test_hop_by_hop_fields_are_dropped(balancer: BalancerProcess) -> None:
    with balancer.client() as client:
        echo = _echo(client, headers={
            "Connection": "keep-alive, X-Hop-Secret", "X-Hop-Secret": "not for the replica",
            "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Connection": "keep-alive",
            "Upgrade-Insecure-Requests": "1", "X-Forwarded-For": "10.1.2.3",
        })
    fields = _fields(echo)
    for name in ("connection", "x-hop-secret", "keep-alive", "te", "proxy-connection"):
        assert name not in fields, name
    assert fields["upgrade-insecure-requests"] == ["1"]  # not hop-by-hop, only similar
    assert fields["x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]


def test_request_id_is_kept_or_added(balancer: BalancerProcess) -> None:
    with balancer.client() as client:
        kept = _fields(_echo(client, headers={"X-Request-Id": "abc-123"}))
        added = _fields(_echo(client))
        again = _fields(_echo(client))
    assert kept["x-request-id"] == ["abc-123"]
    assert len(added["x-request-id"]) == 1 and added["x-request-id"][0]
    assert added["x-request-id"] != again["x-request-id"]


def test_request_ids_follow_the_runtimes_rule(balancer: BalancerProcess) -> None:
    """modelplane_runtime.rules.request_id: a long id is cut to 128 bytes (the replica sees
    exactly one id, the one the balancer logs); control characters never get that far
    (the HTTP parser refuses them: 400)."""
    with balancer.client() as client:
        long = _fields(_echo(client, headers={"X-Request-Id": "r" * 300}))
        tab_ok = _fields(_echo(client, headers={"X-Request-Id": "a\tb"}))
        refused = client.get("/echo", headers=[("X-Request-Id", "a\x7fb")])
    assert long["x-request-id"] == ["r" * 128]
    assert tab_ok["x-request-id"] == ["a\tb"]  # a tab is allowed in a field value
    assert refused.status_code == 400 and "error" in refused.json()


def test_chunked_request_body_is_forwarded_whole(balancer: BalancerProcess) -> None:
    pieces = [b"first,", b"", b"second," * 1000, b"third"]

    def stream() -> Iterator[bytes]:
        yield from pieces

    with balancer.client() as client:
        echo = _echo(client, content=stream())
    fields = _fields(echo)
    assert fields["transfer-encoding"] == ["chunked"]
    assert base64.b64decode(str(echo["body"])) == b"".join(pieces)


def test_expect_100_continue_is_answered_by_the_balancer(balancer: BalancerProcess) -> None:
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        answer = b""
        while b'"body"' not in answer or not answer.endswith(b"}"):
            answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echo = json.loads(body)
    assert base64.b64decode(echo["body"]) == b"hello"
    assert "expect" not in _fields(echo)


def test_pipelined_requests_are_answered_in_order(balancer: BalancerProcess) -> None:
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=10) as sock:
        sock.sendall(b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
        data = b""
        while data.count(b"HTTP/1.1 200") < 5 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            data += chunk
    targets = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["target"]
               for part in data.split(b"HTTP/1.1 200")[1:]]
    assert targets == [f"/echo/{i}" for i in range(5)]


def test_head_and_error_statuses_pass_through(balancer: BalancerProcess) -> None:
    with balancer.client() as client:
        assert client.head("/echo").status_code == 200
        gone = client.get("/status/404")
        assert gone.status_code == 404 and gone.json() == {"error": "as asked"}
        assert client.get("/status/204").status_code == 204
        assert client.get("/echo").status_code == 200  # the connection still works


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-Modelplane-Track": "blue"}, 400),
    ({"X-Huge": "x" * 70_000}, 431),
    ({"Expect": "something-else"}, 417),
])
def test_bad_requests_get_a_clear_4xx(balancer: BalancerProcess, headers: dict[str, str],
                                      status: int) -> None:
    with balancer.client() as client:
        answer = client.post("/echo", content=b"{}", headers=headers)
    assert answer.status_code == status
    assert "error" in answer.json()


def test_malformed_http_and_connect_are_refused(balancer: BalancerProcess) -> None:
    for raw, status in ((b"NOT HTTP AT ALL\r\n\r\n", b"400"),
                        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", b"405")):
        with socket.create_connection(("127.0.0.1", balancer.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = sock.recv(65536)
        assert answer.split(b" ")[1] == status, answer
        assert b'"error"' in answer
    with balancer.client() as client:  # and the balancer is still fine
        assert client.get("/healthz").status_code == 200


def test_own_endpoints(balancer: BalancerProcess) -> None:
    with balancer.client() as client:
        assert client.get("/healthz").json() == {"live": True}
        assert client.get("/readyz").json() == {"ready": True}
        assert client.post("/metrics").status_code == 405
        text = client.get("/metrics").text
    for name in ("modelplane_balancer_requests_total", "modelplane_balancer_requests_in_flight",
                 "modelplane_balancer_request_duration_seconds_bucket",
                 "modelplane_balancer_retries_total", "modelplane_balancer_canary_percent",
                 "modelplane_balancer_process_resident_memory_bytes"):
        assert name in text, name


def test_canary_share_is_exact_and_the_header_pins_a_track(balancer: BalancerProcess,
                                                           sims: SimReplicas) -> None:
    before = balancer.per_replica(track="canary")
    with balancer.client() as client:
        replicas = Counter(_echo(client, "/echo", method="GET")["replica"] for _ in range(2000))
        pinned = Counter(_echo(client, "/echo", method="GET",
                               headers={"X-Modelplane-Track": "canary"})["replica"]
                         for _ in range(50))
    assert 180 <= replicas["canary"] <= 220, replicas  # 10 % +- 2 points of 2,000
    assert set(replicas) == {"a", "b", "c", "canary"}
    for name in "abc":  # round-robin within the stable track: even thirds of the rest
        assert abs(replicas[name] - (2000 - replicas["canary"]) / 3) <= 2, replicas
    assert pinned == Counter({"canary": 50})
    after = balancer.per_replica(track="canary")
    assert sum(after.values()) - sum(before.values()) == replicas["canary"] + 50


def test_no_replica_answers_503_with_retry_after(balancer_log_dir: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with launch_balancer(balancer_log_dir, [
        "--model", "none", "--backends", dead, "--no-replica-wait-s", "0.3",
        "--eject-base-s", "30", "--eject-after-failures", "1",
    ]) as process, process.client() as client:
        answers = [client.get("/v1/models/none") for _ in range(3)]
    for answer in answers:
        assert answer.status_code in (502, 503)
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/json"
        assert "error" in answer.json()
    assert answers[-1].status_code == 503  # once ejected: nothing to route to
    assert answers[-1].json() == {"error": "no replica is available"}


def test_bad_settings_exit_2_naming_the_flag(balancer_log_dir: Path) -> None:
    import subprocess
    import sys

    for args, needle in (
        (["--backends", "nohost"], "--backends"),
        (["--backends", "127.0.0.1:1", "--weights", "1,2"], "--weights"),
        (["--backends", "127.0.0.1:1", "--strategy", "fastest"], "--strategy"),
        ([], "model"),
    ):
        done = subprocess.run([sys.executable, "-m", "modelplane_balancer", *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr, done.stderr


async def _load(url: str, requests: int, concurrency: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    queue = list(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            answer = await client.get("/work")
            assert answer.status_code == 200, answer.text
            counts[answer.json()["replica"]] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return counts


@pytest.mark.parametrize("strategy", ["least-request", "latency-aware", "power-of-two"])
def test_load_aware_strategies_avoid_a_slow_replica(strategy: str,
                                                    balancer_log_dir: Path) -> None:
    with launch_replicas(balancer_log_dir, ["0:2:2:f1", "0:2:2:f2", "0:2:2:f3", "0:40:2:slow"]
                         ) as sims, launch_balancer(balancer_log_dir, [
            "--model", "sim", "--backends", ",".join(sims.backends), "--strategy", strategy,
    ]) as process:
        counts = asyncio.run(_load(process.url, 600, 12))
    share = counts["slow"] / sum(counts.values())
    # Even shares would give the slow replica 25 %: 20x slower, it should get far less.
    assert share < 0.12, counts


def test_weighted_shares_follow_the_weights(balancer_log_dir: Path) -> None:
    with launch_replicas(balancer_log_dir, ["0:0:8:a", "0:0:8:b", "0:0:8:c"]) as sims, \
            launch_balancer(balancer_log_dir, [
                "--model", "sim", "--backends", ",".join(sims.backends), "--weights", "5,3,2",
                "--strategy", "weighted"]) as process, process.client() as client:
        counts = Counter(_echo(client, method="GET")["replica"] for _ in range(1000))
    assert counts == Counter({"a": 500, "b": 300, "c": 200})


def test_sigterm_drains_and_exits_0(balancer_log_dir: Path) -> None:
    with launch_replicas(balancer_log_dir, ["0:300:4:slow"]) as sims, \
            launch_balancer(balancer_log_dir, ["--model", "sim", "--backends",
                                               sims.backends[0]]) as process:
        async def during_sigterm() -> tuple[int, int]:
            async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
                pending = asyncio.ensure_future(client.get("/work"))
                await asyncio.sleep(0.1)  # the request is on the replica now
                process.process.terminate()
                answer = await pending
                return answer.status_code, len(answer.content)

        status, size = asyncio.run(during_sigterm())
        assert status == 200 and size > 0
        assert eventually(lambda: process.process.poll() is not None, timeout=20) is not None
        assert process.process.returncode == 0
        events = [e.get("event") for e in process.events()]
        assert events[-2:] == ["draining", "stopped"]


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5", "1234567890", ""])
def test_a_bad_deadline_header_is_a_clear_400(balancer: BalancerProcess, value: str) -> None:
    with balancer.client() as client:
        answer = client.get("/echo", headers={"X-Modelplane-Deadline-Ms": value})
    assert answer.status_code == 400
    assert "X-Modelplane-Deadline-Ms" in answer.json()["error"]


def test_the_deadline_header_reaches_the_replica(balancer: BalancerProcess) -> None:
    with balancer.client() as client:
        fields = _fields(_echo(client, headers={"X-Modelplane-Deadline-Ms": "2500"}))
    assert fields["x-modelplane-deadline-ms"] == ["2500"]
