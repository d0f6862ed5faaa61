"""CPU, memory and file descriptors of the runtime's processes, read from /proc at scrape time.

The series mean exactly what prometheus_client's ``ProcessCollector`` exports (the same
/proc fields and formulas: utime + stime over the clock tick, vsize, rss times the page
size, start time from the boot time, the fd folder's entries and the soft limit), with the
``modelplane_`` prefix and one label, ``worker``, because one runtime can be several
processes.

``--workers N``: prometheus_client's multiprocess mode drops its process collector (each
worker's values would overwrite the others'), so here the supervisor writes the pid of
every process it runs to a map in the metrics folder (``write_process_map``), and
whichever worker answers a scrape reads /proc for each of them. The series are **per
process, never summed**: ``worker="0"`` .. ``"N-1"`` for the workers and
``worker="supervisor"`` for their parent; a single-process runtime is ``worker="0"``.
A replica's total is ``sum by (pod)``; its largest worker, ``max by (pod)``. Per process
because each worker holds its own model copy (RSS per worker is the number to size a pod
by) and an unequal share of CPU between workers is worth seeing.
"""

from __future__ import annotations

import json
import logging
import os
import resource
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelplane_runtime import contract

log = logging.getLogger(__name__)

PROCESS_MAP: Final = "processes.json"
"""File in the ``--workers`` metrics folder: ``{"supervisor": pid, "0": pid, ...}``."""
SUPERVISOR: Final = "supervisor"
SINGLE: Final = "0"
"""The ``worker`` label of a runtime that is one process."""

_PAGESIZE: Final = resource.getpagesize()


def write_process_map(folder: str | Path, processes: Mapping[str, int]) -> None:
    """Publish which pid each ``worker`` label names (atomically: readers never see half)."""
    path = Path(folder) / PROCESS_MAP
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(dict(processes)))
    partial.replace(path)


def read_process_map(folder: str | Path) -> dict[str, int]:
    """The map ``write_process_map`` published, or empty while there is none."""
    try:
        raw = json.loads((Path(folder) / PROCESS_MAP).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def own_process() -> dict[str, int]:
    """The process map of a single-process runtime."""
    return {SINGLE: os.getpid()}


class ProcessReading:
    """One process's figures, as prometheus_client's ProcessCollector computes them."""

    __slots__ = ("cpu_seconds", "max_fds", "open_fds", "resident_bytes", "start_time",
                 "virtual_bytes")

    def __init__(self) -> None:
        self.cpu_seconds: float | None = None
        self.virtual_bytes: float | None = None
        self.resident_bytes: float | None = None
        self.start_time: float | None = None
        self.open_fds: float | None = None
        self.max_fds: float | None = None


class ProcReader:
    """Reads /proc/<pid> (another root can be given, for tests)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        try:
            self.ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError):
            self.ticks = 100.0
        self.boot_time = self._boot_time()

    def _boot_time(self) -> float | None:
        try:
            with (self.proc / "stat").open("rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def read(self, pid: int) -> ProcessReading | None:
        """The process's figures; None when it is gone (or /proc is unreadable)."""
        if self.boot_time is None:
            return None
        folder = self.proc / str(pid)
        reading = ProcessReading()
        try:
            # Fields after the command name, which may itself hold spaces and parentheses.
            fields = (folder / "stat").read_bytes().rsplit(b")", 1)[-1].split()
            reading.virtual_bytes = float(fields[20])
            reading.resident_bytes = float(fields[21]) * _PAGESIZE
            reading.start_time = float(fields[19]) / self.ticks + self.boot_time
            reading.cpu_seconds = (float(fields[11]) + float(fields[12])) / self.ticks
        except (OSError, ValueError, IndexError):
            return None
        try:
            reading.open_fds = float(len(os.listdir(folder / "fd")))
            with (folder / "limits").open("rb") as limits:
                for line in limits:
                    if line.startswith(b"Max open files"):
                        reading.max_fds = float(line.split()[3])  # "unlimited": no series
                        break
        except (OSError, ValueError, IndexError):
            pass  # another user's process, or one exiting: the stat figures still count
        return reading


_FAMILIES: Final = (
    ("cpu_seconds", contract.METRIC_PROCESS_CPU, "Total user and system CPU time spent in "
     "seconds, per runtime process."),
    ("virtual_bytes", contract.METRIC_PROCESS_VIRTUAL_MEMORY, "Virtual memory size in bytes, "
     "per runtime process."),
    ("resident_bytes", contract.METRIC_PROCESS_RESIDENT_MEMORY, "Resident memory size in "
     "bytes, per runtime process."),
    ("start_time", contract.METRIC_PROCESS_START_TIME, "Start time of the process since unix "
     "epoch in seconds, per runtime process."),
    ("open_fds", contract.METRIC_PROCESS_OPEN_FDS, "Number of open file descriptors, per "
     "runtime process."),
    ("max_fds", contract.METRIC_PROCESS_MAX_FDS, "Maximum number of open file descriptors, per "
     "runtime process."),
)


class ProcessCollector(Collector):
    """The process series of every process ``processes()`` names, read when scraped."""

    def __init__(
        self,
        processes: Callable[[], Mapping[str, int]] = own_process,
        reader: ProcReader | None = None,
    ) -> None:
        self.processes = processes
        self.reader = reader or ProcReader()

    def describe(self) -> list[Metric]:
        """Nothing: registering must not read /proc (names are checked by the tests)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per figure, one sample per live process, labelled ``worker``."""
        readings = {
            worker: reading
            for worker, pid in sorted(self.processes().items())
            if (reading := self.reader.read(pid)) is not None
        }
        for attribute, name, documentation in _FAMILIES:
            family: CounterMetricFamily | GaugeMetricFamily
            if name.endswith("_total"):
                family = CounterMetricFamily(name, documentation, labels=("worker",))
            else:
                family = GaugeMetricFamily(name, documentation, labels=("worker",))
            for worker, reading in readings.items():
                value = getattr(reading, attribute)
                if value is not None:
                    family.add_metric((worker,), value)
            if family.samples:
                yield family
