"""Open Inference Protocol (KServe v2) bodies <-> numpy tensors, with the binary extension.

JSON tensors carry ``name``, ``shape``, ``datatype`` and flat or nested ``data``. With the
binary tensor data extension (Triton's ``binary_tensor_data``) the JSON header is followed by
raw tensor bytes: ``Inference-Header-Content-Length`` says where the JSON ends, each binary
tensor declares ``parameters.binary_data_size``, and BYTES elements are each prefixed by a
4-byte little-endian length. Pure functions: no HTTP, no model.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, TypeGuard

import numpy as np
import orjson

from modelplane_runtime.codecs.decoded import Decoded, SignatureLookup
from modelplane_runtime.codecs.tensors import dumps, json_ready, parse_json, to_array
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.signature import DTYPES, V2_TO_TF, SignatureSpec, v2_datatype

SERVER_NAME: Final = "modelplane"
"""The server's name in the v2 server metadata (HTTP and gRPC)."""
PLATFORM: Final = "tensorflow"
"""The model platform in the v2 model metadata (HTTP and gRPC)."""

HEADER_LENGTH: Final = "inference-header-content-length"
"""Request and response header giving the JSON part's length when binary data follows."""

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``: which output, and whether it goes back binary."""

    name: str
    binary: bool | None


@dataclass
class InferRequest:
    """A decoded ``/infer`` request."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    @property
    def binary_output(self) -> bool:
        """The request-level default for outputs that do not say (``binary_data_output``)."""
        return bool(self.parameters.get("binary_data_output", False))

    @property
    def signature_name(self) -> str | None:
        """A signature named in ``parameters.signature_name`` (a Modelplane extension)."""
        name = self.parameters.get("signature_name")
        return name if isinstance(name, str) and name else None


def decode_infer(body: bytes, header_length: int | None = None) -> InferRequest:
    """Decode an ``/infer`` body (JSON, or JSON header + binary tensors)."""
    if header_length is None:
        header, tail = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"of {len(body)} bytes"
            )
        header, tail = body[:header_length], body[header_length:]
    if not header:
        raise InvalidInput("malformed JSON: the body is empty")
    document = parse_json(header)
    if not isinstance(document, dict):
        raise InvalidInput("the request body must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not _is_text(request_id):
        raise InvalidInput("'id' must be a string of valid Unicode text")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    # JSON booleans parse as Python bools, which numpy would quietly take as 1 and 0 in a
    # number tensor; only a body that has the tokens pays for looking for them.
    booleans = b"true" in header or b"false" in header
    for index, raw in enumerate(raw_inputs):
        name, array, used = _decode_input(raw, index, tail, offset, booleans)
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(tail):
        raise InvalidInput(
            f"the body has {len(tail)} bytes of binary data but the inputs declare {offset}"
        )
    return InferRequest(
        inputs=inputs,
        id=request_id,
        parameters=parameters,
        outputs=_requested_outputs(document.get("outputs")),
    )


def _decode_input(
    raw: Any, index: int, tail: bytes, offset: int, booleans: bool
) -> tuple[str, np.ndarray, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] needs a 'name'")
    datatype = raw.get("datatype")
    tf_dtype = V2_TO_TF.get(datatype) if isinstance(datatype, str) else None
    if tf_dtype is None:
        raise InvalidInput(
            f"input {name!r}: unknown datatype {datatype!r}; expected one of "
            + ", ".join(V2_TO_TF)
        )
    shape = raw.get("shape")
    if not _is_shape(shape):
        raise InvalidInput(
            f"input {name!r}: 'shape' must be a list of at most {MAX_RANK} integers "
            f"from 0 to {MAX_DIM}"
        )
    count = math.prod(shape)
    dtype = DTYPES[tf_dtype][0]
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"input {name!r}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(tail):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size!r} does not fit the binary data "
                f"({len(tail) - offset} bytes left)"
            )
        if "data" in raw:
            raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size")
        chunk = tail[offset : offset + size]
        if tf_dtype == "string":
            array = unpack_bytes(chunk, count, name)
        else:
            if size != count * dtype.itemsize:
                raise InvalidInput(
                    f"input {name!r}: shape {shape} needs {count * dtype.itemsize} bytes of "
                    f"{datatype}, got {size}"
                )
            array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        return name, _reshaped(array, shape, name), size
    if "data" not in raw:
        raise InvalidInput(f"input {name!r} has no 'data'")
    data = raw["data"]
    if booleans and tf_dtype != "bool" and _holds_bool(data):
        raise InvalidInput(f"input {name!r}: {datatype} data holds true or false")
    array = to_array(data, dtype, f"input {name!r}")
    if array.size != count:
        raise InvalidInput(
            f"input {name!r}: shape {shape} needs {count} elements, 'data' has {array.size}"
        )
    return name, _reshaped(array, shape, name), 0


MAX_RANK: Final = 32
"""Most dimensions a tensor may declare (numpy's limit is 64; TF Serving models use few)."""
MAX_DIM: Final = 2**31 - 1
"""Largest size of one dimension (a request's rows are further bounded by the settings)."""


def _reshaped(array: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**30, 2**30]: zero elements, too large a shape
        raise InvalidInput(f"input {name!r}: cannot take shape {shape} ({exc})") from None


