"""A 200 MiB object through ``modelplane fetch``: progress lines, and memory that stays bounded.

The fetch runs as the real CLI process; its peak RSS comes from ``wait4`` (the kernel's
``ru_maxrss`` for that process alone). The bound is relative: the same command fetching a
1 MiB object sets the baseline (interpreter, SDK, threads), and the 200 MiB fetch may add
at most 32 MiB to it (a sixth of the object), so holding the object (or a large share of it)
in memory fails the test. Throughput and peak RSS are printed (``-s``) for the record;
speed targets belong in benchmarks, not here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.fixtures.object_stores import StoreServer, fetch_env, run_fetch

MiB = 1024 * 1024
SIZE = 200 * MiB
GROWTH_BOUND = 32 * MiB


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_200_mib_object_streams_with_bounded_memory(
    store: StoreServer, tmp_path: Path
) -> None:
    source = tmp_path / "variables.data-00000-of-00001"
    with source.open("wb") as sink:
        for _ in range(SIZE // (8 * MiB)):
            sink.write(os.urandom(8 * MiB))
    bucket = store.make_bucket()
    store.upload(bucket, "big/1/variables/variables.data-00000-of-00001", source)
    store.upload(bucket, "small/1/saved_model.pb", os.urandom(MiB))
    env = fetch_env(store.env() | {"MODELPLANE_STORAGE_PROGRESS_S": "0.2"})

    small = run_fetch(store.uri(bucket, "small"), tmp_path / "small", env, tmp_path)
    assert small.returncode == 0, small.stderr
    big = run_fetch(store.uri(bucket, "big"), tmp_path / "big", env, tmp_path)
    assert big.returncode == 0, big.stderr

    fetched = tmp_path / "big" / "1" / "variables" / "variables.data-00000-of-00001"
    assert fetched.stat().st_size == SIZE
    assert sha256(fetched) == sha256(source)

    lines = [json.loads(line) for line in big.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line.get("event") == "fetch_progress"]
    done = [line for line in lines if line.get("event") == "fetch_done"]
    assert progress, big.stderr[-2000:]
    assert [p["bytes"] for p in progress] == sorted(p["bytes"] for p in progress)
    assert all(p["total_bytes"] == SIZE for p in progress)
    assert len(done) == 1 and done[0]["bytes"] == SIZE

    growth = big.peak_rss_bytes - small.peak_rss_bytes
    print(f"\n[{store.scheme}] 200 MiB fetch: {big.seconds:.1f}s wall "
          f"({SIZE / big.seconds / MiB:.1f} MiB/s process, "
          f"{done[0]['bytes_per_second'] / MiB:.1f} MiB/s download), peak RSS "
          f"{big.peak_rss_bytes / MiB:.0f} MiB vs {small.peak_rss_bytes / MiB:.0f} MiB for "
          f"1 MiB (+{growth / MiB:.0f} MiB), {len(progress)} progress lines")
    assert growth < GROWTH_BOUND, (
        f"peak RSS grew by {growth / MiB:.0f} MiB for a 200 MiB object "
        f"({big.peak_rss_bytes / MiB:.0f} vs {small.peak_rss_bytes / MiB:.0f} MiB)"
    )
