"""Check the runtime's GPU collector against nvidia-smi on a machine with a GPU.

Starts only the collector (modelplane_runtime.gpus: NVML through nvidia-ml-py, no
TensorFlow), reads ``nvidia-smi`` just before and just after it, and prints every figure
side by side, then the GPU series exactly as ``/metrics`` would expose them.

    python scripts/gpu_check.py        # exit 0: agree; 1: disagree; 2: cannot check here

A figure agrees when the collector's value lies within the two nvidia-smi readings
widened by the tolerance (the GPU may change between reads):

    utilisation   5 percentage points   (both sample the same NVML counter window)
    memory used   64 MiB                (nvidia-smi reports whole MiB; allocations move)
    memory total  1 MiB                 (rounding to MiB only)
    power         max(5 W, 5 %)         (NVML's power reading is itself averaged)
    temperature   2 degrees C

The GPUs compared are those the collector reports (CUDA_VISIBLE_DEVICES narrows them, as
it narrows TensorFlow's); each must be one nvidia-smi lists, matched by UUID, and with no
CUDA_VISIBLE_DEVICES every GPU nvidia-smi lists must be reported.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "runtime"))

from modelplane_runtime.gpus import GpuCollector, GpuReading  # noqa: E402

MIB = 2**20
QUERY = "index,uuid,name,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu"

EXIT_AGREE, EXIT_DISAGREE, EXIT_CANNOT = 0, 1, 2


@dataclass(frozen=True)
class SmiRow:
    """One GPU as nvidia-smi reports it, in the collector's units (None: not reported)."""

    index: int
    uuid: str
    name: str
    utilization: float | None
    memory_used: float | None
    memory_total: float | None
    power_watts: float | None
    temperature_celsius: float | None


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_smi(text: str) -> dict[str, SmiRow]:
    """nvidia-smi's ``--query-gpu=QUERY --format=csv,noheader,nounits`` output, by UUID."""
    rows: dict[str, SmiRow] = {}
    for fields in csv.reader(io.StringIO(text)):
        if len(fields) != len(QUERY.split(",")):
            continue
        index, uuid, name, util, used, total, power, temperature = (f.strip() for f in fields)
        percent, used_mib, total_mib = _number(util), _number(used), _number(total)
        rows[uuid] = SmiRow(
            int(index), uuid, name,
            None if percent is None else percent / 100,
            None if used_mib is None else used_mib * MIB,
            None if total_mib is None else total_mib * MIB,
            _number(power), _number(temperature),
        )
    return rows


Tolerance = Callable[[float], float]
"""The allowed difference for a figure of a given size."""

TOLERANCES: dict[str, tuple[str, Tolerance]] = {
    "utilization": ("5 points", lambda v: 0.05),
    "memory_used": ("64 MiB", lambda v: 64 * MIB),
    "memory_total": ("1 MiB", lambda v: 1 * MIB),
    "power_watts": ("max(5 W, 5 %)", lambda v: max(5.0, 0.05 * abs(v))),
    "temperature_celsius": ("2 C", lambda v: 2.0),
}


@dataclass(frozen=True)
class Comparison:
    """One figure of one GPU: the collector's value beside nvidia-smi's two."""

    gpu: str
    figure: str
    collector: float | None
    before: float | None
    after: float | None
    tolerance: str
    agrees: bool


def compare(
    readings: Sequence[GpuReading], before: Mapping[str, SmiRow], after: Mapping[str, SmiRow]
) -> list[Comparison]:
    """Every figure of every GPU the collector reports, judged against nvidia-smi."""
    result = []
    for reading in readings:
        label = f"{reading.gpu} {reading.uuid}"
        first, second = before.get(reading.uuid), after.get(reading.uuid)
        for figure, (text, tolerance) in TOLERANCES.items():
            ours = getattr(reading, figure)
            smi = [getattr(row, figure) for row in (first, second) if row is not None]
            known = [value for value in smi if value is not None]
            if ours is None or not known:
                # Both silent is agreement (say, no power sensor); one silent is not.
                agrees = ours is None and not known and len(smi) == 2
            else:
                slack = tolerance(max(known))
                agrees = min(known) - slack <= ours <= max(known) + slack
            result.append(Comparison(
                label, figure, ours,
                getattr(first, figure) if first else None,
                getattr(second, figure) if second else None,
                text, agrees,
            ))
    return result


