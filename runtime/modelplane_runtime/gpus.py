"""GPU utilisation, memory, power and temperature from NVML, read at scrape time.

What Triton exports per GPU (``nv_gpu_utilization``, ``nv_gpu_memory_used_bytes``, ...),
named the Prometheus way (base units, ``_ratio`` for 0..1) under ``modelplane_gpu_*``
(contract.py), labelled ``gpu`` and ``uuid``.

Which GPUs: those this process can use. ``NVIDIA_VISIBLE_DEVICES`` set to ``void``,
``none`` or empty means the container has none (the NVIDIA container toolkit's meaning),
and NVML is not even loaded. Otherwise NVML lists the devices mounted into the container,
and ``CUDA_VISIBLE_DEVICES`` narrows them as CUDA does: a comma list of indices or
``GPU-<uuid>`` prefixes, read up to the first entry that names no device (so ``""`` and
``-1`` hide every GPU). Indices are NVML's (PCI bus order): the same as CUDA's with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or a single GPU, which is what a Kubernetes pod gets.
MIG instances are not reported (NVML has no utilisation per instance).

No NVML library, no driver, no GPU: no GPU series and no error, said once in the log.
A reading NVML refuses for one device (``Not Supported``: power on some boards; ``GPU is
lost``) drops that series only. Readings are cached for ``cache_s`` (1 s) so that several
scrapers, or a burst of scrapes, cost one round of NVML calls.

Importing this module imports neither NVML nor TensorFlow: ``pynvml`` (the
``nvidia-ml-py`` package) is imported on the first reading, and only when GPUs may be
visible. ``scripts/gpu_check.py`` runs this collector alone against ``nvidia-smi``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelplane_runtime import contract

log = logging.getLogger(__name__)

CACHE_S: Final = 1.0
_NO_DEVICES: Final = frozenset({"", "void", "none"})


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment; a figure NVML would not give is None."""

    gpu: int
    """Position among the visible GPUs (TensorFlow's ``GPU:<gpu>``)."""
    uuid: str
    name: str
    utilization: float | None = None
    """0..1: share of the last sample period (1/6 s to 1 s, by product) a kernel ran."""
    memory_used: float | None = None
    """Bytes in use on the device, by every process (NVML's v2 figure: reserved excluded)."""
    memory_total: float | None = None
    power_watts: float | None = None
    temperature_celsius: float | None = None


def visible_tokens(environ: Mapping[str, str]) -> list[str] | None:
    """How the environment selects GPUs: None for every GPU NVML lists, [] for none,
    else ``CUDA_VISIBLE_DEVICES``' entries up to its first empty one."""
    nvidia = environ.get("NVIDIA_VISIBLE_DEVICES")
    if nvidia is not None and nvidia.strip().lower() in _NO_DEVICES:
        return []
    cuda = environ.get("CUDA_VISIBLE_DEVICES")
    if cuda is None:
        return None
    tokens = []
    for token in cuda.split(","):
        token = token.strip()
        if not token:
            break
        tokens.append(token)
    return tokens


def select_devices(tokens: Sequence[str] | None, uuids: Sequence[str]) -> list[int]:
    """NVML indices of the visible GPUs, in CUDA's order, given every device's UUID.

    As CUDA reads ``CUDA_VISIBLE_DEVICES``: an index or a unique ``GPU-`` UUID prefix per
    entry; the first entry that names no device (``-1``, a MIG instance, an unknown or
    ambiguous prefix) ends the list; a device named twice counts once.
    """
    if tokens is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for token in tokens:
        if token.isdigit():
            index = int(token)
            if index >= len(uuids):
                break
        else:
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
            if not token.startswith("GPU-") or len(matches) != 1:
                break
            index = matches[0]
        if index not in chosen:
            chosen.append(index)
    return chosen


_FAMILIES: Final = (
    ("utilization", contract.METRIC_GPU_UTILIZATION,
     "Share of the last sample period a kernel was running on the GPU (0..1), by GPU."),
    ("memory_used", contract.METRIC_GPU_MEMORY_USED,
     "GPU memory in use by all processes in bytes, by GPU."),
    ("memory_total", contract.METRIC_GPU_MEMORY_TOTAL, "GPU memory in total in bytes, by GPU."),
    ("power_watts", contract.METRIC_GPU_POWER, "Power drawn by the GPU board in watts, by GPU."),
    ("temperature_celsius", contract.METRIC_GPU_TEMPERATURE,
     "GPU core temperature in degrees Celsius, by GPU."),
)


