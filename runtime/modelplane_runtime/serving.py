"""The serving state every front door shares: settings, the data plane, metrics, draining.

Also what a front door hands the data plane for one inference request (``Decoded``), so
the HTTP routes and the gRPC services stay thin adapters over the same data plane and
batcher. No web framework here: the HTTP and gRPC layers import this, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from modelplane_runtime.metrics import Metrics
from modelplane_runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    import numpy as np

    from modelplane_runtime.auth import TokenStore
    from modelplane_runtime.dataplane.plane import DataPlane

UNKNOWN_MODEL: Final = "_unknown"
"""Metrics label for requests naming a model that is not served (keeps label sets bounded)."""


@dataclass
class Runtime:
    """One server's shared state; front doors receive it explicitly."""

    settings: RuntimeSettings
    dataplane: DataPlane
    metrics: Metrics
    draining: bool = False
    """Set on SIGTERM: readiness turns false and new requests are refused."""
    served: frozenset[str] = field(default_factory=frozenset)
    """Names of the served models, known once the data plane has loaded."""
    auth: TokenStore | None = None
    """Accepted bearer tokens; ``None`` serves without authentication."""

    @property
    def ready(self) -> bool:
        """Ready to take inference requests: loaded and not draining."""
        return not self.draining and self.dataplane.ready

    def metric_model(self, name: str) -> str:
        """The ``model`` label for a request naming ``name``."""
        return name if name in self.served else UNKNOWN_MODEL


Outputs = dict[str, "np.ndarray"]


class Decoded(NamedTuple):
    """A request body decoded for the model: what to run, and how to answer with it."""

    signature: str
    """The signature the request names (the server's default when it names none)."""
    inputs: dict[str, np.ndarray]
    strict_dtypes: bool
    """v2 requests declare datatypes, which must match; v1 values are cast as TF Serving does."""
    encode: Callable[[Outputs], tuple[bytes, int | None]]
    """The response body and, for v2 binary outputs, the length of its JSON header."""
