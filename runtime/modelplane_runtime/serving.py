"""The serving state every front door shares: settings, the data plane, metrics, draining.

No web framework here: the HTTP and gRPC layers import this, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from modelplane_runtime.metrics import Metrics
from modelplane_runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from modelplane_runtime.auth import TokenStore
    from modelplane_runtime.dataplane.plane import DataPlane
    from modelplane_runtime.tracing import Tracing

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
    startup_error: str = ""
    """Why the model could not be loaded at start-up, when the cause was the model's."""
    tracing: Tracing | None = None
    """OpenTelemetry tracing (tracing.py); ``None`` when off, which is the default."""

    @property
    def ready(self) -> bool:
        """Ready to take inference requests: loaded and not draining."""
        return not self.draining and self.dataplane.ready

    def metric_model(self, name: str) -> str:
        """The ``model`` label for a request naming ``name``."""
        return name if name in self.served else UNKNOWN_MODEL
