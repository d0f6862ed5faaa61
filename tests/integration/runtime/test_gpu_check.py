"""scripts/gpu_check.py: its verdicts on given readings, and its run on this GPU-less machine."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from modelplane_runtime.gpus import GpuReading

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gpu_check.py"
MIB = 2**20
UUID = "GPU-5b0e4f5c-0000-1111-2222-333344445555"
SMI = (
    f"0, {UUID}, NVIDIA H200, 37, 1024, 143771, 118.52, 41\n"
    "1, GPU-ffff, NVIDIA H200, 0, 0, 143771, [N/A], 30\n"
)


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _reading(**changes: float | None) -> GpuReading:
    figures: dict[str, float | None] = {
        "utilization": 0.37, "memory_used": 1024 * MIB, "memory_total": 143771 * MIB,
        "power_watts": 118.52, "temperature_celsius": 41.0,
    }
    figures.update(changes)
    return GpuReading(0, UUID, "NVIDIA H200", **figures)  # type: ignore[arg-type]


def test_nvidia_smi_output_is_read_in_the_collectors_units(check: ModuleType) -> None:
    rows = check.parse_smi(SMI)
    row = rows[UUID]
    assert (row.index, row.name) == (0, "NVIDIA H200")
    assert row.utilization == 0.37
    assert row.memory_used == 1024 * MIB and row.memory_total == 143771 * MIB
    assert row.power_watts == 118.52 and row.temperature_celsius == 41
    assert rows["GPU-ffff"].power_watts is None  # [N/A]
    assert check.parse_smi("garbage\n\n") == {}


def test_equal_figures_agree(check: ModuleType) -> None:
    rows = check.parse_smi(SMI)
    comparisons = check.compare([_reading()], rows, rows)
    assert len(comparisons) == 5 and all(c.agrees for c in comparisons)
    assert "DISAGREE" not in check.table(comparisons)


@pytest.mark.parametrize(
    ("change", "agrees"),
    [
        ({"utilization": 0.41}, True),
        ({"utilization": 0.43}, False),
        ({"memory_used": (1024 + 60) * MIB}, True),
        ({"memory_used": (1024 + 500) * MIB}, False),  # v1 "used" (with reserved) would be off
        ({"memory_total": 143770 * MIB}, True),
        ({"memory_total": 143700 * MIB}, False),
        ({"power_watts": 123.0}, True),
        ({"power_watts": 130.0}, False),
        ({"power_watts": None}, False),  # nvidia-smi has a reading, the collector none
        ({"temperature_celsius": 43.0}, True),
        ({"temperature_celsius": 45.0}, False),
    ],
)
def test_a_figure_off_by_more_than_its_tolerance_disagrees(
    check: ModuleType, change: dict[str, float | None], agrees: bool
) -> None:
    rows = check.parse_smi(SMI)
    (figure,) = change
    (judged,) = [c for c in check.compare([_reading(**change)], rows, rows) if c.figure == figure]
    assert judged.agrees is agrees


def test_a_figure_between_two_smi_readings_agrees(check: ModuleType) -> None:
    before = check.parse_smi(SMI)
    after = check.parse_smi(SMI.replace(", 37,", ", 90,", 1))
    (util,) = [c for c in check.compare([_reading(utilization=0.7)], before, after)
               if c.figure == "utilization"]
    assert util.agrees


def test_gpus_missing_on_either_side_are_named(check: ModuleType) -> None:
    rows = check.parse_smi(SMI)
    problems = check.missing_gpus([_reading()], rows, {})
    assert problems == ["GPU-ffff (NVIDIA H200): listed by nvidia-smi, not reported"]
    assert check.missing_gpus([_reading()], rows, {"CUDA_VISIBLE_DEVICES": "0"}) == []
    stranger = GpuReading(1, "GPU-0000", "x")
    assert "unknown to nvidia-smi" in check.missing_gpus([stranger], rows, {})[0]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_on_a_machine_without_a_gpu_it_says_it_cannot_check() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "collector: 0 GPU(s) (NVML: NVML Shared Library Not Found)" in done.stdout
    assert "cannot check" in done.stdout


def test_nvidia_smi_listing_gpus_the_collector_cannot_read_is_a_disagreement(
    tmp_path: Path,
) -> None:
    """A stand-in nvidia-smi (a shell script printing a real one's CSV) lists two GPUs
    while NVML (no libnvidia-ml here) reports none: the collector is wrong, exit 1."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{SMI}'\n")
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nvidia-smi: 2 GPU(s)" in done.stdout
    assert f"DISAGREE: {UUID} (NVIDIA H200): listed by nvidia-smi, not reported" in done.stdout
    # Hidden on purpose (CUDA_VISIBLE_DEVICES=""), no GPU is the right answer: no verdict.
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "hide every GPU" in done.stdout
