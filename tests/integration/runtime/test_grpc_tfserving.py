"""TF Serving's gRPC API through TF Serving's own stubs (tensorflow-serving-api), against
the runtime as a real process: Predict (float, int, string; tensor_content and typed
values; versions, labels, signatures, output_filter), GetModelMetadata, GetModelStatus,
Classify, Regress, MultiInference, and every error code a client can cause.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.fixtures.models import call_saved_model, example_reference
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import (
    RuntimeServer,
    grpc_args,
    launch_runtime,
    metric_value,
)

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def two_io(
    two_io_server: RuntimeServer,
) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(two_io_server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(name: str, **tensors: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in tensors.items():
        request.inputs[key].CopyFrom(value)
    return request


def _error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value  # type: ignore[no-any-return]


def _typed_floats(array: np.ndarray) -> Any:
    """A TensorProto with the values in ``float_val`` (how hand-written clients send them)."""
    proto = tf.make_tensor_proto([], dtype=tf.float32)
    proto.ClearField("tensor_content")
    proto.ClearField("float_val")
    proto.tensor_shape.Clear()
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    proto.float_val.extend(array.ravel().tolist())
    return proto


A = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
B = np.array([[0.5, 0.25], [1.0, 2.0]], np.float32)


def test_predict_float_tensor_content_matches_the_model(
    two_io: Any, two_io_model_dir: Path
) -> None:
    request = _request("two_io", a=tf.make_tensor_proto(A), b=tf.make_tensor_proto(B))
    assert request.inputs["a"].tensor_content  # the encoding under test
    response = two_io.Predict(request, timeout=30)
    expected = call_saved_model(two_io_model_dir / "2", {"a": A, "b": B})
    for name in ("total", "scaled"):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]), expected[name])
    # TF Serving's default encoding of outputs: the typed field (clients read float_val).
    assert list(response.outputs["total"].float_val) == pytest.approx(expected["total"].tolist())
    assert response.model_spec.name == "two_io"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"


def test_predict_typed_values_and_broadcast(two_io: Any, two_io_model_dir: Path) -> None:
    typed = _request("two_io", a=_typed_floats(A), b=_typed_floats(B))
    assert not typed.inputs["a"].tensor_content
    response = two_io.Predict(typed, timeout=30)
    expected = call_saved_model(two_io_model_dir / "2", {"a": A, "b": B})
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["total"]), expected["total"])
    # One value for a [2, 2] shape repeats it, as TensorFlow's FromProto does.
    ones = tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[2, 2])
    assert len(ones.float_val) == 1
    response = two_io.Predict(_request("two_io", a=tf.make_tensor_proto(A), b=ones), timeout=30)
    expected = call_saved_model(two_io_model_dir / "2", {"a": A, "b": np.ones((2, 2), np.float32)})
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["total"]), expected["total"])


def test_version_label_signature_and_output_filter(two_io: Any, two_io_model_dir: Path) -> None:
    request = _request("two_io", a=tf.make_tensor_proto(A), b=tf.make_tensor_proto(B))
    request.model_spec.version.value = 1
    response = two_io.Predict(request, timeout=30)
    expected = call_saved_model(two_io_model_dir / "1", {"a": A, "b": B})
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["total"]), expected["total"])
    assert response.model_spec.version.value == 1

    labelled = _request("two_io", a=tf.make_tensor_proto(A), b=tf.make_tensor_proto(B))
    labelled.model_spec.version_label = "canary"
    labelled.output_filter.append("scaled")
    response = two_io.Predict(labelled, timeout=30)
    assert list(response.outputs) == ["scaled"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scaled"]), 2 * A)
    assert response.model_spec.version.value == 2

    other = _request("two_io", a=tf.make_tensor_proto(A))
    other.model_spec.signature_name = "scale_only"
    other.model_spec.version_label = "stable"
    response = two_io.Predict(other, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scaled"]), A)
    assert response.model_spec.signature_name == "scale_only"


def test_predict_int64_both_encodings(int_server: RuntimeServer, int_model_dir: Path) -> None:
    x = np.array([[1, 2, 3, 4], [-5, 6, 7, 2**40]], np.int64)
    typed = tf.make_tensor_proto([], dtype=tf.int64)
    typed.ClearField("tensor_content")
    typed.tensor_shape.Clear()
    for size in x.shape:
        typed.tensor_shape.dim.add().size = size
    typed.int64_val.extend(x.ravel().tolist())
    expected = call_saved_model(int_model_dir / "1", {"x": x})
    with grpc.insecure_channel(int_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for proto in (tf.make_tensor_proto(x), typed):
            response = stub.Predict(_request("ints", x=proto), timeout=30)
            np.testing.assert_array_equal(tf.make_ndarray(response.outputs["doubled"]),
                                          expected["doubled"])
            assert list(response.outputs["total"].int64_val) == expected["total"].tolist()
        wrong = _request("ints", x=tf.make_tensor_proto(x.astype(np.int32)))
        error = _error(stub.Predict, wrong)
        assert error.code() == Code.INVALID_ARGUMENT
        assert "expected datatype INT64" in (error.details() or "")


def test_predict_strings(string_server: RuntimeServer) -> None:
    words = np.array([b"abc", "\u00e9t\u00e9".encode(), b"\x00\xff"], dtype=object)
    with grpc.insecure_channel(string_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(_request("strings", text=tf.make_tensor_proto(words)), timeout=30)
    assert list(response.outputs["length"].int_val) == [3, 5, 2]
    assert list(response.outputs["upper"].string_val) == [b"ABC", "\u00e9T\u00e9".encode(),
                                                           b"\x00\xff"]


def test_get_model_metadata_and_status(two_io_server: RuntimeServer, two_io: Any) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "two_io"
    request.metadata_field.append("signature_def")
    response = two_io.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 2
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    assert set(defs.signature_def) == {"serving_default", "scale_only"}
    serving = defs.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["a"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in serving.inputs["a"].tensor_shape.dim] == [-1, 3]
    assert set(serving.outputs) == {"total", "scaled"}

    with grpc.insecure_channel(two_io_server.grpc_target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "two_io"
        status = models.GetModelStatus(status_request, timeout=30)
        assert [(v.version, v.state) for v in status.model_version_status] == [
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        ]
        status_request.model_spec.version_label = "stable"
        only = models.GetModelStatus(status_request, timeout=30)
        assert [v.version for v in only.model_version_status] == [1]
        status_request.model_spec.version.value = 9
        assert _error(models.GetModelStatus, status_request).code() == Code.NOT_FOUND
        reload = model_management_pb2.ReloadConfigRequest()
        assert _error(models.HandleReloadConfigRequest, reload).code() == Code.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"name": "nope"}, Code.NOT_FOUND, "not found"),
        ({"name": ""}, Code.INVALID_ARGUMENT, "model_spec.name"),
        ({"version": 7}, Code.NOT_FOUND, "no version 7"),
        ({"label": "beta"}, Code.NOT_FOUND, "no version label 'beta'"),
        ({"signature": "nope"}, Code.INVALID_ARGUMENT, "signature 'nope' not found"),
        ({"filter": "nope"}, Code.INVALID_ARGUMENT, "output_filter"),
        ({"drop": "b"}, Code.INVALID_ARGUMENT, "missing input 'b'"),
        ({"extra": "c"}, Code.INVALID_ARGUMENT, "unknown input 'c'"),
        ({"shape": [2, 4]}, Code.INVALID_ARGUMENT, "expected [-1, 3]"),
        ({"dtype": np.float64}, Code.INVALID_ARGUMENT, "expected datatype FP32"),
        ({"content": 5}, Code.INVALID_ARGUMENT, "bytes of tensor_content"),
        ({"too_many": True}, Code.INVALID_ARGUMENT, "holds 6 values"),
        ({"huge": True}, Code.RESOURCE_EXHAUSTED, "over the limit"),
        ({"unsupported": True}, Code.INVALID_ARGUMENT, "unsupported dtype"),
    ],
)
def test_predict_errors(two_io: Any, change: dict[str, Any], code: Any, words: str) -> None:
    a = tf.make_tensor_proto(A.astype(change.get("dtype", np.float32)))
    if "shape" in change:
        a = tf.make_tensor_proto(np.zeros(change["shape"], np.float32))
    if "content" in change:
        a.tensor_content = a.tensor_content[: change["content"]]
    if "too_many" in change:
        a = _typed_floats(A)
        a.float_val.append(1.0)
    if "huge" in change:
        a = tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[2**20, 2**20])
    if "unsupported" in change:
        a = tf.make_tensor_proto(np.zeros((2, 3), np.complex64))
    tensors = {"a": a, "b": tf.make_tensor_proto(B)}
    if "drop" in change:
        del tensors[change["drop"]]
    if "extra" in change:
        tensors[change["extra"]] = tf.make_tensor_proto(B)
    request = _request(change.get("name", "two_io"), **tensors)
    if "version" in change:
        request.model_spec.version.value = change["version"]
    if "label" in change:
        request.model_spec.version_label = change["label"]
    if "signature" in change:
        request.model_spec.signature_name = change["signature"]
    if "filter" in change:
        request.output_filter.append(change["filter"])
    error = _error(two_io.Predict, request)
    assert error.code() == code, error.details()
    assert words in (error.details() or "")


def test_errors_are_counted_and_logged_with_the_request_id(
    two_io_server: RuntimeServer, two_io: Any
) -> None:
    before = two_io_server.client().get("/metrics").text
    request_id = f"grpc-{time.monotonic_ns()}"
    with pytest.raises(grpc.RpcError) as caught:
        two_io.Predict(_request("two_io", a=tf.make_tensor_proto(A)), timeout=30,
                       metadata=(("x-request-id", request_id),))
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert ("x-request-id", request_id) in tuple(caught.value.trailing_metadata() or ())
    after = two_io_server.client().get("/metrics").text
    labels = {"model": "two_io", "protocol": "grpc", "code": "INVALID_ARGUMENT"}
    counted = metric_value(after, "modelplane_requests_total", **labels)
    assert counted == metric_value(before, "modelplane_requests_total", **labels) + 1

    def logged() -> list[dict[str, object]]:
        return [e for e in two_io_server.log_events() if e.get("request_id") == request_id]

    (entry,) = eventually(logged, timeout=20, what="the error's log line")
    assert "missing input 'b'" in str(entry["message"])


def test_row_and_message_limits(demo_model_dir: Path, runtime_log_dir: Path) -> None:
    """Rows over the limit: INVALID_ARGUMENT (as HTTP's 400 and TF Serving's batch-size
    check); a message over the body limit: RESOURCE_EXHAUSTED, from grpc itself."""
    args = ["--name", "demo", "--max-rows-per-request", "4", "--max-body-bytes", "2048",
            *grpc_args()]
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as server, grpc.insecure_channel(
        server.grpc_target
    ) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rows = _request("demo", inputs=tf.make_tensor_proto(np.zeros((5, 8), np.float32)))
        error = _error(stub.Predict, rows)
        assert error.code() == Code.INVALID_ARGUMENT
        assert "at most 4 are accepted" in (error.details() or "")
        big = _request("demo", inputs=tf.make_tensor_proto(np.zeros((1, 8), np.float32)))
        big.inputs["inputs"].string_val.append(b"x" * 4096)
        assert _error(stub.Predict, big).code() == Code.RESOURCE_EXHAUSTED
        fine = _request("demo", inputs=tf.make_tensor_proto(np.zeros((4, 8), np.float32)))
        assert stub.Predict(fine, timeout=30).outputs["outputs"].float_val


def _examples(rows: list[list[float]]) -> list[example_pb2.Example]:
    return [
        example_pb2.Example(features=feature_pb2.Features(feature={
            "x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=row))
        }))
        for row in rows
    ]


@pytest.fixture(scope="module")
def examples_server(example_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    with launch_runtime(example_model_dir, runtime_log_dir, ["--name", "ex", *grpc_args()]) as s:
        yield s


ROWS = [[1.0, 2.0], [0.5, -0.5], [3.0, 1.0]]


def test_classify_and_regress(examples_server: RuntimeServer) -> None:
    scores, sums = example_reference(ROWS)
    with grpc.insecure_channel(examples_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "ex"
        request.input.example_list.examples.extend(_examples(ROWS))
        response = stub.Classify(request, timeout=30)
        assert response.model_spec.signature_name == "serving_default"
        assert len(response.result.classifications) == 3
        for got, want in zip(response.result.classifications, scores, strict=True):
            assert [c.label for c in got.classes] == ["neg", "pos"]
            assert [c.score for c in got.classes] == pytest.approx(want.tolist(), rel=1e-5)

        # The context's features merge into every example.
        with_context = classification_pb2.ClassificationRequest()
        with_context.model_spec.name = "ex"
        listed = with_context.input.example_list_with_context
        listed.context.CopyFrom(_examples([[1.0, 2.0]])[0])
        listed.examples.extend([example_pb2.Example(), example_pb2.Example()])
        merged = stub.Classify(with_context, timeout=30)
        for got in merged.result.classifications:
            assert [c.score for c in got.classes] == pytest.approx(scores[0].tolist(), rel=1e-5)

        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = "ex"
        regress.model_spec.signature_name = "regress"
        regress.input.example_list.examples.extend(_examples(ROWS))
        values = [r.value for r in stub.Regress(regress, timeout=30).result.regressions]
        assert values == pytest.approx(sums.tolist(), rel=1e-5)

        multi = inference_pb2.MultiInferenceRequest()
        multi.input.example_list.examples.extend(_examples(ROWS))
        for signature, method in (("classify", "tensorflow/serving/classify"),
                                  ("regress", "tensorflow/serving/regress")):
            task = multi.tasks.add()
            task.model_spec.name = "ex"
            task.model_spec.signature_name = signature
            task.method_name = method
        results = stub.MultiInference(multi, timeout=30).results
        assert results[0].model_spec.signature_name == "classify"
        assert len(results[0].classification_result.classifications) == 3
        got = [r.value for r in results[1].regression_result.regressions]
        assert got == pytest.approx(sums.tolist(), rel=1e-5)


def test_example_method_errors(examples_server: RuntimeServer, two_io: Any) -> None:
    with grpc.insecure_channel(examples_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        wrong = regression_pb2.RegressionRequest()
        wrong.model_spec.name = "ex"  # serving_default is a classification signature
        wrong.input.example_list.examples.extend(_examples(ROWS))
        error = _error(stub.Regress, wrong)
        assert error.code() == Code.INVALID_ARGUMENT
        assert "method_name" in (error.details() or "")
        empty = classification_pb2.ClassificationRequest()
        empty.model_spec.name = "ex"
        assert _error(stub.Classify, empty).code() == Code.INVALID_ARGUMENT
        bad = classification_pb2.ClassificationRequest()
        bad.model_spec.name = "ex"
        bad.input.example_list.examples.extend([example_pb2.Example()])  # no feature x
        assert _error(stub.Classify, bad).code() == Code.INVALID_ARGUMENT
        multi = inference_pb2.MultiInferenceRequest()
        multi.input.example_list.examples.extend(_examples(ROWS))
        task = multi.tasks.add()
        task.model_spec.name = "ex"
        task.method_name = "tensorflow/serving/predict"
        assert _error(stub.MultiInference, multi).code() == Code.UNIMPLEMENTED
        assert _error(stub.MultiInference, inference_pb2.MultiInferenceRequest()).code() == (
            Code.INVALID_ARGUMENT
        )
    # A model without classification signatures.
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "two_io"
    request.input.example_list.examples.extend(_examples(ROWS))
    assert _error(two_io.Classify, request).code() == Code.INVALID_ARGUMENT