def missing_gpus(
    readings: Sequence[GpuReading], smi: Mapping[str, SmiRow], environ: Mapping[str, str]
) -> list[str]:
    """Why the collector's set of GPUs is wrong (empty when it is right)."""
    ours = {reading.uuid for reading in readings}
    problems = [f"{uuid}: reported by the collector, unknown to nvidia-smi"
                for uuid in sorted(ours - set(smi))]
    if "CUDA_VISIBLE_DEVICES" not in environ:
        problems += [f"{uuid} ({smi[uuid].name}): listed by nvidia-smi, not reported"
                     for uuid in sorted(set(smi) - ours)]
    return problems


def _show(value: float | None, figure: str) -> str:
    if value is None:
        return "-"
    if figure.startswith("memory"):
        return f"{value / MIB:,.0f} MiB"
    if figure == "utilization":
        return f"{value * 100:.0f} %"
    return f"{value:.1f}"


def table(comparisons: Sequence[Comparison]) -> str:
    """The side-by-side table."""
    lines = [f"{'gpu':<46} {'figure':<20} {'collector':>12} {'smi before':>12} "
             f"{'smi after':>12}  {'tolerance':<14} verdict"]
    for c in comparisons:
        lines.append(
            f"{c.gpu:<46} {c.figure:<20} {_show(c.collector, c.figure):>12} "
            f"{_show(c.before, c.figure):>12} {_show(c.after, c.figure):>12}  "
            f"{c.tolerance:<14} {'ok' if c.agrees else 'DISAGREE'}"
        )
    return "\n".join(lines)


def read_smi(binary: str) -> dict[str, SmiRow]:
    """One nvidia-smi reading of every GPU."""
    done = subprocess.run(
        [binary, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return parse_smi(done.stdout)


def main() -> int:
    """Compare, print, and exit 0 (agree), 1 (disagree) or 2 (nothing to compare here)."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    binary = shutil.which("nvidia-smi")
    collector = GpuCollector(cache_s=0.0)
    before = read_smi(binary) if binary else {}
    readings = collector.readings()
    after = read_smi(binary) if binary else {}
    print(f"collector: {len(readings)} GPU(s)"
          + (f" ({collector.unavailable})" if collector.unavailable else ""))
    print(f"nvidia-smi: {len(after)} GPU(s)" if binary else "nvidia-smi: not found on PATH")
    if "tensorflow" in sys.modules:
        print("FAILED: the collector imported TensorFlow")
        return EXIT_DISAGREE
    if not binary or not after:
        print("cannot check: this needs a GPU, nvidia-smi, and NVML (nvidia-ml-py and the "
              "driver's libnvidia-ml)")
        return EXIT_CANNOT
    comparisons = compare(readings, before, after)
    print()
    print(table(comparisons))
    problems = missing_gpus(readings, after, os.environ)
    if not readings and not problems:
        print("cannot check: CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES hide every GPU")
        return EXIT_CANNOT
    for problem in problems:
        print("DISAGREE:", problem)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    print("\nAs /metrics exposes them:\n" + generate_latest(registry).decode())
    collector.close()
    if problems or not all(c.agrees for c in comparisons):
        print("the collector DISAGREES with nvidia-smi")
        return EXIT_DISAGREE
    print("the collector agrees with nvidia-smi")
    return EXIT_AGREE


if __name__ == "__main__":
    sys.exit(main())
