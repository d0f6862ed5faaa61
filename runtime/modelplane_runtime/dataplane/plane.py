"""The data plane: the one object the front ends (HTTP v1 and v2, gRPC) talk to.

Versions are loaded, polled for and retired by loading.py (the base class); here are the
queries (versions, labels, signatures) and batched prediction, answered in plain Python
values and :mod:`~modelplane_runtime.errors` exceptions: nothing here knows about HTTP or
gRPC. Importing it does not import TensorFlow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np

from modelplane_runtime import errors
from modelplane_runtime.dataplane.batching import Batcher, Waiter
from modelplane_runtime.dataplane.loading import InferenceObserver, VersionLoading
from modelplane_runtime.dataplane.validation import validate_inputs
from modelplane_runtime.dataplane.versions import AVAILABLE, ServedVersion
from modelplane_runtime.signature import (
    SignatureChoice,
    SignatureSpec,
    VersionStatus,
    pick_signature,
)

__all__ = ["DataPlane", "InferenceObserver"]


class DataPlane(VersionLoading):
    """Model versions, their signatures, and batched prediction."""

    def devices(self) -> list[str]:
        """Where TensorFlow placed the available versions (``CPU:0``, ``GPU:0``), sorted."""
        return sorted({
            device
            for version in self._versions.values()
            if version.state == AVAILABLE and version.model is not None
            for device in version.model.devices
        })

    def model_names(self) -> list[str]:
        """Names of the served models (one per process)."""
        return [self._name]

    def versions(self, name: str) -> list[VersionStatus]:
        """Every version's state (loaded, loading, retiring, or failed), newest first."""
        self._check_name(name)
        return [
            VersionStatus(v.number, v.state, v.error, self._labels_of(v.number))
            for v in sorted(self._versions.values(), key=lambda v: -v.number)
        ]

    def _labels_of(self, version: int) -> tuple[str, ...]:
        return tuple(sorted(label for label, v in self._labels.items() if v == version))

    def labels(self, name: str) -> dict[str, int]:
        """Version labels of a model (label -> version)."""
        self._check_name(name)
        return dict(self._labels)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> int:
        """The version a request means: given, labelled, or the newest AVAILABLE one."""
        self._check_name(name)
        if label is not None:
            if label not in self._labels:
                known = ", ".join(sorted(self._labels)) or "none"
                raise errors.ModelNotFound(
                    f"model '{name}' has no version label '{label}' (labels: {known})"
                )
            version = self._labels[label]
        if version is None:
            if self._newest is None:
                raise errors.ModelNotReady(f"model '{name}' has no version available yet")
            return self._newest
        self._available(name, version)
        return version

    def signatures(self, name: str, version: int) -> dict[str, SignatureSpec]:
        """The signatures clients see (processing applied), by name."""
        return dict(self._available(name, version).signatures)

    def signature(
        self, name: str, version: int, signature_name: str | None = None
    ) -> SignatureSpec:
        """One signature; ``None`` or ``""`` means the default (``settings.signature_name``)."""
        signatures = self._available(name, version).signatures
        return pick_signature(
            signatures, signature_name, self._settings.signature_name, name, version
        )

    def signature_choice(self, name: str, version: int) -> SignatureChoice:
        """``signature`` for one version, as a picklable callable (see SignatureChoice)."""
        signatures = self._available(name, version).signatures
        return SignatureChoice(dict(signatures), self._settings.signature_name, name, version)

    async def predict(
        self,
        name: str,
        version: int,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        *,
        strict_dtypes: bool = False,
    ) -> dict[str, np.ndarray]:
        """Validate, process and run one request (batched with others); its outputs only."""
        return await self.submit(
            name, version, signature_name, inputs, strict_dtypes=strict_dtypes
        )

    def submit(
        self,
        name: str,
        version: int,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        *,
        strict_dtypes: bool = False,
    ) -> asyncio.Future[dict[str, np.ndarray]]:
        """``predict`` without the await: validation errors raise here, the outputs arrive
        in the future (call it on the event loop)."""
        batcher, signature, arrays, rows, mergeable = self._checked(
            name, version, signature_name, inputs, strict_dtypes
        )
        return batcher.enqueue(signature, arrays, rows, mergeable=mergeable)

    def submit_to(
        self,
        waiter: Waiter,
        name: str,
        version: int,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        *,
        strict_dtypes: bool = False,
    ) -> None:
        """``submit`` for a waiter of one's own (see batching.Waiter)."""
        batcher, signature, arrays, rows, mergeable = self._checked(
            name, version, signature_name, inputs, strict_dtypes
        )
        batcher.enqueue_to(waiter, signature, arrays, rows, mergeable=mergeable)

    def _checked(
        self,
        name: str,
        version: int,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        strict_dtypes: bool,
    ) -> tuple[Batcher, str, dict[str, np.ndarray], int, bool]:
        """Validated, pre-processed inputs and the batcher to run them on."""
        state = self._available(name, version)
        spec = self.signature(name, version, signature_name)
        arrays, rows = validate_inputs(
            spec, inputs, strict=strict_dtypes, max_rows=self._settings.max_rows_per_request
        )
        processor = state.processors.get(spec.name)
        if processor is not None:
            arrays = processor.preprocess(arrays)
        batcher = state.batcher
        if batcher is None:
            raise errors.ModelNotReady(f"model '{name}' version {version} is unloading")
        return batcher, spec.name, arrays, rows, state.mergeable[spec.name]

    def batcher(self, name: str, version: int) -> Batcher:
        """The batcher of a version (for tests and diagnostics)."""
        batcher = self._available(name, version).batcher
        if batcher is None:
            raise errors.ModelNotReady(f"model '{name}' version {version} is unloading")
        return batcher

    def _check_name(self, name: str) -> None:
        if name != self._name:
            raise errors.ModelNotFound(f"model '{name}' not found (served: '{self._name}')")

    def _available(self, name: str, version: int) -> ServedVersion:
        self._check_name(name)
        state = self._versions.get(version)
        if state is None:
            served = ", ".join(str(v) for v in sorted(self._versions, reverse=True)) or "none"
            raise errors.ModelNotFound(
                f"model '{name}' has no version {version} (versions: {served})"
            )
        if not state.servable or self._closed:
            detail = f": {state.error}" if state.error else ""
            raise errors.ModelNotReady(
                f"model '{name}' version {version} is {state.state}{detail}"
            )
        return state
