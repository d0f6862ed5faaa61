"""Dynamic batching: exact splits, merging, isolation of bad requests, latency, limits.

Most tests drive real TensorFlow models through the DataPlane and compare every answer with
the same model called in-process; the scheduling tests drive a Batcher with a plain numpy
runner whose first call can be held, to make "the model is busy" a fact instead of a race.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from modelplane_runtime.dataplane.batching import AT_ONCE, GATHERED, WINDOW_EXPIRED, Batcher
from modelplane_runtime.dataplane.plane import DataPlane
from modelplane_runtime.errors import InvalidInput, ModelNotReady
from modelplane_runtime.settings import RuntimeSettings

from tests.fixtures.models import call_saved_model, demo_predict
from tests.fixtures.polling import eventually_async


class Recorder:
    """An InferenceObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.loads: list[tuple[str, int]] = []

    def observe_batch(self, model: str, rows: int, seconds: float) -> None:
        assert seconds >= 0
        self.batches.append(rows)

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        self.loads.append((model, version))

    def observe_versions(self, model: str, states: dict[int, str]) -> None:
        self.states = dict(states)

    def observe_load_failure(self, model: str, version: int) -> None:
        raise AssertionError(f"{model} version {version} failed to load")

    def observe_poll(self, model: str) -> None:
        raise AssertionError("these planes do not poll")

    def observe_model_size(self, model: str, version: int, size_bytes: int) -> None:
        assert size_bytes > 0


@asynccontextmanager
async def plane(
    path: Path, recorder: Recorder | None = None, **values: object
) -> AsyncIterator[DataPlane]:
    settings = RuntimeSettings(model_path=path, **values)  # type: ignore[arg-type]
    dataplane = DataPlane(settings, observer=recorder)
    await dataplane.load()
    try:
        yield dataplane
    finally:
        await dataplane.close()


async def test_concurrent_requests_get_exactly_their_own_rows(two_io_model_dir: Path) -> None:
    rng = np.random.default_rng(11)
    requests = []
    for _ in range(120):
        rows = int(rng.integers(1, 10))
        requests.append({
            "a": rng.normal(size=(rows, 3)).astype(np.float32),
            "b": rng.normal(size=(rows, 2)).astype(np.float32),
        })
    recorder = Recorder()
    async with plane(two_io_model_dir, recorder, max_batch_size=32) as dp:
        results = await asyncio.gather(*(dp.predict("two_io", 2, None, r) for r in requests))
        batcher = dp.batcher("two_io", 2)
        assert batcher.merged_calls > 0
        assert batcher.model_calls < len(requests) / 3
    for request, result in zip(requests, results, strict=True):
        want = call_saved_model(two_io_model_dir / "2", request)
        assert set(result) == {"scaled", "total"}
        np.testing.assert_allclose(result["scaled"], want["scaled"], rtol=1e-6)
        np.testing.assert_allclose(result["total"], want["total"], rtol=1e-5, atol=1e-6)
    assert sum(recorder.batches) == sum(len(r["a"]) for r in requests)
    assert max(recorder.batches) <= 32


async def test_requests_arriving_together_merge_up_to_max_batch_size(
    demo_model_dir: Path,
) -> None:
    recorder = Recorder()
    x = np.random.default_rng(2).normal(0, 2, (64, 8)).astype(np.float32)
    async with plane(demo_model_dir, recorder, max_batch_size=16) as dp:
        results = await asyncio.gather(
            *(dp.predict("demo", 1, None, {"inputs": x[i : i + 1]}) for i in range(64))
        )
    assert recorder.batches == [16, 16, 16, 16]
    got = np.concatenate([r["outputs"] for r in results])
    np.testing.assert_allclose(got, demo_predict(x), rtol=1e-5, atol=1e-6)


async def test_a_bad_request_does_not_fail_its_neighbours(checked_model_dir: Path) -> None:
    good = [np.full((2, 2), i, np.float32) for i in range(6)]
    bad = np.array([[1.0, np.inf]], np.float32)
    async with plane(checked_model_dir) as dp:
        inputs = [*good[:3], bad, *good[3:]]
        results = await asyncio.gather(
            *(dp.predict("checked", 1, None, {"x": x}) for x in inputs), return_exceptions=True
        )
        batcher = dp.batcher("checked", 1)
        assert batcher.merged_calls == 1
        assert batcher.model_calls == 1 + len(inputs)  # the merged call, then one by one
    assert isinstance(results[3], InvalidInput)
    assert "input must be finite" in results[3].message
    answers = [r for i, r in enumerate(results) if i != 3]
    for x, result in zip(good, answers, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["y"], 2 * x)


