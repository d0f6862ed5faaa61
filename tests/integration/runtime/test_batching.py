"""Dynamic batching seen from outside: many concurrent requests of different sizes, over v1
and v2, each answered exactly its own rows, while the batch-size histogram shows merging."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.runtime_server import (
    RuntimeServer,
    launch_runtime,
    metric_samples,
    metric_value,
)

MAX_BATCH = 64
REQUESTS = 240
CONNECTIONS = 48


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, runtime_log_dir: Path) -> Iterator[RuntimeServer]:
    # --log-level error also checks that the ready line (which the fixture parses for the
    # port) is logged whatever the level.
    args = ["--name", "demo", "--max-batch-size", str(MAX_BATCH), "--max-latency-ms", "20"]
    args += ["--log-level", "error"]
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as running:
        yield running


def _request_rows(rng: np.random.Generator, index: int) -> np.ndarray:
    # Mostly small requests that can merge, plus a few bigger than a whole batch.
    size = MAX_BATCH + 36 if index % 60 == 7 else int(rng.integers(1, 7))
    return rng.normal(0, 4, size=(size, 8)).astype(np.float32)


async def _send(client: httpx.AsyncClient, index: int, rows: np.ndarray) -> np.ndarray:
    if index % 2:
        body = {"instances": rows.tolist()}
        response = await client.post("/v1/models/demo:predict", json=body)
        assert response.status_code == 200, response.text
        return np.array(response.json()["predictions"], dtype=np.float32)
    tensor = {"name": "inputs", "shape": list(rows.shape), "datatype": "FP32"}
    body = {"id": str(index), "inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}
    response = await client.post("/v2/models/demo/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(index)
    output = response.json()["outputs"][0]
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


async def test_concurrent_requests_get_exactly_their_rows(server: RuntimeServer) -> None:
    rng = np.random.default_rng(11)
    requests = [_request_rows(rng, i) for i in range(REQUESTS)]
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        before = (await client.get("/metrics")).text
        answers = await asyncio.gather(*(_send(client, i, r) for i, r in enumerate(requests)))
        after = (await client.get("/metrics")).text

    for rows, answer in zip(requests, answers, strict=True):
        assert answer.shape == (len(rows), 1)
        np.testing.assert_allclose(answer, demo_predict(rows), rtol=1e-5, atol=1e-6)

    calls = metric_value(after, "modelplane_batch_size_count") - metric_value(
        before, "modelplane_batch_size_count"
    )
    rows_run = metric_value(after, "modelplane_batch_size_sum") - metric_value(
        before, "modelplane_batch_size_sum"
    )
    assert rows_run == sum(len(r) for r in requests)  # every row ran exactly once
    assert calls < REQUESTS, "no two requests were merged into one model call"

    # A lone small request has at most 6 rows: calls above 8 rows carried several requests
    # (or one of the oversized requests, which must have run alone, at their full size).
    def at_most(samples_text: str, bound: str) -> float:
        return sum(
            value
            for labels, value in metric_samples(samples_text, "modelplane_batch_size_bucket")
            if labels.get("le") == bound
        )

    over_8 = calls - (at_most(after, "8.0") - at_most(before, "8.0"))
    oversized = sum(1 for r in requests if len(r) > MAX_BATCH)
    assert over_8 > oversized, "the histogram shows no merged call above 8 rows"
    over_max = calls - (at_most(after, "64.0") - at_most(before, "64.0"))
    assert over_max == oversized, "only the oversized requests may exceed max_batch_size"
