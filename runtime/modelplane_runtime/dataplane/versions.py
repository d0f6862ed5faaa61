"""Model versions over time: what one served version holds, and which to load or retire.

TF Serving's file-system source polls the base folder and loads a version as soon as its
folder appears, so a version copied in place (rather than renamed in whole) can be loaded
half-written; its documentation asks users to copy elsewhere and rename. Here a version is
loaded only once it is *settled*: its files (names, sizes, modification times) are the
same at two consecutive polls, and it is detectably a model (``saved_model.pb``, or one
Keras file). A rename in place is settled at the next poll; a slow copy is not picked up
until it stops changing. A loaded version is immutable: files rewritten under a loaded
version are not reloaded (TF Serving's rule too); a version that failed to load is retried
only when its files change.

``plan_changes`` is the pure decision; the data plane (plane.py) carries it out: it loads
and warms new versions before they take traffic, and retires versions that left the
policy only once a replacement is AVAILABLE, after their in-flight requests finish.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from modelplane_runtime import contract
from modelplane_runtime.dataplane.batching import Batcher, Runner
from modelplane_runtime.dataplane.devices import configure_gpus
from modelplane_runtime.dataplane.model import LoadedModel, load_model
from modelplane_runtime.dataplane.processing import (
    ProcessingConfig,
    Processor,
    build_processor,
    read_config,
)
from modelplane_runtime.dataplane.repository import VersionSource, size_on_disk, wanted_versions
from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.signature import SignatureSpec

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

Fingerprint = tuple[tuple[str, int, int], ...]
"""A version's files: relative path, size and modification time (ns) of each."""


@dataclass
class ServedVersion:
    """One version of the served model and everything needed to run it."""

    number: int
    source: VersionSource
    state: str = START
    error: str = ""
    fingerprint: Fingerprint = ()
    model: LoadedModel | None = None
    signatures: dict[str, SignatureSpec] = field(default_factory=dict)
    """What clients see: the model's signatures with processing applied."""
    model_inputs: dict[str, SignatureSpec] = field(default_factory=dict)
    """The model's own signatures (for batching decisions)."""
    processors: dict[str, Processor] = field(default_factory=dict)
    mergeable: dict[str, bool] = field(default_factory=dict)
    """Per signature: every model input has a batch dimension, so requests can merge."""
    batcher: Batcher | None = None

    @property
    def servable(self) -> bool:
        """Takes requests: AVAILABLE, or UNLOADING while its last requests finish."""
        return self.state in (AVAILABLE, UNLOADING) and self.batcher is not None


def fingerprint(path: Path) -> Fingerprint:
    """The files under a version's path (or the file itself), cheaply: stats only."""
    if path.is_file():
        info = path.stat()
        return ((path.name, info.st_size, info.st_mtime_ns),)
    entries = []
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            full = Path(root, name)
            try:
                info = full.stat()
            except OSError:  # removed while we looked: the version is still changing
                continue
            entries.append((str(full.relative_to(path)), info.st_size, info.st_mtime_ns))
    return tuple(entries)


def fingerprints(sources: Mapping[int, VersionSource]) -> dict[int, Fingerprint]:
    """``fingerprint`` of each version's folder (a Keras file's, when it has one)."""
    return {number: fingerprint(_folder(source)) for number, source in sources.items()}


def _folder(source: VersionSource) -> Path:
    path = source.path
    if path.is_file() and path.parent.name == str(source.version):
        return path.parent  # <base>/<version>/model.keras: the whole version folder
    return path


@dataclass(frozen=True)
class Plan:
    """What a poll decided: versions to load (oldest first), versions to retire."""

    load: tuple[VersionSource, ...] = ()
    retire: tuple[int, ...] = ()
    forget: tuple[int, ...] = ()
    """Failed versions whose folders are gone: dropped from the status."""


def plan_changes(
    found: Mapping[int, VersionSource | str],
    settled: set[int],
    prints: Mapping[int, Fingerprint],
    current: Mapping[int, ServedVersion],
    policy: str,
    pinned: int | None,
) -> Plan:
    """The loads and retirements that bring ``current`` to the policy over ``found``.

    Only settled, detectable versions count; the policy is applied to them as at start-up,
    except that a version an explicit list names but which is not there yet is waited for
    rather than an error.
    """
    usable = sorted(v for v, s in found.items() if isinstance(s, VersionSource) and v in settled)
    desired = wanted_versions(usable, policy, pinned)
    load = []
    for number in sorted(desired):
        served = current.get(number)
        if served is None or (served.state == END and served.fingerprint != prints.get(number)):
            source = found[number]
            assert isinstance(source, VersionSource)
            load.append(source)
    retire = tuple(
        number for number, served in sorted(current.items())
        if served.state == AVAILABLE and number not in desired
    )
    forget = tuple(
        number for number, served in sorted(current.items())
        if served.state == END and number not in found
    )
    return Plan(tuple(load), retire, forget)


def prepare(
    source: VersionSource, override: ProcessingConfig | None, settings: RuntimeSettings
) -> tuple[LoadedModel, dict[str, Processor], int]:
    """Load, build processing (the setting wins over the file), warm up (worker thread);
    the model, its processors and its size on disk. The GPU memory settings are applied
    before the first model touches a GPU (devices.py; later calls do nothing)."""
    size = size_on_disk(source.path)
    model = load_model(source, partial(configure_gpus, settings))
    try:
        processors: dict[str, Processor] = {}
        processor = None
        if override is not None:
            processor = build_processor(override, model.signatures, contract.ENV_PROCESSING)
        elif source.config is not None:
            processor = build_processor(
                read_config(source.config), model.signatures, source.config
            )
        if processor is not None:
            processors[processor.signature] = processor
        model.warm_up()
    except ModelLoadError:
        model.close()
        raise
    return model, processors, size


def runner(model: LoadedModel, processors: dict[str, Processor]) -> Runner:
    """The batcher's model call: the model, then its post-processing."""

    def run(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = model.call(signature, inputs)
        processor = processors.get(signature)
        return processor.postprocess(outputs) if processor is not None else outputs

    return run
