"""Model versions over time: loaded and warmed up, polled for, retired, unloaded.

The base of the data plane (plane.py adds the queries and inference on top): it owns the
served model's versions (discovered by repository.py, loaded by model.py, planned by
versions.py), their processing and one batcher per version. Importing it does not import
TensorFlow; loading does, in a worker thread.

Version states use TF Serving's vocabulary: START, LOADING, AVAILABLE, UNLOADING, END
(a version that failed to load is END with its error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from modelplane_runtime import contract, errors
from modelplane_runtime.dataplane.batching import Batcher, BatchObserver
from modelplane_runtime.dataplane.cpus import available_cpus
from modelplane_runtime.dataplane.processing import ProcessingConfig, parse_config
from modelplane_runtime.dataplane.repository import VersionSource, open_repository, scan
from modelplane_runtime.dataplane.versions import (
    AVAILABLE,
    END,
    LOADING,
    UNLOADING,
    Fingerprint,
    ServedVersion,
    fingerprints,
    plan_changes,
    prepare,
    runner,
)
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.tracing import record_batch

log = logging.getLogger(__name__)

RETIRE_QUIET_S = 2.0
"""A retiring version is unloaded once no request arrived for it for this long."""


class InferenceObserver(Protocol):
    """Receives data-plane measurements (implemented by metrics.py)."""

    def observe_batch(self, model: str, rows: int, seconds: float) -> None:
        """One model call of ``rows`` rows that took ``seconds``."""

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        """A version loaded (and warmed up) in ``seconds``."""

    def observe_versions(self, model: str, states: dict[int, str]) -> None:
        """The state of every listed version, after a change (TF Serving's vocabulary)."""

    def observe_model_size(self, model: str, version: int, size_bytes: int) -> None:
        """A loaded version takes ``size_bytes`` on disk."""

    def observe_load_failure(self, model: str, version: int) -> None:
        """A version failed to load (its error is in the model's status)."""

    def observe_poll(self, model: str) -> None:
        """The repository was looked at for new versions."""


class VersionLoading:
    """The served model's versions and their batchers, over time (see DataPlane)."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        observer: InferenceObserver | None = None,
        cpus: int | None = None,
        on_change: Callable[[], None] | None = None,
        before_scan: Callable[[], None] | None = None,
        traced: bool = False,
    ) -> None:
        """``on_change`` runs after versions were loaded or unloaded while serving;
        ``before_scan`` (in a worker thread) before each look at the repository (mirror.py);
        ``traced``: batches record the spans of traced requests (tracing.py)."""
        self._settings = settings
        self._traced = traced
        self._cpus = available_cpus() if cpus is None else cpus
        self._observer = observer
        self._on_change = on_change
        self._before_scan = before_scan
        self._name = settings.served_name
        self._versions: dict[int, ServedVersion] = {}
        self._labels: dict[str, int] = {}
        self._override: ProcessingConfig | None = None
        self._closed = False
        self._newest: int | None = None  # the newest AVAILABLE version (the default one)
        self._seen: dict[int, Fingerprint] = {}  # each version's files at the last poll
        self._changing = asyncio.Lock()  # one refresh, load or unload at a time
        self._unloaded = False  # unloaded through the repository API: polls load nothing
        self._scan_problem = ""  # why the last look at the repository failed, if it did

    async def load(self) -> None:
        """Load and warm up every version the policy selects; fail if none loads."""
        override = None
        if self._settings.processing.strip():
            override = parse_config(self._settings.processing, contract.ENV_PROCESSING)
        self._override = override
        if self._before_scan is not None:
            await asyncio.to_thread(self._before_scan)
        repository = await asyncio.to_thread(open_repository, self._settings)
        self._labels = dict(repository.labels)
        self._versions = {s.version: ServedVersion(s.version, s) for s in repository.versions}
        for version in self._versions.values():
            await self._load_version(version)
        failed = [v for v in self._versions.values() if v.state == END]
        if not any(v.state == AVAILABLE for v in self._versions.values()):
            # One message with every reason: the caller reports it in one line.
            reasons = "; ".join(v.error for v in failed)
            raise errors.ModelLoadError(f"model '{self._name}': no version loaded: {reasons}")
        for version in failed:
            self._failed(version)
        self._seen = await asyncio.to_thread(
            fingerprints, {v.number: v.source for v in self._versions.values()}
        )
        for version in self._versions.values():
            version.fingerprint = self._seen.get(version.number, ())
        self._report()

    async def _load_version(self, version: ServedVersion) -> None:
        version.state = LOADING
        start = time.perf_counter()
        try:
            model, processors, size = await asyncio.to_thread(
                prepare, version.source, self._override, self._settings
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
            runner(model, processors),
            max_batch_size=self._settings.max_batch_size,
            max_latency_ms=self._settings.max_latency_ms,
            name=f"{self._name}-v{version.number}",
            on_batch=self._batch_observer(),
            cpus=self._cpus,
            on_trace=record_batch if self._traced else None,
        )
        version.state = AVAILABLE
        self._refresh_newest()
        if self._observer is not None:
            self._observer.observe_load(self._name, version.number, seconds)
            self._observer.observe_model_size(self._name, version.number, size)
        log.info(
            "model %s version %d is AVAILABLE (%s, loaded in %.2fs, on %s)",
            self._name, version.number, version.source.format, seconds,
            ", ".join(model.devices),
            extra={"devices": list(model.devices), "size_bytes": size},
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

    async def poll(self, interval_s: float) -> None:
        """Look for new and removed versions every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:  # a poll must never stop polling
                log.exception("model %s: polling the repository failed", self._name)

    async def refresh(self, *, settled_only: bool = True) -> None:
        """One poll: load settled new versions the policy wants, retire those it left.

        ``settled_only=False`` (an explicit load request) takes versions as they are now.
        """
        async with self._changing:
            if self._closed or self._unloaded:
                return
            await self._refresh(settled_only)

    async def _refresh(self, settled_only: bool) -> None:
        base = self._settings.model_path
        if self._before_scan is not None:
            await asyncio.to_thread(self._before_scan)
        try:
            found = await asyncio.to_thread(scan, base, self._settings.model_format)
        except errors.ModelLoadError as exc:
            # Gone or empty (a volume remounting, every version deleted): keep serving.
            # Said once, not at every poll.
            if str(exc) != self._scan_problem:
                log.warning("model %s: %s; still serving what is loaded", self._name, exc)
            self._scan_problem = str(exc)
            self._looked()
            return
        self._scan_problem = ""
        sources = {v: s for v, s in found.items() if isinstance(s, VersionSource)}
        prints = await asyncio.to_thread(fingerprints, sources)
        self._looked()
        settled = {v for v, p in prints.items() if not settled_only or self._seen.get(v) == p}
        self._seen = prints
        plan = plan_changes(
            found, settled, prints, self._versions, self._settings.model_versions,
            self._settings.model_version,
        )
        for number in plan.forget:
            del self._versions[number]
        for source in plan.load:
            version = ServedVersion(source.version, source, fingerprint=prints[source.version])
            self._versions[source.version] = version
            await self._load_version(version)
            if version.state == END:
                self._failed(version)
        if plan.retire and any(
            v.state == AVAILABLE for n, v in self._versions.items() if n not in plan.retire
        ):
            # Only once something the policy wants serves: a version that failed to load
            # never replaces a working one.
            await asyncio.gather(*(self._retire(self._versions[n]) for n in plan.retire))
        if plan.load or plan.retire or plan.forget:
            self._report()
            self._changed()

    async def unload_all(self) -> None:
        """Retire every version (the repository API's unload); polls load nothing after."""
        async with self._changing:
            self._unloaded = True
            serving = [v for v in self._versions.values() if v.state == AVAILABLE]
            await asyncio.gather(*(self._retire(v) for v in serving))
            self._versions = {n: v for n, v in self._versions.items() if v.state != END}
            self._report()
            self._changed()

    async def load_now(self) -> None:
        """Load what the policy wants from the repository now (the repository API's load)."""
        async with self._changing:
            self._unloaded = False
            await self._refresh(settled_only=False)
        if not self.ready:
            reasons = "; ".join(v.error for v in self._versions.values() if v.error)
            raise errors.InvalidInput(
                f"failed to load model '{self._name}': {reasons or 'no version found'}"
            )

    async def _retire(self, version: ServedVersion) -> None:
        """Stop routing to ``version``, let its last requests finish, then unload it."""
        version.state = UNLOADING
        self._refresh_newest()
        batcher = version.batcher
        if batcher is not None:
            # Requests that resolved this version just before still arrive for a moment
            # (a body being read or decoded): wait until none came for RETIRE_QUIET_S and
            # none is queued or running, bounded by the drain timeout.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(self._settings.drain_timeout_s, RETIRE_QUIET_S)
            seen, quiet_since = batcher.enqueued, loop.time()
            while loop.time() < deadline:
                await asyncio.sleep(RETIRE_QUIET_S / 4)
                if batcher.enqueued != seen or not batcher.idle:
                    seen, quiet_since = batcher.enqueued, loop.time()
                elif loop.time() - quiet_since >= RETIRE_QUIET_S:
                    break
            await batcher.close()
        version.batcher = None
        if version.model is not None:
            version.model.close()
            version.model = None
        del self._versions[version.number]
        if self._observer is not None:
            self._observer.observe_model_size(self._name, version.number, 0)  # no longer held
        log.info("model %s version %d unloaded", self._name, version.number)

    def _failed(self, version: ServedVersion) -> None:
        log.error(
            "model %s version %d failed to load: %s", self._name, version.number, version.error,
            extra={"version": version.number},
        )
        if self._observer is not None:
            self._observer.observe_load_failure(self._name, version.number)

    def _looked(self) -> None:
        # Counted once a look is complete: whatever changes after it, the next one sees.
        if self._observer is not None:
            self._observer.observe_poll(self._name)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _report(self) -> None:
        if self._observer is not None:
            self._observer.observe_versions(
                self._name, {n: v.state for n, v in self._versions.items()}
            )

    @property
    def ready(self) -> bool:
        """True when the served model has an AVAILABLE version (and the plane is open)."""
        return not self._closed and any(v.state == AVAILABLE for v in self._versions.values())

    def _refresh_newest(self) -> None:
        # Kept up to date on every state change, so resolving the default is a lookup.
        available = [v.number for v in self._versions.values() if v.state == AVAILABLE]
        self._newest = max(available) if available and not self._closed else None
