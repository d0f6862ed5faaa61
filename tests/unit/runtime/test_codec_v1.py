"""TF Serving REST (v1) codec: the documented request/response shapes, and every bad body."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from modelplane_runtime.codecs import v1 as codec_v1
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.signature import SignatureSpec, TensorSpec, VersionStatus


def _spec(*inputs: tuple[str, str, tuple[int, ...]]) -> SignatureSpec:
    return SignatureSpec(
        "serving_default",
        tuple(TensorSpec(*item) for item in inputs),
        (TensorSpec("y", "float32", (-1,)),),
    )


def _decode(body: object, spec: SignatureSpec) -> dict[str, np.ndarray]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return codec_v1.decode_inputs(codec_v1.parse_predict(raw), spec)


# --- requests: the examples of TF Serving's api_rest.md -------------------------------------


def test_row_plain_list_of_scalars() -> None:
    inputs = _decode({"instances": [1.0, 2.0, 5.0]}, _spec(("x", "float32", (-1,))))
    assert inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(inputs["x"], [1.0, 2.0, 5.0])


def test_row_strings_become_bytes() -> None:
    inputs = _decode({"instances": ["foo", "bar", "baz"]}, _spec(("s", "string", (-1,))))
    assert inputs["s"].dtype == object
    assert inputs["s"].tolist() == [b"foo", b"bar", b"baz"]


def test_row_nested_tensors_keep_their_shape() -> None:
    inputs = _decode({"instances": [[[1, 2]], [[3, 4]]]}, _spec(("x", "int32", (-1, 1, 2))))
    assert inputs["x"].shape == (2, 1, 2)
    assert inputs["x"].dtype == np.int32


_NAMED = _spec(
    ("tag", "string", (-1,)), ("signal", "int32", (-1, 5)), ("sensor", "float32", (-1, 2, 2))
)


def test_row_named_inputs_and_columnar_decode_to_the_same_tensors() -> None:
    rows = {
        "instances": [
            {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
            {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
        ]
    }
    columns = {
        "inputs": {
            "tag": ["foo", "bar"],
            "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
            "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
        }
    }
    by_row, by_column = _decode(rows, _NAMED), _decode(columns, _NAMED)
    assert by_row["tag"].tolist() == [b"foo", b"bar"]
    assert by_row["signal"].shape == (2, 5)
    assert by_row["sensor"].shape == (2, 2, 2)
    for name in ("tag", "signal", "sensor"):
        np.testing.assert_array_equal(by_row[name], by_column[name])
        assert by_row[name].dtype == by_column[name].dtype


def test_b64_values_are_decoded_in_rows_and_columns() -> None:
    spec = _spec(("image_bytes", "string", (-1,)))
    encoded = base64.b64encode(b"\x00\xffimage bytes").decode()
    assert _decode({"instances": [{"b64": encoded}]}, spec)["image_bytes"].tolist() == [
        b"\x00\xffimage bytes"
    ]
    assert _decode({"inputs": [{"b64": encoded}]}, spec)["image_bytes"].tolist() == [
        b"\x00\xffimage bytes"
    ]


def test_nan_and_infinity_tokens_are_accepted() -> None:
    inputs = _decode(
        b'{"instances": [1.0, NaN, Infinity, -Infinity]}', _spec(("x", "float32", (-1,)))
    )
    assert np.isnan(inputs["x"][1])
    assert inputs["x"][2] == np.inf
    assert inputs["x"][3] == -np.inf


def test_signature_name_is_read() -> None:
    body = codec_v1.parse_predict(b'{"signature_name": "scale_only", "inputs": [[1, 2, 3]]}')
    assert body.signature_name == "scale_only"
    assert body.columnar


def test_integers_are_accepted_for_float_inputs() -> None:
    assert _decode({"inputs": [[1, 2]]}, _spec(("x", "float64", (-1, 2))))["x"].dtype == np.float64


# --- responses -------------------------------------------------------------------------------


def test_single_output_is_unwrapped_like_the_half_plus_three_example() -> None:
    body = codec_v1.encode_predictions({"y": np.array([3.5, 4.0, 5.5], np.float32)}, False)
    assert json.loads(body) == {"predictions": [3.5, 4.0, 5.5]}
    body = codec_v1.encode_predictions({"y": np.array([3.5, 4.0, 5.5], np.float32)}, True)
    assert json.loads(body) == {"outputs": [3.5, 4.0, 5.5]}


def test_float32_outputs_are_printed_shortest() -> None:
    body = codec_v1.encode_predictions({"y": np.array([0.2, 1.0], np.float32)}, False)
    assert body == b'{"predictions":[0.2,1.0]}'


def test_several_outputs_are_objects_per_row_or_one_object_of_columns() -> None:
    outputs = {
        "total": np.array([1.0, 2.0], np.float32),
        "scaled": np.array([[1, 2], [3, 4]], np.int64),
    }
    rows = json.loads(codec_v1.encode_predictions(outputs, False))
    assert rows == {
        "predictions": [{"total": 1.0, "scaled": [1, 2]}, {"total": 2.0, "scaled": [3, 4]}]
    }
    columns = json.loads(codec_v1.encode_predictions(outputs, True))
    assert columns == {"outputs": {"total": [1.0, 2.0], "scaled": [[1, 2], [3, 4]]}}


def test_string_outputs_are_text_unless_named_bytes() -> None:
    outputs = {
        "label": np.array([b"cat", b"dog"], dtype=object),
        "thumb_bytes": np.array([b"\x00\x01", b"\xff"], dtype=object),
    }
    rows = json.loads(codec_v1.encode_predictions(outputs, False))["predictions"]
    assert rows[0] == {
        "label": "cat",
        "thumb_bytes": {"b64": base64.b64encode(b"\x00\x01").decode()},
    }
    assert rows[1]["thumb_bytes"] == {"b64": "/w=="}


def test_non_finite_outputs_are_written_as_tokens() -> None:
    body = codec_v1.encode_predictions(
        {"y": np.array([np.nan, np.inf, -np.inf], np.float32)}, False
    )
    assert body == b'{"predictions":[NaN,Infinity,-Infinity]}'


def test_row_format_needs_one_batch_size() -> None:
    outputs = {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(InvalidInput, match="inconsistent batch size"):
        codec_v1.encode_predictions(outputs, False)
    assert json.loads(codec_v1.encode_predictions(outputs, True))["outputs"]["b"] == [0.0, 0.0, 0.0]


def test_status_and_metadata_have_tf_servings_shape() -> None:
    status = json.loads(codec_v1.model_status([VersionStatus(123, "AVAILABLE")]))
    assert status == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    spec = _spec(("x", "float32", (-1, 8)))
    metadata = json.loads(codec_v1.model_metadata("m", 1, {"serving_default": spec}))
    assert metadata["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "8", "name": ""},
    ]


# --- bad bodies: each is an InvalidInput (400), never a crash --------------------------------

_ONE = _spec(("x", "float32", (-1, 2)))
_TWO = _spec(("a", "float32", (-1,)), ("b", "int64", (-1,)))


@pytest.mark.parametrize(
    ("body", "spec", "message"),
    [
        (b"", _ONE, "empty"),
        (b"{not json", _ONE, "malformed JSON"),
        (b"[1, 2]", _ONE, "JSON object"),
        (b'{"instances": [[1, 2]], "inputs": [[1, 2]]}', _ONE, "only one of"),
        (b'{"signature": "x"}', _ONE, "missing 'inputs' or 'instances'"),
        (b'{"instances": []}', _ONE, "no values"),
        (b'{"instances": {"x": 1}}', _ONE, "to be a list"),
        (b'{"signature_name": 3, "instances": [[1, 2]]}', _ONE, "signature_name"),
        (b'{"instances": [[1, 2], [3]]}', _ONE, "rectangular"),
        (b'{"instances": [["a", "b"]]}', _ONE, "expected float32 values, got strings"),
        (b'{"instances": [[true, false]]}', _ONE, "got booleans"),
        (b'{"instances": [[1, 2], {"x": [3, 4]}]}', _ONE, "mixes plain values and objects"),
        (
            b'{"instances": ["a", {"s": "b"}]}',
            _spec(("s", "string", (-1,))),
            "mixes plain values and objects",
        ),
        (b'{"instances": [1, 2]}', _TWO, "plain list"),
        (b'{"inputs": [1, 2]}', _TWO, "plain value"),
        (b'{"instances": [{"a": 1, "b": 2, "c": 3}]}', _TWO, "unknown input 'c'"),
        (b'{"instances": [{"a": 1}]}', _TWO, "missing 'b'"),
        (b'{"instances": [{"a": 1, "b": 2}, [1, 2]]}', _TWO, "expecting object"),
        (b'{"inputs": {"a": [1], "z": [2]}}', _TWO, "unknown input 'z'"),
        (b'{"inputs": {"a": [1]}}', _TWO, "missing named input: b"),
        (b'{"inputs": {"a": [1], "b": [1.5]}}', _TWO, "expected int64 values, got floating"),
        (b'{"inputs": {"a": [1], "b": [99999999999999999999999]}}', _TWO, "int64"),
        (b'{"inputs": {"a": [1], "b": [null]}}', _TWO, "non-numeric"),
    ],
)
def test_bad_bodies_are_invalid_input(body: bytes, spec: SignatureSpec, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _decode(body, spec)


@pytest.mark.parametrize("depth", [70, 5000, 200_000])
def test_deep_nesting_is_invalid_input_not_a_crash(depth: int) -> None:
    for dtype in ("float32", "string"):
        body = b'{"inputs": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
        with pytest.raises(InvalidInput):
            _decode(body, _spec(("x", dtype, (-1,))))


def test_small_int_overflow_is_rejected_not_wrapped() -> None:
    with pytest.raises(InvalidInput, match="does not fit in int8"):
        _decode({"inputs": [300]}, _spec(("x", "int8", (-1,))))


def test_bad_base64_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="base64"):
        _decode({"inputs": [{"b64": "!!not base64!!"}]}, _spec(("s", "string", (-1,))))


def test_strings_reject_numbers() -> None:
    with pytest.raises(InvalidInput, match="expected strings"):
        _decode({"inputs": ["ok", 3]}, _spec(("s", "string", (-1,))))
