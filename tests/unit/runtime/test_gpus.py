"""GPU series: which GPUs are visible, and no series (and no error) when NVML fails.

This machine has no GPU and no libnvidia-ml, with the real ``nvidia-ml-py`` installed:
the "no NVML" path runs for real. The "NVML raises" paths give the collector, through its
``nvml`` seam, the real pynvml module whose start-up step is skipped (so the real library
raises from every device call, as on a node whose driver went away), or a device table
whose calls raise the real library's error classes.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from modelplane_runtime import contract
from modelplane_runtime.gpus import GpuCollector, gpu_families, select_devices, visible_tokens
from modelplane_runtime.metrics import Metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-bbbc3333-0000"]


@pytest.mark.parametrize(
    ("environ", "tokens"),
    [
        ({}, None),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, None),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": "none", "CUDA_VISIBLE_DEVICES": "0"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "1, 0"}, ["1", "0"]),
        ({"CUDA_VISIBLE_DEVICES": "0,,1"}, ["0"]),
    ],
)
def test_visible_tokens(environ: dict[str, str], tokens: list[str] | None) -> None:
    assert visible_tokens(environ) == tokens


@pytest.mark.parametrize(
    ("tokens", "chosen"),
    [
        (None, [0, 1, 2]),
        ([], []),
        (["2", "0"], [2, 0]),
        (["0", "-1", "1"], [0]),  # CUDA stops at the first entry naming no device
        (["0", "7"], [0]),
        (["GPU-aaaa"], [0]),
        (["GPU-bbb"], []),  # ambiguous prefix
        (["GPU-bbbc", "0", "0"], [2, 0]),  # named twice counts once
        (["MIG-1234", "0"], []),
        (["aaaa1111"], []),  # a UUID names a device only with its GPU- prefix
    ],
)
def test_select_devices_reads_cuda_visible_devices_as_cuda_does(
    tokens: list[str] | None, chosen: list[int]
) -> None:
    assert select_devices(tokens, UUIDS) == chosen


def _scrape(collector: GpuCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_no_libnvidia_ml_means_no_gpu_series_and_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="modelplane_runtime.gpus")
    collector = GpuCollector(environ={})  # the real pynvml, imported on first use
    assert collector.readings() == []
    assert "NVML Shared Library Not Found" in collector.unavailable
    assert _scrape(collector) == ""
    assert collector.readings() == []  # and it does not try again on every scrape
    assert sum("no GPU metrics" in r.getMessage() for r in caplog.records) == 1
    metrics = Metrics(gpus=collector).render().decode()
    assert "modelplane_gpu_" not in metrics
    assert contract.METRIC_PROCESS_CPU in metrics  # the rest of /metrics is unaffected


class Untouchable:
    """An NVML that fails the test when used at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"NVML was used ({name}) though no GPU is visible")


def test_no_visible_gpu_does_not_even_load_nvml() -> None:
    for environ in ({"NVIDIA_VISIBLE_DEVICES": "void"}, {"NVIDIA_VISIBLE_DEVICES": "none"},
                    {"CUDA_VISIBLE_DEVICES": ""}):
        collector = GpuCollector(nvml=Untouchable(), environ=environ)
        assert collector.readings() == []
        assert "no GPU is visible" in collector.unavailable
    # "-1" is an entry: NVML is asked what exists, and "-1" names none of it.
    collector = GpuCollector(nvml=Devices({UUIDS[0]: _healthy()}),
                             environ={"CUDA_VISIBLE_DEVICES": "-1"})
    assert collector.readings() == []
    assert collector.unavailable == "NVML lists no visible GPU"


