"""TF Serving's REST API (v1) bodies <-> numpy tensors, answering as TF Serving itself does.

Follows tensorflow_serving/util/json_tensor.cc: row format (``instances``: a plain list for
one input, a list of objects for named inputs) answers ``predictions``; columnar format
(``inputs``: a value, or an object of named inputs) answers ``outputs``; a single output is
unwrapped; string outputs whose name ends in ``_bytes`` are written as ``{"b64": ...}``.
Pure functions: no HTTP, no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson

from modelplane_runtime.codecs.decoded import Decoded, Outputs, SignatureLookup
from modelplane_runtime.codecs.tensors import (
    dumps,
    json_ready,
    parse_json,
    strings_to_json,
    to_array,
)
from modelplane_runtime.errors import InvalidInput, too_many_rows
from modelplane_runtime.signature import SignatureSpec, TensorSpec, VersionStatus, numpy_dtype

_BYTES_SUFFIX = "_bytes"

# TF's DataType enum names, as GetModelMetadata prints them.
_TF_ENUM = {
    "bool": "DT_BOOL",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "string": "DT_STRING",
}


@dataclass(frozen=True)
class PredictBody:
    """A parsed ``:predict`` body, before its tensors are decoded against a signature."""

    signature_name: str | None
    columnar: bool
    payload: Any


def parse_predict(body: bytes) -> PredictBody:
    """Parse a ``:predict`` body; the tensors are decoded later, once the signature is known."""
    if not body:
        raise InvalidInput("malformed JSON: the body is empty")
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidInput("the request body must be a JSON object")
    signature_name = document.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise InvalidInput("'signature_name' key must be a string value")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidInput("expecting only one of 'inputs' or 'instances' keys to exist")
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise InvalidInput("expecting 'instances' to be a list")
        if not instances:
            raise InvalidInput("no values in 'instances' list")
        return PredictBody(signature_name or None, False, instances)
    if has_inputs:
        return PredictBody(signature_name or None, True, document["inputs"])
    raise InvalidInput("missing 'inputs' or 'instances' key")


def decode_inputs(body: PredictBody, spec: SignatureSpec) -> dict[str, np.ndarray]:
    """The request's tensors, converted to the signature's dtypes."""
    if not spec.inputs:
        raise InvalidInput(f"signature {spec.name!r} has no inputs")
    if body.columnar:
        return _decode_columnar(body.payload, spec)
    return _decode_rows(body.payload, spec)


def _is_named_object(value: Any) -> bool:
    # A {"b64": "..."} object is a value, not a map of input names (json_tensor.cc).
    return isinstance(value, dict) and not (
        len(value) == 1 and isinstance(value.get("b64"), str)
    )


def _decode_rows(instances: list[Any], spec: SignatureSpec) -> dict[str, np.ndarray]:
    if not _is_named_object(instances[0]):
        if len(spec.inputs) > 1:
            raise InvalidInput(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors are required: {', '.join(t.name for t in spec.inputs)}"
            )
        only = spec.inputs[0]
        try:
            return {only.name: to_array(instances, numpy_dtype(only.dtype), "instances")}
        except InvalidInput:
            # An object among plain rows never converts, so only a failed conversion pays
            # for the per-row scan that names the real problem.
            if any(_is_named_object(item) for item in instances):
                raise InvalidInput("instances mixes plain values and objects") from None
            raise
    expected = {tensor.name for tensor in spec.inputs}
    for index, item in enumerate(instances):
        if not _is_named_object(item):
            raise InvalidInput(f"expecting object but got list at item {index} of instances")
        if item.keys() != expected:
            unknown = sorted(set(item) - expected)
            missing = sorted(expected - set(item))
            detail = f"unknown input {unknown[0]!r}" if unknown else f"missing {missing[0]!r}"
            raise InvalidInput(
                f"item {index} of instances: {detail}; expected keys: {', '.join(sorted(expected))}"
            )
    return {
        tensor.name: to_array(
            [item[tensor.name] for item in instances],
            numpy_dtype(tensor.dtype),
            f"instances[].{tensor.name}",
        )
        for tensor in spec.inputs
    }


def _decode_columnar(inputs: Any, spec: SignatureSpec) -> dict[str, np.ndarray]:
    if not _is_named_object(inputs):
        if len(spec.inputs) > 1:
            raise InvalidInput(
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors are required: {', '.join(t.name for t in spec.inputs)}"
            )
        only = spec.inputs[0]
        return {only.name: to_array(inputs, numpy_dtype(only.dtype), "inputs")}
    unknown = [name for name in inputs if spec.input(name) is None]
    if unknown:
        raise InvalidInput(
            f"unknown input {unknown[0]!r}; the signature takes: "
            + ", ".join(t.name for t in spec.inputs)
        )
    arrays = {}
    for tensor in spec.inputs:
        if tensor.name not in inputs:
            raise InvalidInput(f"missing named input: {tensor.name} in 'inputs' object")
        arrays[tensor.name] = to_array(
            inputs[tensor.name], numpy_dtype(tensor.dtype), f"inputs.{tensor.name}"
        )
    return arrays


def _column(name: str, array: np.ndarray) -> Any:
    if array.dtype.kind == "O":
        return strings_to_json(array, as_b64=name.endswith(_BYTES_SUFFIX))
    return json_ready(array)


def encode_predictions(outputs: dict[str, np.ndarray], columnar: bool) -> bytes:
    """The ``predictions`` (row) or ``outputs`` (columnar) response body."""
    if not outputs:
        raise InvalidInput("cannot convert an empty tensor map to JSON")
    arrays = list(outputs.values())
    if columnar:
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return dumps({"outputs": _column(name, array)}, arrays)
        return dumps({"outputs": {n: _column(n, a) for n, a in outputs.items()}}, arrays)
    batch = _batch_size(outputs)
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return dumps({"predictions": _column(name, array)}, arrays)
    columns = {name: _column(name, array) for name, array in outputs.items()}
    rows = [{name: column[i] for name, column in columns.items()} for i in range(batch)]
    return dumps({"predictions": rows}, arrays)


def _batch_size(outputs: dict[str, np.ndarray]) -> int:
    batch = -1
    for name, array in outputs.items():
        if array.ndim == 0:
            raise InvalidInput(
                f"output {name} has no batch dimension; use the columnar 'inputs' format"
            )
        if batch not in (-1, array.shape[0]):
            raise InvalidInput(
                f"output {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}"
                "; use the columnar 'inputs' format"
            )
        batch = array.shape[0]
    return batch


def model_status(versions: Sequence[VersionStatus]) -> bytes:
    """GetModelStatusResponse as JSON (versions are strings, as proto3 JSON prints int64)."""
    return orjson.dumps({"model_version_status": [_status(v) for v in versions]})


def _status(version: VersionStatus) -> dict[str, Any]:
    return {
        "version": str(version.version),
        "state": version.state,
        "status": {
            "error_code": "UNKNOWN" if version.error else "OK",
            "error_message": version.error,
        },
    }


def model_metadata(name: str, version: int, signatures: dict[str, SignatureSpec]) -> bytes:
    """GetModelMetadataResponse as JSON: ``model_spec`` and ``metadata.signature_def``."""
    return orjson.dumps(
        {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        key: _signature_def(spec) for key, spec in signatures.items()
                    }
                }
            },
        }
    )


def _signature_def(spec: SignatureSpec) -> dict[str, Any]:
    return {
        "inputs": {tensor.name: _tensor_info(tensor) for tensor in spec.inputs},
        "outputs": {tensor.name: _tensor_info(tensor) for tensor in spec.outputs},
        "method_name": spec.method_name,
    }


def _tensor_info(tensor: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _TF_ENUM.get(tensor.dtype, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in tensor.shape],
            "unknown_rank": False,
        },
        "name": tensor.name,
    }


def decode_request(body: bytes, signatures: SignatureLookup, max_rows: int) -> Decoded:
    """A ``:predict`` body decoded for the signature it names (4xx errors raise here)."""
    parsed = parse_predict(body)
    if not parsed.columnar and len(parsed.payload) > max_rows:
        # Refused before a million tiny rows become arrays (the row form's count is known).
        raise too_many_rows(len(parsed.payload), max_rows)
    spec = signatures(parsed.signature_name)
    inputs = decode_inputs(parsed, spec)
    return Decoded(spec.name, inputs, False, partial(_encode, parsed.columnar))


def _encode(columnar: bool, outputs: Outputs) -> tuple[bytes, None]:
    return encode_predictions(outputs, columnar), None
