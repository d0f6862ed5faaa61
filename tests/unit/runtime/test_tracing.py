"""Tracing's switch (the standard OTEL_* variables) and the batch spans, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from modelplane_runtime.dataplane.plane import DataPlane
from modelplane_runtime.errors import InvalidInput
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.tracing import (
    RequestTrace,
    Tracing,
    from_environment,
    record_batch,
    resource,
    wanted,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("environ", "off_because"),
    [
        ({}, "no OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, "no OTEL_EXPORTER_OTLP_ENDPOINT"),
        (ENDPOINT, ""),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ""),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ""),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
          "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, ""),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"}, "OTEL_SDK_DISABLED=true"),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, "only otlp"),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "console,otlp"}, ""),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "not supported"),
    ],
)
def test_tracing_is_on_only_with_an_otlp_endpoint(
    environ: dict[str, str], off_because: str
) -> None:
    reason = wanted(environ)
    assert (reason == "") == (off_because == "")
    assert off_because in reason


def test_from_environment_builds_an_exporting_provider_per_protocol() -> None:
    assert from_environment("m", {}) is None
    for protocol in ("http/protobuf", "grpc"):
        tracing = from_environment("m", {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
        assert tracing is not None
        tracing.shutdown(timeout_s=10)


def test_the_service_is_modelplane_unless_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    found = resource("seed")
    assert found.attributes["service.name"] == "modelplane"
    assert found.attributes["modelplane.model"] == "seed"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "seed-mlp")
    assert resource("seed").attributes["service.name"] == "seed-mlp"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=ml")
    attributes = resource("seed").attributes
    assert attributes["service.name"] == "from-attrs" and attributes["team"] == "ml"


def _tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_failed_merged_call_gives_each_request_its_merged_call_and_its_retry(
    checked_model_dir: Path,
) -> None:
    tracing, exporter = _tracing()
    settings = RuntimeSettings(model_path=checked_model_dir, model_name="checked")
    dataplane = DataPlane(settings, traced=True)
    await dataplane.load()
    try:
        inputs = [np.array([[1.0, 2.0]], np.float32), np.array([[np.inf, 1.0]], np.float32),
                  np.array([[3.0, 4.0], [5.0, 6.0]], np.float32)]
        loop = asyncio.get_running_loop()
        traces: list[RequestTrace] = []
        futures = []
        for x in inputs:  # all queued in one tick: one merged call (see test_batching)
            trace = tracing.start("POST /x", None)
            assert trace is not None
            future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
            dataplane.submit_to(trace.waiter(future), "checked", 1, None, {"x": x})
            traces.append(trace)
            futures.append(future)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for trace in traces:
            trace.finish_http(200)
    finally:
        await dataplane.close()
    assert isinstance(results[1], InvalidInput)
    spans = list(exporter.get_finished_spans())
    for trace, x, result in zip(traces, inputs, results, strict=True):
        server = next(s for s in spans if s.context is not None
                      and s.context.span_id == trace.span.get_span_context().span_id)
        named = {s.name: s for s in _children(spans, server)}
        assert set(named) == {"queue wait", "batch"}
        batch = named["batch"]
        assert batch.attributes is not None
        assert batch.attributes["modelplane.batch.requests"] == 3
        assert batch.attributes["modelplane.batch.rows"] == 4
        assert batch.attributes["modelplane.request.rows"] == len(x)
        calls = _children(spans, batch)
        assert sorted(c.attributes["modelplane.call.rows"] for c in calls  # type: ignore[index]
                      ) == sorted([4, len(x)])
        failed = isinstance(result, BaseException)
        assert (batch.status.status_code == StatusCode.ERROR) == failed
        assert named["queue wait"].end_time <= batch.start_time


class Done:
    def __init__(self) -> None:
        self.results: list[object] = []

    def done(self) -> bool:
        return False

    def set_result(self, result: object, /) -> None:
        self.results.append(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.results.append(exception)


def test_the_traced_waiter_passes_everything_through() -> None:
    tracing, _ = _tracing()
    trace = tracing.start("POST /x", None)
    assert trace is not None
    inner = Done()
    waiter = trace.waiter(inner)
    assert waiter.trace is trace and trace.submitted > 0
    assert not waiter.done()
    error = ValueError("x")
    waiter.set_result({"y": 1})
    waiter.set_exception(error)
    assert inner.results == [{"y": 1}, error]


def test_a_tracing_fault_never_breaks_a_batch(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        rows = 1

        @property
        def future(self) -> object:
            raise RuntimeError("boom")

    record_batch([Broken()], [None], 0.0, [])  # logged, not raised
    assert any("could not record a batch" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("code", "error"), [(0, False), (3, False), (5, False), (13, True),
                                             (4, True), (14, True)])
def test_grpc_statuses_mark_server_failures_only(code: int, error: bool) -> None:
    """What a gRPC front end calls: INVALID_ARGUMENT and NOT_FOUND are the client's."""
    tracing, exporter = _tracing()
    trace = tracing.start("/inference.GRPCInferenceService/ModelInfer", None, None,
                          {"rpc.system": "grpc"})
    assert trace is not None
    trace.decoding()
    trace.finish_grpc(code, "r-1")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["/inference.GRPCInferenceService/ModelInfer"]
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == code
    assert server.attributes["modelplane.request_id"] == "r-1"
    assert (server.status.status_code == StatusCode.ERROR) is error
    assert (spans["decode"].status.status_code == StatusCode.ERROR) is (code != 0)