def test_importing_the_collector_loads_neither_nvml_nor_tensorflow() -> None:
    code = (
        "import sys, modelplane_runtime.gpus, modelplane_runtime.metrics\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pynvml', 'tensorflow', 'keras')]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


class WithoutInit:
    """The real pynvml with its start-up skipped: every device call raises from the real
    library (``Uninitialized``), as NVML does when the driver is gone."""

    def __init__(self, count: int = 2) -> None:
        self.count = count

    def __getattr__(self, name: str) -> Any:
        return getattr(pynvml, name)

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        return pynvml.c_nvmlDevice_t()


def test_nvml_raising_while_listing_devices_means_no_series(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = GpuCollector(nvml=WithoutInit(), environ={})
    assert collector.readings() == []
    assert collector.unavailable == "NVML: Uninitialized"
    assert _scrape(collector) == ""


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # the real library's class for that code


class Devices:
    """Devices that answer what ``answers`` holds, and raise (the real library's errors)
    for what it maps to an error code; the calls made are counted."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.calls = 0
        self.NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
        self.nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.answers)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return list(self.answers)[index]

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        return handle

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA Test"

    def _answer(self, handle: str, what: str) -> Any:
        self.calls += 1
        value = self.answers[handle][what]
        if isinstance(value, pynvml.NVMLError):
            raise value
        return value

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return SimpleNamespace(gpu=self._answer(handle, "utilization"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: str, version: int | None = None) -> Any:
        used, total = self._answer(handle, "memory")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        value: int = self._answer(handle, "power")
        return value

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        value: int = self._answer(handle, "temperature")
        return value


def _healthy(utilization: int = 37) -> dict[str, Any]:
    return {"utilization": utilization, "memory": (3 * 2**30, 80 * 2**30), "power": 123456,
            "temperature": 41}


def _values(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels["gpu"], s.labels["uuid"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_readings_become_series_in_base_units() -> None:
    devices = Devices({UUIDS[0]: _healthy(), UUIDS[1]: _healthy(100)})
    text = _scrape(GpuCollector(nvml=devices, environ={"CUDA_VISIBLE_DEVICES": "1,0"}))
    values = _values(text)
    # CUDA_VISIBLE_DEVICES=1,0: NVML's device 1 is TensorFlow's GPU:0.
    assert values[(contract.METRIC_GPU_UTILIZATION, "0", UUIDS[1])] == 1.0
    assert values[(contract.METRIC_GPU_UTILIZATION, "1", UUIDS[0])] == 0.37
    assert values[(contract.METRIC_GPU_MEMORY_USED, "1", UUIDS[0])] == 3 * 2**30
    assert values[(contract.METRIC_GPU_MEMORY_TOTAL, "1", UUIDS[0])] == 80 * 2**30
    assert values[(contract.METRIC_GPU_POWER, "1", UUIDS[0])] == 123.456  # mW -> W
    assert values[(contract.METRIC_GPU_TEMPERATURE, "1", UUIDS[0])] == 41
    assert len(values) == 10


def test_a_reading_nvml_refuses_drops_that_series_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = {**_healthy(), "power": _error(pynvml.NVML_ERROR_NOT_SUPPORTED)}
    lost = {what: _error(pynvml.NVML_ERROR_GPU_IS_LOST) for what in _healthy()}
    devices = Devices({UUIDS[0]: flaky, UUIDS[1]: lost})
    clock = Clock()
    collector = GpuCollector(nvml=devices, environ={}, clock=clock)
    values = _values(_scrape(collector))
    names = {name for name, gpu, _ in values if gpu == "0"}
    assert contract.METRIC_GPU_POWER not in names
    assert contract.METRIC_GPU_UTILIZATION in names and contract.METRIC_GPU_TEMPERATURE in names
    assert not any(gpu == "1" for _, gpu, _ in values), "a lost GPU has no series at all"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Not Supported" in w for w in warnings)
    assert any("GPU is lost" in w for w in warnings)
    # The same failures on the next scrapes are not logged again...
    before = len(caplog.records)
    clock.now += 5
    _scrape(collector)
    assert len(caplog.records) == before
    # ...and a GPU that answers again is back.
    devices.answers[UUIDS[1]] = _healthy()
    clock.now += 5
    assert any(gpu == "1" for _, gpu, _ in _values(_scrape(collector)))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_readings_are_cached_briefly() -> None:
    devices = Devices({UUIDS[0]: _healthy()})
    clock = Clock()
    collector = GpuCollector(nvml=devices, environ={}, cache_s=1.0, clock=clock)
    first = collector.readings()
    calls = devices.calls
    clock.now += 0.5
    assert collector.readings() is first
    assert devices.calls == calls
    clock.now += 0.6
    collector.readings()
    assert devices.calls == 2 * calls


def test_gpu_families_of_nothing_is_nothing() -> None:
    assert gpu_families([]) == []


def test_start_then_close_releases_nvml() -> None:
    shut: list[bool] = []
    devices = Devices({UUIDS[0]: _healthy()})
    devices.nvmlShutdown = lambda: shut.append(True)  # type: ignore[method-assign]
    collector = GpuCollector(nvml=devices, environ={})
    collector.start()
    collector.close()
    assert shut == [True]
    assert len(collector.readings()) == 1  # started again on demand