async def test_oversize_request_runs_alone(demo_model_dir: Path) -> None:
    recorder = Recorder()
    sizes = [2, 10, 2, 1]
    async with plane(demo_model_dir, recorder, max_batch_size=4) as dp:
        xs = [np.ones((n, 8), np.float32) * n for n in sizes]
        results = await asyncio.gather(*(dp.predict("demo", 1, None, {"inputs": x}) for x in xs))
    assert 10 in recorder.batches
    assert sum(recorder.batches) == sum(sizes)
    assert all(rows <= 4 for rows in recorder.batches if rows != 10)
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_allclose(result["outputs"], demo_predict(x), rtol=1e-5, atol=1e-6)


async def test_max_batch_size_one_disables_merging(demo_model_dir: Path) -> None:
    recorder = Recorder()
    async with plane(demo_model_dir, recorder, max_batch_size=1) as dp:
        await asyncio.gather(
            *(dp.predict("demo", 1, None, {"inputs": np.ones((1, 8))}) for _ in range(20))
        )
    assert recorder.batches == [1] * 20


async def test_different_row_lengths_are_batched_separately(varlen_model_dir: Path) -> None:
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(2, 3 + i % 2)).astype(np.float32) for i in range(10)]
    async with plane(varlen_model_dir) as dp:
        results = await asyncio.gather(*(dp.predict("varlen", 1, None, {"x": x}) for x in xs))
        assert dp.batcher("varlen", 1).model_calls == 2  # one per row length
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_allclose(result["total"], x.sum(axis=1), rtol=1e-5)
        np.testing.assert_array_equal(result["doubled"], 2 * x)


async def test_signatures_are_batched_separately(two_io_model_dir: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 2), np.float32)
    async with plane(two_io_model_dir, model_version=1) as dp:
        results = await asyncio.gather(
            dp.predict("two_io", 1, "scale_only", {"a": a}),
            dp.predict("two_io", 1, None, {"a": a, "b": b}),
            dp.predict("two_io", 1, "scale_only", {"a": a + 1}),
        )
    assert set(results[0]) == {"scaled"}
    np.testing.assert_array_equal(results[0]["scaled"], a)
    np.testing.assert_array_equal(results[2]["scaled"], a + 1)
    np.testing.assert_allclose(results[1]["total"], a.sum(axis=1) + 2)


async def test_lone_requests_are_never_held_for_a_batch(demo_model_dir: Path) -> None:
    # A long max_latency would add 50 ms to any lone request held for company.
    x = {"inputs": np.ones((1, 8), np.float32)}
    async with plane(demo_model_dir, max_batch_size=32, max_latency_ms=50) as batched:
        for _ in range(20):
            await batched.predict("demo", 1, None, x)
        batcher = batched.batcher("demo", 1)
        assert batcher.merged_calls == 0
        assert batcher.dispatches == {AT_ONCE: 20, GATHERED: 0, WINDOW_EXPIRED: 0}


# Scheduling, with a numpy runner whose calls can be held.


