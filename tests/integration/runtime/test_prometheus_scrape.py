"""A real Prometheus server scrapes the runtime's /metrics and answers queries on it.

This is the consumer our metrics exist for (and what the operator's load maths imitate), so
the exposition format, names and labels are checked by the real parser, not ours.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.binaries import require_binary
from tests.fixtures.polling import eventually
from tests.fixtures.ports import free_port
from tests.fixtures.processes import stop_process
from tests.fixtures.runtime_server import RuntimeServer

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def prometheus(
    demo_server: RuntimeServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus scraping the demo runtime every 500 ms; yields its base URL."""
    prometheus = require_binary("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    target = demo_server.url.removeprefix("http://")
    (home / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
        "scrape_configs:\n"
        f"  - job_name: modelplane\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus, f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            eventually(lambda: _ready(url), timeout=DEADLINE_S, interval=0.2,
                       what=f"Prometheus at {url} to turn ready")
        except AssertionError as exc:
            logs = (home / "prometheus.log").read_text()[-3000:]
            raise AssertionError(f"{exc}\n{logs}") from None
        yield url
    finally:
        stop_process(process, deadline_s=30, what="prometheus")
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _scalar(url: str, promql: str) -> float | None:
    result = _query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_runtime_and_sees_every_request(
    prometheus: str, demo_server: RuntimeServer
) -> None:
    eventually(
        lambda: _scalar(prometheus, 'up{job="modelplane"}') == 1.0,
        timeout=DEADLINE_S, interval=0.2, what="the runtime target to turn up",
    )
    before = _scalar(prometheus, 'sum(modelplane_requests_total{model="demo",code="200"})') or 0.0
    sent = 25
    with demo_server.client() as client:
        for i in range(sent):
            response = client.post(
                "/v1/models/demo:predict", json={"instances": [[float(i)] * 8]}
            )
            assert response.status_code == 200, response.text
        bad = client.post("/v1/models/demo:predict", content=b"{not json")
        assert bad.status_code == 400

    want = before + sent
    eventually(
        lambda: _scalar(prometheus, 'sum(modelplane_requests_total{model="demo",code="200"})')
        == want,
        timeout=DEADLINE_S, interval=0.2, what=f"Prometheus to count {want} successful requests",
    )
    errors = _scalar(prometheus, 'sum(modelplane_requests_total{model="demo",code="400"})')
    assert errors is not None and errors >= 1

    # The histograms are usable by the queries the Grafana dashboard runs.
    p99 = _scalar(
        prometheus,
        "histogram_quantile(0.99, sum by (le) (modelplane_request_duration_seconds_bucket))",
    )
    assert p99 is not None and 0 < p99 < 30
    batches = _scalar(prometheus, 'sum(modelplane_batch_size_count{model="demo"})')
    assert batches is not None and batches >= sent  # sequential requests: one call each
    load = _query(prometheus, "modelplane_model_load_seconds")
    assert load and load[0]["metric"]["version"] == "1"
