"""JSON values <-> numpy arrays, shared by the v1 and v2 codecs.

Numbers go straight from the parsed JSON lists to numpy (no per-element Python loop, no
pydantic); only string tensors are walked element by element. Conversions are checked the
way TF Serving checks them: a float never silently becomes an int, a string never becomes a
number, and an integer that does not fit its dtype is an error, not a wrap-around.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import orjson

from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.floats import narrowed

# Which kinds of inferred numpy arrays may be converted into a target kind.
_ACCEPTED_KINDS = {
    "f": frozenset("fiu"),
    "i": frozenset("iu"),
    "u": frozenset("iu"),
    "b": frozenset("b"),
}

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def parse_json(body: bytes) -> Any:
    """Parse a request body; NaN and Infinity tokens are accepted as TF Serving does."""
    if not body.strip():
        raise InvalidInput("malformed JSON: the body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        # orjson is strict JSON; the stdlib parser also takes NaN/Infinity (TF Serving's
        # "JSON conformance" section). Only the error path pays for the second attempt.
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput(f"malformed JSON: {first_error}") from None


def dumps(document: Any, arrays: list[np.ndarray]) -> bytes:
    """Serialize a response; non-finite floats become NaN/Infinity tokens like TF Serving's."""
    encoded = orjson.dumps(document, option=_DUMPS_OPTIONS)
    if b"null" not in encoded:
        # orjson writes every NaN/Infinity as null: no null, nothing to rewrite (and no
        # per-array isfinite pass on the hot path).
        return encoded
    for array in arrays:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return json.dumps(_plain(document), separators=(",", ":")).encode()
    return encoded


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def to_array(value: Any, dtype: np.dtype[Any], where: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of ``dtype``, else InvalidInput."""
    if dtype.kind == "O":
        return _to_string_array(value, where)
    try:
        inferred = np.asarray(value)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"{where}: not a rectangular tensor ({exc})") from None
    if inferred.size == 0:
        return inferred.astype(dtype)
    if inferred.dtype.kind not in _ACCEPTED_KINDS.get(dtype.kind, ()):
        raise InvalidInput(
            f"{where}: expected {dtype.name} values, got {_describe(inferred)}"
        )
    if dtype.kind in "iu" and inferred.dtype != dtype:
        info = np.iinfo(dtype)
        if inferred.min() < info.min or inferred.max() > info.max:
            raise InvalidInput(f"{where}: a value does not fit in {dtype.name}")
    if dtype.kind != "f" or inferred.dtype == dtype:
        return inferred.astype(dtype, copy=False)
    # 1e300 sent for a float32 input would become inf: refuse it, as TF Serving does.
    cast = narrowed(inferred, dtype)
    if cast is None:
        raise InvalidInput(f"{where}: a value is out of range for {dtype.name}")
    return cast


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind in "US":
        return "strings"
    if kind == "O":
        return "mixed or non-numeric values"
    if kind == "b":
        return "booleans"
    if kind == "f":
        return "floating-point numbers"
    return "integers"


def _to_string_array(value: Any, where: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=object)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{where}: not a rectangular tensor ({exc})") from None
    flat = array.reshape(-1)
    for index, item in enumerate(flat):
        flat[index] = _to_bytes(item, where)
    return array


def _to_bytes(item: Any, where: str) -> bytes:
    if isinstance(item, str):
        try:
            return item.encode()
        except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
            raise InvalidInput(f"{where}: a string is not valid Unicode text") from None
    if isinstance(item, dict):
        encoded = item.get("b64")
        if len(item) == 1 and isinstance(encoded, str):
            return decode_b64(encoded, where)
    if isinstance(item, bytes):
        return item
    raise InvalidInput(f"{where}: expected strings or {{\"b64\": ...}} objects, got {item!r:.80}")


def decode_b64(text: str, where: str) -> bytes:
    """Decode standard base64 (padding optional); InvalidInput when it is not base64."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: unable to base64-decode {text[:40]!r}") from None


def strings_to_json(array: np.ndarray, as_b64: bool) -> Any:
    """Nested lists of ``str`` (or ``{"b64": ...}`` objects) for a string tensor."""

    def convert(item: Any) -> Any:
        raw = item if isinstance(item, bytes) else str(item).encode()
        if as_b64:
            return {"b64": base64.b64encode(raw).decode()}
        return raw.decode(errors="replace")

    if array.ndim == 0:
        return convert(array.item())
    flat = [convert(item) for item in array.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim > 1 else flat


def json_ready(array: np.ndarray) -> Any:
    """Something orjson serializes fast: the array itself (contiguous) or nested lists."""
    if array.dtype.kind == "O":
        return strings_to_json(array, as_b64=False)
    if array.ndim == 0:
        return array.item()
    return np.ascontiguousarray(array)
