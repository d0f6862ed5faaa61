"""Pre- and postprocessing in the spec: the runtime's modelplane.yaml, as the CRD takes it.

The runtime keeps its own copy of this schema (modelplane_runtime.dataplane.processing);
tests/unit/operator/test_processing_drift.py fails when the two drift."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from modelplane_operator.resource import Name, ResourceModel

DType = Literal[
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "string",
]
"""TensorFlow dtype names the runtime accepts (modelplane_runtime.signature.DTYPES)."""


class InputProcessing(ResourceModel):
    """Preprocessing of one model input (the runtime's modelplane.yaml ``inputs`` entry)."""

    dtype: DType | None = None
    """The dtype clients send; cast to the model input's dtype."""
    shape: list[Annotated[int, Field(ge=-1, le=2**31 - 1)]] | None = Field(default=None,
                                                                          max_length=32)
    """The non-batch shape clients send (-1 at most once); reshaped to the model's."""
    mean: list[float] | None = Field(default=None, max_length=4096)
    """Subtracted after casting, broadcast over the trailing axes ([0.5] for a scalar)."""
    std: list[float] | None = Field(default=None, max_length=4096)
    """Divided by after subtracting the mean; never zero."""

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if value.count(-1) > 1:
                raise ValueError("-1 may appear at most once")
            if any(d == 0 or d < -1 for d in value):
                raise ValueError("dimensions must be positive, or -1 once")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v == 0 for v in value):
            raise ValueError("standard deviations must not be zero")
        return value


class OutputProcessing(ResourceModel):
    """Postprocessing of one model output (the runtime's modelplane.yaml ``outputs`` entry)."""

    labels: list[Name] | None = Field(default=None, min_length=1, max_length=10_000)
    """Class names, one per class (the output's last dimension); adds <output>_label."""
    top_k: int | None = Field(default=None, ge=1, le=10_000)
    """Add the k best classes per row (<output>_top_k_*)."""
    threshold: float | None = None
    """For a single-score output: class 1 at or above this score, else 0."""
    keep: bool = True
    """Keep the raw output beside the derived ones."""
