"""Distributed tracing: W3C ``traceparent`` in, OpenTelemetry spans out over OTLP.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off. Everything
else is the OpenTelemetry SDK's own reading of the standard variables: the protocol
(``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or ``grpc``), headers,
timeout, certificates, the sampler (``OTEL_TRACES_SAMPLER``, default
``parentbased_always_on``: a caller's "not sampled" is obeyed), the batch processor
(``OTEL_BSP_*``) and the resource (``OTEL_SERVICE_NAME``, default ``modelplane``;
``OTEL_RESOURCE_ATTRIBUTES``).

Off, ``Runtime.tracing`` is None and the SDK is never imported. The front ends choose their
traced variants once, at start-up (http/traced.py, http/direct/traced.py), so an untraced
request pays nothing at all on the direct path and one attribute test on the ASGI path.

One trace per inference request, a child of the caller's span when it sent a valid
``traceparent`` (an invalid one starts a new trace, as W3C Trace Context says):

    POST /v1/models/{model}:predict   SERVER; http.*, url.path, modelplane.model, request id
      decode                          body -> tensors (in the decoder process for big bodies)
      queue wait                      queued for the model -> its batch dispatched
      batch                           dispatched -> outputs back; rows and requests in it
        model call                    each model call that carried this request
      encode                          outputs -> response body

Spans are recorded with the times they happened (``start_time`` / ``end_time``), after the
fact where the work ran elsewhere (the batcher's thread), never with a context manager or
the global context on the hot path.

For a front end (HTTP here; gRPC the same way)::

    trace = runtime.tracing and runtime.tracing.start(
        "/inference.GRPCInferenceService/ModelInfer", metadata.get("traceparent"),
        metadata.get("tracestate"), {"rpc.system": "grpc", "modelplane.model": name},
    )                                   # None: tracing off, or the caller's trace unsampled
    if trace is not None:
        trace.decoding(); ...decode...; trace.decoded(error)
        future = loop.create_future()
        dataplane.submit_to(trace.waiter(future), name, version, signature, inputs)
        trace.encoding(); ...encode...; trace.encoded()
        trace.finish_grpc(code, request_id)   # grpc.StatusCode.X.value[0]
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "modelplane"
SHUTDOWN_TIMEOUT_S: Final = 5.0
"""Longest the runtime waits at exit for its last spans to be exported."""
_PROTOCOLS: Final = ("http/protobuf", "grpc")
_GRPC_SERVER_ERRORS: Final = frozenset({2, 4, 12, 13, 14, 15})
"""UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS."""


class Waiter(Protocol):
    """The batcher's Waiter (dataplane/batching.py), restated here: the base layer."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class Queued(Protocol):
    """A request in a batch, as the batcher holds it."""

    future: Any
    rows: int


