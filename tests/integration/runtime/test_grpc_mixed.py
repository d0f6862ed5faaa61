"""HTTP and gRPC share one data plane and one batcher: their requests merge into the same
model calls, and every answer is the model's own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually_async
from tests.fixtures.runtime_server import (
    RuntimeServer,
    grpc_args,
    launch_runtime,
    metric_value,
)

EACH = 12
"""Requests per protocol (HTTP v1, TF Serving gRPC, v2 gRPC) queued behind a held call."""


@pytest.fixture(scope="module")
def gated_server(gated_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = ["--name", "gated", "--max-batch-size", "64", "--max-latency-ms", "0", *grpc_args()]
    with launch_runtime(gated_model_dir, runtime_log_dir, args) as server:
        yield server


async def _metrics(server: RuntimeServer) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as probe:
        return (await probe.get("/metrics")).text


async def test_http_and_grpc_requests_merge_into_one_model_call(
    gated_server: RuntimeServer, tmp_path: Path
) -> None:
    gate = str(tmp_path / "gate").encode()
    before = await _metrics(gated_server)
    calls_before = metric_value(before, "modelplane_batch_size_count", model="gated")
    rows_before = metric_value(before, "modelplane_batch_size_sum", model="gated")
    async with httpx.AsyncClient(base_url=gated_server.url, timeout=60) as http, \
            grpc.aio.insecure_channel(gated_server.grpc_target) as channel:
        tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def http_call() -> asyncio.Future[httpx.Response]:
            return asyncio.ensure_future(
                http.post("/v1/models/gated:predict", json={"instances": [gate.decode()]})
            )

        def tfs_call() -> asyncio.Future[predict_pb2.PredictResponse]:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "gated"
            request.inputs["gate"].CopyFrom(tf.make_tensor_proto([gate]))
            return asyncio.ensure_future(tfs.Predict(request, timeout=60))

        def v2_call() -> asyncio.Future[service_pb2.ModelInferResponse]:
            request = service_pb2.ModelInferRequest(model_name="gated")
            tensor = request.inputs.add(name="gate", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(gate)
            return asyncio.ensure_future(v2.ModelInfer(request, timeout=60))

        holder = http_call()  # its call holds the model until the gate opens

        async def in_flight(count: int) -> bool:
            text = await _metrics(gated_server)
            return metric_value(text, "modelplane_requests_in_flight", model="gated") == count

        await eventually_async(lambda: in_flight(1), timeout=30, what="the holding call")
        queued = [make() for make in (http_call, tfs_call, v2_call) for _ in range(EACH)]
        await eventually_async(lambda: in_flight(1 + 3 * EACH), timeout=30, what="all queued")
        (tmp_path / "gate").touch()
        answers = await asyncio.gather(holder, *queued)
    after = await _metrics(gated_server)
    # Two model calls: the holder alone, then every queued request of all three protocols
    # in one call of 3 * EACH rows (HTTP alone could not make it larger than EACH).
    assert metric_value(after, "modelplane_batch_size_count", model="gated") == calls_before + 2
    assert metric_value(after, "modelplane_batch_size_sum", model="gated") == (
        rows_before + 1 + 3 * EACH
    )
    http_answers = [a for a in answers if isinstance(a, httpx.Response)]
    assert all(a.json() == {"predictions": [0.0]} for a in http_answers)
    for answer in answers[1 + EACH : 1 + 2 * EACH]:
        assert list(answer.outputs["out"].float_val) == [0.0]
    for answer in answers[1 + 2 * EACH :]:
        assert list(answer.outputs[0].contents.fp32_contents) == [0.0]


async def test_mixed_load_answers_equal_the_model(demo_server: RuntimeServer) -> None:
    rows = np.random.default_rng(11).normal(size=(96, 8)).astype(np.float32)
    expected = demo_predict(rows)
    before = await _metrics(demo_server)
    async with httpx.AsyncClient(base_url=demo_server.url, timeout=60) as http, \
            grpc.aio.insecure_channel(demo_server.grpc_target) as channel:
        tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def one(index: int) -> np.ndarray:
            row = rows[index : index + 1]
            kind = index % 3
            if kind == 0:
                response = await http.post("/v1/models/demo:predict",
                                           json={"instances": row.tolist()})
                return np.asarray(response.json()["predictions"], np.float32)
            if kind == 1:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "demo"
                request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(row))
                answer = await tfs.Predict(request, timeout=60)
                return tf.make_ndarray(answer.outputs["outputs"])  # type: ignore[no-any-return]
            request_v2 = service_pb2.ModelInferRequest(model_name="demo")
            request_v2.inputs.add(name="inputs", datatype="FP32", shape=[1, 8])
            request_v2.raw_input_contents.append(row.tobytes())
            answer_v2 = await v2.ModelInfer(request_v2, timeout=60)
            return np.frombuffer(answer_v2.raw_output_contents[0], np.float32).reshape(1, 1)

        got = await asyncio.gather(*[one(i) for i in range(len(rows))])
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-5, atol=1e-6)
    after = await _metrics(demo_server)
    served = {
        protocol: metric_value(after, "modelplane_requests_total", model="demo", protocol=protocol)
        - metric_value(before, "modelplane_requests_total", model="demo", protocol=protocol)
        for protocol in ("v1", "grpc")
    }
    assert served == {"v1": 32, "grpc": 64}
    calls = metric_value(after, "modelplane_batch_size_count", model="demo") - metric_value(
        before, "modelplane_batch_size_count", model="demo"
    )
    assert calls < len(rows)  # concurrent requests were merged
