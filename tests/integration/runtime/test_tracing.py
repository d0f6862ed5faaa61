"""Tracing: W3C traceparent in, one trace per request with its spans, exported over OTLP.

Two halves. In process, the runtime's app is served by uvicorn in a thread, on the direct
path and through ASGI, with the OpenTelemetry SDK's in-memory exporter: the spans, their
parents and times are checked exactly. As a real process, ``modelplane serve`` with only
the standard ``OTEL_*`` variables exports to an OTLP/HTTP receiver this test runs (the
protobuf wire format the OpenTelemetry Collector accepts, decoded with the OTLP protos).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from modelplane_runtime.http.app import create_app
from modelplane_runtime.server.lifecycle import bind_socket
from modelplane_runtime.server.process import http_protocol
from modelplane_runtime.settings import RuntimeSettings
from modelplane_runtime.tracing import Tracing
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from tests.fixtures.otlp import Receiver, otlp_receiver
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import launch_runtime

ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
CHILDREN = {"decode", "queue wait", "batch", "model call", "encode"}


def _traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


@contextmanager
def _served(settings: RuntimeSettings, tracing: Tracing) -> Iterator[str]:
    """The runtime app on uvicorn in a thread (the direct path unless settings say not)."""
    app = create_app(settings, tracing=tracing)
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(
        app, loop="uvloop", http=http_protocol(app, settings), lifespan="on",
        log_config=None, access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), timeout=120,
                   what="the in-process runtime to start")
        assert server.started, "the in-process runtime failed to start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@pytest.fixture(scope="module", params=["direct", "asgi"])
def traced(
    request: pytest.FixtureRequest, demo_model_dir: Path
) -> Iterator[tuple[str, InMemorySpanExporter]]:
    """The demo model served with every span kept in memory; (base URL, exporter)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = RuntimeSettings(
        model_path=demo_model_dir, model_name="demo", http_direct=request.param == "direct",
        max_latency_ms=20,
    )
    with _served(settings, Tracing(provider)) as url:
        yield url, exporter


def _trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        span for span in exporter.get_finished_spans()
        if span.context is not None and format(span.context.trace_id, "032x") == trace_id
    ]


def _complete(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan] | None:
    """The trace once its server span has ended: every child ends before it does."""
    spans = _trace(exporter, trace_id)
    return spans if any(span.kind == SpanKind.SERVER for span in spans) else None


