"""Request validation against a signature: names, shapes, batch size and dtypes.

Runs before a request is queued, so a bad request is rejected with a message naming the
input and never reaches (or breaks) a merged model call. Two dtype modes:

- lenient (v1 JSON, which carries no dtype): values are cast when nothing is lost — JSON
  integers into a float input, integral floats into an int input, text into a string
  input; a fractional number into an int input or a number into a string input is an error.
- strict (v2, whose request declares a datatype): the array's dtype must be the input's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from modelplane_runtime.errors import InvalidInput, too_many_rows
from modelplane_runtime.floats import narrowed
from modelplane_runtime.signature import DTYPES, SignatureSpec, TensorSpec, numpy_dtype

Arrays = dict[str, np.ndarray]

_NUMPY_TO_TF = {np_dtype: tf for tf, (np_dtype, _) in DTYPES.items() if tf != "string"}


class _Plan(NamedTuple):
    """One numeric input, precomputed for the fast path."""

    name: str
    rank: int
    fixed: tuple[tuple[int, int], ...]
    """(axis, size) of every dimension with a known size."""
    dtype: np.dtype[Any]


# id(spec) -> (spec, plans): the spec is kept so that its id cannot be reused while cached.
_PLANS: dict[int, tuple[SignatureSpec, tuple[_Plan, ...] | None]] = {}
_MAX_PLANS = 256


def _plans(spec: SignatureSpec) -> tuple[_Plan, ...] | None:
    """The fast path's plan for ``spec`` (None when it has a string input)."""
    cached = _PLANS.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    plans: tuple[_Plan, ...] | None = tuple(
        _Plan(
            t.name,
            len(t.shape),
            tuple((axis, size) for axis, size in enumerate(t.shape) if size != -1),
            numpy_dtype(t.dtype),
        )
        for t in spec.inputs
    )
    if any(t.dtype == "string" for t in spec.inputs):
        plans = None
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(spec)] = (spec, plans)
    return plans


def _fast(
    spec: SignatureSpec, inputs: Mapping[str, Any], max_rows: int
) -> tuple[Arrays, int] | None:
    """The common case without a cast: arrays already of the right dtypes and shapes.

    Returns None whenever anything would need a cast or an error message; the full
    validation then decides (and produces the same result it always did).
    """
    plans = _plans(spec)
    if plans is None or len(inputs) != len(plans):
        return None
    arrays: Arrays = {}
    count = -1
    for plan in plans:
        array = inputs.get(plan.name)
        if type(array) is not np.ndarray or array.dtype != plan.dtype:
            return None
        shape = array.shape
        if len(shape) != plan.rank:
            return None
        for axis, size in plan.fixed:
            if shape[axis] != size:
                return None
        if plan.rank:
            if count not in (-1, shape[0]):
                return None
            count = shape[0]
        arrays[plan.name] = array
    if count == -1:
        count = 1
    if count > max_rows:
        return None
    return arrays, count


def validate_inputs(
    spec: SignatureSpec, inputs: Mapping[str, Any], *, strict: bool, max_rows: int
) -> tuple[Arrays, int]:
    """Checked (and, when lenient, cast) inputs and their number of rows."""
    fast = _fast(spec, inputs, max_rows)
    if fast is not None:
        return fast
    names = [t.name for t in spec.inputs]
    for name in inputs:
        if name not in names:
            raise InvalidInput(
                f"unknown input '{name}' for signature '{spec.name}' (it takes: "
                f"{', '.join(names) or 'nothing'})"
            )
    arrays: Arrays = {}
    rows: dict[str, int] = {}
    for tensor in spec.inputs:
        if tensor.name not in inputs:
            raise InvalidInput(
                f"missing input '{tensor.name}' for signature '{spec.name}' (it takes: "
                f"{', '.join(names)})"
            )
        value = inputs[tensor.name]
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        _check_shape(tensor, array)
        array = _strict(tensor, array) if strict else _lenient(tensor, array)
        arrays[tensor.name] = array
        if tensor.shape:
            rows[tensor.name] = array.shape[0]
    sizes = set(rows.values())
    if len(sizes) > 1:
        detail = ", ".join(f"'{name}' has {count}" for name, count in rows.items())
        raise InvalidInput(f"inputs disagree on the batch size (rows): {detail}")
    count = sizes.pop() if sizes else 1
    if count > max_rows:
        raise too_many_rows(count, max_rows)
    return arrays, count


def shape_text(shape: tuple[int, ...]) -> str:
    """``(-1, 8)`` -> ``[-1, 8]``."""
    return "[" + ", ".join(map(str, shape)) + "]"


