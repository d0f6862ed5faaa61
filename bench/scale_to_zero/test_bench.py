"""Smoke test of the scale-from-zero benchmark itself (not of the product): one wake-up and
a few held requests, through the whole stand-in cluster (slow: it starts runtimes)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.scale_to_zero.__main__ import report, run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_wake_up_and_held_requests_are_measured() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-s2z-test-") as folder:
        result = run(runs=1, held=20, idle_s=5, workdir=Path(folder))
    (wake,) = result["wakes"]
    assert 0 < wake["runtime_start_s"] <= wake["first_request_s"]
    assert result["memory"]["answered_200"] == 20
    assert "platform cost" in report(result)
