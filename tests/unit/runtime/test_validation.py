"""Request validation: every rejection names the input; lenient casts lose nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from modelplane_runtime.dataplane.validation import validate_inputs
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.signature import SignatureSpec, TensorSpec

SPEC = SignatureSpec(
    "serving_default",
    inputs=(
        TensorSpec("features", "float32", (-1, 3)),
        TensorSpec("ids", "int64", (-1,)),
    ),
    outputs=(TensorSpec("out", "float32", (-1,)),),
)
TEXT = SignatureSpec(
    "serving_default", (TensorSpec("text", "string", (-1,)),), (TensorSpec("n", "int32", (-1,)),)
)
FLAGS = SignatureSpec(
    "serving_default", (TensorSpec("on", "bool", (-1,)),), (TensorSpec("n", "int32", (-1,)),)
)


def check(
    spec: SignatureSpec = SPEC, *, strict: bool = False, max_rows: int = 100, **inputs: object
) -> tuple[dict[str, np.ndarray], int]:
    return validate_inputs(spec, inputs, strict=strict, max_rows=max_rows)


def good(rows: int = 2) -> dict[str, Any]:
    return {
        "features": np.ones((rows, 3), np.float32),
        "ids": np.arange(rows, dtype=np.int64),
    }


def test_valid_request_passes_through_without_copies() -> None:
    inputs = good()
    arrays, rows = check(**inputs)
    assert rows == 2
    assert arrays["features"] is inputs["features"]
    assert arrays["ids"] is inputs["ids"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": np.ones(2)}, "unknown input 'extra' for signature 'serving_default'"),
        ({"features": None}, "missing input 'features'"),
        ({"features": np.float32(1.0)}, "input 'features' is a single value; expected shape"),
        ({"features": np.ones(3, np.float32)}, r"input 'features' has shape \[3\] \(rank 1\); "
         r"expected shape \[-1, 3\] \(rank 2\)"),
        ({"features": np.ones((2, 4), np.float32)}, r"dimension 1 must be 3"),
        ({"ids": np.arange(3)}, r"disagree on the batch size.*'features' has 2.*'ids' has 3"),
        ({"ids": np.array([1.5, 2.0])}, r"input 'ids' takes integers \(int64\); got a non-int"),
        ({"ids": np.array([1.0, np.nan])}, "input 'ids' takes integers"),
        ({"ids": np.array(["a", "b"])}, "input 'ids' takes numbers \\(int64\\); got strings"),
        ({"features": np.array([[1, 2, "x"]] * 2, dtype=object)}, "got str values"),
        ({"ids": np.array([2**63, 1], dtype=np.uint64)}, "out of range for int64"),
        ({"features": np.full((2, 3), 1e300)}, "out of range for float32"),
    ],
)
def test_rejections_name_the_input(change: dict[str, object], message: str) -> None:
    inputs: dict[str, Any] = dict(good())
    for name, value in change.items():
        if value is None:
            del inputs[name]
        else:
            inputs[name] = value
    with pytest.raises(InvalidInput, match=message):
        check(**inputs)


def test_row_limit() -> None:
    with pytest.raises(InvalidInput, match="the request has 5 rows; at most 4"):
        check(max_rows=4, **good(5))
    assert check(max_rows=5, **good(5))[1] == 5


def test_lenient_casts_json_numbers() -> None:
    arrays, _ = check(
        features=np.array([[1, 2, 3], [4, 5, 6]]),  # JSON ints into a float input
        ids=np.array([1.0, 2.0]),  # integral floats into an int input
    )
    assert arrays["features"].dtype == np.float32
    assert arrays["ids"].dtype == np.int64
    np.testing.assert_array_equal(arrays["ids"], [1, 2])
    mixed = np.array([[1, 2.5, 3], [4, 5, 6]], dtype=object)  # JSON mixing ints and floats
    np.testing.assert_allclose(check(features=mixed, ids=[1, 2])[0]["features"][0], [1, 2.5, 3])


def test_lenient_strings_become_bytes() -> None:
    arrays, rows = check(TEXT, text=np.array(["héllo", "b"]))
    assert rows == 2
    assert arrays["text"].dtype == object
    assert list(arrays["text"]) == ["héllo".encode(), b"b"]
    mixed = np.array(["a", b"\xff"], dtype=object)
    assert list(check(TEXT, text=mixed)[0]["text"]) == [b"a", b"\xff"]
    with pytest.raises(InvalidInput, match=r"input 'text' takes strings .*got numbers"):
        check(TEXT, text=np.array([1, 2]))


def test_lenient_booleans() -> None:
    assert check(FLAGS, on=np.array([0, 1]))[0]["on"].tolist() == [False, True]
    with pytest.raises(InvalidInput, match="input 'on' takes booleans"):
        check(FLAGS, on=np.array([0, 2]))


def test_strict_dtypes_must_match_exactly() -> None:
    assert check(strict=True, **good())[1] == 2
    inputs = good()
    inputs["features"] = inputs["features"].astype(np.float64)
    with pytest.raises(
        InvalidInput, match=r"input 'features': expected datatype FP32 \(float32\), got FP64"
    ):
        check(strict=True, **inputs)
    inputs = good()
    inputs["ids"] = inputs["ids"].astype(np.int32)
    with pytest.raises(InvalidInput, match=r"expected datatype INT64 .*got INT32"):
        check(strict=True, **inputs)
    with pytest.raises(InvalidInput, match=r"expected datatype BYTES .*got INT64"):
        check(TEXT, strict=True, text=np.array([1, 2]))
    assert check(TEXT, strict=True, text=np.array([b"a"], dtype=object))[1] == 1


def test_zero_rows_is_a_valid_request() -> None:
    assert check(**good(0))[1] == 0
