"""Property-based fuzzing of the gRPC front end of a real runtime: never INTERNAL or UNKNOWN.

Hypothesis builds valid protobuf messages with wrong contents (unknown dtypes and
datatypes, negative, huge and mismatched shapes, tensor_content and raw contents of the
wrong size, typed values of the wrong kind or count, versions and labels that do not
exist, random output filters and parameters) for Predict, GetModelMetadata,
GetModelStatus, Classify, ModelInfer, ModelMetadata and ModelReady, through TF Serving's and
Triton's generated stubs. Properties: every call ends OK or with a client-error code (never
INTERNAL, UNKNOWN or a dropped connection); afterwards the server is healthy, still answers
a valid call, and its process is alive. Slow: run in CI (``pytest -m slow``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.fixtures.runtime_server import RuntimeServer, grpc_args, launch_runtime

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.sampled_from(["demo", "", "nope"]) | texts
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
dims = st.lists(
    st.integers(min_value=-3, max_value=8) | st.sampled_from([2**31, 2**40, 2**62]), max_size=5
) | st.just([1, 8]) | st.just([2, 8])
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    args = ["--name", "demo", "--max-body-bytes", str(4 * 1024 * 1024), *grpc_args()]
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: RuntimeServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as opened:
        yield opened


def _call(method: Any, request: Any) -> None:
    """Call; any failure must be a client error (never INTERNAL, UNKNOWN or UNAVAILABLE)."""
    code, details = grpc.StatusCode.OK, ""
    try:
        method(request, timeout=60)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    assert code not in BAD, (code, details, str(request)[:600])
    assert code != grpc.StatusCode.UNAVAILABLE, (details, str(request)[:600])


@st.composite
def tensor_protos(draw: st.DrawFn) -> Any:
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    proto.dtype = draw(st.sampled_from([1, 1, 1, 2, 3, 4, 7, 9, 10, 19, 22, 23, 8, 0, 99]))
    shape = draw(dims)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    kind = draw(st.sampled_from(["content", "float", "int", "int64", "string", "bool", "half",
                                 "double", "none", "exact"]))
    if kind == "content":
        proto.tensor_content = draw(st.binary(max_size=200))
    elif kind == "exact":
        count = int(np.prod([max(0, s) for s in shape])) if len(shape) else 1
        if count <= 64:
            proto.tensor_content = draw(st.binary(min_size=count * 4, max_size=count * 4))
    elif kind == "float":
        proto.float_val.extend(draw(st.lists(floats, max_size=20)))
    elif kind == "double":
        proto.double_val.extend(draw(st.lists(st.floats(), max_size=20)))
    elif kind == "int":
        proto.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)))
    elif kind == "int64":
        proto.int64_val.extend(draw(st.lists(int64s, max_size=20)))
    elif kind == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=10), max_size=20)))
    elif kind == "bool":
        proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=20)))
    elif kind == "half":
        proto.half_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)))
    return proto


@st.composite
def model_specs(draw: st.DrawFn, target: Any) -> None:
    target.name = draw(names)
    choice = draw(st.sampled_from(["none", "version", "label"]))
    if choice == "version":
        target.version.value = draw(st.sampled_from([1, 0, 2, -1]) | int64s)
    elif choice == "label":
        target.version_label = draw(texts)
    target.signature_name = draw(st.sampled_from(["", "serving_default"]) | texts)


@st.composite
def predict_requests(draw: st.DrawFn) -> Any:
    request = predict_pb2.PredictRequest()
    draw(model_specs(request.model_spec))
    for key in draw(st.lists(st.sampled_from(["inputs", "x"]) | texts, max_size=3)):
        request.inputs[key].CopyFrom(draw(tensor_protos()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["outputs"]) | texts,
                                               max_size=3)))
    return request


@given(request=predict_requests())
@FUZZ
def test_predict_never_fails_internally(channel: grpc.Channel, request: Any) -> None:
    _call(prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict, request)


@given(data=st.data())
@FUZZ
def test_metadata_status_and_classify_never_fail_internally(
    channel: grpc.Channel, data: st.DataObject
) -> None:
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    data.draw(model_specs(metadata.model_spec))
    metadata.metadata_field.extend(data.draw(st.lists(st.just("signature_def") | texts,
                                                      max_size=2)))
    _call(predictions.GetModelMetadata, metadata)
    status = get_model_status_pb2.GetModelStatusRequest()
    data.draw(model_specs(status.model_spec))
    _call(model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status)
    classify = classification_pb2.ClassificationRequest()
    data.draw(model_specs(classify.model_spec))
    for _ in range(data.draw(st.integers(0, 3))):
        classify.input.example_list.examples.add()
    _call(predictions.Classify, classify)


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    request = service_pb2.ModelInferRequest(
        model_name=draw(names), model_version=draw(st.sampled_from(["", "1", "2", "-1"]) | texts),
        id=draw(texts),
    )
    if draw(st.booleans()):
        parameter = request.parameters["signature_name"]
        if draw(st.booleans()):
            parameter.string_param = draw(st.sampled_from(["serving_default"]) | texts)
        else:
            parameter.int64_param = draw(int64s)
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["inputs"]) | texts),
            datatype=draw(st.sampled_from(["FP32", "FP32", "FP64", "INT32", "INT64", "BYTES",
                                           "BOOL", "UINT8", "FP16", "nope", ""])),
            shape=draw(dims),
        )
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=128)))
        else:
            contents = tensor.contents
            kind = draw(st.sampled_from(["fp32", "int", "bytes", "bool", "int64", "none"]))
            if kind == "fp32":
                contents.fp32_contents.extend(draw(st.lists(floats, max_size=24)))
            elif kind == "int":
                contents.int_contents.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1),
                                                           max_size=24)))
            elif kind == "bytes":
                contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=24)))
            elif kind == "bool":
                contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=24)))
            elif kind == "int64":
                contents.int64_contents.extend(draw(st.lists(int64s, max_size=24)))
    if raw and draw(st.booleans()):
        request.raw_input_contents.append(b"extra")
    for name in draw(st.lists(st.sampled_from(["outputs"]) | texts, max_size=2)):
        request.outputs.add(name=name)
    return request


@given(request=infer_requests())
@FUZZ
def test_model_infer_never_fails_internally(channel: grpc.Channel, request: Any) -> None:
    _call(service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request)


@given(name=names, version=st.sampled_from(["", "1", "9"]) | texts)
@FUZZ
def test_v2_metadata_and_ready_never_fail_internally(
    channel: grpc.Channel, name: str, version: str
) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    _call(stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=name, version=version))
    _call(stub.ModelReady, service_pb2.ModelReadyRequest(name=name, version=version))


def test_server_is_healthy_after_the_fuzzing(server: RuntimeServer, channel: grpc.Channel) -> None:
    assert server.process.poll() is None
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    request = service_pb2.ModelInferRequest(model_name="demo")
    request.inputs.add(name="inputs", datatype="FP32", shape=[1, 8])
    request.raw_input_contents.append(np.ones((1, 8), np.float32).tobytes())
    response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert len(response.raw_output_contents[0]) == 4