def _holds_bool(value: Any) -> bool:
    """True if a (nested) list holds a JSON boolean (a Python bool after parsing).

    A flat list is checked by C loops (``map(type, ...)``): ~15 ns an element.
    """
    if not isinstance(value, list):
        return type(value) is bool
    types = set(map(type, value))
    if bool in types:
        return True
    return list in types and any(_holds_bool(item) for item in value if type(item) is list)


def _is_text(value: Any) -> bool:
    """A str that encodes as UTF-8 (a lone surrogate from "\\ud800" does not)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    """A list of at most MAX_RANK integers in 0..MAX_DIM (one pass; a bool is no integer)."""
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        return False
    for dim in shape:  # noqa: SIM110 (a loop: all() with a generator is ~3x slower here)
        if type(dim) is not int or dim < 0 or dim > MAX_DIM:
            return False
    return True


def unpack_bytes(chunk: bytes, count: int, name: str) -> np.ndarray:
    """BYTES elements, each after its 4-byte little-endian length (the binary extension's
    and the gRPC ``raw_input_contents`` layout), as a 1-D object array of ``count``."""
    items: list[bytes] = []
    position, end = 0, len(chunk)
    view = memoryview(chunk)
    while position < end:
        if position + 4 > end:
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(chunk, position)
        position += 4
        if position + length > end:
            raise InvalidInput(f"input {name!r}: BYTES element overruns the binary data")
        items.append(bytes(view[position : position + length]))
        position += length
    if len(items) != count:
        raise InvalidInput(f"input {name!r}: shape needs {count} BYTES elements, got {len(items)}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def pack_bytes(array: np.ndarray) -> bytes:
    """A BYTES tensor's elements, each after its 4-byte little-endian length."""
    parts: list[bytes] = []
    for item in array.reshape(-1).tolist():
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    requested = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be an object with a 'name'")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput(f"outputs[{index}].parameters must be an object")
        binary = parameters.get("binary_data")
        requested.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return requested


def check_inputs(request: InferRequest, spec: SignatureSpec) -> None:
    """Input names and datatypes must be the signature's (as Triton checks them)."""
    for name, array in request.inputs.items():
        tensor = spec.input(name)
        if tensor is None:
            raise InvalidInput(
                f"unknown input {name!r}; the model takes: "
                + ", ".join(t.name for t in spec.inputs)
            )
        given = _datatype_of(array)
        if given != v2_datatype(tensor.dtype):
            raise InvalidInput(
                f"input {name!r}: datatype {given} does not match the model's "
                f"{v2_datatype(tensor.dtype)}"
            )
    missing = [t.name for t in spec.inputs if t.name not in request.inputs]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}")
    for output in request.outputs or ():
        if spec.output(output.name) is None:
            raise InvalidInput(
                f"unknown output {output.name!r}; the model returns: "
                + ", ".join(t.name for t in spec.outputs)
            )


# Keyed by numpy dtype: ``dtype.name`` is computed in Python by numpy (~4 us per call),
# which made this lookup the costliest step of decoding a small v2 request.
_DATATYPE_BY_DTYPE: Final[dict[np.dtype[Any], str]] = {
    np_dtype: v2 for tf, (np_dtype, v2) in DTYPES.items() if tf != "string"
}


def _datatype_of(array: np.ndarray) -> str:
    dtype = array.dtype
    known = _DATATYPE_BY_DTYPE.get(dtype)
    if known is not None:
        return known
    if dtype.kind == "O":
        return "BYTES"
    return v2_datatype(dtype.name)  # e.g. a big-endian dtype: same name, other key


def encode_infer(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response body and, when binary tensors follow the JSON, the JSON's length."""
    if request.outputs is None:
        chosen = [(name, request.binary_output) for name in outputs]
    else:
        chosen = [
            (o.name, request.binary_output if o.binary is None else o.binary)
            for o in request.outputs
        ]
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    arrays: list[np.ndarray] = []
    for name, binary in chosen:
        if name not in outputs:
            raise InvalidInput(f"unknown output {name!r}")
        array = outputs[name]
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": _datatype_of(array),
            "shape": list(array.shape),
        }
        if binary:
            blob = (
                pack_bytes(array)
                if array.dtype.kind == "O"
                else np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            )
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = json_ready(array.reshape(-1))
            arrays.append(array)
        tensors.append(tensor)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = tensors
    header = dumps(document, arrays)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def model_metadata(
    name: str, versions: list[str], spec: SignatureSpec, platform: str
) -> bytes:
    """The model metadata response: name, versions, platform, inputs and outputs."""
    return orjson.dumps(
        {
            "name": name,
            "versions": versions,
            "platform": platform,
            "inputs": [_metadata_tensor(t.name, t.dtype, t.shape) for t in spec.inputs],
            "outputs": [_metadata_tensor(t.name, t.dtype, t.shape) for t in spec.outputs],
        }
    )


def _metadata_tensor(name: str, dtype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": name, "datatype": v2_datatype(dtype), "shape": list(shape)}


def decode_request(
    body: bytes, header_length: int | None, signatures: SignatureLookup, name: str,
    version: int,
) -> Decoded:
    """An ``/infer`` body decoded and checked for the signature it names (4xx raise here)."""
    decoded = decode_infer(body, header_length)
    spec = signatures(decoded.signature_name)
    check_inputs(decoded, spec)
    # The answer needs the request's id, parameters and outputs, not its inputs again.
    answer = replace(decoded, inputs={})
    encode = partial(encode_infer, name, str(version), answer)
    return Decoded(spec.name, decoded.inputs, True, encode)
