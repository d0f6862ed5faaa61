"""Dynamic batching: concurrent requests merge into one model call, then split back exactly.

Plain asyncio and numpy; nothing here knows about HTTP. One :class:`Batcher` serves one
loaded model version and owns one worker thread: model calls run there, off the event
loop (TensorFlow releases the GIL while it computes), one at a time, so the core running
the model stays busy while the loop keeps parsing requests.

How a batch forms (designed for throughput without hurting a lone request):

- Requests queue by *key*: signature, and each input's non-batch shape and dtype. Only
  requests with the same key can be concatenated along the batch dimension.
- When the model is idle, a request is dispatched on the next turn of the event loop: no
  timer, no added latency at concurrency 1 (requests that arrived in the same turn join it).
- While a call runs, arrivals queue; when it ends, the queue is drained into the next call
  at once (oldest key first, FIFO, up to ``max_batch_size`` rows), so the model never idles
  while work waits.
- ``max_latency_ms`` bounds the only deliberate wait: right after a merged call of n
  requests, when nothing is queued, the next arrivals wait (at most that long) for n of
  them to gather, because the clients that just got answers are about to send again. This
  trades a bounded delay for fewer, fuller model calls under load; a lone client never sees
  it (its calls are never merged). ``0`` turns the wait off.
- On one CPU (``cpus=1``: affinity and cgroup quota, see cpus.py) the loop cannot parse
  the next batch while the model runs this one, so two half batches taking turns only pay
  the per-call overhead twice (TensorFlow's is ~200 us per call for a small model). There,
  after a merged call of n requests with q more queued, the next call waits (at most
  ``max_latency_ms``) for n + q of them: everyone just answered comes back and joins one
  fuller call. With more CPUs, q queued requests are dispatched at once.
- A request larger than ``max_batch_size`` runs alone; ``max_batch_size=1`` disables merging.
- If a merged call fails, its members are retried one by one, so a bad request fails
  alone and never its neighbours. A signature whose outputs cannot be split by row (an
  output without the batch dimension) is retried the same way and never merged again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Protocol

import numpy as np

from modelplane_runtime import errors

Arrays = dict[str, np.ndarray]
Runner = Callable[[str, Arrays], Arrays]
"""``(signature, inputs) -> outputs``; called in the worker thread."""
BatchObserver = Callable[[int, float], None]
"""``(rows, seconds)`` of one model call; called on the event loop."""
BatchTracer = Callable[[list[Any], list[Any], float, list[tuple[int, float, float]]], None]
"""``(requests, results, dispatched, calls)`` of a finished batch, before its results are
handed out (tracing.record_batch); times from ``time.perf_counter``, calls as
``(rows, seconds, start)``."""

_sequence = itertools.count()

AT_ONCE = "at_once"
GATHERED = "gathered"
WINDOW_EXPIRED = "window_expired"
DISPATCH_REASONS = (AT_ONCE, GATHERED, WINDOW_EXPIRED)
"""Why a batch went when it did: nothing to wait for; the requests a gather window waited
for arrived (or filled the batch); the window ran out first."""


class Waiter(Protocol):
    """Who gets a request's outputs: an ``asyncio.Future``, or any object with its three
    methods that are used here (the direct HTTP path's request is one, so an answer is written
    straight from the batch's completion, with no future or scheduled callback between).
    ``done()`` true means withdrawn (cancelled, timed out, client gone) until dispatched."""

    def done(self) -> bool: ...
    def set_result(self, result: Arrays, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(eq=False)
class _Request:
    signature: str
    inputs: Arrays
    rows: int
    future: Waiter
    order: int = field(default_factory=lambda: next(_sequence))


class _Unsplittable(Exception):
    """A merged call's output has no batch dimension to split along."""


class Batcher:
    """Queues requests for one model version and runs them in merged calls."""

    def __init__(
        self,
        run: Runner,
        *,
        max_batch_size: int,
        max_latency_ms: float,
        name: str = "model",
        on_batch: BatchObserver | None = None,
        cpus: int = 2,
        on_trace: BatchTracer | None = None,
    ) -> None:
        self._run = run
        # One CPU: the model call and the HTTP work cannot overlap (see the module doc).
        self._one_cpu = cpus <= 1
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_latency_ms) / 1000.0
        self._on_batch = on_batch
        self._on_trace = on_trace
        self._dispatched = 0.0  # when the batch in flight went (read only when tracing)
        # One plain thread fed by a SimpleQueue: a ThreadPoolExecutor.submit (a Future, a
        # work item, a semaphore) cost ~5 us per batch on the event loop's core.
        self._name = name
        self._calls: SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Request]] | None]
        self._calls = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one loop it serves
        self._queues: dict[Hashable, deque[_Request]] = {}
        self._queued = 0
        self._queued_rows = 0
        self._busy = False
        self._scheduled = False
        self._closed = False
        self._solo: set[str] = set()  # signatures that must not be merged
        self._gather_until = 0.0
        self._gather_count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._window_expired = False
        self._reason = AT_ONCE
        self.enqueued = 0
        """Requests queued so far (a version being retired watches it stop moving)."""
        self.model_calls = 0
        """Model calls made (merged calls, lone calls and retries)."""
        self.merged_calls = 0
        """Calls that carried more than one request."""
        self.dispatches: dict[str, int] = dict.fromkeys(DISPATCH_REASONS, 0)
        """Batches sent to the model, by why they went when they did (see DISPATCH_REASONS)."""

    async def submit(
        self, signature: str, inputs: Arrays, rows: int, *, mergeable: bool = True
    ) -> Arrays:
        """Run ``inputs`` (``rows`` along the batch dimension) and return this request's outputs.

        ``mergeable=False`` (inputs without a batch dimension) runs the request alone.
        """
        return await self.enqueue(signature, inputs, rows, mergeable=mergeable)

    def enqueue(
        self, signature: str, inputs: Arrays, rows: int, *, mergeable: bool = True
    ) -> asyncio.Future[Arrays]:
        """Queue ``inputs``; the future gets this request's outputs (``submit`` without await).

        Cancelling the future withdraws the request if its call has not started. Call it on
        the event loop (always the same one).
        """
        future: asyncio.Future[Arrays] = self._event_loop().create_future()
        self.enqueue_to(future, signature, inputs, rows, mergeable=mergeable)
        return future

    def enqueue_to(
        self, waiter: Waiter, signature: str, inputs: Arrays, rows: int, *, mergeable: bool = True
    ) -> None:
        """Queue ``inputs`` for ``waiter``, which gets the outputs or the error (on the loop).

        A waiter must not raise from ``set_result`` or ``set_exception``: the rest of its
        batch is answered after it.
        """
        if self._closed:
            raise errors.ModelNotReady("the model is shutting down")
        loop = self._event_loop()
        request = _Request(signature, inputs, rows, waiter)
        if mergeable and signature not in self._solo:
            # Inputs arrive in the signature's order (validation builds them so); any other
            # order only makes a separate queue. dtype objects hash faster than dtype.str.
            if len(inputs) == 1:
                ((name, array),) = inputs.items()
                key: Hashable = (signature, name, array.shape[1:], array.dtype)
            else:
                key = (signature, *[(n, a.shape[1:], a.dtype) for n, a in inputs.items()])
        else:
            key = ("solo", request.order)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(request)
        self.enqueued += 1
        self._queued += 1
        self._queued_rows += rows
        self._kick(loop)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # Looked up once: asyncio.get_running_loop() makes a getpid() system call each time.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def idle(self) -> bool:
        """Nothing queued and no call running."""
        return not self._busy and not self._queued

    async def close(self) -> None:
        """Refuse new requests, fail queued ones, wait for the running call, stop the thread."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for queue in self._queues.values():
            for request in queue:
                if not request.future.done():
                    request.future.set_exception(
                        errors.ModelNotReady("the model is shutting down")
                    )
        self._queues.clear()
        await self._idle.wait()
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()

    # Scheduling (event loop only).

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._busy or self._scheduled or self._closed or not self._queued:
            return
        if self._gathering(loop):
            if self._timer is None:
                self._timer = loop.call_at(self._gather_until, self._gather_done, loop)
            return
        if self._window_expired or 0 < self._gather_until <= loop.time():
            self._reason = WINDOW_EXPIRED
        else:
            self._reason = GATHERED if self._gather_until > 0 else AT_ONCE
        self._window_expired = False
        self._scheduled = True
        loop.call_soon(self._dispatch, loop)

    @property
    def gathering_for(self) -> int:
        """How many requests an open gather window waits for (0: no window open)."""
        return self._gather_count if self._gather_until > 0 else 0

    def _gathering(self, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            self._gather_until > 0
            and self._queued < self._gather_count
            and self._queued_rows < self._max_rows
            and loop.time() < self._gather_until
        )

    def _gather_done(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._gather_until = 0.0
        self._window_expired = bool(self._queued)
        self._kick(loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._busy or self._closed:
            return
        batch = self._take()
        if not batch:
            return
        self._busy = True
        self._idle.clear()
        if self._on_trace is not None:
            self._dispatched = time.perf_counter()
        self.dispatches[self._reason] += 1
        self._gather_until = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve_calls, name=f"model-{self._name}")
            self._thread.start()
        self._calls.put((loop, batch))

    def _take(self) -> list[_Request]:
        """The next batch: the oldest waiting request and those behind it with the same key."""
        while self._queues:
            key = min(self._queues, key=lambda k: self._queues[k][0].order)
            queue = self._queues[key]
            batch: list[_Request] = []
            rows = 0
            while queue:
                request = queue[0]
                if request.future.done():  # cancelled (client gone or timed out)
                    queue.popleft()
                    self._queued -= 1
                    self._queued_rows -= request.rows
                    continue
                if batch and rows + request.rows > self._max_rows:
                    break
                queue.popleft()
                self._queued -= 1
                self._queued_rows -= request.rows
                batch.append(request)
                rows += request.rows
                if rows >= self._max_rows:
                    break
            if not queue:
                del self._queues[key]
            if batch:
                return batch
        return []

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Request],
        results: list[Arrays | BaseException],
        calls: list[tuple[int, float, float]],
    ) -> None:
        self._busy = False
        self._idle.set()
        if self._on_trace is not None:
            self._on_trace(batch, results, self._dispatched, calls)
        for request, result in zip(batch, results, strict=True):
            if request.future.done():
                continue
            if isinstance(result, BaseException):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)
        self.model_calls += len(calls)
        if len(batch) > 1:
            self.merged_calls += 1
        if self._on_batch is not None:
            for rows, seconds, _ in calls:
                self._on_batch(rows, seconds)
        if len(batch) > 1 and self._max_wait > 0 and (self._one_cpu or not self._queued):
            self._gather_until = loop.time() + self._max_wait
            self._gather_count = len(batch) + self._queued
        self._kick(loop)

    # The model call (worker thread).

    def _serve_calls(self) -> None:
        while (item := self._calls.get()) is not None:
            self._work(*item)

    def _work(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        calls: list[tuple[int, float, float]] = []
        results: list[Arrays | BaseException]
        try:
            if len(batch) == 1:
                results = [self._call(batch[0].signature, batch[0].inputs, batch[0].rows, calls)]
            else:
                results = self._merged(batch, calls)
        except BaseException as exc:  # never leave futures hanging
            results = [exc] * len(batch)
        with contextlib.suppress(RuntimeError):  # the loop closed while the call ran
            loop.call_soon_threadsafe(self._finish, loop, batch, results, calls)

    def _call(
        self, signature: str, inputs: Arrays, rows: int, calls: list[tuple[int, float, float]]
    ) -> Arrays | BaseException:
        start = time.perf_counter()
        try:
            return self._run(signature, inputs)
        except Exception as exc:
            return exc
        finally:
            calls.append((rows, time.perf_counter() - start, start))

    def _merged(
        self, batch: list[_Request], calls: list[tuple[int, float, float]]
    ) -> list[Any]:
        signature = batch[0].signature
        names = batch[0].inputs.keys()
        merged = {name: np.concatenate([r.inputs[name] for r in batch]) for name in names}
        total = sum(r.rows for r in batch)
        outputs = self._call(signature, merged, total, calls)
        if not isinstance(outputs, BaseException):
            try:
                return _split(outputs, batch, total)
            except _Unsplittable:
                self._solo.add(signature)
        # Retry one by one: the failure belongs to some members only (or to merging).
        return [self._call(signature, r.inputs, r.rows, calls) for r in batch]


def _split(outputs: Arrays, batch: list[_Request], total: int) -> list[Arrays]:
    for value in outputs.values():
        if value.ndim == 0 or value.shape[0] != total:
            raise _Unsplittable
    results: list[Arrays] = []
    start = 0
    for request in batch:
        stop = start + request.rows
        results.append({name: value[start:stop] for name, value in outputs.items()})
        start = stop
    return results
