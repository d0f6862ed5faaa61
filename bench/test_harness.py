"""Smoke tests of the benchmark harness itself (not of the runtime).

The default suite collects them (pyproject's testpaths name ``bench``). The run test starts
the real floor server and real wrk (``make tools`` installs wrk into .tools/bin).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runtime import report
from bench.runtime.h2load import h2load_available
from bench.runtime.wrk import wrk_binary

REPO = Path(__file__).resolve().parents[1]


def _sample(contender: str, kind: str, rps: float, p99: float, repeat: int) -> report.Row:
    return {
        "model": "seed", "connections": 64, "contender": contender, "kind": kind,
        "repeat": repeat, "rps": rps, "p50_ms": p99 / 4, "p99_ms": p99, "errors": 0,
        "cpu_us_per_req": 1e6 / rps, "peak_rss_mb": 100.0, "cold_start_s": 1.0,
    }


def test_medians_and_ratios_use_the_best_peer_and_the_floor() -> None:
    samples = [
        _sample("kserve", "peer", rps, 100.0, i) for i, rps in enumerate((500, 700, 600))
    ] + [
        _sample("naive-fastapi", "peer", rps, 80.0, i) for i, rps in enumerate((800, 1000, 900))
    ] + [
        _sample("floor", "floor", rps, 5.0, i) for i, rps in enumerate((9000, 11000, 10000))
    ] + [
        _sample("modelplane-v1", "runtime", rps, 40.0, i) for i, rps in enumerate((2700, 2800))
    ]
    rows = {row["contender"]: row for row in report.medians(samples)}
    runtime = rows["modelplane-v1"]
    assert runtime["rps"] == 2750
    assert runtime["repeats"] == 2
    assert runtime["best_peer"] == "naive-fastapi"
    assert runtime["x_best_peer"] == pytest.approx(2750 / 900)
    assert runtime["x_floor"] == pytest.approx(0.275)
    assert runtime["p99_vs_best_p99"] == pytest.approx(0.5)
    assert rows["kserve"]["rps_spread"] == pytest.approx(200 / 600)
    assert "modelplane-v1" in report.table(list(rows.values()))


def test_a_floor_run_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    if wrk_binary() is None:
        pytest.fail("wrk is missing: run `make tools` (it installs wrk into .tools/bin)",
                    pytrace=False)
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.runtime", "--only", "floor", "--models", "seed",
         "--connections", "1,4", "--duration", "1", "--warmup", "0", "--repeats", "2",
         "--venvs", str(tmp_path), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {row["connections"]: row for row in json.loads(out.read_text())["medians"]}
    assert set(rows) == {1, 4}
    for row in rows.values():
        assert row["repeats"] == 2
        assert row["rps"] > 100
        assert row["errors"] == 0
        assert row["x_floor"] == pytest.approx(1.0)
        assert 0 < row["peak_rss_mb"] < 1000
        assert row["cold_start_s"] > 0
    assert "floor" in done.stdout


H2LOAD_OUTPUT = (
    "finished in 2.00s, 4511.19 req/s, 418.66KB/s\n"
    "requests: 9022 total, 9022 started, 9022 done, 9020 succeeded, 2 failed, 0 errored, "
    "0 timeout\n"
    "status codes: 9020 2xx, 0 3xx, 0 4xx, 2 5xx\n"
    "traffic: 837.27KB (857362) total, 52.94KB (54212) headers (space savings 93.59%), "
    "405.99KB (415742) data\n"
)


def test_h2load_output_and_log_are_read(tmp_path: Path) -> None:
    from bench.runtime.h2load import _parse, grpc_frame

    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    log = tmp_path / "h2.log"
    log.write_text("".join(f"1700000000{i:06d}\t200\t{1000 * (i + 1)}\n" for i in range(100)))
    result = _parse(H2LOAD_OUTPUT, log, cpu_seconds=0.5, duration=2.0)
    assert result.rps == pytest.approx(4511.19)
    assert result.requests == 9020
    assert result.errors == 4  # 2 not succeeded + 2 failed
    assert result.data_per_request == pytest.approx(415742 / 9020)
    assert result.p50_ms == pytest.approx(50.5)
    assert result.p99_ms == pytest.approx(99.01)
    assert result.client_cpu == pytest.approx(0.25)


@pytest.mark.skipif(not h2load_available(),
                    reason="h2load is not installed (apt-get install nghttp2-client)")
def test_a_grpc_floor_run_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "unary.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.runtime.unary", "--only", "grpc-floor", "--models", "seed",
         "--streams", "1,8", "--duration", "1", "--warmup", "0",
         "--venvs", str(tmp_path), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {row["connections"]: row for row in json.loads(out.read_text())["medians"]}
    assert set(rows) == {1, 8}
    for row in rows.values():
        assert row["rps"] > 50
        assert row["errors"] == 0
        assert 0 < row["client_cpu"] < 1.5
    assert "h2load's busiest run used" in done.stdout
