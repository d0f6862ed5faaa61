"""The data plane: the one object the HTTP layer (v1 and v2 routes) talks to.

It owns the served model's versions (discovered by repository.py, loaded by model.py), their
processing (processing.py) and one batcher per version (batching.py), and answers in plain
Python values and :mod:`~modelplane_runtime.errors` exceptions: nothing here knows about
HTTP. Importing it does not import TensorFlow; loading does, in a worker thread.

Version states use TF Serving's vocabulary: START, LOADING, AVAILABLE, UNLOADING, END
(a version that failed to load is END with its error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modelplane_runtime import contract, errors
from modelplane_runtime.dataplane.batching import Batcher, BatchObserver, Runner, Waiter
from modelplane_runtime.dataplane.cpus import available_cpus
from modelplane_runtime.dataplane.model import LoadedModel, load_model
from modelplane_runtime.dataplane.processing import (
    ProcessingConfig,
    Processor,
    build_processor,
    parse_config,
    read_config,
)
from modelplane_runtime.dataplane.repository import Repository, VersionSource, open_repository
from modelplane_runtime.dataplane.validation import validate_inputs
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.signature import (
    SignatureChoice,
    SignatureSpec,
    VersionStatus,
    pick_signature,
)

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class InferenceObserver(Protocol):
    """Receives data-plane measurements (implemented by metrics.py)."""

    def observe_batch(self, model: str, rows: int, seconds: float) -> None:
        """One model call of ``rows`` rows that took ``seconds``."""

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        """A version loaded (and warmed up) in ``seconds``."""


@dataclass
class _Version:
    number: int
    source: VersionSource
    state: str = START
    error: str = ""
    model: LoadedModel | None = None
    signatures: dict[str, SignatureSpec] = field(default_factory=dict)
    """What clients see: the model's signatures with processing applied."""
    model_inputs: dict[str, SignatureSpec] = field(default_factory=dict)
    """The model's own signatures (for batching decisions)."""
    processors: dict[str, Processor] = field(default_factory=dict)
    mergeable: dict[str, bool] = field(default_factory=dict)
    """Per signature: every model input has a batch dimension, so requests can merge."""
    batcher: Batcher | None = None


