"""Progress lines: rate over the last interval, ETA from it, and the fields of the line."""

from __future__ import annotations

import logging

import pytest
from modelplane_runtime.storage.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_over_the_last_interval_and_eta_follows() -> None:
    clock = Clock()
    progress = Progress("s3://b/m", total_bytes=1000, total_files=2, clock=clock)
    clock.now += 2
    progress.add(400)
    first = progress.snapshot()
    assert (first.bytes, first.bytes_per_second, first.eta_s) == (400, 200.0, 3.0)
    clock.now += 1
    progress.add(100)  # the link slowed down: the ETA says so at once
    progress.file_done()
    second = progress.snapshot()
    assert (second.bytes, second.files, second.bytes_per_second) == (500, 1, 100.0)
    assert second.eta_s == 5.0
    assert second.elapsed_s == 3.0


def test_fields_of_the_line() -> None:
    clock = Clock()
    progress = Progress("gs://b/m", total_bytes=4000, total_files=1, clock=clock)
    clock.now += 4
    progress.add(1000)
    fields = progress.snapshot().fields("gs://b/m")
    assert fields == {
        "event": "fetch_progress", "uri": "gs://b/m", "bytes": 1000, "total_bytes": 4000,
        "files": 0, "total_files": 1, "percent": 25.0, "bytes_per_second": 250,
        "eta_seconds": 12.0, "elapsed_seconds": 4.0,
    }


def test_a_stalled_download_has_no_eta() -> None:
    clock = Clock()
    progress = Progress("az://c/m", total_bytes=10, total_files=1, clock=clock)
    clock.now += 5
    snap = progress.snapshot()
    assert snap.bytes_per_second == 0.0 and snap.eta_s is None


def test_report_logs_one_json_ready_record(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress("s3://b/m", total_bytes=0, total_files=0)
    with caplog.at_level(logging.INFO, logger="modelplane.storage"):
        progress.report()
    (record,) = caplog.records
    assert record.getMessage() == "fetch progress"
    assert record.event == "fetch_progress"  # type: ignore[attr-defined]
    assert record.percent == 100.0  # type: ignore[attr-defined]
