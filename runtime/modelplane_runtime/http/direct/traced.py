"""A direct-path request with tracing on: DirectRequest plus its spans (tracing.py).

connection.py builds ``TracedDirectRequest`` instead of ``DirectRequest`` when the runtime
traces (chosen once per server, in ``connection_class``), so an untraced server's requests
run DirectRequest's code unchanged. The request is its own batcher Waiter, so it carries
its trace to the batch as ``trace`` (tracing.record_batch looks for that attribute).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from modelplane_runtime.codecs.decoded import Decoded, Outputs
from modelplane_runtime.http.direct.request import DirectRequest
from modelplane_runtime.http.hotpath import CLIENT_GONE, Headers, HotRoute, RequestHead
from modelplane_runtime.http.traced import MODEL_KINDS, start_trace
from modelplane_runtime.tracing import RequestTrace

if TYPE_CHECKING:
    from modelplane_runtime.http.direct.connection import DirectConnection


class TracedDirectRequest(DirectRequest):
    """DirectRequest whose model requests record a trace from headers to answer."""

    __slots__ = ("trace",)

    def __init__(
        self,
        connection: DirectConnection,
        route: HotRoute,
        head: RequestHead,
        method: str,
        path: str,
        keep_alive: bool,
        limit: int,
    ) -> None:
        super().__init__(connection, route, head, method, path, keep_alive, limit)
        self.trace: RequestTrace | None = None
        tracing = connection.hot.runtime.tracing
        if tracing is not None and route.kind in MODEL_KINDS:
            # Built when its headers are complete: the connection's headers are this request's.
            self.trace = start_trace(tracing, route, method, path, connection.headers)

    def _submit(self) -> None:
        if self.trace is not None and not self.answered:
            self.trace.decoding()
        super()._submit()

    def _queue(self, decoded: Decoded) -> None:
        trace = self.trace
        if trace is not None:
            trace.decoded()
            trace.submitted = time.time_ns()
        super()._queue(decoded)

    def set_result(self, outputs: Outputs, /) -> None:
        """DirectRequest's, with the encoding inside an ``encode`` span."""
        trace = self.trace
        if trace is None:
            super().set_result(outputs)
            return
        if self.answered:
            return
        trace.encoding()
        try:
            assert self.decoded is not None
            answer = self.connection.hot.success(self.decoded.encode(outputs))
        except Exception as exc:
            trace.encoded(exc)
            answer = self._failure(exc)
        else:
            trace.encoded()
        self._safely(answer)

    def _answer(self, status: int, body: bytes, headers: Headers) -> None:
        trace = self.trace
        if trace is None:
            super()._answer(status, body, headers)
            return
        gone = self.disconnected or self.connection.transport.is_closing()
        super()._answer(status, body, headers)
        self.trace = None  # one answer per request: its span ends once
        trace.finish_http(CLIENT_GONE if gone else status, self.request_id)
