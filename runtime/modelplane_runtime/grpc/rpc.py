"""The rules of one gRPC call, as rules.py states them for every front door.

``Calls.run`` wraps each RPC that names a model (or needs a token): the request id from
``x-request-id`` metadata (echoed in the trailing metadata, set for the JSON logs), the
refusals (draining: UNAVAILABLE; a missing or wrong ``authorization: Bearer`` token:
UNAUTHENTICATED), the server's request timeout, the error answer, metrics
(``protocol="grpc"``, ``code`` the gRPC code name) and the debug access line.

Codes come from the error itself (errors.py gives each its ``grpc_code``): unknown model,
version or label NOT_FOUND; bad input INVALID_ARGUMENT; not ready or draining UNAVAILABLE;
the server's request timeout DEADLINE_EXCEEDED; a message over the size limit
RESOURCE_EXHAUSTED, which is also what grpc itself answers for a message over
``grpc.max_receive_message_length``, so a client sees one code for "too big" whichever
layer refused it; more rows than ``max_rows_per_request`` INVALID_ARGUMENT, as TF Serving's
batching answers a task over its batch size limit and as the HTTP side answers 400.

With tracing on (tracing.py), every call that names a model gets its server span, a child
of the caller's ``traceparent`` metadata, ended with its gRPC code; Predict and ModelInfer
add the decode, queue, batch, model call and encode spans, as the HTTP path does.

A client's deadline is grpc's own: when it passes, grpc cancels the handler's task, and the
task's cancellation cancels the batcher future it awaits, which withdraws the request from
the batcher's queue if its model call has not started (see batching.Waiter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc

from modelplane_runtime import rules
from modelplane_runtime.logs import REQUEST_ID, RequestIds
from modelplane_runtime.rules import Deadlines, Ticker
from modelplane_runtime.serving import Runtime

if TYPE_CHECKING:
    import numpy as np

    from modelplane_runtime.dataplane.plane import DataPlane
    from modelplane_runtime.tracing import RequestTrace

T = TypeVar("T")
Answer = Callable[["RequestTrace | None"], Awaitable[T]]
"""Computes a call's response; gets the call's trace (None: tracing off or not sampled)."""

PROTOCOL: Final = "grpc"
"""The ``protocol`` label of gRPC requests in the request metrics."""
OK: Final = "OK"
CANCELLED: Final = "CANCELLED"
DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"
DEADLINE_SLACK_S: Final = 0.1
"""A cancel this close to the call's deadline is counted as the deadline passing: the
client's timer started before the server's, so it usually fires (and cancels) first."""

_access = logging.getLogger("modelplane.grpc")


def read_metadata(metadata: Any) -> tuple[str | None, bytes | None, str | None, str | None]:
    """The ``x-request-id``, ``authorization``, ``traceparent`` and ``tracestate`` values
    of a call's metadata."""
    request_id = authorization = traceparent = tracestate = None
    for key, value in metadata or ():
        if key == "x-request-id":
            request_id = value
        elif key == "authorization":
            authorization = value.encode("utf-8") if isinstance(value, str) else value
        elif key == "traceparent":
            traceparent = value
        elif key == "tracestate":
            tracestate = value
    return request_id, authorization, traceparent, tracestate


class Calls:
    """Runs RPCs under the request rules; one per gRPC server."""

    def __init__(self, runtime: Runtime, ids: RequestIds, ticker: Ticker) -> None:
        self.runtime = runtime
        self.ids = ids
        self.deadlines = Deadlines(runtime.settings.request_timeout_s, ticker)

    async def run(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        model: str | None,
        answer: Answer[T],
        *,
        auth: bool = True,
    ) -> T:
        """``await answer(trace)`` under the rules; errors become the call's status.

        ``method`` is the full method path (``/package.Service/Method``).
        ``model`` names the model the call is about (its metrics label; draining refuses
        it); None for server-level calls, which stay answered while draining and are not
        counted. ``auth=False`` for calls that stay open with tokens configured.
        """
        runtime = self.runtime
        given, authorization, traceparent, tracestate = read_metadata(
            context.invocation_metadata()
        )
        request_id = rules.request_id(given, self.ids)
        token = REQUEST_ID.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        label = None if model is None else runtime.metric_model(model)
        trace = None
        if label is not None:
            runtime.metrics.request_started(label)
            if runtime.tracing is not None:
                trace = runtime.tracing.start(
                    method, traceparent, tracestate,
                    {"rpc.system": "grpc", "rpc.method": method, "modelplane.model": model},
                )
        started = time.perf_counter()
        code = OK
        task = asyncio.current_task()
        assert task is not None  # grpc.aio runs every call in its own task
        deadlines = self.deadlines
        deadlines.enter(task, task.get_loop())
        try:
            refused = rules.refusal(runtime, authorization, drain=label is not None, auth=auth)
            if refused is not None:
                answered = rules.failure(refused, log=False)
                code = answered.grpc_code
                await context.abort(grpc.StatusCode[code], answered.message)
            return await answer(trace)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                # The client cancelled, or its deadline passed (grpc answers it itself).
                remaining = context.time_remaining()
                code = (
                    DEADLINE_EXCEEDED
                    if remaining is not None and remaining <= DEADLINE_SLACK_S
                    else CANCELLED
                )
                raise
            task.uncancel()
            answered = rules.failure(rules.timed_out(runtime.settings.request_timeout_s), log=False)
            code = answered.grpc_code
            await context.abort(grpc.StatusCode[code], answered.message)
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            answered = rules.failure(exc)
            code = answered.grpc_code
            await context.abort(grpc.StatusCode[code], answered.message)
            raise  # unreachable: abort raises
        finally:
            deadlines.leave(task)
            if trace is not None:
                trace.finish_grpc(grpc.StatusCode[code].value[0], request_id)
            seconds = time.perf_counter() - started
            if label is not None:
                runtime.metrics.request_finished(label, PROTOCOL, code, seconds)
            if _access.isEnabledFor(logging.DEBUG):
                _access.debug(
                    "grpc %s -> %s", method, code,
                    extra={"code": code, "seconds": round(seconds, 6)},
                )
            REQUEST_ID.reset(token)


async def traced_submit(
    dataplane: DataPlane, trace: RequestTrace, name: str, version: int, signature: str,
    inputs: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """``dataplane.submit`` with the trace's waiter, so that the batcher records the queue
    wait, batch and model call spans of this request (tracing.py)."""
    future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
    dataplane.submit_to(trace.waiter(future), name, version, signature, inputs,
                        strict_dtypes=True)
    return await future
