"""One hot request on a direct connection, served from parser and batch callbacks.

connection.py decides which requests are served here (see its docstring); this module holds
what happens to one of them: it begins when its headers are complete, collects its body,
is decoded and queued for the model with itself as the batcher's Waiter, and writes its
whole answer in one call when the batch completes (or its deadline or the client's
departure answers it first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from modelplane_runtime import rules
from modelplane_runtime.codecs.decoded import Decoded, Outputs
from modelplane_runtime.errors import ShuttingDown
from modelplane_runtime.http.decoder import OFF_LOOP_BYTES
from modelplane_runtime.http.hotpath import (
    CLIENT_GONE,
    Answer,
    Headers,
    HotRoute,
    RequestHead,
)
from modelplane_runtime.logs import REQUEST_ID
from modelplane_runtime.rules import SHUTTING_DOWN

if TYPE_CHECKING:
    from modelplane_runtime.http.direct.connection import DirectConnection

logger = logging.getLogger("modelplane.http")

_MODEL_KINDS: Final = frozenset({"predict", "infer"})
_CLOSE: Final = b"connection: close\r\n"


class DirectRequest:
    """One hot request on a connection, served by callbacks rather than a task.

    ``begin`` runs when the headers are complete (probes and refusals answer at once),
    ``body_complete`` when the body is in: it decodes and queues the request for the model
    with the cycle itself as the batcher's Waiter, so the batch's completion calls
    ``set_result`` (or ``set_exception``), which encodes and writes the answer. A deadline
    calls ``cancel`` (503) and a dropped connection calls ``set`` (uvicorn's name for it);
    once answered, ``done()`` is true and the batcher skips the request.

    Has the attributes uvicorn's protocol reads on ``self.cycle`` (``response_complete``,
    ``keep_alive``, ``disconnected``, ``message_event``) and ``run_asgi`` for when uvicorn
    starts it from its pipeline queue.
    """

    __slots__ = (
        "answered",
        "chunks",
        "connection",
        "decoded",
        "disconnected",
        "head",
        "keep_alive",
        "label",
        "limit",
        "message_event",
        "method",
        "more_body",
        "number",
        "path",
        "received",
        "request_id",
        "response_complete",
        "route",
        "started",
        "waiting",
    )

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
        self.connection = connection
        self.route = route
        self.head = head
        self.method = method
        self.path = path
        self.keep_alive = keep_alive
        self.limit = limit
        self.chunks: list[bytes] = []
        self.received = 0
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.message_event = self  # uvicorn calls ``cycle.message_event.set()`` on a drop
        self.request_id = ""
        self.label = ""
        self.started = 0.0
        self.number = 0
        self.waiting = False  # for the body, to submit it
        self.decoded: Decoded | None = None
        self.answered = False

    async def run_asgi(self, app: Any) -> None:
        """Begin when uvicorn takes this request off its pipeline queue (``app`` unused)."""
        self.begin()

    def begin(self) -> None:
        """The headers are complete: start the request's clock, or answer it at once."""
        hot = self.connection.hot
        route = self.route
        self.request_id = hot.request_id(self.head)
        if route.kind not in _MODEL_KINDS:
            self._answer(*hot.probe(route))
            return
        self.label = hot.started(route)
        self.started = time.perf_counter()
        answer = hot.refusal(self.head)
        if answer is None and self.received > self.limit:
            answer = self._too_large()  # arrived while pipelined behind another request
        if answer is None:
            try:
                self.number = hot.resolve(route)
            except Exception as exc:
                answer = self._failure(exc)
        if answer is not None:
            self._answer(*answer)
            return
        hot.deadlines.enter(self, self.connection.loop)
        if self.more_body:
            self.waiting = True
        else:
            self._submit()

    # Parser callbacks.

    def feed(self, chunk: bytes) -> None:
        """Keep a body chunk; past the limit, answer 413 without waiting for the rest."""
        self.received += len(chunk)
        if self.received <= self.limit:
            self.chunks.append(chunk)
            return
        self.chunks.clear()
        if self.started and not self.answered:
            # Not before it begins: a request pipelined behind another answers in its turn.
            self._answer(*self._too_large())

    def _too_large(self) -> Answer:
        return self._failure(rules.too_large(self.limit))

    def body_complete(self) -> None:
        """The whole body is in: submit it if the request is waiting for it."""
        self.more_body = False
        if self.waiting:
            self.waiting = False
            self._submit()

    def set(self) -> None:
        """The connection dropped (uvicorn's ``message_event.set()``): withdraw the request."""
        self.disconnected = True
        if self.started and not self.answered:
            self._answer(CLIENT_GONE, b"", ())  # answered = withdrawn from its batch

    def cancel(self) -> None:
        """The request's deadline passed: withdraw it from the model and answer 503."""
        if not self.answered:
            self._answer(*self._logged(self.connection.hot.timed_out))

    # Serving.

    def _submit(self) -> None:
        if self.answered:
            return
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        hot = self.connection.hot
        if len(body) >= OFF_LOOP_BYTES:
            hot.decode_later(self.route, self.number, self.head, body).add_done_callback(
                self._decoded
            )
            return
        try:
            self._queue(hot.decode_body(self.route, self.number, self.head, body))
        except Exception as exc:
            self._answer(*self._failure(exc))

    def _decoded(self, decoding: asyncio.Future[Decoded]) -> None:
        """The decoder process is done with the body (the loop runs this)."""
        if self.answered:  # timed out, or the client left, while it was decoded
            return
        try:
            self._queue(decoding.result())
        except asyncio.CancelledError:  # the server is closing
            self._answer(*self._failure(ShuttingDown(SHUTTING_DOWN)))
        except Exception as exc:
            self._answer(*self._failure(exc))

    def _queue(self, decoded: Decoded) -> None:
        self.decoded = decoded
        self.connection.hot.submit(self.route, self.number, decoded, self)

    # The batcher's Waiter: called on the loop when the batch is done; must not raise.

    def done(self) -> bool:
        """True once answered: a request answered early (timeout, client gone) is withdrawn."""
        return self.answered

    def set_result(self, outputs: Outputs, /) -> None:
        """The model's outputs for this request: encode and answer."""
        if self.answered:
            return
        try:
            assert self.decoded is not None
            answer = self.connection.hot.success(self.decoded.encode(outputs))
        except Exception as exc:
            answer = self._failure(exc)
        self._safely(answer)

    def set_exception(self, exception: BaseException, /) -> None:
        """The model call failed for this request: answer its error."""
        if self.answered:
            return
        self._safely(self._failure(exception))

    def _safely(self, answer: Answer) -> None:
        try:
            self._answer(*answer)
        except Exception:  # never break the batcher's loop over the rest of the batch
            logger.exception("could not answer %s %s", self.method, self.path)
            self.connection.transport.close()

    def _failure(self, exc: BaseException) -> Answer:
        return self._logged(self.connection.hot.failure, exc)

    def _logged(self, step: Callable[..., Answer], *args: Any) -> Answer:
        """Run a step that may log, with this request's id on its log lines."""
        token = REQUEST_ID.set(self.request_id)
        try:
            return step(*args)
        finally:
            REQUEST_ID.reset(token)

    def _answer(self, status: int, body: bytes, headers: Headers) -> None:
        """Write the whole answer in one call (unless the client is gone), then the books."""
        self.answered = True
        connection = self.connection
        transport = connection.transport
        if self.disconnected or transport.is_closing():
            status = CLIENT_GONE
        else:
            head = connection.heads.get(status, headers, connection.server_state.default_headers)
            transport.write(
                b"%scontent-length: %d\r\nx-request-id: %s\r\n%s\r\n%s" % (
                    head, len(body), self.request_id.encode("latin-1"),
                    b"" if self.keep_alive else _CLOSE, body,
                )
            )
            if connection.flow.write_paused:
                # The client is not reading: hold the connection (and any pipelined
                # request) until it does, as uvicorn's send does by awaiting drain.
                task = connection.loop.create_task(self._complete_after_drain())
                connection.tasks.add(task)
                task.add_done_callback(connection.tasks.discard)
            else:
                self._complete()
        if self.started:
            hot = connection.hot
            hot.deadlines.leave(self)
            seconds = time.perf_counter() - self.started
            hot.finished(
                self.route, self.label, status, seconds, self.method, self.path, self.request_id
            )

    async def _complete_after_drain(self) -> None:
        await self.connection.flow.drain()
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        if not self.keep_alive:
            self.connection.transport.close()
        self.connection.on_response_complete()