def wanted(environ: Mapping[str, str]) -> str:
    """Why tracing stays off under ``environ`` ("" when it should be on)."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not (endpoint or "").strip():
        return "no OTEL_EXPORTER_OTLP_ENDPOINT"
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "OTEL_SDK_DISABLED=true"
    exporters = [e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if "otlp" not in exporters:
        return f"OTEL_TRACES_EXPORTER={environ.get('OTEL_TRACES_EXPORTER')} (only otlp is exported)"
    protocol = _protocol(environ)
    if protocol not in _PROTOCOLS:
        return f"OTLP protocol {protocol!r} is not supported (use {' or '.join(_PROTOCOLS)})"
    return ""


def _protocol(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip().lower()


def from_environment(
    model: str, environ: Mapping[str, str] | None = None
) -> Tracing | None:
    """Tracing exported over OTLP as the ``OTEL_*`` variables say, or None when off."""
    environ = os.environ if environ is None else environ
    reason = wanted(environ)
    if reason:
        if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            log.warning("tracing is off: %s", reason)
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter: Any
    if _protocol(environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        exporter = HttpSpanExporter()
    provider = TracerProvider(resource=resource(model))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracing = Tracing(provider)
    log.info(
        "tracing on: OTLP (%s) to %s", _protocol(environ),
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    return tracing


def resource(model: str) -> Any:
    """The SDK resource: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` first, then
    ``service.name=modelplane`` instead of the SDK's ``unknown_service``."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    found = Resource.create({"modelplane.model": model})
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return found


class Tracing:
    """Tracing on: the tracer, and the start of every request's trace."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from modelplane_runtime import __version__

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("modelplane_runtime", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def start(
        self,
        name: str,
        traceparent: bytes | str | None,
        tracestate: bytes | str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> RequestTrace | None:
        """A server span for a request that arrived now, child of ``traceparent`` when it
        is valid; None when it is not recorded (the sampler, or the caller, said no)."""
        from opentelemetry.trace import SpanKind

        parent = None
        if traceparent:
            carrier = {"traceparent": _text(traceparent)}
            if tracestate:
                carrier["tracestate"] = _text(tracestate)
            parent = self._propagator.extract(carrier)
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes,
            start_time=time.time_ns(),
        )
        if not span.is_recording():
            return None
        return RequestTrace(self.tracer, span)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is left and stop, waiting at most ``timeout_s`` (an unreachable
        collector must not hold up the pod's exit)."""
        worker = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            log.warning("tracing: the last spans were not exported within %ss", timeout_s)


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class RequestTrace:
    """One request's spans: the server span and its children, at the times given."""

    __slots__ = ("_context", "_decode_start", "_encode_start", "_tracer", "span", "submitted")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        from opentelemetry.trace import set_span_in_context

        self._tracer = tracer
        self.span = span
        self._context = set_span_in_context(span)
        self._decode_start = 0
        self._encode_start = 0
        self.submitted = 0
        """When the request was queued for the model (ns since the epoch; 0: not yet)."""

    @property
    def trace_id(self) -> str:
        """The trace id in hex (32 digits), as ``traceparent`` carries it."""
        return format(self.span.get_span_context().trace_id, "032x")

    def child(
        self,
        name: str,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
        parent: Any = None,
    ) -> Span:
        """A finished child span (of ``parent``'s context, else of the server span)."""
        span = self._tracer.start_span(
            name, context=parent or self._context, attributes=attributes, start_time=start_ns
        )
        if error is not None:
            _failed(span, error)
        span.end(end_time=max(end_ns, start_ns))
        return span

    def decoding(self) -> None:
        """Decoding the body starts now."""
        self._decode_start = time.time_ns()

    def decoded(self, error: BaseException | str | None = None) -> None:
        """Decoding ended now (with ``error`` when the body was refused)."""
        if self._decode_start:
            self.child("decode", self._decode_start, time.time_ns(), error=error)
            self._decode_start = 0

    def encoding(self) -> None:
        """Encoding the outputs starts now."""
        self._encode_start = time.time_ns()

    def encoded(self, error: BaseException | str | None = None) -> None:
        """Encoding ended now."""
        if self._encode_start:
            self.child("encode", self._encode_start, time.time_ns(), error=error)
            self._encode_start = 0

    def waiter(self, inner: Waiter) -> TracedWaiter:
        """``inner`` (a future, say) as the batcher's Waiter, carrying this trace."""
        self.submitted = time.time_ns()
        return TracedWaiter(inner, self)

    def finish(
        self, error: str | None = None, attributes: Mapping[str, Any] | None = None
    ) -> None:
        """End the server span now; ``error`` (an error type) marks it failed."""
        span = self.span
        if attributes:
            span.set_attributes(attributes)
        if self._decode_start:  # the request ended while its body was being decoded
            self.decoded()
        if error is not None:
            _failed(span, error)
        span.end(end_time=time.time_ns())

    def finish_http(self, status: int, request_id: str = "") -> None:
        """End an HTTP request's span: its status code; 5xx is an error (OpenTelemetry's
        HTTP server conventions: a 4xx is the client's, not the server's, failure)."""
        attributes: dict[str, Any] = {"http.response.status_code": status}
        if request_id:
            attributes["modelplane.request_id"] = request_id
        if self._decode_start:  # answered while decoding: the body was refused (or late)
            self.decoded(str(status) if status >= 400 else None)
        self.finish(str(status) if status >= 500 else None, attributes)

    def finish_grpc(self, code: int, request_id: str = "") -> None:
        """End a gRPC request's span: its status code (``grpc.StatusCode.X.value[0]``);
        the codes OpenTelemetry's RPC conventions count as a server's failure are errors."""
        attributes: dict[str, Any] = {"rpc.grpc.status_code": code}
        if request_id:
            attributes["modelplane.request_id"] = request_id
        if self._decode_start:
            self.decoded(f"grpc {code}" if code else None)
        self.finish(f"grpc {code}" if code in _GRPC_SERVER_ERRORS else None, attributes)


class TracedWaiter:
    """A Waiter that passes everything to ``inner`` and carries a trace for the batcher."""

    __slots__ = ("inner", "trace")

    def __init__(self, inner: Waiter, trace: RequestTrace) -> None:
        self.inner = inner
        self.trace = trace

    def done(self) -> bool:
        """True once the request is answered or withdrawn."""
        return self.inner.done()

    def set_result(self, result: Any, /) -> None:
        """The model's outputs."""
        self.inner.set_result(result)

    def set_exception(self, exception: BaseException, /) -> None:
        """The model call's error."""
        self.inner.set_exception(exception)


def _failed(span: Span, error: BaseException | str) -> None:
    from opentelemetry.trace import Status, StatusCode

    kind = error if isinstance(error, str) else type(error).__name__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, None if isinstance(error, str) else str(error)))


Call = tuple[int, float, float]
"""A model call of a batch: (rows, seconds, start), times from ``time.perf_counter``."""


def record_batch(
    batch: Sequence[Queued],
    results: Sequence[Any],
    dispatched: float,
    calls: Sequence[Call],
) -> None:
    """The queue wait, batch and model call spans of every traced request in a finished
    batch (the batcher calls this on the event loop, before it hands out the results).

    ``dispatched`` and the calls' starts are ``time.perf_counter`` readings; a request
    retried alone after its merged call failed gets both calls as children.
    """
    try:
        _record_batch(batch, results, dispatched, calls)
    except Exception:  # a tracing fault must never break the batch's answers
        log.exception("tracing: could not record a batch")


def _record_batch(
    batch: Sequence[Queued], results: Sequence[Any], dispatched: float, calls: Sequence[Call]
) -> None:
    now_ns, now = time.time_ns(), time.perf_counter()

    def wall(moment: float) -> int:
        return now_ns - int((now - moment) * 1e9)

    requests = len(batch)
    rows = sum(request.rows for request in batch)
    retried = requests > 1 and len(calls) == requests + 1
    dispatched_ns = wall(dispatched)
    from opentelemetry.trace import set_span_in_context

    for index, (request, result) in enumerate(zip(batch, results, strict=True)):
        trace: RequestTrace | None = getattr(request.future, "trace", None)
        if trace is None:
            continue
        if trace.submitted:
            trace.child("queue wait", trace.submitted, dispatched_ns)
        error = result if isinstance(result, BaseException) else None
        batch_span = trace.child(
            "batch", dispatched_ns, now_ns,
            {"modelplane.batch.requests": requests, "modelplane.batch.rows": rows,
             "modelplane.request.rows": request.rows},
            error=error,
        )
        inside = set_span_in_context(batch_span)
        mine = (calls[0], calls[index + 1]) if retried else calls
        for call_rows, seconds, start in mine:
            begin = wall(start)
            trace.child(
                "model call", begin, begin + int(seconds * 1e9),
                {"modelplane.call.rows": call_rows}, parent=inside,
            )
