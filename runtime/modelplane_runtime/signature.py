"""What a served model accepts and returns: tensor specs, signatures, and dtype names.

Shared by the data plane (validation, batching) and the protocol codecs (v1, v2). Plain
data, no TensorFlow: dtypes are TF's names (``float32``, ``string``), shapes use -1 for a
dimension of unknown size (the batch dimension is normally -1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import numpy as np

from modelplane_runtime.errors import InvalidInput


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature."""

    name: str
    dtype: str
    shape: tuple[int, ...]


PREDICT_METHOD: Final = "tensorflow/serving/predict"
CLASSIFY_METHOD: Final = "tensorflow/serving/classify"
REGRESS_METHOD: Final = "tensorflow/serving/regress"
"""SignatureDef method names (TF Serving's signature_constants)."""


@dataclass(frozen=True)
class SignatureSpec:
    """A serving signature: named inputs and outputs, in a stable order."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    method_name: str = PREDICT_METHOD

    def input(self, name: str) -> TensorSpec | None:
        """The input called ``name``, or None."""
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        """The output called ``name``, or None."""
        return self._outputs_by_name.get(name)

    # Looked up per request (v2 checks every input by name): a dict, built on first use.
    @cached_property
    def _inputs_by_name(self) -> dict[str, TensorSpec]:
        return {spec.name: spec for spec in self.inputs}

    @cached_property
    def _outputs_by_name(self) -> dict[str, TensorSpec]:
        return {spec.name: spec for spec in self.outputs}


@dataclass(frozen=True)
class VersionStatus:
    """State of one model version, in TF Serving's vocabulary (START, LOADING, AVAILABLE, END)."""

    version: int
    state: str
    error: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)


# TF dtype name -> (numpy dtype, Open Inference Protocol datatype). Strings travel as numpy
# object arrays of ``bytes``; v2 calls them BYTES.
DTYPES: Final[dict[str, tuple[np.dtype[np.generic], str]]] = {
    "bool": (np.dtype(np.bool_), "BOOL"),
    "uint8": (np.dtype(np.uint8), "UINT8"),
    "uint16": (np.dtype(np.uint16), "UINT16"),
    "uint32": (np.dtype(np.uint32), "UINT32"),
    "uint64": (np.dtype(np.uint64), "UINT64"),
    "int8": (np.dtype(np.int8), "INT8"),
    "int16": (np.dtype(np.int16), "INT16"),
    "int32": (np.dtype(np.int32), "INT32"),
    "int64": (np.dtype(np.int64), "INT64"),
    "float16": (np.dtype(np.float16), "FP16"),
    "float32": (np.dtype(np.float32), "FP32"),
    "float64": (np.dtype(np.float64), "FP64"),
    "string": (np.dtype(object), "BYTES"),
}

V2_TO_TF: Final[dict[str, str]] = {v2: tf for tf, (_, v2) in DTYPES.items()}


def numpy_dtype(tf_dtype: str) -> np.dtype[np.generic]:
    """The numpy dtype that carries a TF dtype (``string`` -> object)."""
    return DTYPES[tf_dtype][0]


def v2_datatype(tf_dtype: str) -> str:
    """The Open Inference Protocol datatype name of a TF dtype."""
    return DTYPES[tf_dtype][1]


def pick_signature(
    signatures: Mapping[str, SignatureSpec], wanted: str | None, default: str, model: str,
    version: int,
) -> SignatureSpec:
    """The signature a request names; ``None`` or ``""`` means ``default`` (or the only one)."""
    name = wanted or default
    if name in signatures:
        return signatures[name]
    if not wanted and len(signatures) == 1:
        return next(iter(signatures.values()))  # a model with one, differently named
    known = ", ".join(sorted(signatures))
    raise InvalidInput(
        f"signature '{name}' not found in model '{model}' version {version} "
        f"(signatures: {known})"
    )


@dataclass(frozen=True)
class SignatureChoice:
    """``pick_signature`` over one version's signatures, as a picklable callable (for
    decoding in another process)."""

    signatures: dict[str, SignatureSpec]
    default: str
    model: str
    version: int

    def __call__(self, wanted: str | None) -> SignatureSpec:
        """The signature ``wanted`` names (see pick_signature)."""
        return pick_signature(self.signatures, wanted, self.default, self.model, self.version)
