"""Resource series on /metrics: per process (one, or --workers 2 and their supervisor),
read by prometheus_client's parser and scraped by a real Prometheus, moving under load.

No GPU on this machine: the GPU series must be absent, and the rest unaffected
(tests/unit/runtime/test_gpus.py covers the NVML paths; scripts/gpu_check.py a real GPU).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from modelplane_runtime import contract
from modelplane_runtime.dataplane.repository import size_on_disk

from tests.fixtures.polling import eventually
from tests.fixtures.prometheus import by_label, run_prometheus
from tests.fixtures.runtime_server import (
    RuntimeServer,
    launch_runtime,
    metric_samples,
    metric_value,
)

ROW = {"instances": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]}
PROCESS_METRICS = (
    contract.METRIC_PROCESS_CPU, contract.METRIC_PROCESS_RESIDENT_MEMORY,
    contract.METRIC_PROCESS_VIRTUAL_MEMORY, contract.METRIC_PROCESS_OPEN_FDS,
    contract.METRIC_PROCESS_MAX_FDS, contract.METRIC_PROCESS_START_TIME,
)


def _per_worker(text: str, name: str) -> dict[str, float]:
    return {labels["worker"]: value for labels, value in metric_samples(text, name)}


def _load(url: str, requests: int, threads: int = 4) -> None:
    """``requests`` predictions over fresh connections from ``threads`` threads (so that
    with several workers, each accepts some)."""
    failures: list[int] = []

    def send(count: int) -> None:
        # No keep-alive: every request is a new connection, accepted by either worker.
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, timeout=30, limits=fresh) as client:
            for _ in range(count):
                status = client.post("/v1/models/demo:predict", json=ROW).status_code
                if status != 200:
                    failures.append(status)

    workers = [threading.Thread(target=send, args=(requests // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not failures, failures


def test_one_process_reports_itself_as_worker_0(
    demo_server: RuntimeServer, demo_model_dir: Path
) -> None:
    with demo_server.client() as client:
        before = client.get("/metrics").text
        for name in PROCESS_METRICS:
            assert set(_per_worker(before, name)) == {"0"}, name
        assert _per_worker(before, contract.METRIC_PROCESS_RESIDENT_MEMORY)["0"] > 50 * 2**20
        open_fds = _per_worker(before, contract.METRIC_PROCESS_OPEN_FDS)["0"]
        assert 0 < open_fds < _per_worker(before, contract.METRIC_PROCESS_MAX_FDS)["0"]
        _load(demo_server.url, 400)
        after = client.get("/metrics").text
    grew = (_per_worker(after, contract.METRIC_PROCESS_CPU)["0"]
            - _per_worker(before, contract.METRIC_PROCESS_CPU)["0"])
    assert grew >= 0.05, f"400 requests took {grew} CPU seconds"
    assert metric_value(after, contract.METRIC_MODEL_SIZE, model="demo", version="1") == (
        size_on_disk(demo_model_dir / "1")
    )
    assert "modelplane_gpu_" not in after  # no GPU here: no series at all


@pytest.fixture(scope="module")
def workers_server(
    demo_model_dir: Path, runtime_log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeServer]:
    """The demo model served by two workers."""
    env = {"TMPDIR": str(tmp_path_factory.mktemp("metrics-tmp"))}
    args = ["--name", "demo", "--workers", "2"]
    with launch_runtime(demo_model_dir, runtime_log_dir, args, env=env) as server:
        yield server


def test_every_scrape_of_two_workers_reports_all_three_processes(
    workers_server: RuntimeServer,
) -> None:
    starts: list[dict[str, float]] = []
    for _ in range(6):  # fresh connections: either worker may answer the scrape
        with workers_server.client() as client:
            text = client.get("/metrics").text
        for name in PROCESS_METRICS:
            assert set(_per_worker(text, name)) == {"0", "1", "supervisor"}, name
        starts.append(_per_worker(text, contract.METRIC_PROCESS_START_TIME))
        rss = _per_worker(text, contract.METRIC_PROCESS_RESIDENT_MEMORY)
        # Each worker holds TensorFlow and a model copy; the supervisor neither.
        assert rss["0"] > rss["supervisor"] and rss["1"] > rss["supervisor"], rss
    assert all(s == starts[0] for s in starts), "the same three processes in every scrape"
    first = starts[0]
    assert first["supervisor"] <= min(first["0"], first["1"])


def test_prometheus_sees_each_workers_cpu_grow_under_load(
    workers_server: RuntimeServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    target = workers_server.url.removeprefix("http://")
    with run_prometheus([target], tmp_path_factory.mktemp("prometheus")) as prometheus:
        cpu = f'{contract.METRIC_PROCESS_CPU}{{job="modelplane"}}'

        def three() -> dict[str, float] | None:
            found = by_label(prometheus, cpu, "worker")
            return found if len(found) == 3 else None

        before = eventually(three, timeout=60, interval=0.2,
                            what="Prometheus to scrape three processes")
        rss = by_label(prometheus, contract.METRIC_PROCESS_RESIDENT_MEMORY, "worker")
        assert set(rss) == {"0", "1", "supervisor"} and min(rss.values()) > 0

        def both_grew() -> dict[str, float] | None:
            _load(workers_server.url, 200)
            now = by_label(prometheus, cpu, "worker")
            grown = {w: now[w] - before[w] for w in ("0", "1")}
            return grown if min(grown.values()) >= 0.05 else None

        grown = eventually(both_grew, timeout=120, interval=0.5,
                           what="both workers' CPU seconds to grow in Prometheus")
        assert min(grown.values()) >= 0.05
        # The per-pod figures the operator and the dashboard compute from these series.
        total = by_label(prometheus, f"sum by (job) ({contract.METRIC_PROCESS_RESIDENT_MEMORY})",
                         "job")
        assert total["modelplane"] >= sum(rss.values()) * 0.5
        rate = by_label(
            prometheus, f"sum by (job) (rate({contract.METRIC_PROCESS_CPU}[5s]))", "job"
        )
        assert rate["modelplane"] > 0
        assert by_label(prometheus, "count({__name__=~\"modelplane_gpu_.*\"})", "") == {}
