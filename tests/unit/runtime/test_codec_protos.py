"""The gRPC tensor codecs (codecs/tfproto.py, codecs/v2proto.py) against the real message
classes: TensorFlow's TensorProto (read back with ``tf.make_ndarray``) and Triton's v2
messages."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from modelplane_runtime import rules
from modelplane_runtime.codecs import tfproto, v2proto
from modelplane_runtime.errors import (
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    RequestTimeout,
)
from modelplane_runtime.server.lifecycle import reserve_port

LIMIT = 1 << 20


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([[1.5, -2.0]], np.float64),
        np.array([1, -2, 3], np.int32),
        np.array([[255, 0]], np.uint8),
        np.array([-7, 2**40], np.int64),
        np.array([True, False]),
        np.array([0.5, -1.25], np.float16),
        np.array([2**32 - 1], np.uint32),
        np.array([2**64 - 1], np.uint64),
        np.array([b"a", b"\xff\x00"], dtype=object),
        np.float32(3.5).reshape(()),
    ],
)
def test_tensor_proto_round_trip_both_encodings(array: np.ndarray) -> None:
    packed = tf.make_tensor_proto(array)  # tensor_content for numbers, string_val for bytes
    np.testing.assert_array_equal(tfproto.read_tensor(packed, "x", LIMIT), array)
    written = tf.make_tensor_proto([], dtype=tf.float32)
    written.Clear()
    tfproto.write_tensor(written, array)
    assert not written.tensor_content  # typed fields, as TF Serving answers
    np.testing.assert_array_equal(tf.make_ndarray(written), array)
    np.testing.assert_array_equal(tfproto.read_tensor(written, "x", LIMIT), array)


def test_tensor_proto_repeats_the_last_value_as_tensorflow_does() -> None:
    proto = tf.make_tensor_proto(2.0, dtype=tf.float32, shape=[2, 2])
    np.testing.assert_array_equal(tfproto.read_tensor(proto, "x", LIMIT), np.full((2, 2), 2.0))
    proto.float_val.extend([1.0])
    proto.float_val[:] = [1.0, 3.0]
    np.testing.assert_array_equal(
        tfproto.read_tensor(proto, "x", LIMIT), [[1.0, 3.0], [3.0, 3.0]]
    )
    proto.ClearField("float_val")
    np.testing.assert_array_equal(tfproto.read_tensor(proto, "x", LIMIT), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda p: p.float_val.extend([1.0] * 7), InvalidInput, "holds 6 values"),
        (lambda p: setattr(p, "tensor_content", b"\x00" * 5), InvalidInput, "needs 24 bytes"),
        (lambda p: setattr(p, "dtype", 8), InvalidInput, "unsupported dtype"),
        (lambda p: p.tensor_shape.dim.add(size=-1), InvalidInput, "negative dimension"),
        (lambda p: setattr(p.tensor_shape, "unknown_rank", True), InvalidInput, "unknown rank"),
        (lambda p: p.tensor_shape.dim.add(size=2**40), PayloadTooLarge, "over the limit"),
    ],
)
def test_tensor_proto_errors(change: object, error: type[Exception], words: str) -> None:
    proto = tf.make_tensor_proto([], dtype=tf.float32)
    proto.Clear()
    proto.dtype = tfproto.DT_FLOAT
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3)
    change(proto)  # type: ignore[operator]
    with pytest.raises(error, match=words):
        tfproto.read_tensor(proto, "x", LIMIT)


def test_v2_raw_and_typed_inputs() -> None:
    request = service_pb2.ModelInferRequest()
    typed = request.inputs.add(name="a", datatype="INT8", shape=[3])
    typed.contents.int_contents.extend([1, -2, 127])
    inputs = v2proto.read_inputs(request, LIMIT)
    assert inputs["a"].dtype == np.int8 and inputs["a"].tolist() == [1, -2, 127]
    typed.contents.int_contents[0] = 300
    with pytest.raises(InvalidInput, match="out of range for INT8"):
        v2proto.read_inputs(request, LIMIT)

    raw = service_pb2.ModelInferRequest()
    raw.inputs.add(name="f", datatype="FP16", shape=[2])
    raw.inputs.add(name="s", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(np.array([1.5, 2.0], "<f2").tobytes())
    raw.raw_input_contents.append(b"\x01\x00\x00\x00a\x02\x00\x00\x00bc")
    inputs = v2proto.read_inputs(raw, LIMIT)
    assert inputs["f"].tolist() == [1.5, 2.0]
    assert inputs["s"].tolist() == [b"a", b"bc"]
    raw.inputs[1].shape[0] = 3
    with pytest.raises(InvalidInput, match="shape needs 3 BYTES elements"):
        v2proto.read_inputs(raw, LIMIT)


def test_v2_outputs_in_the_form_the_request_used() -> None:
    outputs = {"y": np.array([[1.0, 2.0]], np.float32), "h": np.array([1.0], np.float16)}
    typed = service_pb2.ModelInferResponse()
    v2proto.write_outputs(typed, {"y": outputs["y"]}, ["y"], raw=False)
    assert list(typed.outputs[0].contents.fp32_contents) == [1.0, 2.0]
    assert list(typed.outputs[0].shape) == [1, 2]
    # FP16 has no typed field: the answer goes raw for every output.
    forced = service_pb2.ModelInferResponse()
    v2proto.write_outputs(forced, outputs, ["y", "h"], raw=False)
    assert len(forced.raw_output_contents) == 2
    assert np.frombuffer(forced.raw_output_contents[1], "<f2").tolist() == [1.0]


def test_every_error_has_its_grpc_code() -> None:
    assert rules.failure(InvalidInput("x"), log=False) == (400, "INVALID_ARGUMENT", "x")
    assert rules.failure(ModelNotFound("x"), log=False).grpc_code == "NOT_FOUND"
    assert rules.failure(PayloadTooLarge("x"), log=False).grpc_code == "RESOURCE_EXHAUSTED"
    assert rules.failure(RequestTimeout("x"), log=False).grpc_code == "DEADLINE_EXCEEDED"
    bug = rules.failure(KeyError("secret detail"))
    assert bug == (500, "INTERNAL", "internal server error")


def test_reserved_port_refuses_a_second_server_but_admits_reuseport() -> None:
    held = reserve_port("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))  # a server without SO_REUSEPORT
        with socket.socket() as worker:  # what grpc does in each worker
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with pytest.raises(OSError, match="in use"):
                reserve_port("127.0.0.1", port)  # taken: a listener is there
    finally:
        held.close()
