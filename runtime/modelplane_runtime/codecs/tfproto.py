"""TensorFlow's ``TensorProto`` <-> numpy arrays, read and written as TF Serving does.

Pure functions over message objects the caller owns (a ``PredictRequest``'s inputs, a
``PredictResponse``'s outputs), so this module imports no protobuf package: the DataType
numbers are TensorFlow's (``tensorflow/core/framework/types.proto``).

Reading follows ``Tensor::FromProto``: ``tensor_content`` (raw little-endian bytes) wins when
set; otherwise the typed field of the dtype holds the values, and fewer values than the
shape needs repeat the last one (``tf.make_tensor_proto(1.0, shape=[2, 3])`` sends one
float), none at all mean zeros; more values than the shape holds is an error. A tensor may
not hold more bytes than the message size limit allows, so that a few bytes of shape
cannot make the server allocate gigabytes.

Writing uses the typed fields (``float_val``, ``string_val``...), TF Serving's default
(``AsProtoField``): clients that read ``outputs["y"].float_val`` work, and
``tf.make_ndarray`` reads either form.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from modelplane_runtime.errors import InvalidInput, PayloadTooLarge

# TensorFlow's DataType enum (types.proto) for the dtypes the runtime serves.
DT_FLOAT: Final = 1
DT_DOUBLE: Final = 2
DT_INT32: Final = 3
DT_UINT8: Final = 4
DT_INT16: Final = 5
DT_INT8: Final = 6
DT_STRING: Final = 7
DT_INT64: Final = 9
DT_BOOL: Final = 10
DT_UINT16: Final = 17
DT_HALF: Final = 19
DT_UINT32: Final = 22
DT_UINT64: Final = 23

# dtype number -> (TF dtype name, numpy dtype, the typed field holding its values).
_BY_ENUM: Final[dict[int, tuple[str, np.dtype[Any], str]]] = {
    DT_FLOAT: ("float32", np.dtype("<f4"), "float_val"),
    DT_DOUBLE: ("float64", np.dtype("<f8"), "double_val"),
    DT_INT32: ("int32", np.dtype("<i4"), "int_val"),
    DT_UINT8: ("uint8", np.dtype("u1"), "int_val"),
    DT_INT16: ("int16", np.dtype("<i2"), "int_val"),
    DT_INT8: ("int8", np.dtype("i1"), "int_val"),
    DT_STRING: ("string", np.dtype(object), "string_val"),
    DT_INT64: ("int64", np.dtype("<i8"), "int64_val"),
    DT_BOOL: ("bool", np.dtype(np.bool_), "bool_val"),
    DT_UINT16: ("uint16", np.dtype("<u2"), "int_val"),
    DT_HALF: ("float16", np.dtype("<f2"), "half_val"),
    DT_UINT32: ("uint32", np.dtype("<u4"), "uint32_val"),
    DT_UINT64: ("uint64", np.dtype("<u8"), "uint64_val"),
}
_BY_NAME: Final = {name: (enum, field) for enum, (name, _, field) in _BY_ENUM.items()}

DT_NAMES: Final = {
    DT_FLOAT: "DT_FLOAT", DT_DOUBLE: "DT_DOUBLE", DT_INT32: "DT_INT32", DT_UINT8: "DT_UINT8",
    DT_INT16: "DT_INT16", DT_INT8: "DT_INT8", DT_STRING: "DT_STRING", DT_INT64: "DT_INT64",
    DT_BOOL: "DT_BOOL", DT_UINT16: "DT_UINT16", DT_HALF: "DT_HALF", DT_UINT32: "DT_UINT32",
    DT_UINT64: "DT_UINT64",
}

MAX_RANK: Final = 32
"""Most dimensions a tensor may declare (as the v2 codecs allow)."""


def dtype_enum(tf_dtype: str) -> int:
    """TensorFlow's DataType number for a dtype name (``float32`` -> 1)."""
    return _BY_NAME[tf_dtype][0]


