"""The Open Inference Protocol's gRPC tensors (``ModelInferRequest``/``Response``) <-> numpy.

Pure functions over message objects the caller owns; no protobuf import. A request's
inputs carry their values either in the typed ``contents`` of each input or, for all of
them, in ``raw_input_contents`` (one little-endian blob per input, BYTES elements each
after a 4-byte length): Triton's rules, which tritonclient follows. The counts must match
the shape exactly (no repeating, unlike TensorProto), and FP16 travels raw only (the
protocol has no typed field for it).

Outputs go back in the form the request used: raw when its inputs were raw (as Triton
always answers; tritonclient reads both), typed ``contents`` otherwise, so a hand-written
client that sent typed values reads typed values. FP16 outputs force the raw form.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from modelplane_runtime.codecs.v2 import pack_bytes, unpack_bytes
from modelplane_runtime.errors import InvalidInput, PayloadTooLarge
from modelplane_runtime.signature import DTYPES, V2_TO_TF

MAX_RANK: Final = 32
"""Most dimensions a tensor may declare (as the v2 JSON codec allows)."""

# v2 datatype -> the InferTensorContents field holding its values (FP16: raw only).
CONTENTS: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The wire type of each typed field, before narrowing to the datatype.
_WIRE: Final[dict[str, np.dtype[Any]]] = {
    "int_contents": np.dtype(np.int32),
    "uint_contents": np.dtype(np.uint32),
}
_DATATYPE_BY_DTYPE: Final[dict[np.dtype[Any], str]] = {
    np_dtype: v2 for tf, (np_dtype, v2) in DTYPES.items() if tf != "string"
}


def read_inputs(request: Any, max_bytes: int) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays of their declared datatypes."""
    raws = request.raw_input_contents
    if raws and len(raws) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raws)} entries for {len(request.inputs)} inputs: "
            "use it for every input or for none"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f"inputs[{index}] needs a name")
        if name in inputs:
            raise InvalidInput(f"input '{name}' is given twice")
        raw = raws[index] if raws else None
        inputs[name] = _read(tensor, raw, max_bytes)
    if not inputs:
        raise InvalidInput("the request has no inputs")
    return inputs


def _read(tensor: Any, raw: bytes | None, max_bytes: int) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    tf_dtype = V2_TO_TF.get(datatype)
    if tf_dtype is None:
        raise InvalidInput(
            f"input '{name}': unknown datatype {datatype[:32]!r}; expected one of "
            + ", ".join(V2_TO_TF)
        )
    shape = list(tensor.shape)
    if len(shape) > MAX_RANK or any(size < 0 for size in shape):
        raise InvalidInput(
            f"input '{name}': shape {shape[:MAX_RANK + 1]} must have at most {MAX_RANK} "
            "non-negative dimensions"
        )
    count = math.prod(shape)
    dtype = DTYPES[tf_dtype][0]
    width = 8 if datatype == "BYTES" else dtype.itemsize
    if count * width > max_bytes:
        raise PayloadTooLarge(
            f"input '{name}': shape {shape} of {datatype} is over the limit of {max_bytes} bytes"
        )
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidInput(f"input '{name}' has both contents and raw_input_contents")
        if datatype == "BYTES":
            return _shaped(unpack_bytes(raw, count, name), shape, name)
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input '{name}': shape {shape} of {datatype} needs {count * dtype.itemsize} "
                f"bytes of raw_input_contents, got {len(raw)}"
            )
        return _shaped(np.frombuffer(raw, dtype=dtype.newbyteorder("<")), shape, name)
    field = CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': {datatype} values travel in raw_input_contents only")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': shape {shape} needs {count} values, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return _shaped(array, shape, name)
    wire = _WIRE.get(field)
    if wire is None or wire == dtype:
        return _shaped(np.asarray(values, dtype=dtype), shape, name)
    wide = np.asarray(values, dtype=wire)
    narrow = wide.astype(dtype)
    if not np.array_equal(narrow, wide):
        raise InvalidInput(f"input '{name}': a value is out of range for {datatype}")
    return _shaped(narrow, shape, name)


def parameter(parameters: Any, key: str) -> str | None:
    """A string parameter of the request (``signature_name``), or None when absent/empty."""
    if key not in parameters:
        return None
    value = parameters[key]
    if value.WhichOneof("parameter_choice") != "string_param":
        raise InvalidInput(f"parameter '{key}' must be a string")
    return value.string_param or None


def datatype(array: np.ndarray) -> str:
    """The v2 datatype of an output array."""
    if array.dtype.kind == "O":
        return "BYTES"
    known = _DATATYPE_BY_DTYPE.get(array.dtype.newbyteorder("="))
    if known is None:
        raise InvalidInput(f"the model returned an unsupported dtype {array.dtype}")
    return known


def write_outputs(
    response: Any, outputs: dict[str, np.ndarray], names: list[str], raw: bool
) -> None:
    """Add the outputs called ``names`` to ``response`` (raw, or in typed contents)."""
    chosen = [(name, outputs[name], datatype(outputs[name])) for name in names]
    raw = raw or any(kind == "FP16" for _, _, kind in chosen)
    for name, array, kind in chosen:
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = kind
        tensor.shape.extend(array.shape)
        if raw:
            if kind == "BYTES":
                blob = pack_bytes(array)
            else:
                blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            response.raw_output_contents.append(blob)
        elif kind == "BYTES":
            tensor.contents.bytes_contents.extend(
                item if isinstance(item, bytes) else str(item).encode()
                for item in array.reshape(-1).tolist()
            )
        else:
            getattr(tensor.contents, CONTENTS[kind]).extend(array.reshape(-1).tolist())


def _shaped(array: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**62]: no elements, but too large a shape
        raise InvalidInput(f"input '{name}': cannot take shape {shape} ({exc})") from None