def _check_shape(tensor: TensorSpec, array: np.ndarray) -> None:
    want = tensor.shape
    if array.ndim == 0 and want:
        raise InvalidInput(
            f"input '{tensor.name}' is a single value; expected shape {shape_text(want)}"
        )
    if array.ndim != len(want):
        raise InvalidInput(
            f"input '{tensor.name}' has shape {shape_text(array.shape)} (rank {array.ndim}); "
            f"expected shape {shape_text(want)} (rank {len(want)})"
        )
    for axis, (got, size) in enumerate(zip(array.shape, want, strict=True)):
        if size != -1 and got != size:
            raise InvalidInput(
                f"input '{tensor.name}' has shape {shape_text(array.shape)}; expected "
                f"{shape_text(want)} (dimension {axis} must be {size})"
            )


def _dtype_name(dtype: np.dtype[Any]) -> str:
    if dtype.kind in "OSU":
        return "string" if dtype.kind in "SU" else "object"
    return _NUMPY_TO_TF.get(dtype, str(dtype))


def _v2_name(tf_dtype: str) -> str:
    return DTYPES[tf_dtype][1] if tf_dtype in DTYPES else tf_dtype


def _strict(tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
    if tensor.dtype == "string":
        if array.dtype.kind in "OSU":
            return _as_bytes(tensor, array)
    elif array.dtype == numpy_dtype(tensor.dtype):
        return array
    got = _dtype_name(array.dtype)
    raise InvalidInput(
        f"input '{tensor.name}': expected datatype {_v2_name(tensor.dtype)} ({tensor.dtype}), "
        f"got {_v2_name(got)} ({got})"
    )


def _lenient(tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
    target = tensor.dtype
    if target == "string":
        if array.dtype.kind in "OSU":
            return _as_bytes(tensor, array)
        raise InvalidInput(
            f"input '{tensor.name}' takes strings ({target}); got numbers "
            f"({_dtype_name(array.dtype)}); send text, or {{\"b64\": ...}} for bytes"
        )
    if array.dtype.kind == "O":
        array = _numbers_from_objects(tensor, array)
    kind = array.dtype.kind
    if kind in "SU":
        raise InvalidInput(f"input '{tensor.name}' takes numbers ({target}); got strings")
    want = numpy_dtype(target)
    if array.dtype == want:
        return array
    if target == "bool":
        if kind in "iuf" and np.isin(array, (0, 1)).all():
            return array.astype(want)
        raise InvalidInput(f"input '{tensor.name}' takes booleans; got {_dtype_name(array.dtype)}")
    if want.kind in "iu":
        return _to_int(tensor, array, want)
    # A float target: ints and bools cast exactly enough; watch narrowing overflow.
    if kind != "f":
        with np.errstate(over="ignore"):
            return array.astype(want)
    cast = narrowed(array, want)
    if cast is None:
        raise InvalidInput(f"input '{tensor.name}' has values out of range for {target}")
    return cast


def _to_int(tensor: TensorSpec, array: np.ndarray, want: np.dtype[Any]) -> np.ndarray:
    kind = array.dtype.kind
    if kind == "f":
        if not np.isfinite(array).all() or not (np.mod(array, 1) == 0).all():
            raise InvalidInput(
                f"input '{tensor.name}' takes integers ({tensor.dtype}); got a non-integer "
                f"number"
            )
    elif kind not in "iub":
        raise InvalidInput(
            f"input '{tensor.name}' takes integers ({tensor.dtype}); got "
            f"{_dtype_name(array.dtype)}"
        )
    if array.size and kind != "b":
        info = np.iinfo(want)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input '{tensor.name}' has values out of range for {tensor.dtype} "
                f"({info.min}..{info.max})"
            )
    return array.astype(want)


def _numbers_from_objects(tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
    """An object array of Python numbers (mixed ints and floats) as a numeric array."""
    items = array.ravel().tolist()
    if all(isinstance(item, int | float) for item in items):
        return np.asarray(items).reshape(array.shape)
    raise InvalidInput(
        f"input '{tensor.name}' takes numbers ({tensor.dtype}); got "
        f"{type(next(i for i in items if not isinstance(i, int | float))).__name__} values"
    )


def _as_bytes(tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
    """Strings as an object array of ``bytes`` (text is encoded as UTF-8)."""
    if array.dtype.kind == "S":
        return array.astype(object)
    if array.dtype.kind == "U":
        return np.char.encode(array, "utf-8").astype(object)
    flat = array.ravel()
    if all(isinstance(item, bytes) for item in flat):
        return array
    out = np.empty(array.shape, dtype=object)
    out_flat = out.reshape(-1)
    for index, item in enumerate(flat):
        if isinstance(item, bytes):
            out_flat[index] = item
        elif isinstance(item, str):
            out_flat[index] = item.encode()
        else:
            raise InvalidInput(
                f"input '{tensor.name}' takes strings; got {type(item).__name__} values"
            )
    return out