def read_tensor(proto: Any, name: str, max_bytes: int) -> np.ndarray:
    """A ``TensorProto`` as an array (InvalidInput when malformed; PayloadTooLarge when
    it would hold more than ``max_bytes``)."""
    known = _BY_ENUM.get(proto.dtype)
    if known is None:
        raise InvalidInput(f"input '{name}': unsupported dtype {_dtype_text(proto.dtype)}")
    tf_dtype, dtype, field = known
    shape = _shape(proto.tensor_shape, name)
    count = math.prod(shape)
    width = 8 if tf_dtype == "string" else dtype.itemsize
    if count * width > max_bytes:
        raise PayloadTooLarge(
            f"input '{name}': shape {shape} of {tf_dtype} is over the limit of {max_bytes} bytes"
        )
    content = proto.tensor_content
    if content:
        if tf_dtype == "string":
            raise InvalidInput(f"input '{name}': a string tensor cannot use tensor_content")
        if len(content) != count * dtype.itemsize:
            raise InvalidInput(
                f"input '{name}': shape {shape} of {tf_dtype} needs {count * dtype.itemsize} "
                f"bytes of tensor_content, got {len(content)}"
            )
        return _shaped(np.frombuffer(content, dtype=dtype), shape, name)
    values = getattr(proto, field)
    given = len(values)
    if given > count:
        raise InvalidInput(
            f"input '{name}': shape {shape} holds {count} values, {field} has {given}"
        )
    if tf_dtype == "string":
        array = np.empty(count, dtype=object)
        if given:
            array[:given] = list(values)
            array[given:] = values[given - 1]
        else:
            array[:] = b""
        return _shaped(array, shape, name)
    if field == "half_val":  # float16 bit patterns carried in int32s
        flat = np.asarray(values, dtype=np.int32).astype(np.uint16).view(np.float16)
    elif field == "int_val" and tf_dtype != "int32":
        # Narrower integers travel in int32s; TF casts them as C does (wrapping).
        flat = np.asarray(values, dtype=np.int32).astype(dtype)
    else:
        flat = np.asarray(values, dtype=dtype)
    if given == count:
        return _shaped(flat, shape, name)
    array = np.zeros(count, dtype=dtype)
    if given:
        array[:given] = flat
        array[given:] = flat[-1]
    return _shaped(array, shape, name)


def _shape(tensor_shape: Any, name: str) -> list[int]:
    if tensor_shape.unknown_rank:
        raise InvalidInput(f"input '{name}': the tensor's shape has an unknown rank")
    dims = tensor_shape.dim
    if len(dims) > MAX_RANK:
        raise InvalidInput(f"input '{name}': more than {MAX_RANK} dimensions")
    shape = [dim.size for dim in dims]
    if any(size < 0 for size in shape):
        raise InvalidInput(f"input '{name}': shape {shape} has a negative dimension")
    return shape


def _dtype_text(number: int) -> str:
    return DT_NAMES.get(number, f"DataType {number}")


def write_tensor(proto: Any, array: np.ndarray) -> None:
    """Fill an empty ``TensorProto`` with ``array`` (dtype, shape, the typed value field)."""
    if array.dtype.kind == "O":
        proto.dtype = DT_STRING
        proto.string_val.extend(
            item if isinstance(item, bytes) else str(item).encode()
            for item in array.reshape(-1).tolist()
        )
    else:
        enum, field = _BY_NAME[_tf_name(array.dtype)]
        proto.dtype = enum
        flat = array.reshape(-1)
        if field == "half_val":
            flat = flat.astype(np.float16).view(np.uint16)
        getattr(proto, field).extend(flat.tolist())
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size


_NUMPY_NAMES: Final = {np.dtype(dtype).newbyteorder("="): name for _, (name, dtype, _) in
                       _BY_ENUM.items() if name != "string"}


def _tf_name(dtype: np.dtype[Any]) -> str:
    name = _NUMPY_NAMES.get(dtype.newbyteorder("="))
    if name is None:
        raise InvalidInput(f"the model returned an unsupported dtype {dtype}")
    return name


def _shaped(array: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**62]: no elements, but too large a shape
        raise InvalidInput(f"input '{name}': cannot take shape {shape} ({exc})") from None