def _by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def test_one_trace_per_request_with_every_span_under_the_callers_span(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    header, trace_id, caller_span = _traceparent()
    answer = httpx.post(f"{url}/v1/models/demo:predict", json={"instances": [ROW]},
                        headers={"traceparent": header, "x-request-id": "trace-me"})
    assert answer.status_code == 200, answer.text
    spans = eventually(lambda: _complete(exporter, trace_id), what="the request's spans")
    named = _by_name(spans)
    (server,) = named["POST /v1/models/{name}:predict"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None and format(server.parent.span_id, "016x") == caller_span
    assert server.parent.is_remote
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/v1/models/{name}:predict"
    assert server.attributes["url.path"] == "/v1/models/demo:predict"
    assert server.attributes["modelplane.model"] == "demo"
    assert server.attributes["modelplane.request_id"] == "trace-me"
    assert server.status.status_code == StatusCode.UNSET
    assert server.context is not None
    for name in ("decode", "queue wait", "batch", "encode"):
        (child,) = named[name]
        assert child.parent is not None and child.parent.span_id == server.context.span_id, name
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time, name
    (batch,) = named["batch"]
    (call,) = named["model call"]
    assert batch.context is not None and call.parent is not None
    assert call.parent.span_id == batch.context.span_id
    assert batch.start_time <= call.start_time <= call.end_time <= batch.end_time
    assert batch.attributes is not None and batch.attributes["modelplane.request.rows"] == 1
    # The steps happen in order: decode, wait in the queue, the batch, encode.
    (decode,), (queue,), (encode,) = named["decode"], named["queue wait"], named["encode"]
    assert decode.end_time <= queue.end_time <= batch.start_time
    assert batch.end_time <= encode.start_time
    assert len(spans) == 6


def test_concurrent_requests_each_get_their_own_trace_even_in_one_batch(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    parents = [_traceparent() for _ in range(6)]
    results: list[int] = []

    def send(header: str) -> None:
        with httpx.Client() as client:
            answer = client.post(f"{url}/v2/models/demo/infer", headers={"traceparent": header},
                                 json={"inputs": [{"name": "inputs", "shape": [1, 8],
                                                   "datatype": "FP32", "data": ROW}]})
            results.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(header,)) for header, _, _ in parents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * len(parents)
    for _, trace_id, caller_span in parents:
        spans = eventually(lambda t=trace_id: _complete(exporter, t), what="each request's spans")
        named = _by_name(spans)
        (server,) = named["POST /v2/models/{name}/infer"]
        assert server.parent is not None and format(server.parent.span_id, "016x") == caller_span
        assert {s.name for s in spans} == CHILDREN | {server.name}
        (batch,) = named["batch"]
        assert batch.attributes is not None
        assert batch.attributes["modelplane.batch.requests"] >= 1
        assert batch.attributes["modelplane.batch.rows"] == batch.attributes[
            "modelplane.batch.requests"]
    # Every span of those requests is in one of their traces: none leaked into another.
    ids = {trace_id for _, trace_id, _ in parents}
    ours = [s for s in exporter.get_finished_spans()
            if s.context is not None and format(s.context.trace_id, "032x") in ids]
    assert len(ours) == 6 * len(parents)


def test_no_traceparent_starts_a_new_trace_and_a_bad_one_is_ignored(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    for headers in ({}, {"traceparent": "not-a-traceparent"},
                    {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}):
        exporter.clear()
        answer = httpx.post(f"{url}/v1/models/demo:predict", json={"instances": [ROW]},
                            headers=headers)
        assert answer.status_code == 200
        servers = eventually(
            lambda: [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER],
            what="a server span",
        )
        assert len(servers) == 1
        assert servers[0].parent is None, headers  # a root: the caller gave no valid parent
        assert servers[0].context is not None and servers[0].context.trace_id != 0


def test_a_caller_that_did_not_sample_gets_no_spans(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    header, trace_id, _ = _traceparent(sampled=False)
    answer = httpx.post(f"{url}/v1/models/demo:predict", json={"instances": [ROW]},
                        headers={"traceparent": header})
    assert answer.status_code == 200
    # A later sampled request's spans arrive after any of the unsampled one's would have.
    sampled, later, _ = _traceparent()
    httpx.post(f"{url}/v1/models/demo:predict", json={"instances": [ROW]},
               headers={"traceparent": sampled})
    eventually(lambda: _complete(exporter, later), what="the sampled request's spans")
    assert _trace(exporter, trace_id) == []


def test_refused_requests_are_traced_with_their_status(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    header, trace_id, _ = _traceparent()
    answer = httpx.post(f"{url}/v1/models/demo:predict", content=b"{not json",
                        headers={"traceparent": header, "content-type": "application/json"})
    assert answer.status_code == 400
    spans = eventually(lambda: _complete(exporter, trace_id), what="the 400's spans")
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is the client's error
    names = {s.name for s in spans}
    assert "decode" in names and not names & {"queue wait", "batch", "model call", "encode"}
    decode = next(s for s in spans if s.name == "decode")
    assert decode.status.status_code == StatusCode.ERROR
    # An unknown model: refused before its body is read.
    header, trace_id, _ = _traceparent()
    answer = httpx.post(f"{url}/v1/models/absent:predict", json={"instances": [ROW]},
                        headers={"traceparent": header})
    assert answer.status_code == 404
    spans = eventually(lambda: _complete(exporter, trace_id), what="the 404's span")
    assert [s.name for s in spans] == ["POST /v1/models/{name}:predict"]


def test_a_model_error_marks_the_batch_span(checked_model_dir: Path) -> None:
    """The model refuses a NaN (InvalidArgument, 400): the batch span is the failed step."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = RuntimeSettings(model_path=checked_model_dir, model_name="checked")
    with _served(settings, Tracing(provider)) as url:
        header, trace_id, _ = _traceparent()
        answer = httpx.post(f"{url}/v1/models/checked:predict",
                            content=b'{"instances": [[NaN, 1.0]]}',
                            headers={"traceparent": header, "content-type": "application/json"})
        assert answer.status_code == 400, answer.text
        named = _by_name(eventually(lambda: _complete(exporter, trace_id), what="the spans"))
    (batch,) = named["batch"]
    assert batch.status.status_code == StatusCode.ERROR
    assert batch.attributes is not None and batch.attributes["error.type"] == "InvalidInput"
    assert len(named["model call"]) == 1
    assert "encode" not in named
    (server,) = named["POST /v1/models/{name}:predict"]
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400


def test_tracing_off_imports_nothing_and_keeps_the_plain_classes(demo_model_dir: Path) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT: no SDK import, untraced hot path and requests."""
    script = f"""
import os, sys
for key in [k for k in os.environ if k.startswith("OTEL_")]:
    del os.environ[key]
from modelplane_runtime.http.app import create_app
from modelplane_runtime.http.hotpath import HotPath
from modelplane_runtime.http.direct.connection import connection_class
from modelplane_runtime.http.direct.request import DirectRequest
from modelplane_runtime.settings import RuntimeSettings
app = create_app(RuntimeSettings(model_path={str(demo_model_dir)!r}))
assert app.hot.runtime.tracing is None
assert type(app.hot) is HotPath, type(app.hot)
assert connection_class(app.hot).request_class is DirectRequest
loaded = [m for m in sys.modules if m.startswith("opentelemetry.sdk")]
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_sampler_ratio_from_the_sdk_applies() -> None:
    """The SDK's sampler decides for requests without a parent (OTEL_TRACES_SAMPLER)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    assert tracing.start("POST /x", None) is None  # ratio 0: nothing recorded
    header, _, _ = _traceparent()
    trace = tracing.start("POST /x", header)  # the caller sampled: parent-based says yes
    assert trace is not None
    trace.finish_http(503)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "503"


# Over the wire: a real runtime process and an OTLP/HTTP receiver.


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP trace receiver on a free loopback port."""
    with otlp_receiver() as server:
        yield server


def test_a_runtime_process_exports_its_spans_over_otlp_http(
    receiver: Receiver, demo_model_dir: Path, runtime_log_dir: Path
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    parents = [_traceparent() for _ in range(3)]
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as server:
        with server.client() as client:
            for header, _, _ in parents:
                answer = client.post("/v1/models/demo:predict", json={"instances": [ROW]},
                                     headers={"traceparent": header})
                assert answer.status_code == 200

            def arrived() -> bool:
                ids = {span.trace_id.hex() for _, span in receiver.spans()}
                return all(trace_id in ids for _, trace_id, _ in parents)

            eventually(arrived, timeout=30, what="the spans at the OTLP receiver")
        assert any("tracing on" in str(e.get("message")) for e in server.log_events())
    assert set(receiver.paths) == {"/v1/traces"}
    assert set(receiver.content_types) == {"application/x-protobuf"}
    received = receiver.spans()
    for _, trace_id, caller_span in parents:
        mine = [(resource, span) for resource, span in received if span.trace_id.hex() == trace_id]
        names = sorted(span.name for _, span in mine)
        assert names == sorted([*CHILDREN, "POST /v1/models/{name}:predict"]), names
        resource, root = next((r, s) for r, s in mine if s.name.startswith("POST"))
        assert root.parent_span_id.hex() == caller_span
        assert root.kind == root.SPAN_KIND_SERVER
        assert resource["service.name"] == "modelplane"
        assert resource["modelplane.model"] == "demo"
        assert resource["deployment.environment"] == "test"
        for _, span in mine:
            assert span.start_time_unix_nano <= span.end_time_unix_nano


def test_an_unsupported_otlp_protocol_serves_untraced_with_a_warning(
    receiver: Receiver, demo_model_dir: Path, runtime_log_dir: Path
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
    }
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as server:
        with server.client() as client:
            answer = client.post("/v1/models/demo:predict", json={"instances": [ROW]})
            assert answer.status_code == 200
        warnings = [e for e in server.log_events() if e.get("level") == "warning"
                    and "tracing is off" in str(e.get("message"))]
        assert warnings and "http/json" in str(warnings[0]["message"])
    assert receiver.requests == []


def test_grpc_calls_are_traced_like_http_requests(
    receiver: Receiver, demo_model_dir: Path, runtime_log_dir: Path
) -> None:
    """gRPC Predict and ModelInfer: a server span under the caller's ``traceparent``
    metadata with the same children as HTTP; a refused call's span carries its code."""
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from tests.fixtures.runtime_server import grpc_args

    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    good, bad = _traceparent(), _traceparent()
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo", *grpc_args()],
                        env=env) as server, grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="demo")
        request.inputs.add(name="inputs", datatype="FP32", shape=[1, 8])
        request.raw_input_contents.append(np.asarray([ROW], np.float32).tobytes())
        stub.ModelInfer(request, metadata=(("traceparent", good[0]),), timeout=30)
        request.inputs[0].datatype = "INT32"
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(request, metadata=(("traceparent", bad[0]),), timeout=30)

        def arrived() -> bool:
            ids = {span.trace_id.hex() for _, span in receiver.spans()}
            return good[1] in ids and bad[1] in ids

        eventually(arrived, timeout=30, what="the gRPC spans at the OTLP receiver")
    received = [span for _, span in receiver.spans()]
    method = "/inference.GRPCInferenceService/ModelInfer"
    mine = [span for span in received if span.trace_id.hex() == good[1]]
    assert sorted(span.name for span in mine) == sorted([*CHILDREN, method])
    root = next(span for span in mine if span.name == method)
    assert root.parent_span_id.hex() == good[2]
    codes = {a.key: a.value.int_value for a in root.attributes}
    assert codes["rpc.grpc.status_code"] == 0
    refused = next(s for s in received if s.trace_id.hex() == bad[1] and s.name == method)
    assert {a.key: a.value.int_value for a in refused.attributes}["rpc.grpc.status_code"] == 3
