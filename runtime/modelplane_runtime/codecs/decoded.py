"""A request body decoded for the model: what to run, and how to answer with it.

What every front door hands the data plane, and picklable (its ``encode`` is a partial of a
module-level function), so a large body can be decoded in another process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from modelplane_runtime.signature import SignatureSpec

Outputs = dict[str, "np.ndarray"]
SignatureLookup = Callable[[str | None], "SignatureSpec"]
"""The signature a request names (None: the default), or InvalidInput."""


class Decoded(NamedTuple):
    """A request body decoded for the model: what to run, and how to answer with it."""

    signature: str
    """The signature the request names (the server's default when it names none)."""
    inputs: dict[str, np.ndarray]
    strict_dtypes: bool
    """v2 requests declare datatypes, which must match; v1 values are cast as TF Serving does."""
    encode: Callable[[Outputs], tuple[bytes, int | None]]
    """The response body and, for v2 binary outputs, the length of its JSON header."""
