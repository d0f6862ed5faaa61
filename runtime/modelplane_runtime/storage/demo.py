"""``demo://``: the bundled demo model, built on the spot (no storage, works on fresh kind)."""

from __future__ import annotations

from pathlib import Path

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.uri import DemoURI


def build_demo(uri: DemoURI, work: Path) -> Path:
    """Export demo model ``uri.name`` as a versioned repository (``<work>/model/1/``)."""
    try:
        # Imported here: it pulls in TensorFlow, which `modelplane fetch` otherwise never needs.
        from modelplane_runtime.demo_model import build_demo_model
    except ImportError as exc:
        raise StorageError(f"demo://{uri.name} needs TensorFlow: {exc}") from None
    return build_demo_model(work / "model")
