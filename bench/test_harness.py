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