class DataPlane:
    """Model versions, their signatures, and batched prediction."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        observer: InferenceObserver | None = None,
        cpus: int | None = None,
    ) -> None:
        self._settings = settings
        self._cpus = available_cpus() if cpus is None else cpus
        self._observer = observer
        self._name = settings.served_name
        self._versions: dict[int, _Version] = {}
        self._labels: dict[str, int] = {}
        self._repository: Repository | None = None
        self._override: ProcessingConfig | None = None
        self._closed = False
        self._newest: int | None = None  # the newest AVAILABLE version (the default one)

    # Lifecycle.

    async def load(self) -> None:
        """Load and warm up every version the policy selects; fail if none loads."""
        override = None
        if self._settings.processing.strip():
            override = parse_config(self._settings.processing, contract.ENV_PROCESSING)
        self._override = override
        repository = await asyncio.to_thread(open_repository, self._settings)
        self._repository = repository
        self._labels = dict(repository.labels)
        self._versions = {s.version: _Version(s.version, s) for s in repository.versions}
        for version in self._versions.values():
            await self._load_version(version)
        failed = [v for v in self._versions.values() if v.state == END]
        if not any(v.state == AVAILABLE for v in self._versions.values()):
            # One message with every reason: the caller reports it in one line.
            reasons = "; ".join(v.error for v in failed)
            raise errors.ModelLoadError(f"model '{self._name}': no version loaded: {reasons}")
        for version in failed:
            log.error(
                "model %s version %d failed to load: %s", self._name, version.number, version.error
            )

    async def _load_version(self, version: _Version) -> None:
        version.state = LOADING
        start = time.perf_counter()
        try:
            model, processors = await asyncio.to_thread(
                _prepare, version.source, self._override
            )
        except errors.ModelLoadError as exc:
            version.state, version.error = END, str(exc)
            return
        seconds = time.perf_counter() - start
        version.model = model
        version.processors = processors
        version.model_inputs = dict(model.signatures)
        version.mergeable = {
            name: bool(spec.inputs) and all(t.shape and t.shape[0] == -1 for t in spec.inputs)
            for name, spec in model.signatures.items()
        }
        version.signatures = {
            name: processors[name].served if name in processors else spec
            for name, spec in model.signatures.items()
        }
        version.batcher = Batcher(
            _runner(model, processors),
            max_batch_size=self._settings.max_batch_size,
            max_latency_ms=self._settings.max_latency_ms,
            name=f"{self._name}-v{version.number}",
            on_batch=self._batch_observer(),
            cpus=self._cpus,
        )
        version.state = AVAILABLE
        self._refresh_newest()
        if self._observer is not None:
            self._observer.observe_load(self._name, version.number, seconds)
        log.info(
            "model %s version %d is AVAILABLE (%s, loaded in %.2fs)",
            self._name, version.number, version.source.format, seconds,
        )

    def _batch_observer(self) -> BatchObserver | None:
        observer, name = self._observer, self._name
        if observer is None:
            return None
        return lambda rows, seconds: observer.observe_batch(name, rows, seconds)

    async def close(self) -> None:
        """Stop the batchers (queued requests fail with ModelNotReady) and release models."""
        self._closed = True
        self._newest = None
        for version in self._versions.values():
            if version.state == AVAILABLE:
                version.state = UNLOADING
            if version.batcher is not None:
                await version.batcher.close()
                version.batcher = None
            if version.model is not None:
                version.model.close()
                version.model = None
            version.state = END

    # Queries.

    @property
    def ready(self) -> bool:
        """True when the served model has an AVAILABLE version (and the plane is open)."""
        return not self._closed and any(v.state == AVAILABLE for v in self._versions.values())

    def model_names(self) -> list[str]:
        """Names of the served models (one per process)."""
        return [self._name]

    def versions(self, name: str) -> list[VersionStatus]:
        """Every selected version's state, newest first."""
        self._check_name(name)
        labels = self._repository.labels_of if self._repository else (lambda _v: ())
        return [
            VersionStatus(v.number, v.state, v.error, labels(v.number))
            for v in sorted(self._versions.values(), key=lambda v: -v.number)
        ]

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

    # Inference.

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

    # Helpers.

    def _refresh_newest(self) -> None:
        # Kept up to date on every state change, so resolving the default is a lookup.
        available = [v.number for v in self._versions.values() if v.state == AVAILABLE]
        self._newest = max(available) if available and not self._closed else None

    def _check_name(self, name: str) -> None:
        if name != self._name:
            raise errors.ModelNotFound(f"model '{name}' not found (served: '{self._name}')")

    def _available(self, name: str, version: int) -> _Version:
        self._check_name(name)
        state = self._versions.get(version)
        if state is None:
            served = ", ".join(str(v) for v in sorted(self._versions, reverse=True)) or "none"
            raise errors.ModelNotFound(
                f"model '{name}' has no version {version} (versions: {served})"
            )
        if state.state != AVAILABLE or self._closed:
            detail = f": {state.error}" if state.error else ""
            raise errors.ModelNotReady(
                f"model '{name}' version {version} is {state.state}{detail}"
            )
        return state


def _prepare(
    source: VersionSource, override: ProcessingConfig | None
) -> tuple[LoadedModel, dict[str, Processor]]:
    """Load, build processing (the setting wins over the file), warm up (worker thread)."""
    model = load_model(source)
    processors: dict[str, Processor] = {}
    processor = None
    if override is not None:
        processor = build_processor(override, model.signatures, contract.ENV_PROCESSING)
    elif source.config is not None:
        processor = build_processor(read_config(source.config), model.signatures, source.config)
    if processor is not None:
        processors[processor.signature] = processor
    model.warm_up()
    return model, processors


def _runner(model: LoadedModel, processors: dict[str, Processor]) -> Runner:
    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = model.call(signature, inputs)
        processor = processors.get(signature)
        return processor.postprocess(outputs) if processor is not None else outputs

    return run