def gpu_families(readings: Sequence[GpuReading]) -> list[Metric]:
    """The GPU metric families for ``readings`` (none at all when there is no GPU)."""
    families: list[Metric] = []
    for attribute, name, documentation in _FAMILIES:
        family = GaugeMetricFamily(name, documentation, labels=("gpu", "uuid"))
        for reading in readings:
            value = getattr(reading, attribute)
            if value is not None:
                family.add_metric((str(reading.gpu), reading.uuid), value)
        if family.samples:
            families.append(family)
    return families


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class GpuCollector(Collector):
    """The visible GPUs' readings as Prometheus families, from NVML, cached briefly.

    ``nvml`` is the seam: the ``pynvml`` module by default (imported on first use), or any
    object with the same functions (tests give one whose calls fail).
    """

    def __init__(
        self,
        nvml: Any | None = None,
        environ: Mapping[str, str] | None = None,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
        announce: bool = True,
    ) -> None:
        """``announce=False`` keeps quiet about finding (or not finding) GPUs: for a
        one-off look, such as the ``--workers`` supervisor's."""
        self._nvml: Any = nvml
        self._announce = announce
        self._environ = os.environ if environ is None else environ
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: list[tuple[int, Any, str, str]] | None = None
        """Per visible GPU: (position, NVML handle, uuid, name); None before start."""
        self._unavailable = ""
        """Why there are no GPU readings (logged once), or "" while NVML works."""
        self._cached: list[GpuReading] = []
        self._read_at: float | None = None
        self._failing: set[tuple[str, str]] = set()
        self._initialised = False

    @property
    def unavailable(self) -> str:
        """Why this collector reports no GPU ("" when NVML answered and GPUs are visible)."""
        return self._unavailable

    def describe(self) -> list[Metric]:
        """Nothing: registering must not load NVML."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The GPU families, from readings at most ``cache_s`` old."""
        yield from gpu_families(self.readings())

    def start(self) -> None:
        """Load NVML and find the visible GPUs now (it may take a while: call it off the
        event loop); later calls do nothing."""
        with self._lock:
            self._start()

    def close(self) -> None:
        """Release NVML (readings after this start it again)."""
        with self._lock:
            if self._initialised:
                self._initialised = False
                try:
                    self._nvml.nvmlShutdown()
                except Exception as exc:
                    log.debug("nvmlShutdown: %s", exc)
            self._devices = None
            self._read_at = None
            self._cached = []

    def readings(self) -> list[GpuReading]:
        """Every visible GPU's figures, read now unless the last reading is fresh."""
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._cache_s:
                return self._cached
            self._start()
            read = (self._read(*device) for device in self._devices or ())
            self._cached = [reading for reading in read if reading is not None]
            self._read_at = now
            return self._cached

    def _start(self) -> None:
        if self._devices is not None:
            return
        self._devices = []
        tokens = visible_tokens(self._environ)
        if tokens == []:
            self._give_up("no GPU is visible (NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES)")
            return
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module("pynvml")  # nvidia-ml-py
            nvml = self._nvml
            nvml.nvmlInit()
            self._initialised = True
            handles = [
                nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())
            ]
            uuids = [_text(nvml.nvmlDeviceGetUUID(handle)) for handle in handles]
            chosen = select_devices(tokens, uuids)
            self._devices = [
                (position, handles[i], uuids[i], _text(nvml.nvmlDeviceGetName(handles[i])))
                for position, i in enumerate(chosen)
            ]
        except ImportError:
            self._give_up("nvidia-ml-py is not installed")
        except Exception as exc:  # NVMLError and its subclasses: no library, no driver...
            self._devices = []
            self._give_up(f"NVML: {exc}")
        else:
            if not self._devices:
                self._give_up("NVML lists no visible GPU")
            elif self._announce:
                log.info(
                    "GPU metrics from NVML for %d GPU(s)", len(self._devices),
                    extra={"gpus": [f"{p}:{name}:{uuid}" for p, _, uuid, name in self._devices]},
                )

    def _give_up(self, reason: str) -> None:
        self._unavailable = reason
        if self._announce:
            log.info("no GPU metrics: %s", reason)

    def _read(self, position: int, handle: Any, uuid: str, name: str) -> GpuReading | None:
        nvml = self._nvml

        def attempt(what: str, read: Callable[[], Any]) -> Any:
            try:
                value = read()
            except Exception as exc:
                if (uuid, what) not in self._failing:  # say it once, not every scrape
                    self._failing.add((uuid, what))
                    log.warning("GPU %d (%s): no %s reading: %s", position, uuid, what, exc)
                return None
            self._failing.discard((uuid, what))
            return value

        rates = attempt("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = attempt("memory", lambda: self._memory(handle))
        power = attempt("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        temperature = attempt(
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        )
        if rates is None and memory is None and power is None and temperature is None:
            return None  # the device is gone (GPU is lost): no series for it at all
        return GpuReading(
            position, uuid, name,
            utilization=None if rates is None else rates.gpu / 100.0,
            memory_used=None if memory is None else float(memory.used),
            memory_total=None if memory is None else float(memory.total),
            power_watts=None if power is None else power / 1000.0,  # NVML: milliwatts
            temperature_celsius=None if temperature is None else float(temperature),
        )

    def _memory(self, handle: Any) -> Any:
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None:
            try:
                # v2 leaves out the driver's reserved memory, as nvidia-smi's "used" does.
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except Exception:
                pass  # a driver older than 510: v1
        return nvml.nvmlDeviceGetMemoryInfo(handle)
