"""One proxied request: picking its replica, sending it, relaying the answer, and failures.

Retries follow one rule: a request is offered to another replica only when the first
provably did not run it (the connection failed before a byte was written, or the replica
refused it with 503, the runtime's answer while it drains or loads); a request that
reached a replica and got no answer is never replayed, so a request that kills replicas
cannot kill them all. Retries are bounded (``max_attempts``) and budgeted (budget.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from modelplane_balancer import headers
from modelplane_balancer.replica import Replica

if TYPE_CHECKING:
    from modelplane_balancer.front import Front
    from modelplane_balancer.upstream import Upstream

logger = logging.getLogger("modelplane.balancer.request")

FLUSH_BYTES: Final = 64 * 1024
"""An answer is written in one call up to this size; longer ones stream from here on."""
HOLD_BYTES: Final = 1024 * 1024
"""Body bytes held while no replica connection is ready before the client is paused."""
CLIENT_GONE: Final = 499
"""nginx's status for a request whose client went away (counted, never sent)."""


class Exchange:
    """One request from a client and its way to an answer."""

    __slots__ = (
        "answering", "attempts", "balancer", "buffered", "chunked_out", "close", "cursor",
        "deadline", "done", "front", "head", "held", "is_head", "keep_alive", "out", "out_bytes",
        "parked", "patience", "picked", "pieces", "pinned", "refused", "replayable", "replica",
        "request_done",
        "request_id", "started", "status", "track", "tried", "until_close", "upstream",
        "waiting",
    )

    def __init__(self, front: Front, head: bytes, *, is_head: bool, keep_alive: bool,
                 request_id: bytes, pinned: str | None, started: float) -> None:
        self.front = front
        self.balancer = front.balancer
        self.head = head
        self.is_head = is_head
        self.keep_alive = keep_alive
        self.request_id = request_id
        self.pinned = pinned
        self.started = started
        self.pieces: list[bytes] = []
        """Framed body pieces; those before ``cursor`` are written to the current replica."""
        self.cursor = 0
        self.held = 0
        """Bytes in ``pieces``."""
        self.buffered = 0
        """Bytes in ``pieces`` not yet written (while no connection is ready)."""
        self.replayable = True
        self.request_done = False
        self.replica: Replica | None = None
        self.upstream: Upstream | None = None
        self.tried: list[Replica] = []
        self.attempts = 0
        self.track = ""
        self.picked = 0.0
        self.deadline = 0.0
        self.patience: float | None = None
        """Seconds the client waits (``X-Modelplane-Deadline-Ms``), when it says."""
        self.waiting = False
        self.refused = False
        """The replica answered 503 and the request goes elsewhere: its answer is dropped."""
        self.parked = False
        """Refused before the client finished sending: goes elsewhere once it has."""
        self.answering = False
        self.until_close = False
        self.chunked_out = False
        self.close = not keep_alive
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.status = 0
        self.done = False

    # ---- the request side ------------------------------------------------------------

    def start(self) -> None:
        """The request is at the head of its connection's queue: route it."""
        fleet = self.balancer.fleet
        if fleet.suspended:
            self.fail(503, "model suspended", retry_after=True)
            return
        self.track = fleet.choose_track(self.pinned)
        self._route()

    def _route(self) -> None:
        fleet = self.balancer.fleet
        replica = fleet.pick(self.track, self.pinned, self.tried)
        if replica is None:
            fleet.hold(self)  # bounded: the sweep answers 503 when the wait is over
            return
        self._dispatch(replica)

    def resume(self) -> None:
        """The fleet changed while this request waited for a replica: try again."""
        if not self.done:
            self._route()

    def _dispatch(self, replica: Replica) -> None:
        balancer = self.balancer
        self.replica = replica
        self.track = replica.track
        self.tried.append(replica)
        self.attempts += 1
        if self.attempts == 1:
            balancer.budget.deposit()
        self.waiting = False
        replica.in_flight += 1
        self.picked = balancer.now()
        idle = replica.idle
        while idle:
            upstream = idle.pop()
            transport = upstream.transport
            if transport is not None and upstream.reusable and not transport.is_closing():
                replica.busy += 1
                self.attach(upstream)
                return
        if replica.connections >= balancer.settings.max_connections_per_replica:
            replica.in_flight -= 1
            self.replica = None
            self._retry("overflow", budgeted=False)
            return
        balancer.open(replica, self)

    def attach(self, upstream: Upstream) -> None:
        """A connection to the chosen replica is ready: send the head and what body there is."""
        self.upstream = upstream
        upstream.exchange = self
        pieces = self.pieces
        transport = upstream.transport
        assert transport is not None
        if pieces:
            # Every piece: a first attempt holds only unsent ones, a replay holds them all.
            transport.write(self.head + b"".join(pieces))
            self.cursor = len(pieces)
            if not self.replayable:
                pieces.clear()
                self.cursor = self.held = 0
            if self.buffered > HOLD_BYTES:
                self.front.resume()
            self.buffered = 0
        else:
            transport.write(self.head)

    def body(self, piece: bytes) -> None:
        """A framed piece of the request body from the client."""
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(piece)
            if not self.replayable:
                return
            self.cursor += 1
        else:
            self.buffered += len(piece)
            if self.buffered > HOLD_BYTES:
                self.front.transport.pause_reading()
        self.pieces.append(piece)
        self.held += len(piece)
        if self.replayable and self.held > self.balancer.settings.replay_max_bytes:
            self.replayable = False  # too big to keep a copy: stream it, never replay it
            del self.pieces[:self.cursor]
            self.cursor = 0
            self.held = sum(len(p) for p in self.pieces)

    def request_complete(self) -> None:
        """The client finished sending the request."""
        self.request_done = True
        if self.parked and not self.done:
            self.parked = False
            self._retry("refused", budgeted=False)

    # ---- the answer side -------------------------------------------------------------

    def response_head(self, status: int, reason: bytes, fields: bytes, length: bytes | None,
                      *, has_body: bool, until_close: bool = False) -> None:
        """The replica's answer head (hop-by-hop fields already dropped)."""
        if status == 503 and self._may_replay():
            self.refused = True
            return
        self.answering = True
        self.status = status
        self.until_close = until_close
        front = self.front
        close = self.close or front.closing
        if not has_body:
            framing = b"content-length: %s\r\n" % length if length is not None else b""
        elif length is not None:
            framing = b"content-length: %s\r\n" % length
        elif front.http10:
            framing, close = b"", True  # HTTP/1.0 has no chunks: the body ends with the close
        else:
            framing, self.chunked_out = b"transfer-encoding: chunked\r\n", True
        self.close = close
        head = b"%s%s%s%s\r\n" % (headers.status_line(status, reason), fields, framing,
                                  b"connection: close\r\n" if close else b"")
        self.out.append(head)
        self.out_bytes = len(head)

    def response_body(self, data: bytes) -> None:
        """A piece of the answer's body."""
        if self.refused or self.done:
            return
        piece = headers.chunk(data) if self.chunked_out else data
        out = self.out
        if out is None:
            self.front.transport.write(piece)
            return
        out.append(piece)
        self.out_bytes += len(piece)
        if self.out_bytes > FLUSH_BYTES:
            self.front.transport.write(b"".join(out))
            self.out = None  # type: ignore[assignment]  # streaming from here on

    def response_complete(self, upstream: Upstream, *, reusable: bool) -> None:
        """The answer is complete; the connection goes back to the pool when it may."""
        self.upstream = None
        replica = self.replica
        assert replica is not None
        balancer = self.balancer
        now = balancer.now()
        balancer.release(upstream, reusable and self.request_done)
        replica.in_flight -= 1
        if self.refused:
            self.refused = False
            replica.answered(503)
            balancer.fleet.refused(replica)
            self._after_refusal()
            return
        if self.done:
            return
        status = self.status
        replica.observe(now - self.picked, now, balancer.decay_s)
        replica.answered(status)
        if status >= 500 and status != 503:
            balancer.fleet.failed(replica)
        elif status == 503:
            balancer.fleet.refused(replica)
        else:
            balancer.fleet.succeeded(replica)
        out = self.out
        if out is not None:
            if self.chunked_out:
                out.append(headers.LAST_CHUNK)
            self.front.transport.write(b"".join(out) if len(out) > 1 else out[0])
        elif self.chunked_out:
            self.front.transport.write(headers.LAST_CHUNK)
        self._finish(close=self.close or not self.request_done)

    def _after_refusal(self) -> None:
        # The runtime refuses at the head (draining), often before the body is in: then
        # the body keeps arriving into ``pieces`` and the retry waits for its end.
        self.replica = None
        if self.request_done:
            self._retry("refused", budgeted=False)  # the budget was taken in _may_replay
        else:
            self.parked = True

    def _may_replay(self) -> bool:
        return (
            self.replayable
            and self.attempts < self.balancer.settings.max_attempts
            and self.balancer.take_retry()
        )

    # ---- failures --------------------------------------------------------------------

    def connect_failed(self, replica: Replica, reason: str) -> None:
        """The connection to ``replica`` could not be opened: nothing was sent; go elsewhere."""
        replica.in_flight -= 1
        self.replica = None
        self.balancer.fleet.failed(replica, reason)
        if not self.done:
            self._retry("connect", budgeted=True)

    def upstream_lost(self, upstream: Upstream, exc: Exception | None) -> None:
        """The replica's connection closed before the answer was complete."""
        self.upstream = None
        replica = self.replica
        assert replica is not None
        replica.in_flight -= 1
        if self.refused:
            self.refused = False
            self.balancer.fleet.refused(replica)
            self._after_refusal()
            return
        replica.answered(502)
        self.balancer.fleet.failed(replica, f"connection lost: {exc or 'closed'}")
        if self.done:
            return
        if self.answering:
            self._abort()  # part of the answer is out: only closing can say it broke
        else:
            self.fail(502, f"replica {replica.key} closed the connection without an answer",
                      booked=True)

    def upstream_failed(self, reason: str) -> None:
        """The replica sent something that is not HTTP: drop the connection, answer 502."""
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()  # connection_lost follows, with the books

    def _retry(self, reason: str, *, budgeted: bool) -> None:
        balancer = self.balancer
        if self.attempts >= balancer.settings.max_attempts or (
            budgeted and not balancer.take_retry()
        ):
            self.fail(502, "the request could not be sent to a replica", retry_after=True)
            return
        balancer.retried(reason)
        self._route()

    def timed_out(self) -> None:
        """The request outlived ``request_timeout_s``."""
        upstream = self.upstream
        replica = self.replica
        if upstream is not None and replica is not None:
            self.upstream = None
            upstream.exchange = None
            replica.busy -= 1
            replica.in_flight -= 1
            replica.answered(504)
            if upstream.transport is not None:
                upstream.transport.close()
        if self.waiting:
            self.balancer.fleet.unhold(self)
            self.fail(503, "no replica is available", retry_after=True)
        elif self.answering:
            self._abort()
        else:
            self.fail(504, "the replica did not answer in time", booked=True)

    def client_lost(self) -> None:
        """The client went away: stop working for it (the replica's connection closes, so
        the runtime withdraws the request from its batch)."""
        if self.done:
            return
        self.done = True
        if self.waiting:
            self.balancer.fleet.unhold(self)
        upstream, replica = self.upstream, self.replica
        if upstream is not None and replica is not None:
            self.upstream = None
            upstream.exchange = None
            replica.busy -= 1
            replica.in_flight -= 1
            replica.answered(CLIENT_GONE)
            if upstream.transport is not None:
                upstream.transport.close()

    def fail(self, status: int, message: str, *, retry_after: bool = False,
             booked: bool = False, retry_after_s: int = 1) -> None:
        """Answer with the balancer's own JSON error (the request got no replica's answer)."""
        if self.done:
            return
        if not booked:
            self.balancer.answered_itself(status, self.track)
        extra = headers.retry_after(retry_after_s) if retry_after else b""
        self.front.transport.write(headers.error_answer(
            status, message, self.request_id, close=True, extra=extra, head_only=self.is_head,
        ))
        if status >= 500:
            logger.warning("%s", message, extra={
                "request_id": self.request_id.decode("latin-1"), "status": status,
                "replica": self.replica.key if self.replica else None,
                "attempts": self.attempts,
            })
        self.status = status
        self._finish(close=True)  # the request body may still be arriving: do not read it

    def _abort(self) -> None:
        self.done = True
        self.front.transport.close()

    def _finish(self, *, close: bool) -> None:
        self.done = True
        self.front.exchange_done(self, close=close)
