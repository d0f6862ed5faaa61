"""The base of the ModelDeployment's pydantic models, and field types they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_NAME = 256
"""Longest model input/output or signature name."""
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class ResourceModel(BaseModel):
    """Base of every spec/status model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
    )
