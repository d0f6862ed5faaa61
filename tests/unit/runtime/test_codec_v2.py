"""Open Inference Protocol (v2) codec: JSON and binary tensors, checked with tritonclient's own
serializers and response parser (the off-the-shelf client must read what we write)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from modelplane_runtime.codecs import v2 as codec_v2
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.signature import DTYPES, SignatureSpec, TensorSpec
from tritonclient.http import InferResult
from tritonclient.utils import serialize_byte_tensor


def _sample(tf_dtype: str) -> np.ndarray:
    if tf_dtype == "string":
        return np.array([[b"a", b"\xffbinary"], [b"", b"long " * 10]], dtype=object)
    if tf_dtype == "bool":
        return np.array([[True, False], [False, True]])
    return (np.arange(4).reshape(2, 2) + 1).astype(DTYPES[tf_dtype][0])


def _binary_body(tensors: dict[str, np.ndarray]) -> tuple[bytes, int]:
    header: dict[str, object] = {"inputs": []}
    blobs = []
    for name, array in tensors.items():
        blob = serialize_byte_tensor(array).item() if array.dtype == object else array.tobytes()
        header["inputs"].append(  # type: ignore[attr-defined]
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": "BYTES" if array.dtype == object else DTYPES[array.dtype.name][1],
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    head = json.dumps(header).encode()
    return head + b"".join(blobs), len(head)


@pytest.mark.parametrize("tf_dtype", sorted(DTYPES))
def test_every_datatype_round_trips_as_binary(tf_dtype: str) -> None:
    array = _sample(tf_dtype)
    body, length = _binary_body({"x": array})
    request = codec_v2.decode_infer(body, length)
    decoded = request.inputs["x"]
    assert decoded.shape == (2, 2)
    np.testing.assert_array_equal(decoded, array)
    request.parameters["binary_data_output"] = True
    response, json_length = codec_v2.encode_infer("m", "1", request, {"y": decoded})
    assert json_length is not None
    result = InferResult.from_response_body(response, header_length=json_length)
    np.testing.assert_array_equal(result.as_numpy("y"), array)


@pytest.mark.parametrize("tf_dtype", sorted(set(DTYPES) - {"string"}))
def test_every_datatype_round_trips_as_json(tf_dtype: str) -> None:
    array = _sample(tf_dtype)
    datatype = DTYPES[tf_dtype][1]
    for data in (array.reshape(-1).tolist(), array.tolist()):  # flat and nested
        body = json.dumps(
            {"inputs": [{"name": "x", "shape": [2, 2], "datatype": datatype, "data": data}]}
        ).encode()
        decoded = codec_v2.decode_infer(body).inputs["x"]
        assert decoded.dtype == array.dtype
        np.testing.assert_array_equal(decoded, array)
    response, json_length = codec_v2.encode_infer(
        "m", "1", codec_v2.decode_infer(body), {"y": decoded}
    )
    assert json_length is None
    output = json.loads(response)["outputs"][0]
    assert output["datatype"] == datatype
    assert output["shape"] == [2, 2]
    np.testing.assert_array_equal(InferResult.from_response_body(response).as_numpy("y"), array)


def test_json_bytes_are_utf8_strings() -> None:
    tensor = {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["hé", "x"]}
    body = json.dumps({"inputs": [tensor]}, ensure_ascii=False).encode()
    decoded = codec_v2.decode_infer(body).inputs["t"]
    assert decoded.tolist() == ["hé".encode(), b"x"]
    response, _ = codec_v2.encode_infer("m", "1", codec_v2.decode_infer(body), {"t": decoded})
    assert json.loads(response)["outputs"][0]["data"] == ["hé", "x"]


def test_requested_outputs_choose_names_order_and_encoding() -> None:
    body = json.dumps(
        {
            "id": "req-7",
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
            "outputs": [
                {"name": "b", "parameters": {"binary_data": True}},
                {"name": "a"},
            ],
        }
    ).encode()
    request = codec_v2.decode_infer(body)
    outputs = {"a": np.array([1.5], np.float32), "b": np.array([2, 3], np.int32), "c": np.zeros(1)}
    response, length = codec_v2.encode_infer("m", "3", request, outputs)
    assert length is not None
    header = json.loads(response[:length])
    assert header["id"] == "req-7"
    assert header["model_name"] == "m"
    assert header["model_version"] == "3"
    assert [o["name"] for o in header["outputs"]] == ["b", "a"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert header["outputs"][1]["data"] == [1.5]
    result = InferResult.from_response_body(response, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("b"), [2, 3])


def test_signature_name_parameter() -> None:
    tensor = {"name": "a", "shape": [0], "datatype": "FP32", "data": []}
    body = json.dumps({"parameters": {"signature_name": "scale_only"}, "inputs": [tensor]}).encode()
    assert codec_v2.decode_infer(body).signature_name == "scale_only"


_SPEC = SignatureSpec(
    "serving_default",
    (TensorSpec("x", "float32", (-1, 2)),),
    (TensorSpec("y", "float32", (-1,)),),
)


def _json_input(**overrides: object) -> bytes:
    tensor: dict[str, object] = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    tensor.update(overrides)
    return json.dumps({"inputs": [tensor]}).encode()


def test_check_inputs_accepts_the_signature() -> None:
    codec_v2.check_inputs(codec_v2.decode_infer(_json_input()), _SPEC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_json_input(name="z"), "unknown input 'z'"),
        (_json_input(datatype="FP64"), "datatype FP64 does not match the model's FP32"),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],'
            b' "outputs": [{"name": "nope"}]}',
            "unknown output 'nope'",
        ),
    ],
)
def test_check_inputs_rejects(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        codec_v2.check_inputs(codec_v2.decode_infer(body), _SPEC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{oops", "malformed JSON"),
        (b'"text"', "JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [3]}', "must be an object"),
        (b'{"id": 5, "inputs": [{}]}', "'id' must be a string"),
        (_json_input(shape=[1, 3]), "needs 3 elements, 'data' has 2"),
        (_json_input(shape=[2, 2], data=[[1, 2], [3]]), "rectangular"),
        (_json_input(datatype="FLOAT32"), "unknown datatype 'FLOAT32'"),
        (_json_input(shape="1,2"), "'shape' must be a list"),
        (_json_input(shape=[1, -2]), "'shape' must be a list"),
        (_json_input(shape=[1, True]), "'shape' must be a list"),
        (_json_input(shape=[1, 2.0]), "'shape' must be a list"),
        (_json_input(data=["a", "b"]), "expected float32 values, got strings"),
        (_json_input(datatype="INT32", data=[1.5, 2]), "expected int32 values"),
        (_json_input(datatype="BOOL", data=[1, 0]), "expected bool values"),
        (_json_input(data=None), "rectangular|non-numeric"),
        (_json_input(parameters={"binary_data_size": 8}), "does not fit the binary data"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},'
            b' {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
            "given twice",
        ),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', "no 'data'"),
        (
            b'{"outputs": 3, "inputs": [{"name": "x", "shape": [0], "datatype": "FP32",'
            b' "data": []}]}',
            "'outputs' must be a list",
        ),
    ],
)
def test_bad_json_bodies_are_invalid_input(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        codec_v2.decode_infer(body)


def test_binary_size_must_match_shape() -> None:
    body, length = _binary_body({"x": np.zeros((2, 2), np.float32)})
    header = json.loads(body[:length])
    header["inputs"][0]["shape"] = [2, 3]
    head = json.dumps(header).encode()
    with pytest.raises(InvalidInput, match="needs 24 bytes of FP32, got 16"):
        codec_v2.decode_infer(head + body[length:], len(head))


def test_header_length_outside_the_body() -> None:
    body, _ = _binary_body({"x": np.zeros(2, np.float32)})
    with pytest.raises(InvalidInput, match="outside the body"):
        codec_v2.decode_infer(body, len(body) + 1)


def test_trailing_binary_data_is_rejected() -> None:
    body, length = _binary_body({"x": np.zeros(2, np.float32)})
    with pytest.raises(InvalidInput, match="binary data but the inputs declare"):
        codec_v2.decode_infer(body + b"junk", length)


def test_truncated_bytes_elements_are_rejected() -> None:
    body, length = _binary_body({"t": np.array([b"hello"], dtype=object)})
    header = json.loads(body[:length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 7
    head = json.dumps(header).encode()
    with pytest.raises(InvalidInput, match="overruns"):
        codec_v2.decode_infer(head + body[length : length + 7], len(head))


def test_model_metadata_lists_tensors_with_v2_datatypes() -> None:
    metadata = json.loads(codec_v2.model_metadata("m", ["1", "2"], _SPEC, "tensorflow"))
    assert metadata == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "tensorflow",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
