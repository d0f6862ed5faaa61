"""Process series: prometheus_client's process-collector figures, per runtime process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelplane_runtime import contract
from modelplane_runtime.processes import (
    PROCESS_MAP,
    ProcessCollector,
    ProcReader,
    read_process_map,
    write_process_map,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector as ClientProcessCollector

from tests.fixtures.processes import kill_process


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(collector: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    return _samples(generate_latest(registry).decode())


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A process that sleeps, its command name full of ')' and spaces (as /proc allows)."""
    script = (
        "import sys, time\n"
        "open('/proc/self/comm', 'w').write('odd) name (x')\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    yield process
    kill_process(process)


def test_the_figures_are_prometheus_clients_own(child: subprocess.Popen[bytes]) -> None:
    """Same /proc fields and formulas: ours under modelplane_ with a worker label."""
    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "odd) name (x"
    ours = _scrape(ProcessCollector(lambda: {"7": child.pid}))
    theirs = _scrape(ClientProcessCollector(pid=lambda: child.pid, registry=None))
    assert theirs, "prometheus_client reads nothing here: /proc is unusable"
    renamed = {("modelplane_" + name, (("worker", "7"),)): value
               for (name, _), value in theirs.items()}
    assert set(ours) == set(renamed)
    for key, value in renamed.items():
        # A sleeping process's CPU time, memory and fds stand still between the two reads.
        assert ours[key] == pytest.approx(value, rel=0.01), key


def test_every_process_named_is_reported_and_a_gone_one_is_skipped(
    child: subprocess.Popen[bytes],
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    processes = {"0": os.getpid(), "supervisor": child.pid, "1": gone.pid}
    samples = _scrape(ProcessCollector(lambda: processes))
    workers = {dict(labels)["worker"] for (_, labels) in samples}
    assert workers == {"0", "supervisor"}
    rss = {dict(labels)["worker"]: value for (name, labels), value in samples.items()
           if name == contract.METRIC_PROCESS_RESIDENT_MEMORY}
    assert rss["0"] > 0 and rss["supervisor"] > 0
    starts = {dict(labels)["worker"]: value for (name, labels), value in samples.items()
              if name == contract.METRIC_PROCESS_START_TIME}
    assert starts["supervisor"] > starts["0"]  # the child started after this process
    assert abs(starts["supervisor"] - time.time()) < 120


def test_cpu_seconds_grow_with_work() -> None:
    collector = ProcessCollector()
    key = (contract.METRIC_PROCESS_CPU, (("worker", "0"),))
    before = _scrape(collector)[key]
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert _scrape(collector)[key] >= before + 0.2


def test_families_carry_the_contract_names_and_types() -> None:
    text = generate_latest(_registry(ProcessCollector())).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families[contract.METRIC_PROCESS_CPU.removesuffix("_total")] == "counter"
    for name in (contract.METRIC_PROCESS_RESIDENT_MEMORY, contract.METRIC_PROCESS_VIRTUAL_MEMORY,
                 contract.METRIC_PROCESS_OPEN_FDS, contract.METRIC_PROCESS_MAX_FDS,
                 contract.METRIC_PROCESS_START_TIME):
        assert families[name] == "gauge"


def _registry(collector: ProcessCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_the_process_map_round_trips_and_bad_files_read_as_empty(tmp_path: Path) -> None:
    write_process_map(tmp_path, {"supervisor": 10, "0": 11, "1": 12})
    assert read_process_map(tmp_path) == {"supervisor": 10, "0": 11, "1": 12}
    assert [p.name for p in tmp_path.iterdir()] == [PROCESS_MAP]  # no partial file left
    assert read_process_map(tmp_path / "absent") == {}
    (tmp_path / PROCESS_MAP).write_text("{not json")
    assert read_process_map(tmp_path) == {}
    (tmp_path / PROCESS_MAP).write_text('["a list"]')
    assert read_process_map(tmp_path) == {}
    (tmp_path / PROCESS_MAP).write_text('{"0": 5, "1": "six", "2": true}')
    assert read_process_map(tmp_path) == {"0": 5}


def test_an_unreadable_proc_reports_nothing_rather_than_failing(tmp_path: Path) -> None:
    collector = ProcessCollector(reader=ProcReader(tmp_path))  # no /proc/stat: no boot time
    assert _scrape(collector) == {}
    (tmp_path / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (x) S 1 2")  # truncated: too few fields
    assert _scrape(ProcessCollector(lambda: {"0": 42}, ProcReader(tmp_path))) == {}
