"""gRPC through the server's life: health as Kubernetes probes it, deadlines (the client's
and the server's), SIGTERM with 50 calls in flight, and ``--workers``.

The gated model holds each call until the test creates a file, so "in flight" and "queued"
are states the test controls and observes (the in-flight gauge), not races.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually, eventually_async
from tests.fixtures.runtime_server import (
    RuntimeServer,
    grpc_args,
    launch_runtime,
    metric_value,
)

IN_FLIGHT = 50
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def kubelet_probe(target: str, service: str = "") -> int:
    """A ``grpc:`` probe as the kubelet runs it: a fresh plaintext connection, one Check
    with the probe's timeout (1 s by default), SERVING or not."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        return response.status  # type: ignore[no-any-return]


def gated_request(gate: Path) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="gated")
    tensor = request.inputs.add(name="gate", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(str(gate).encode())
    return request


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        return (await probe.get("/metrics")).text


async def _in_flight(url: str) -> float:
    return metric_value(await _metrics(url), "modelplane_requests_in_flight", model="gated")


def test_health_check_as_kubernetes_probes_it(demo_server: RuntimeServer) -> None:
    target = demo_server.grpc_target
    assert kubelet_probe(target) == SERVING
    assert kubelet_probe(target, "liveness") == SERVING
    for service in ("tensorflow.serving.PredictionService", "inference.GRPCInferenceService",
                    "tensorflow.serving.ModelService"):
        assert kubelet_probe(target, service) == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        kubelet_probe(target, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(demo_server: RuntimeServer) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(demo_server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in answer.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


@pytest.fixture(scope="module")
def gated_server(gated_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = ["--name", "gated", "--request-timeout-s", "3", "--drain-timeout-s", "5",
            "--max-latency-ms", "0", *grpc_args()]
    with launch_runtime(gated_model_dir, runtime_log_dir, args) as server:
        yield server


async def test_client_deadline_withdraws_the_queued_request(
    gated_server: RuntimeServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    text = await _metrics(gated_server.url)
    calls_before = metric_value(text, "modelplane_batch_size_count", model="gated")
    rows_before = metric_value(text, "modelplane_batch_size_sum", model="gated")
    async with grpc.aio.insecure_channel(gated_server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        holder = asyncio.ensure_future(stub.ModelInfer(gated_request(gate), timeout=60))

        async def in_flight(count: int) -> bool:
            return await _in_flight(gated_server.url) == count

        await eventually_async(lambda: in_flight(1), timeout=30, what="the first call")
        # Queued behind the held call (the server has it: two in flight), its deadline
        # passes while it waits; the server then lets go of it (one in flight again).
        late = asyncio.ensure_future(stub.ModelInfer(gated_request(gate), timeout=1.5))
        await eventually_async(lambda: in_flight(2), timeout=30, what="the second call queued")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await late
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually_async(lambda: in_flight(1), timeout=30, what="the late call withdrawn")
        gate.touch()
        await holder
    text = await _metrics(gated_server.url)
    # Only the held call ran: the expired one left the queue without reaching the model.
    assert metric_value(text, "modelplane_batch_size_count", model="gated") == calls_before + 1
    assert metric_value(text, "modelplane_batch_size_sum", model="gated") == rows_before + 1
    counted = metric_value(text, "modelplane_requests_total", model="gated", protocol="grpc",
                           code="DEADLINE_EXCEEDED")
    assert counted >= 1


def test_server_request_timeout_is_deadline_exceeded(
    gated_server: RuntimeServer, tmp_path: Path
) -> None:
    with grpc.insecure_channel(gated_server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(gated_request(tmp_path / "never"), timeout=60)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "not answered within 3.0 s" in (caught.value.details() or "")
        (tmp_path / "never").touch()  # let the stuck call end


async def test_sigterm_drains_rpcs_in_flight(
    gated_model_dir: Path, runtime_log_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    args = ["--name", "gated", *grpc_args()]
    with launch_runtime(gated_model_dir, runtime_log_dir, args) as server:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == SERVING
            calls = [stub.ModelInfer(gated_request(gate), timeout=120) for _ in range(IN_FLIGHT)]
            tasks = [asyncio.ensure_future(call) for call in calls]

            async def all_in_flight() -> bool:
                return await _in_flight(server.url) == IN_FLIGHT

            await eventually_async(all_in_flight, timeout=60, what=f"{IN_FLIGHT} calls in flight")
            server.process.send_signal(signal.SIGTERM)
            # Health says NOT_SERVING first (the watch ends after saying it).
            assert (await watch.read()).status == NOT_SERVING
            # A new call is refused (UNAVAILABLE: draining, or the server no longer accepts).
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ModelInfer(gated_request(gate), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert not any(task.done() for task in tasks), "a call in flight ended early"
            gate.touch()
            responses = await asyncio.gather(*tasks)
        assert len(responses) == IN_FLIGHT
        for response in responses:
            assert list(response.outputs[0].contents.fp32_contents) == [0.0]
        code = await asyncio.to_thread(server.process.wait, 60)
        assert code == 0, server.logs()
        events = [e.get("event") for e in server.log_events()]
        assert events.index("draining") < events.index("stopped")


def test_workers_share_one_grpc_port(demo_model_dir: Path, runtime_log_dir: Path) -> None:
    args = ["--name", "demo", "--workers", "2", *grpc_args()]
    rows = np.random.default_rng(5).normal(size=(40, 8)).astype(np.float32)
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as server:
        ready = [e for e in server.log_events() if e.get("event") == "ready"]
        assert len(ready) == 1 and ready[0]["grpc_port"] == server.grpc_port
        answers = []
        # Separate connections, so that SO_REUSEPORT spreads them over the workers.
        for index in range(len(rows)):
            with grpc.insecure_channel(
                server.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                request = service_pb2.ModelInferRequest(model_name="demo")
                request.inputs.add(name="inputs", datatype="FP32", shape=[1, 8])
                request.raw_input_contents.append(rows[index : index + 1].tobytes())
                response = stub.ModelInfer(request, timeout=30)
                answers.append(np.frombuffer(response.raw_output_contents[0], np.float32))
        np.testing.assert_allclose(np.concatenate(answers), demo_predict(rows).ravel(), rtol=1e-5)

        def counted() -> bool:
            text = httpx.get(server.url + "/metrics").text
            return metric_value(text, "modelplane_requests_total", model="demo",
                                protocol="grpc", code="OK") == len(rows)

        eventually(counted, timeout=20, what="every call counted across the workers")
        # Each worker listens on the port itself (SO_REUSEPORT): two listening sockets.
        assert _listeners(server.grpc_port) == 2


def _listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (from /proc/net/tcp and tcp6; state 0A)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count