class HeldRunner:
    """Doubles ``x``; each call waits until released, so the model is "busy" on demand."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[int] = []

    def __call__(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.started.set()
        assert self.release.wait(10)
        self.calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


async def wait_for(condition: threading.Event) -> None:
    await eventually_async(condition.is_set, timeout=10, interval=0.001, what="the model call")


async def test_queue_fills_while_a_call_runs_and_drains_into_the_next() -> None:
    runner = HeldRunner()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=0)
    first = asyncio.ensure_future(batcher.submit("s", {"x": np.zeros((1, 2))}, 1))
    await wait_for(runner.started)  # the first request went alone, at once
    later = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.full((1, 2), i)}, 1))
        for i in range(1, 11)
    ]
    await asyncio.sleep(0)
    runner.release.set()
    await first
    results = await asyncio.gather(*later)
    assert runner.calls == [1, 10]
    for i, result in enumerate(results, start=1):
        np.testing.assert_array_equal(result["y"], np.full((1, 2), 2 * i))
    await batcher.close()


async def test_cancelled_requests_are_dropped_from_the_batch() -> None:
    runner = HeldRunner()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=0)
    first = asyncio.ensure_future(batcher.submit("s", {"x": np.zeros((1, 2))}, 1))
    await wait_for(runner.started)
    gone = asyncio.ensure_future(batcher.submit("s", {"x": np.ones((3, 2))}, 3))
    kept = asyncio.ensure_future(batcher.submit("s", {"x": np.ones((2, 2))}, 2))
    await asyncio.sleep(0)
    gone.cancel()
    runner.release.set()
    await first
    assert (await kept)["y"].shape == (2, 2)
    assert runner.calls == [1, 2]
    await batcher.close()


async def test_after_a_merged_call_arrivals_wait_for_as_many_to_gather() -> None:
    runner = HeldRunner()
    runner.release.set()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=10_000)
    await asyncio.gather(*(batcher.submit("s", {"x": np.ones((1, 2))}, 1) for _ in range(4)))
    assert runner.calls == [4]
    assert batcher.gathering_for == 4
    # The window is far longer than the test: the batch goes because the 4th arrived.
    second = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.ones((1, 2))}, 1)) for _ in range(4)
    ]
    await asyncio.gather(*second)
    assert runner.calls == [4, 4]
    assert batcher.dispatches == {AT_ONCE: 1, GATHERED: 1, WINDOW_EXPIRED: 0}
    await batcher.close()


async def test_a_gather_window_is_bounded_and_then_closes() -> None:
    runner = HeldRunner()
    runner.release.set()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=20)
    await asyncio.gather(*(batcher.submit("s", {"x": np.ones((1, 2))}, 1) for _ in range(4)))
    # A lone arrival waits for the 3 others that never come, until the window ends...
    await batcher.submit("s", {"x": np.ones((1, 2))}, 1)
    assert runner.calls == [4, 1]
    assert batcher.dispatches[WINDOW_EXPIRED] == 1
    # ...and with the window closed, a lone request goes at once again.
    assert batcher.gathering_for == 0
    await batcher.submit("s", {"x": np.ones((1, 2))}, 1)
    assert batcher.dispatches == {AT_ONCE: 2, GATHERED: 0, WINDOW_EXPIRED: 1}
    await batcher.close()


async def test_on_one_cpu_answered_requests_rejoin_the_queued_ones() -> None:
    runner = HeldRunner()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=10_000, cpus=1)
    first = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.ones((1, 2))}, 1)) for _ in range(2)
    ]
    await wait_for(runner.started)  # a merged call of 2 is running
    queued = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.full((1, 2), i)}, 1))
        for i in range(3)
    ]
    await asyncio.sleep(0)
    runner.release.set()
    await asyncio.gather(*first)
    # Decided when the call ended: the 3 queued wait for the 2 answered to come back.
    assert batcher.gathering_for == 5
    assert runner.calls == [2]
    back = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.full((1, 2), 7)}, 1))
        for _ in range(2)
    ]
    results = await asyncio.gather(*queued, *back)
    assert runner.calls == [2, 5]
    assert batcher.dispatches == {AT_ONCE: 1, GATHERED: 1, WINDOW_EXPIRED: 0}
    for i, result in enumerate(results[:3]):
        np.testing.assert_array_equal(result["y"], np.full((1, 2), 2 * i))
    await batcher.close()


async def test_with_more_cpus_queued_requests_go_at_once() -> None:
    runner = HeldRunner()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=10_000, cpus=2)
    first = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.ones((1, 2))}, 1)) for _ in range(2)
    ]
    await wait_for(runner.started)
    queued = [
        asyncio.ensure_future(batcher.submit("s", {"x": np.ones((1, 2))}, 1)) for _ in range(3)
    ]
    await asyncio.sleep(0)
    runner.release.set()
    await asyncio.gather(*first, *queued)
    assert runner.calls == [2, 3]
    # No gather window: the loop overlaps the call, so the queued three went straight on.
    assert batcher.dispatches == {AT_ONCE: 2, GATHERED: 0, WINDOW_EXPIRED: 0}
    await batcher.close()


async def test_outputs_without_a_batch_dimension_are_answered_one_by_one() -> None:
    calls: list[int] = []

    def runner(signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"sum": np.asarray(inputs["x"].sum())}  # a scalar: cannot be split by row

    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=0)
    xs = [np.full((2, 1), i, np.float64) for i in range(3)]
    results = await asyncio.gather(*(batcher.submit("s", {"x": x}, 2) for x in xs))
    assert [float(r["sum"]) for r in results] == [0.0, 2.0, 4.0]
    assert calls == [6, 2, 2, 2]
    await asyncio.gather(*(batcher.submit("s", {"x": x}, 2) for x in xs))
    assert calls[4:] == [2, 2, 2]  # never merged again
    await batcher.close()


async def test_close_fails_queued_requests_and_refuses_new_ones() -> None:
    runner = HeldRunner()
    batcher = Batcher(runner, max_batch_size=100, max_latency_ms=0)
    running = asyncio.ensure_future(batcher.submit("s", {"x": np.zeros((1, 2))}, 1))
    await wait_for(runner.started)
    queued = asyncio.ensure_future(batcher.submit("s", {"x": np.zeros((1, 2))}, 1))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(ModelNotReady):
        await queued
    runner.release.set()
    assert (await running)["y"].shape == (1, 2)  # the running call still finishes
    await closing
    with pytest.raises(ModelNotReady, match="shutting down"):
        await batcher.submit("s", {"x": np.zeros((1, 2))}, 1)
